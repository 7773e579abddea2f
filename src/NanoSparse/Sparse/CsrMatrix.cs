namespace NanoSparse.Sparse;

/// <summary>
/// Compressed sparse row matrix (Rows × Cols). Row i owns entries [RowPointers[i], RowPointers[i+1]) of
/// <see cref="Values"/> and of the column indices, which are sorted and unique within a row.
/// Column indices are 16-bit (<see cref="ColumnIndices16"/>) when Cols ≤ 65536 (halves the index traffic
/// of every kernel), otherwise 32-bit (<see cref="ColumnIndices32"/>); exactly one of the two is set.
/// Structure is immutable; values are mutable (training updates them in place).
/// </summary>
public sealed class CsrMatrix
{
    const string Format = "CSR";

    public int Rows { get; }
    public int Cols { get; }
    public int[] RowPointers { get; }
    public ushort[]? ColumnIndices16 { get; }
    public int[]? ColumnIndices32 { get; }
    public float[] Values { get; }

    public int NonZeroCount => RowPointers[Rows];
    public bool HasShortIndices => ColumnIndices16 is not null;
    public double Density => Rows == 0 || Cols == 0 ? 0 : (double)NonZeroCount / ((double)Rows * Cols);

    /// <summary>16-bit indices can address 0..65535, so any dimension up to 65536.</summary>
    public static bool ShortIndicesFit(int dimension) => dimension <= 65536;

    public CsrMatrix(int rows, int cols, int[] rowPointers, int[] columnIndices, float[] values)
    {
        Rows = rows; Cols = cols; RowPointers = rowPointers; ColumnIndices32 = columnIndices; Values = values;
        Validate();
        Kernels.HugePages.Advise(columnIndices);   // a CSR decode streams them once per token
    }

    public CsrMatrix(int rows, int cols, int[] rowPointers, ushort[] columnIndices, float[] values)
    {
        Rows = rows; Cols = cols; RowPointers = rowPointers; ColumnIndices16 = columnIndices; Values = values;
        if (!ShortIndicesFit(cols))
            SparseFormatException.Fail(Format, "16-bit indices only when cols <= 65536", $"cols = {cols}");
        Validate();
        Kernels.HugePages.Advise(columnIndices);
    }

    CsrMatrix(int rows, int cols, int[] rowPointers, ushort[]? columns16, int[]? columns32, bool structureOnly)
    {
        Rows = rows; Cols = cols; RowPointers = rowPointers; ColumnIndices16 = columns16; ColumnIndices32 = columns32; Values = [];
        IsStructureOnly = structureOnly;
    }

    /// <summary>
    /// The structure of a validated matrix without values (<see cref="Values"/> empty): for a holder whose values live
    /// elsewhere (a model's parameter buffer) and that passes them to the kernels itself. The arrays are shared, not copied.
    /// </summary>
    public static CsrMatrix StructureOnly(int rows, int cols, int[] rowPointers, ushort[] columnIndices) => new(rows, cols, rowPointers, columnIndices, null, true);

    /// <inheritdoc cref="StructureOnly(int, int, int[], ushort[])"/>
    public static CsrMatrix StructureOnly(int rows, int cols, int[] rowPointers, int[] columnIndices) => new(rows, cols, rowPointers, null, columnIndices, true);

    /// <summary>True for a structure without values (<see cref="StructureOnly(int, int, int[], ushort[])"/>).</summary>
    public bool IsStructureOnly { get; }

    public int ColumnIndex(int p) => ColumnIndices16 is { } s ? s[p] : ColumnIndices32![p];

    /// <summary>Checks every invariant; throws <see cref="SparseFormatException"/> naming the first broken one.</summary>
    public void Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        if (RowPointers.Length != Rows + 1)
            SparseFormatException.Fail(Format, "row pointer length = rows + 1", $"RowPointers.Length = {RowPointers.Length}, expected {Rows + 1}");
        if (RowPointers[0] != 0)
            SparseFormatException.Fail(Format, "row pointers start at 0", $"RowPointers[0] = {RowPointers[0]}");
        for (int i = 0; i < Rows; i++)
            if (RowPointers[i + 1] < RowPointers[i])
                SparseFormatException.Fail(Format, "monotone row pointers", $"row {i}: RowPointers[{i + 1}] = {RowPointers[i + 1]} < RowPointers[{i}] = {RowPointers[i]}");
        int nnz = RowPointers[Rows];
        int indexLength = ColumnIndices16?.Length ?? ColumnIndices32!.Length;
        if (indexLength != nnz)
            SparseFormatException.Fail(Format, "column index count = nnz", $"column indices length {indexLength}, RowPointers[{Rows}] = {nnz}");
        if (!IsStructureOnly && Values.Length != nnz)
            SparseFormatException.Fail(Format, "value count = nnz", $"values length {Values.Length}, RowPointers[{Rows}] = {nnz}");
        for (int i = 0; i < Rows; i++)
        {
            int previous = -1;
            for (int p = RowPointers[i]; p < RowPointers[i + 1]; p++)
            {
                int c = ColumnIndex(p);
                if (c < 0 || c >= Cols)
                    SparseFormatException.Fail(Format, "column indices in range", $"row {i}, entry {p}: column {c} not in [0, {Cols})");
                if (c <= previous)
                    SparseFormatException.Fail(Format, "sorted unique column indices per row", $"row {i}, entry {p}: column {c} after column {previous}");
                previous = c;
            }
        }
    }

    /// <summary>Bytes held: values, column indices and row pointers.</summary>
    public long FootprintBytes => Footprint(Rows, NonZeroCount, HasShortIndices);

    public static long Footprint(int rows, long nnz, bool shortIndices) => 4L * (rows + 1) + nnz * (4 + (shortIndices ? 2 : 4));

    /// <summary>Density d at which CSR takes as many bytes as dense: 4(R+1) + d·R·C·(4+idx) = 4·R·C.</summary>
    public static double BreakEvenDensity(int rows, int cols, bool shortIndices)
    {
        double cells = (double)rows * cols;
        if (cells == 0) return 0;
        return Math.Max(0, (4 * cells - 4.0 * (rows + 1)) / (cells * (4 + (shortIndices ? 2 : 4))));
    }

    /// <summary>From a dense row-major (rows × cols) array, keeping the nonzeros.</summary>
    public static CsrMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, bool? shortIndices = null)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        var rowPointers = new int[rows + 1];
        int nnz = 0;
        for (int i = 0; i < rows; i++)
        {
            var row = dense.Slice(i * cols, cols);
            for (int j = 0; j < cols; j++) if (row[j] != 0) nnz++;
            rowPointers[i + 1] = nnz;
        }
        bool useShort = shortIndices ?? ShortIndicesFit(cols);
        var values = new float[nnz];
        var c32 = useShort ? null : new int[nnz];
        var c16 = useShort ? new ushort[nnz] : null;
        int q = 0;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
            {
                float v = dense[i * cols + j];
                if (v == 0) continue;
                values[q] = v;
                if (useShort) c16![q] = (ushort)j; else c32![q] = j;
                q++;
            }
        return useShort ? new CsrMatrix(rows, cols, rowPointers, c16!, values) : new CsrMatrix(rows, cols, rowPointers, c32!, values);
    }

    /// <summary>From (row, column, value) triplets in any order; duplicates are summed.</summary>
    public static CsrMatrix FromTriplets(int rows, int cols, ReadOnlySpan<int> rowIndices, ReadOnlySpan<int> columnIndices, ReadOnlySpan<float> values, bool? shortIndices = null) =>
        CooMatrix.FromTriplets(rows, cols, rowIndices, columnIndices, values).ToCsr(shortIndices);

    /// <summary>Builds from 32-bit column indices, narrowing them to 16 bits when the shape allows (or when asked).</summary>
    public static CsrMatrix Create(int rows, int cols, int[] rowPointers, int[] columnIndices, float[] values, bool? shortIndices = null)
    {
        bool useShort = shortIndices ?? ShortIndicesFit(cols);
        if (!useShort) return new CsrMatrix(rows, cols, rowPointers, columnIndices, values);
        if (!ShortIndicesFit(cols)) SparseFormatException.Fail(Format, "16-bit indices only when cols <= 65536", $"cols = {cols}");
        var narrow = new ushort[columnIndices.Length];
        for (int p = 0; p < narrow.Length; p++)
        {
            int c = columnIndices[p];
            if ((uint)c >= (uint)cols) SparseFormatException.Fail(Format, "column indices in range", $"entry {p}: column {c} not in [0, {cols})");
            narrow[p] = (ushort)c;
        }
        return new CsrMatrix(rows, cols, rowPointers, narrow, values);
    }

    public void ToDense(Span<float> dense)
    {
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        for (int i = 0; i < Rows; i++)
            for (int p = RowPointers[i]; p < RowPointers[i + 1]; p++)
                dense[i * Cols + ColumnIndex(p)] = Values[p];
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    public CsrMatrix WithIndexWidth(bool shortIndices)
    {
        if (shortIndices == HasShortIndices) return this;
        var cols = new int[NonZeroCount];
        for (int p = 0; p < cols.Length; p++) cols[p] = ColumnIndex(p);
        return Create(Rows, Cols, (int[])RowPointers.Clone(), cols, (float[])Values.Clone(), shortIndices);
    }

    public CooMatrix ToCoo()
    {
        int nnz = NonZeroCount;
        var r = new int[nnz];
        var c = new int[nnz];
        for (int i = 0; i < Rows; i++)
            for (int p = RowPointers[i]; p < RowPointers[i + 1]; p++) { r[p] = i; c[p] = ColumnIndex(p); }
        return new CooMatrix(Rows, Cols, r, c, (float[])Values.Clone());
    }

    /// <summary>
    /// The transpose's CSR arrays (= this matrix's CSC arrays): a counting sort of the entries by column.
    /// Returns (pointers (Cols+1), row indices, values) with rows sorted within each column.
    /// </summary>
    internal (int[] Pointers, int[] Indices, float[] Values) TransposeArrays()
    {
        int nnz = NonZeroCount;
        var pointers = new int[Cols + 1];
        for (int p = 0; p < nnz; p++) pointers[ColumnIndex(p) + 1]++;
        for (int j = 0; j < Cols; j++) pointers[j + 1] += pointers[j];
        var next = (int[])pointers.Clone();
        var indices = new int[nnz];
        var values = new float[nnz];
        for (int i = 0; i < Rows; i++)
            for (int p = RowPointers[i]; p < RowPointers[i + 1]; p++)
            {
                int q = next[ColumnIndex(p)]++;
                indices[q] = i;
                values[q] = Values[p];
            }
        return (pointers, indices, values);
    }

    public CscMatrix ToCsc(bool? shortIndices = null)
    {
        var (pointers, indices, values) = TransposeArrays();
        return CscMatrix.Create(Rows, Cols, pointers, indices, values, shortIndices);
    }

    /// <summary>Sᵀ as a new CSR matrix (Cols × Rows).</summary>
    public CsrMatrix Transpose(bool? shortIndices = null)
    {
        var (pointers, indices, values) = TransposeArrays();
        return Create(Cols, Rows, pointers, indices, values, shortIndices);
    }

    public CsrMatrix Clone() => HasShortIndices
        ? new CsrMatrix(Rows, Cols, (int[])RowPointers.Clone(), (ushort[])ColumnIndices16!.Clone(), (float[])Values.Clone())
        : new CsrMatrix(Rows, Cols, (int[])RowPointers.Clone(), (int[])ColumnIndices32!.Clone(), (float[])Values.Clone());
}
