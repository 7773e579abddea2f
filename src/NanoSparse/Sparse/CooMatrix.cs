namespace NanoSparse.Sparse;

/// <summary>
/// Coordinate-format matrix: parallel arrays of (row, column, value), kept canonical: sorted by row then
/// column with no duplicate positions, so conversion to CSR is a count of rows and kernels can walk rows.
/// </summary>
public sealed class CooMatrix
{
    const string Format = "COO";

    public int Rows { get; }
    public int Cols { get; }
    public int[] RowIndices { get; }
    public int[] ColumnIndices { get; }
    public float[] Values { get; }
    public int NonZeroCount => Values.Length;

    public CooMatrix(int rows, int cols, int[] rowIndices, int[] columnIndices, float[] values)
    {
        Rows = rows; Cols = cols; RowIndices = rowIndices; ColumnIndices = columnIndices; Values = values;
        Validate();
    }

    public void Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        if (RowIndices.Length != Values.Length)
            SparseFormatException.Fail(Format, "row index count = nnz", $"row indices length {RowIndices.Length}, values length {Values.Length}");
        if (ColumnIndices.Length != Values.Length)
            SparseFormatException.Fail(Format, "column index count = nnz", $"column indices length {ColumnIndices.Length}, values length {Values.Length}");
        long previous = -1;
        for (int p = 0; p < Values.Length; p++)
        {
            int r = RowIndices[p], c = ColumnIndices[p];
            if ((uint)r >= (uint)Rows)
                SparseFormatException.Fail(Format, "row indices in range", $"entry {p}: row {r} not in [0, {Rows})");
            if ((uint)c >= (uint)Cols)
                SparseFormatException.Fail(Format, "column indices in range", $"entry {p}: column {c} not in [0, {Cols})");
            long key = (long)r * Cols + c;
            if (key <= previous)
                SparseFormatException.Fail(Format, "entries sorted by (row, column) without duplicates",
                    $"entry {p}: ({r}, {c}) after ({previous / Math.Max(1, Cols)}, {previous % Math.Max(1, Cols)})");
            previous = key;
        }
    }

    /// <summary>Bytes held: three arrays of nnz entries.</summary>
    public long FootprintBytes => 12L * NonZeroCount;

    /// <summary>12·d·R·C = 4·R·C, so d = 1/3 whatever the shape.</summary>
    public static double BreakEvenDensity(int rows, int cols) => rows == 0 || cols == 0 ? 0 : 1.0 / 3.0;

    /// <summary>Triplets in any order; entries at the same position are summed (an explicit zero sum is kept).</summary>
    public static CooMatrix FromTriplets(int rows, int cols, ReadOnlySpan<int> rowIndices, ReadOnlySpan<int> columnIndices, ReadOnlySpan<float> values)
    {
        SparseFormatException.CheckShape(Format, rows, cols);
        if (rowIndices.Length != values.Length || columnIndices.Length != values.Length)
            throw new ArgumentException($"{Format}: triplet arrays differ in length: rows {rowIndices.Length}, columns {columnIndices.Length}, values {values.Length}");
        int n = values.Length;
        var keys = new long[n];
        var order = new int[n];
        for (int p = 0; p < n; p++)
        {
            int r = rowIndices[p], c = columnIndices[p];
            if ((uint)r >= (uint)rows) SparseFormatException.Fail(Format, "row indices in range", $"triplet {p}: row {r} not in [0, {rows})");
            if ((uint)c >= (uint)cols) SparseFormatException.Fail(Format, "column indices in range", $"triplet {p}: column {c} not in [0, {cols})");
            keys[p] = (long)r * cols + c;
            order[p] = p;
        }
        Array.Sort(keys, order);
        int unique = 0;
        for (int p = 0; p < n; p++) if (p == 0 || keys[p] != keys[p - 1]) unique++;
        var outRows = new int[unique];
        var outCols = new int[unique];
        var outValues = new float[unique];
        // Sum duplicates in double so the result does not depend on the order they arrived in (up to rounding).
        int q = -1;
        double sum = 0;
        for (int p = 0; p < n; p++)
        {
            if (p == 0 || keys[p] != keys[p - 1])
            {
                if (q >= 0) outValues[q] = (float)sum;
                q++;
                outRows[q] = (int)(keys[p] / cols);
                outCols[q] = (int)(keys[p] % cols);
                sum = 0;
            }
            sum += values[order[p]];
        }
        if (q >= 0) outValues[q] = (float)sum;
        return new CooMatrix(rows, cols, outRows, outCols, outValues);
    }

    public static CooMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols) => CsrMatrix.FromDense(dense, rows, cols).ToCoo();

    public void ToDense(Span<float> dense)
    {
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        for (int p = 0; p < Values.Length; p++) dense[RowIndices[p] * Cols + ColumnIndices[p]] = Values[p];
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    public CsrMatrix ToCsr(bool? shortIndices = null)
    {
        var rowPointers = new int[Rows + 1];
        for (int p = 0; p < Values.Length; p++) rowPointers[RowIndices[p] + 1]++;
        for (int i = 0; i < Rows; i++) rowPointers[i + 1] += rowPointers[i];
        return CsrMatrix.Create(Rows, Cols, rowPointers, (int[])ColumnIndices.Clone(), (float[])Values.Clone(), shortIndices);
    }
}
