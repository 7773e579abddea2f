namespace NanoSparse.Sparse;

/// <summary>
/// Compressed sparse column matrix (Rows × Cols): column j owns entries [ColumnPointers[j], ColumnPointers[j+1]),
/// row indices sorted and unique within a column; 16-bit row indices when Rows ≤ 65536. Its arrays are exactly
/// the CSR arrays of the transpose, which is how kernels use it (Sᵀ·X as a row-wise gather).
/// </summary>
public sealed class CscMatrix
{
    const string Format = "CSC";

    public int Rows { get; }
    public int Cols { get; }
    public int[] ColumnPointers { get; }
    public ushort[]? RowIndices16 { get; }
    public int[]? RowIndices32 { get; }
    public float[] Values { get; }

    public int NonZeroCount => ColumnPointers[Cols];
    public bool HasShortIndices => RowIndices16 is not null;

    public CscMatrix(int rows, int cols, int[] columnPointers, int[] rowIndices, float[] values)
    {
        Rows = rows; Cols = cols; ColumnPointers = columnPointers; RowIndices32 = rowIndices; Values = values;
        Validate();
    }

    public CscMatrix(int rows, int cols, int[] columnPointers, ushort[] rowIndices, float[] values)
    {
        Rows = rows; Cols = cols; ColumnPointers = columnPointers; RowIndices16 = rowIndices; Values = values;
        if (!CsrMatrix.ShortIndicesFit(rows))
            SparseFormatException.Fail(Format, "16-bit indices only when rows <= 65536", $"rows = {rows}");
        Validate();
    }

    public int RowIndex(int p) => RowIndices16 is { } s ? s[p] : RowIndices32![p];

    public void Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        if (ColumnPointers.Length != Cols + 1)
            SparseFormatException.Fail(Format, "column pointer length = cols + 1", $"ColumnPointers.Length = {ColumnPointers.Length}, expected {Cols + 1}");
        if (ColumnPointers[0] != 0)
            SparseFormatException.Fail(Format, "column pointers start at 0", $"ColumnPointers[0] = {ColumnPointers[0]}");
        for (int j = 0; j < Cols; j++)
            if (ColumnPointers[j + 1] < ColumnPointers[j])
                SparseFormatException.Fail(Format, "monotone column pointers", $"column {j}: ColumnPointers[{j + 1}] = {ColumnPointers[j + 1]} < ColumnPointers[{j}] = {ColumnPointers[j]}");
        int nnz = ColumnPointers[Cols];
        int indexLength = RowIndices16?.Length ?? RowIndices32!.Length;
        if (indexLength != nnz)
            SparseFormatException.Fail(Format, "row index count = nnz", $"row indices length {indexLength}, ColumnPointers[{Cols}] = {nnz}");
        if (Values.Length != nnz)
            SparseFormatException.Fail(Format, "value count = nnz", $"values length {Values.Length}, ColumnPointers[{Cols}] = {nnz}");
        for (int j = 0; j < Cols; j++)
        {
            int previous = -1;
            for (int p = ColumnPointers[j]; p < ColumnPointers[j + 1]; p++)
            {
                int r = RowIndex(p);
                if (r < 0 || r >= Rows)
                    SparseFormatException.Fail(Format, "row indices in range", $"column {j}, entry {p}: row {r} not in [0, {Rows})");
                if (r <= previous)
                    SparseFormatException.Fail(Format, "sorted unique row indices per column", $"column {j}, entry {p}: row {r} after row {previous}");
                previous = r;
            }
        }
    }

    public long FootprintBytes => CsrMatrix.Footprint(Cols, NonZeroCount, HasShortIndices);
    public static double BreakEvenDensity(int rows, int cols, bool shortIndices) => CsrMatrix.BreakEvenDensity(cols, rows, shortIndices);

    public static CscMatrix Create(int rows, int cols, int[] columnPointers, int[] rowIndices, float[] values, bool? shortIndices = null)
    {
        // The CSC arrays of S are the CSR arrays of Sᵀ: reuse CSR's narrowing and validation, then re-check as CSC.
        var t = CsrMatrix.Create(cols, rows, columnPointers, rowIndices, values, shortIndices);
        return FromTransposeCsr(t);
    }

    /// <summary>Views the CSR arrays of Sᵀ (cols × rows) as S in CSC (shares the arrays).</summary>
    public static CscMatrix FromTransposeCsr(CsrMatrix transpose) => transpose.HasShortIndices
        ? new CscMatrix(transpose.Cols, transpose.Rows, transpose.RowPointers, transpose.ColumnIndices16!, transpose.Values)
        : new CscMatrix(transpose.Cols, transpose.Rows, transpose.RowPointers, transpose.ColumnIndices32!, transpose.Values);

    /// <summary>The same arrays seen as the CSR matrix of Sᵀ (Cols × Rows), shared, not copied.</summary>
    public CsrMatrix AsTransposeCsr() => HasShortIndices
        ? new CsrMatrix(Cols, Rows, ColumnPointers, RowIndices16!, Values)
        : new CsrMatrix(Cols, Rows, ColumnPointers, RowIndices32!, Values);

    public static CscMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, bool? shortIndices = null) =>
        CsrMatrix.FromDense(dense, rows, cols).ToCsc(shortIndices);

    public void ToDense(Span<float> dense)
    {
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        for (int j = 0; j < Cols; j++)
            for (int p = ColumnPointers[j]; p < ColumnPointers[j + 1]; p++)
                dense[RowIndex(p) * Cols + j] = Values[p];
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    public CsrMatrix ToCsr(bool? shortIndices = null) => AsTransposeCsr().Transpose(shortIndices);
}
