namespace NanoSparse.Sparse;

/// <summary>
/// Block sparse row matrix: the (Rows × Cols) matrix is tiled into BlockRows × BlockCols blocks; the stored
/// blocks of block-row b are [BlockRowPointers[b], BlockRowPointers[b+1]), with sorted unique block-column
/// indices (16-bit when Cols/BlockCols ≤ 65536) and each block's values dense row-major in <see cref="Values"/>
/// (BlockRows·BlockCols floats per block). Rows and Cols must be multiples of the block shape.
/// </summary>
public sealed class BsrMatrix
{
    const string Format = "BSR";

    public int Rows { get; }
    public int Cols { get; }
    public int BlockRows { get; }
    public int BlockCols { get; }
    public int[] BlockRowPointers { get; }
    public ushort[]? BlockColumnIndices16 { get; }
    public int[]? BlockColumnIndices32 { get; }
    public float[] Values { get; }

    public int BlockRowCount => Rows / BlockRows;
    public int BlockColCount => Cols / BlockCols;
    public int BlockCount => BlockRowPointers[BlockRowCount];
    public int BlockSize => BlockRows * BlockCols;
    public bool HasShortIndices => BlockColumnIndices16 is not null;

    public BsrMatrix(int rows, int cols, int blockRows, int blockCols, int[] blockRowPointers, int[] blockColumnIndices, float[] values)
    {
        Rows = rows; Cols = cols; BlockRows = blockRows; BlockCols = blockCols;
        BlockRowPointers = blockRowPointers; BlockColumnIndices32 = blockColumnIndices; Values = values;
        Validate();
    }

    public BsrMatrix(int rows, int cols, int blockRows, int blockCols, int[] blockRowPointers, ushort[] blockColumnIndices, float[] values)
    {
        Rows = rows; Cols = cols; BlockRows = blockRows; BlockCols = blockCols;
        BlockRowPointers = blockRowPointers; BlockColumnIndices16 = blockColumnIndices; Values = values;
        Validate();
    }

    BsrMatrix(BsrMatrix validated)
    {
        Rows = validated.Rows; Cols = validated.Cols; BlockRows = validated.BlockRows; BlockCols = validated.BlockCols;
        BlockRowPointers = validated.BlockRowPointers;
        BlockColumnIndices16 = validated.BlockColumnIndices16; BlockColumnIndices32 = validated.BlockColumnIndices32;
        Values = [];
        IsStructureOnly = true;
    }

    /// <summary>
    /// This matrix's structure without values (<see cref="Values"/> empty): for a holder whose values live elsewhere
    /// (a model's parameter buffer) and that passes them to the kernels itself. The index arrays are shared, not copied.
    /// </summary>
    public BsrMatrix StructureOnly() => IsStructureOnly ? this : new BsrMatrix(this);

    /// <summary>True for a structure without values (<see cref="StructureOnly"/>).</summary>
    public bool IsStructureOnly { get; }

    public int BlockColumnIndex(int b) => BlockColumnIndices16 is { } s ? s[b] : BlockColumnIndices32![b];

    public void Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        if (BlockRows < 1 || BlockCols < 1)
            SparseFormatException.Fail(Format, "positive block shape", $"block shape {BlockRows}x{BlockCols}");
        if (Rows % BlockRows != 0)
            SparseFormatException.Fail(Format, "rows divisible by block rows", $"rows = {Rows}, block rows = {BlockRows}");
        if (Cols % BlockCols != 0)
            SparseFormatException.Fail(Format, "cols divisible by block cols", $"cols = {Cols}, block cols = {BlockCols}");
        if (HasShortIndices && !CsrMatrix.ShortIndicesFit(BlockColCount))
            SparseFormatException.Fail(Format, "16-bit indices only when block columns <= 65536", $"block columns = {BlockColCount}");
        int br = BlockRowCount;
        if (BlockRowPointers.Length != br + 1)
            SparseFormatException.Fail(Format, "block row pointer length = block rows + 1", $"BlockRowPointers.Length = {BlockRowPointers.Length}, expected {br + 1}");
        if (BlockRowPointers[0] != 0)
            SparseFormatException.Fail(Format, "block row pointers start at 0", $"BlockRowPointers[0] = {BlockRowPointers[0]}");
        for (int b = 0; b < br; b++)
            if (BlockRowPointers[b + 1] < BlockRowPointers[b])
                SparseFormatException.Fail(Format, "monotone block row pointers", $"block row {b}: BlockRowPointers[{b + 1}] = {BlockRowPointers[b + 1]} < {BlockRowPointers[b]}");
        int blocks = BlockRowPointers[br];
        int indexLength = BlockColumnIndices16?.Length ?? BlockColumnIndices32!.Length;
        if (indexLength != blocks)
            SparseFormatException.Fail(Format, "block column index count = stored blocks", $"index length {indexLength}, stored blocks {blocks}");
        if (!IsStructureOnly && (long)Values.Length != (long)blocks * BlockSize)
            SparseFormatException.Fail(Format, "value count = stored blocks x block size", $"values length {Values.Length}, expected {blocks} x {BlockSize}");
        for (int b = 0; b < br; b++)
        {
            int previous = -1;
            for (int p = BlockRowPointers[b]; p < BlockRowPointers[b + 1]; p++)
            {
                int c = BlockColumnIndex(p);
                if (c < 0 || c >= BlockColCount)
                    SparseFormatException.Fail(Format, "block column indices in range", $"block row {b}, block {p}: block column {c} not in [0, {BlockColCount})");
                if (c <= previous)
                    SparseFormatException.Fail(Format, "sorted unique block column indices per block row", $"block row {b}, block {p}: block column {c} after {previous}");
                previous = c;
            }
        }
    }

    public long FootprintBytes => 4L * (BlockRowCount + 1) + (long)BlockCount * (4L * BlockSize + (HasShortIndices ? 2 : 4));

    /// <summary>
    /// Fraction of blocks stored at which BSR takes as many bytes as dense:
    /// 4(BR+1) + d·BR·BC·(4·r·c + idx) = 4·R·C. (Element density is at most this times the in-block fill.)
    /// </summary>
    public static double BreakEvenBlockDensity(int rows, int cols, int blockRows, int blockCols, bool shortIndices)
    {
        if (rows == 0 || cols == 0) return 0;
        double br = rows / blockRows, bc = cols / blockCols;
        return Math.Min(1, Math.Max(0, (4.0 * rows * cols - 4 * (br + 1)) / (br * bc * (4.0 * blockRows * blockCols + (shortIndices ? 2 : 4)))));
    }

    /// <summary>Stores every block that holds a nonzero.</summary>
    public static BsrMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, int blockRows, int blockCols, bool? shortIndices = null)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        if (blockRows < 1 || blockCols < 1 || rows % blockRows != 0 || cols % blockCols != 0)
            SparseFormatException.Fail(Format, "shape divisible by a positive block shape", $"shape {rows}x{cols}, block shape {blockRows}x{blockCols}");
        int br = rows / blockRows, bc = cols / blockCols;
        var pointers = new int[br + 1];
        var blockCols32 = new List<int>();
        var values = new List<float>();
        for (int b = 0; b < br; b++)
        {
            for (int c = 0; c < bc; c++)
            {
                bool any = false;
                for (int r = 0; r < blockRows && !any; r++)
                    for (int s = 0; s < blockCols; s++)
                        if (dense[(b * blockRows + r) * cols + c * blockCols + s] != 0) { any = true; break; }
                if (!any) continue;
                blockCols32.Add(c);
                for (int r = 0; r < blockRows; r++)
                    for (int s = 0; s < blockCols; s++)
                        values.Add(dense[(b * blockRows + r) * cols + c * blockCols + s]);
            }
            pointers[b + 1] = blockCols32.Count;
        }
        bool useShort = shortIndices ?? CsrMatrix.ShortIndicesFit(bc);
        if (useShort)
        {
            var idx = new ushort[blockCols32.Count];
            for (int i = 0; i < idx.Length; i++) idx[i] = (ushort)blockCols32[i];
            return new BsrMatrix(rows, cols, blockRows, blockCols, pointers, idx, values.ToArray());
        }
        return new BsrMatrix(rows, cols, blockRows, blockCols, pointers, blockCols32.ToArray(), values.ToArray());
    }

    public static BsrMatrix FromCsr(CsrMatrix csr, int blockRows, int blockCols, bool? shortIndices = null) =>
        FromDense(csr.ToDense(), csr.Rows, csr.Cols, blockRows, blockCols, shortIndices);

    public void ToDense(Span<float> dense)
    {
        if (IsStructureOnly) throw new InvalidOperationException("this BSR matrix is a structure without values (StructureOnly): it has no dense form");
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        for (int b = 0; b < BlockRowCount; b++)
            for (int p = BlockRowPointers[b]; p < BlockRowPointers[b + 1]; p++)
            {
                int c = BlockColumnIndex(p);
                for (int r = 0; r < BlockRows; r++)
                    for (int s = 0; s < BlockCols; s++)
                        dense[(b * BlockRows + r) * Cols + c * BlockCols + s] = Values[p * BlockSize + r * BlockCols + s];
            }
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    /// <summary>Nonzeros only (the zeros padding a stored block are dropped).</summary>
    public CsrMatrix ToCsr(bool? shortIndices = null) => CsrMatrix.FromDense(ToDense(), Rows, Cols, shortIndices);
}
