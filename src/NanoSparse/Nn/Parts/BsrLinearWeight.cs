using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Block-sparse W (Out × In) in BSR with blocks of BlockRows × BlockCols (dividing Out and In). Stored values: the
/// stored blocks in block-row order (block columns ascending), each dense row-major.
/// Forward: yᵀ = W · xᵀ with BsrSpmm on the transposed activations (rows ≤ <see cref="CsrLinearWeight.RowwiseMaxRows"/>:
/// one BsrSpmm SpMV per row). Backward: through the CSR layout over the stored blocks' elements (SDDMM for dW at
/// every element of a stored block, CsrSpmm on Wᵀ for dx), its values gathered from and its dW scattered back to
/// the block order through a fixed permutation (2·nnz moves per call).
/// A model held only for inference drops the CSR layout and the permutation (<see cref="ReleaseTrainingStructures"/>):
/// it keeps the block row pointers and block column indices, the structure the forward kernel reads.
/// </summary>
public sealed class BsrLinearWeight : ISparseLinearStructure, ISparseKernel, IInferenceLayout
{
    const string Name = "bsr";

    readonly BsrMatrix _bsr;               // block structure only (no values: they are the model's)
    CsrLinearWeight? _csr;                 // every element of the stored blocks, in CSR order (backward); null after
    int[] _blockOrder;                     // ReleaseTrainingStructures, and then the permutation is empty too:
                                           // CSR entry q is stored value _blockOrder[q]

    public string Layout => Name;
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount { get; }
    public int BlockRows => _bsr.BlockRows;
    public int BlockCols => _bsr.BlockCols;

    BsrLinearWeight(BsrMatrix bsr)
    {
        _bsr = bsr.StructureOnly();
        OutFeatures = bsr.Rows;
        InFeatures = bsr.Cols;
        StoredCount = bsr.Values.Length;
        int r = bsr.BlockRows, c = bsr.BlockCols;
        var ones = new float[(long)OutFeatures * InFeatures];
        _blockOrder = new int[StoredCount];
        int q = 0;
        for (int b = 0; b < bsr.BlockRowCount; b++)
            for (int row = 0; row < r; row++)
                for (int p = bsr.BlockRowPointers[b]; p < bsr.BlockRowPointers[b + 1]; p++)
                {
                    int column0 = bsr.BlockColumnIndex(p) * c;
                    for (int s = 0; s < c; s++)
                    {
                        ones[(long)(b * r + row) * InFeatures + column0 + s] = 1;
                        _blockOrder[q++] = p * r * c + row * c + s;
                    }
                }
        _csr = CsrLinearWeight.FromDense(OutFeatures, InFeatures, ones).Weight;
    }

    /// <summary>File tensors: block_row_ptr (I32, Out/R + 1) and block_col_indices (U16 when In/C ≤ 65536, else I32; stored blocks).</summary>
    public IReadOnlyList<IndexTensor> ExportIndices()
    {
        var columns = new int[_bsr.BlockCount];
        for (int b = 0; b < columns.Length; b++) columns[b] = _bsr.BlockColumnIndex(b);
        return
        [
            new IndexTensor("block_row_ptr", IndexWidth.I32, (int[])_bsr.BlockRowPointers.Clone()),
            new IndexTensor("block_col_indices", CsrMatrix.ShortIndicesFit(_bsr.BlockColCount) ? IndexWidth.U16 : IndexWidth.I32, columns),
        ];
    }

    public IReadOnlyDictionary<string, string> FormatParameters => new Dictionary<string, string>
    {
        ["block"] = $"{BlockRows}x{BlockCols}",
    };

    public string LayoutString => $"{Name}:{BlockRows}x{BlockCols}";

    /// <summary>The block pointers and block column indices, and until the release the element-wise CSR copy (backward) and its permutation.</summary>
    public long IndexBytesInMemory => BlockStructureBytes + (_csr is null ? 0 : _csr.IndexBytesInMemory + 4L * _blockOrder.Length);

    long BlockStructureBytes => 4L * (_bsr.BlockRowCount + 1) + (long)_bsr.BlockCount * (_bsr.HasShortIndices ? 2 : 4);

    /// <summary>Rebuilds the layout from a file's block, block_row_ptr and block_col_indices.</summary>
    public static ISparseLinearStructure FromStructure(SparseStructure s)
    {
        var (r, c) = s.PairParameter("block");
        if (r < 1 || s.OutFeatures % r != 0 || c < 1 || s.InFeatures % c != 0)
            throw new InvalidDataException($"metadata '{s.Name}.block' is {r}x{c}, expected positive block sides dividing the shape ({s.OutFeatures}, {s.InFeatures})");
        int blockRowCount = s.OutFeatures / r, blockColCount = s.InFeatures / c;
        var pointers = s.Require("block_row_ptr", blockRowCount + 1L, IndexWidth.I32);
        var columns = s.Require("block_col_indices", -1, IndexWidth.U16, IndexWidth.I32);
        int blocks = s.CheckCompressedRows("block_row_ptr", pointers, "block_col_indices", columns, blockRowCount, blockColCount, "block");
        if ((long)blocks * r * c > Array.MaxLength)
            throw s.Fail("block_col_indices", $"lists {blocks} blocks of {r}x{c}, more values than one array holds");
        var values = new float[blocks * r * c];
        var bsr = CsrMatrix.ShortIndicesFit(blockColCount)
            ? new BsrMatrix(s.OutFeatures, s.InFeatures, r, c, pointers, columns.Select(x => (ushort)x).ToArray(), values)
            : new BsrMatrix(s.OutFeatures, s.InFeatures, r, c, pointers, columns, values);
        return new BsrLinearWeight(bsr);
    }

    static void CheckBlocks(int outFeatures, int inFeatures, int blockRows, int blockCols)
    {
        if (outFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), outFeatures, "out features must be at least 1");
        if (inFeatures < 1) throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "in features must be at least 1");
        if (blockRows < 1 || outFeatures % blockRows != 0)
            throw new ArgumentException($"BSR block rows must be positive and divide the out features {outFeatures}, got {blockRows}", nameof(blockRows));
        if (blockCols < 1 || inFeatures % blockCols != 0)
            throw new ArgumentException($"BSR block cols must be positive and divide the in features {inFeatures}, got {blockCols}", nameof(blockCols));
    }

    /// <summary>Every block of <paramref name="dense"/> holding a nonzero is stored (with its zeros); values in stored order.</summary>
    public static (BsrLinearWeight Weight, float[] Values) FromDense(int outFeatures, int inFeatures, int blockRows, int blockCols, ReadOnlySpan<float> dense)
    {
        CheckBlocks(outFeatures, inFeatures, blockRows, blockCols);
        if (dense.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {outFeatures} x {inFeatures} = {(long)outFeatures * inFeatures}", nameof(dense));
        var bsr = BsrMatrix.FromDense(dense, outFeatures, inFeatures, blockRows, blockCols);
        if (bsr.BlockCount == 0) throw new ArgumentException("dense has no nonzero: a BSR weight needs at least one block", nameof(dense));
        return (new BsrLinearWeight(bsr), bsr.Values);   // the layout keeps the structure only
    }

    /// <summary>A uniformly random set of exactly round(density · blocks) blocks (at least one).</summary>
    public static BsrLinearWeight Random(int outFeatures, int inFeatures, int blockRows, int blockCols, double density, Rng rng)
    {
        CheckBlocks(outFeatures, inFeatures, blockRows, blockCols);
        ArgumentNullException.ThrowIfNull(rng);
        if (!(density > 0 && density <= 1))
            throw new ArgumentOutOfRangeException(nameof(density), density, "density must be in (0, 1]");
        int blockRowCount = outFeatures / blockRows, blockColCount = inFeatures / blockCols;
        long blocks = (long)blockRowCount * blockColCount;
        var chosen = CsrLinearWeight.RandomSubset(blocks, Math.Max(1, (long)Math.Round(density * blocks)), rng);
        var pointers = new int[blockRowCount + 1];
        foreach (long b in chosen) pointers[b / blockColCount + 1]++;
        for (int b = 0; b < blockRowCount; b++) pointers[b + 1] += pointers[b];
        var columns = new int[chosen.Length];
        for (int i = 0; i < chosen.Length; i++) columns[i] = (int)(chosen[i] % blockColCount);
        var values = new float[checked(chosen.Length * blockRows * blockCols)];
        var bsr = CsrMatrix.ShortIndicesFit(blockColCount)
            ? new BsrMatrix(outFeatures, inFeatures, blockRows, blockCols, pointers, columns.Select(c => (ushort)c).ToArray(), values)
            : new BsrMatrix(outFeatures, inFeatures, blockRows, blockCols, pointers, columns, values);
        return new BsrLinearWeight(bsr);
    }

    /// <summary>values (StoredCount) = dense (Out × In) at the stored positions (every element of a stored block).</summary>
    public void Gather(ReadOnlySpan<float> dense, Span<float> values)
    {
        LinearChecks.Values(this, values);
        CheckDense(dense.Length);
        int r = BlockRows, c = BlockCols;
        for (int b = 0; b < _bsr.BlockRowCount; b++)
            for (int p = _bsr.BlockRowPointers[b]; p < _bsr.BlockRowPointers[b + 1]; p++)
                for (int row = 0; row < r; row++)
                    dense.Slice((b * r + row) * InFeatures + _bsr.BlockColumnIndex(p) * c, c).CopyTo(values.Slice((p * r + row) * c, c));
    }

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense)
    {
        LinearChecks.Values(this, values);
        CheckDense(dense.Length);
        dense.Clear();
        int r = BlockRows, c = BlockCols;
        for (int b = 0; b < _bsr.BlockRowCount; b++)
            for (int p = _bsr.BlockRowPointers[b]; p < _bsr.BlockRowPointers[b + 1]; p++)
                for (int row = 0; row < r; row++)
                    values.Slice((p * r + row) * c, c).CopyTo(dense.Slice((b * r + row) * InFeatures + _bsr.BlockColumnIndex(p) * c, c));
    }

    void CheckDense(int length)
    {
        if (length != (long)OutFeatures * InFeatures)
            throw new ArgumentException($"dense has {length} elements, expected out x in = {OutFeatures} x {InFeatures} = {(long)OutFeatures * InFeatures}", "dense");
    }

    /// <summary>The CSR layout's workspace plus the values and dW in CSR order; after the release, the forward panels only.</summary>
    public long WorkspaceFloats(int rows) => _csr is null
        ? FeatureMajor.PanelFloats(rows, InFeatures) + FeatureMajor.PanelFloats(rows, OutFeatures)
        : _csr.WorkspaceFloats(rows) + 2L * StoredCount;

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        LinearChecks.Forward(this, y, x, values, bias, residual, rows, workspace);
        if (rows == 0) return;
        FeatureMajor.Forward(this, y, x, values, bias, residual, rows, InFeatures, OutFeatures, CsrLinearWeight.RowwiseMaxRows, workspace);
    }

    void ISparseKernel.Multiply(ReadOnlySpan<float> values, ReadOnlySpan<float> x, int columns, Span<float> y) =>
        BsrSpmm.Multiply(_bsr, values, x, columns, y);

    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace)
    {
        if (_csr is not { } csr) throw InferenceLayout.BackwardAfterRelease(this);
        LinearChecks.Backward(this, dx, dValues, dBias, dy, x, values, dxScale, rows, workspace);
        long inner = csr.WorkspaceFloats(rows);
        var csrValues = workspace.Slice((int)inner, StoredCount);
        var csrGrad = workspace.Slice((int)inner + StoredCount, StoredCount);
        for (int q = 0; q < StoredCount; q++) csrValues[q] = values[_blockOrder[q]];
        csrGrad.Clear();
        csr.Backward(dx, csrGrad, dBias, dy, x, csrValues, dxScale, rows, workspace.Slice(0, (int)inner));
        for (int q = 0; q < StoredCount; q++) dValues[_blockOrder[q]] += csrGrad[q];
    }

    // ---- a model held for inference ----

    public bool IsInferenceOnly => _csr is null;

    /// <summary>"bsr RxC (16-bit block indices)" (32-bit when In/C > 65536): decoding runs BsrSpmm on the block structure.</summary>
    public string DecodeFormat => $"bsr {BlockRows}x{BlockCols} ({(_bsr.HasShortIndices ? 16 : 32)}-bit block indices)";

    /// <summary>
    /// Drops what only the backward pass uses: the element-wise CSR layout (its structure, values copy and Wᵀ) and the
    /// permutation to it. Forward (any rows), ToDense, Gather and ExportIndices keep working on the block structure;
    /// Backward throws InvalidOperationException. Not undone: load the model again to train.
    /// </summary>
    public void ReleaseTrainingStructures()
    {
        _csr = null;
        _blockOrder = [];
    }

    /// <summary>Bytes of every array the layout holds (the values span is the model's, not counted): the block row pointers
    /// and block column indices, and until the release the CSR layout's arrays and the permutation.</summary>
    public long HeldBytes => BlockStructureBytes + (_csr is null ? 0 : _csr.HeldBytes + 4L * _blockOrder.Length);
}
