using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Unstructured sparse W (Out × In) in CSR (16-bit column indices when In ≤ 65536). The stored values are W's
/// nonzeros in CSR order (row-major, columns ascending within a row); the layout keeps only the structure.
/// <para>
/// The CSR kernels take X feature-major (K × N), while activations are row-major (rows × features), so:
///   forward   yᵀ (Out × rows) = W · xᵀ           CsrSpmm on xᵀ, transposed into the workspace; yᵀ transposed back
///                                                with bias and residual added in the same pass;
///             at rows ≤ <see cref="RowwiseMaxRows"/>: one SpMV per row of x instead (no transposes).
///   backward  dW = (dyᵀ · x) at W's entries      SDDMM of dyᵀ (Out × rows) and xᵀ (In × rows), D = rows;
///             dBias += row sums of dyᵀ;          from 32 rows on (AVX-512) both straight from dy and x as they are
///                                                (SddmmTiled.RunTokenMajor: the transposes fused into its tiles);
///             dxᵀ (In × rows) = Wᵀ · dyᵀ         CsrSpmm on a CSR copy of Wᵀ's structure (made once), its values
///                                                gathered from the values span each call (nnz floats, a few % of the
///                                                product at training sizes); transposed back with dxScale applied.
///             on one thread (a data-parallel shard), where CsrBackwardTokenMajor.Takes the shape, all three in one pass over
///             Wᵀ's nonzeros per 64 tokens instead (CsrBackwardTokenMajor, <see cref="FuseBackward"/>): the same bits.
///   decode    (rows = 1) SpMV; after <see cref="PrepareForInference"/> a SELL or SELL-256 copy (<see cref="DecodeCopy"/>:
///             permutes fetch x for 16 rows) while the values still match the ones it was made from.
/// </para>
/// Every call's scratch lives in the workspace; the layout holds no per-call state, so data-parallel shards may call
/// it concurrently (except <see cref="PrepareForInference"/>).
/// A model held only for inference drops what the backward pass needs (<see cref="ReleaseTrainingStructures"/>): it
/// keeps W's row pointers and 16-bit column indices, 2 bytes per stored value beside the values in the model's buffer.
/// </summary>
public sealed unsafe partial class CsrLinearWeight : ISparseLinearStructure, ISparseKernel, IInferenceLayout, IDecodeCopyLayout
{
    const string Name = "csr";

    CsrMatrix _w;                          // W's structure; its Values hold the values given to PrepareForInference
                                           // (none after ReleaseTrainingStructures)
    int[] _wtPointers;                     // Wᵀ (In × Out) in CSR: row pointers (In + 1); the Wᵀ arrays are empty after
    ushort[]? _wtIndex16;                  // ReleaseTrainingStructures. Wᵀ's column indices (rows of W), 16-bit when Out ≤ 65536
    int[]? _wtIndex32;
    int[] _wtSource;                       // entry q of Wᵀ is entry _wtSource[q] of W
    bool _inferenceOnly;

    HeldCopy? _sell;                       // decode copy made by PrepareForInference (null: none, or invalidated)

    /// <summary>The decode copy and whether the values passed to Forward are still those it was made from.</summary>
    sealed record HeldCopy(DecodeCopy Copy, DecodeCopyCheck Check);

    public string Layout => Name;
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount { get; }
    public double Density => (double)StoredCount / ((double)OutFeatures * InFeatures);

    /// <summary>W's structure (row pointers, column indices); its Values array is not the model's values.</summary>
    public CsrMatrix Structure => _w;

    /// <summary>
    /// Forward at this many rows or fewer runs one SpMV per row on x as it is (also the N:M and BSR layouts); more rows
    /// go through the transposes (padded to 16 columns) and the S·X kernel. Measured with `bench linear --forward-only
    /// --rowwise-max R` (768×3072, one thread, 50% dense): row-wise 2 rows 3.2 ms, 4 rows 6.4 ms, against 3.1 ms for
    /// 16 rows through CsrSpmm, so only rows = 1 (decode) is row-wise by default.
    /// </summary>
    public static int RowwiseMaxRows
    {
        get => _rowwiseMaxRows;
        set => _rowwiseMaxRows = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "row-wise rows must be non-negative");
    }

    static int _rowwiseMaxRows = 1;

    /// <summary>
    /// From W's CSR structure: row pointers (Out + 1) and column indices (nnz), sorted and unique within each row.
    /// A broken invariant throws <see cref="SparseFormatException"/> (an ArgumentException) naming it.
    /// </summary>
    public CsrLinearWeight(int outFeatures, int inFeatures, int[] rowPointers, int[] columnIndices)
        : this(CsrMatrix.Create(Positive(outFeatures, nameof(outFeatures)), Positive(inFeatures, nameof(inFeatures)),
            rowPointers, columnIndices, new float[columnIndices.Length]))
    {
    }

    CsrLinearWeight(CsrMatrix structure)
    {
        _w = structure;
        OutFeatures = structure.Rows;
        InFeatures = structure.Cols;
        StoredCount = structure.NonZeroCount;
        // Wᵀ's structure by a counting sort of W's entries by column; rows of W come out ascending within each column.
        int nnz = StoredCount;
        _wtPointers = new int[InFeatures + 1];
        for (int p = 0; p < nnz; p++) _wtPointers[_w.ColumnIndex(p) + 1]++;
        for (int j = 0; j < InFeatures; j++) _wtPointers[j + 1] += _wtPointers[j];
        var next = (int[])_wtPointers.Clone();
        _wtSource = new int[nnz];
        bool narrow = CsrMatrix.ShortIndicesFit(OutFeatures);
        if (narrow) _wtIndex16 = new ushort[nnz]; else _wtIndex32 = new int[nnz];
        for (int o = 0; o < OutFeatures; o++)
            for (int p = _w.RowPointers[o]; p < _w.RowPointers[o + 1]; p++)
            {
                int q = next[_w.ColumnIndex(p)]++;
                _wtSource[q] = p;
                if (narrow) _wtIndex16![q] = (ushort)o; else _wtIndex32![q] = o;
            }
    }

    /// <summary>File tensors: row_ptr (I32, Out + 1) and col_indices (U16 when In ≤ 65536, else I32; StoredCount).</summary>
    public IReadOnlyList<IndexTensor> ExportIndices()
    {
        var columns = new int[StoredCount];
        for (int p = 0; p < columns.Length; p++) columns[p] = _w.ColumnIndex(p);
        return
        [
            new IndexTensor("row_ptr", IndexWidth.I32, (int[])_w.RowPointers.Clone()),
            new IndexTensor("col_indices", CsrMatrix.ShortIndicesFit(InFeatures) ? IndexWidth.U16 : IndexWidth.I32, columns),
        ];
    }

    public IReadOnlyDictionary<string, string> FormatParameters { get; } = new Dictionary<string, string>();

    public string LayoutString => Name;

    /// <summary>W's row pointers and column indices, and Wᵀ's pointers, row indices and value permutation (backward).</summary>
    public long IndexBytesInMemory =>
        4L * (OutFeatures + 1) + (long)StoredCount * (_w.HasShortIndices ? 2 : 4)
        + 4L * (InFeatures + 1) + (long)StoredCount * (_wtIndex16 is not null ? 2 : 4) + 4L * StoredCount;

    /// <summary>Rebuilds the layout from a file's row_ptr and col_indices, checking every invariant (naming the tensor).</summary>
    public static ISparseLinearStructure FromStructure(SparseStructure s)
    {
        var pointers = s.Require("row_ptr", s.OutFeatures + 1L, IndexWidth.I32);
        var columns = s.Require("col_indices", -1, IndexWidth.U16, IndexWidth.I32);
        s.CheckCompressedRows("row_ptr", pointers, "col_indices", columns, s.OutFeatures, s.InFeatures, "output");
        return new CsrLinearWeight(s.OutFeatures, s.InFeatures, pointers, columns);
    }

    static int Positive(int value, string name) =>
        value >= 1 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be at least 1");

    /// <summary>The pattern of <paramref name="dense"/> (Out × In, row-major): its nonzeros, whose values are returned in CSR order.</summary>
    public static (CsrLinearWeight Weight, float[] Values) FromDense(int outFeatures, int inFeatures, ReadOnlySpan<float> dense)
    {
        Positive(outFeatures, nameof(outFeatures));
        Positive(inFeatures, nameof(inFeatures));
        if (dense.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {outFeatures} x {inFeatures} = {(long)outFeatures * inFeatures}", nameof(dense));
        var csr = CsrMatrix.FromDense(dense, outFeatures, inFeatures);
        var values = (float[])csr.Values.Clone();
        return (new CsrLinearWeight(csr), values);
    }

    /// <summary>
    /// A uniformly random pattern with exactly round(density · Out · In) entries (a random subset of all positions,
    /// drawn by a partial Fisher–Yates shuffle of the cells; rows end up with binomially distributed lengths).
    /// </summary>
    public static CsrLinearWeight Random(int outFeatures, int inFeatures, double density, Rng rng)
    {
        Positive(outFeatures, nameof(outFeatures));
        Positive(inFeatures, nameof(inFeatures));
        ArgumentNullException.ThrowIfNull(rng);
        if (!(density > 0 && density <= 1))
            throw new ArgumentOutOfRangeException(nameof(density), density, "density must be in (0, 1]");
        long cells = (long)outFeatures * inFeatures;
        long count = Math.Max(1, (long)Math.Round(density * cells));
        var chosen = RandomSubset(cells, count, rng);
        var rowPointers = new int[outFeatures + 1];
        foreach (long c in chosen) rowPointers[c / inFeatures + 1]++;
        for (int o = 0; o < outFeatures; o++) rowPointers[o + 1] += rowPointers[o];
        var columns = new int[chosen.Length];
        for (int i = 0; i < chosen.Length; i++) columns[i] = (int)(chosen[i] % inFeatures);   // chosen is sorted: row-major order
        return new CsrLinearWeight(outFeatures, inFeatures, rowPointers, columns);
    }

    /// <summary><paramref name="count"/> distinct cells of [0, cells), sorted; a sparse Fisher–Yates over a dictionary of swaps.</summary>
    internal static long[] RandomSubset(long cells, long count, Rng rng)
    {
        if (count > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(count), count, "at most 2^31 - 1 stored values");
        var swapped = new Dictionary<long, long>();
        var result = new long[count];
        for (long i = 0; i < count; i++)
        {
            long j = i + rng.NextInt64(cells - i);
            long atJ = swapped.TryGetValue(j, out long vj) ? vj : j;
            long atI = swapped.TryGetValue(i, out long vi) ? vi : i;
            swapped[j] = atI;
            result[i] = atJ;
        }
        Array.Sort(result);
        return result;
    }

    /// <summary>values (StoredCount) = dense (Out × In) at the stored positions.</summary>
    public void Gather(ReadOnlySpan<float> dense, Span<float> values)
    {
        CheckValues(values.Length);
        if (dense.Length != (long)OutFeatures * InFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {OutFeatures} x {InFeatures}", nameof(dense));
        for (int o = 0; o < OutFeatures; o++)
            for (int p = _w.RowPointers[o]; p < _w.RowPointers[o + 1]; p++)
                values[p] = dense[o * InFeatures + _w.ColumnIndex(p)];
    }

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense)
    {
        CheckValues(values.Length);
        if (dense.Length != (long)OutFeatures * InFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {OutFeatures} x {InFeatures}", nameof(dense));
        dense.Clear();
        for (int o = 0; o < OutFeatures; o++)
            for (int p = _w.RowPointers[o]; p < _w.RowPointers[o + 1]; p++)
                dense[o * InFeatures + _w.ColumnIndex(p)] = values[p];
    }

    internal void CheckValues(int length)
    {
        if (length != StoredCount)
            throw new ArgumentException($"{Name} weight ({OutFeatures}x{InFeatures}): values span has {length} elements, expected the stored count {StoredCount}", "values");
    }

    /// <summary>One panel of feature-major x and y (or dy), and 2·nnz floats (backward: one panel's dW, Wᵀ's values; not
    /// after <see cref="ReleaseTrainingStructures"/>).</summary>
    public long WorkspaceFloats(int rows) => FeatureMajor.PanelFloats(rows, InFeatures) + FeatureMajor.PanelFloats(rows, OutFeatures) + (_inferenceOnly ? 0 : 2L * StoredCount);

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        LinearChecks.Forward(this, y, x, values, bias, residual, rows, workspace);
        if (rows == 0) return;
        int n = InFeatures, m = OutFeatures;
        if (rows == 1 && _sell is { } held && held.Check.Matches(values))
        {
            var product = workspace.Slice(0, m);
            held.Copy.Multiply(x.Slice(0, n), product);
            LinearChecks.AddBiasResidual(y, product, bias, residual, 1, m);
            return;
        }
        if (rows > RowwiseMaxRows && rows >= TokenMajorMinRows && CsrSpmmTokenMajor.Supported)
        {
            fixed (float* v = values, px = x, py = y, pb = bias, pr = residual)
            fixed (int* rp = _w.RowPointers)
            {
                if (_w.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) CsrSpmmTokenMajor.Run(m, n, rp, ci, v, px, n, rows, py, m, pb, pr, null);
                else fixed (int* ci = _w.ColumnIndices32) CsrSpmmTokenMajor.Run(m, n, rp, ci, v, px, n, rows, py, m, pb, pr, null);
            }
            return;
        }
        FeatureMajor.Forward(this, y, x, values, bias, residual, rows, n, m, RowwiseMaxRows, workspace);
    }

    /// <summary>
    /// Whether a one-thread backward (a data-parallel shard, or one kernel thread) with 16-bit Wᵀ indices computes dW,
    /// dBias and dx in one pass over W's nonzeros (CsrBackwardTokenMajor) instead of the SDDMM and the dx product each
    /// making its own; the results are the same bits. On by default; off only to measure or test the two-kernel path.
    /// </summary>
    internal static bool FuseBackward { get; set; } = true;

    /// <summary>
    /// From this many rows on, forward and dx run on the activations as they are (CsrSpmmTokenMajor: the transposes
    /// fused into the kernel's panel loads and tile stores); fewer rows go through FeatureMajor's padded panels.
    /// </summary>
    const int TokenMajorMinRows = 32;

    void ISparseKernel.Multiply(ReadOnlySpan<float> values, ReadOnlySpan<float> x, int columns, Span<float> y)
    {
        fixed (float* v = values, px = x, py = y)
            Multiply(v, px, columns, py);
    }

    /// <summary>yᵀ (Out × cols) = W · xᵀ (In × cols) with W's values from <paramref name="values"/>.</summary>
    void Multiply(float* values, float* xT, int cols, float* yT)
    {
        fixed (int* rp = _w.RowPointers)
        {
            if (_w.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) CsrSpmm.Run(OutFeatures, InFeatures, rp, ci, values, xT, cols, yT);
            else fixed (int* ci = _w.ColumnIndices32) CsrSpmm.Run(OutFeatures, InFeatures, rp, ci, values, xT, cols, yT);
        }
    }

    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace)
    {
        if (_inferenceOnly) throw InferenceLayout.BackwardAfterRelease(this);
        LinearChecks.Backward(this, dx, dValues, dBias, dy, x, values, dxScale, rows, workspace);
        CaptureDenseGradient(dy, x, rows);   // dynamic sparse training's update step only (before dx overwrites x)
        _sell = null;   // training: values are about to change
        if (rows == 0) return;
        int n = InFeatures, m = OutFeatures, nnz = StoredCount;
        var xT = workspace.Slice(0, (int)FeatureMajor.PanelFloats(rows, n));            // (In, columns) per panel; later dxᵀ
        var dyT = workspace.Slice(xT.Length, (int)FeatureMajor.PanelFloats(rows, m));   // (Out, columns)
        var gradient = workspace.Slice(xT.Length + dyT.Length, nnz);               // dW at the entries, one panel
        var transposed = workspace.Slice(xT.Length + dyT.Length + nnz, nnz);      // Wᵀ's values (its own order)
        if (!dx.IsEmpty) IndexGather.Run(values, _wtSource, transposed);
        // dx from dy as it is (no transposes) once every panel's weight gradient has read x (dx may alias x).
        bool tokenMajor = rows >= TokenMajorMinRows && CsrSpmmTokenMajor.Supported;
        if (tokenMajor && !dx.IsEmpty && _wtIndex16 is { } fused16 && FuseBackward && CsrBackwardTokenMajor.Takes(nnz, n, m)
            && SddmmTiled.Takes(nnz, n, 64) && KernelThreads.ThreadsFor(2) == 1)
        {
            // One thread: dW, dBias and dx in one pass over W's nonzeros per 64 tokens (the same bits as the two kernels
            // below); the weight gradient is summed in Wᵀ's order, gathered from dValues and scattered back.
            IndexGather.Run(dValues, _wtSource, gradient);
            fixed (int* tp = _wtPointers, src = _wtSource)
            fixed (ushort* ti = fused16)
            fixed (float* tv = transposed, pdy = dy, px = x, pg = gradient, pdb = dBias, pdx = dx, ps = dxScale, pdv = dValues)
            {
                CsrBackwardTokenMajor.Run(m, n, tp, ti, tv, pdy, px, rows, pg, pdb, pdx, ps);
                for (int q = 0; q < nnz; q++) pdv[src[q]] = pg[q];
            }
            return;
        }
        if (tokenMajor && SddmmTiled.Takes(nnz, n, 64))
        {
            // dW and dBias straight from dy and x as they are (the transposes fused into the SDDMM's tiles).
            fixed (int* rp = _w.RowPointers)
            fixed (float* pdy = dy, px = x, pdv = dValues, pdb = dBias)
            {
                if (_w.ColumnIndices16 is { } t16) fixed (ushort* ci = t16) SddmmTiled.RunTokenMajor(m, n, rp, ci, pdy, m, px, n, rows, pdv, pdb);
                else fixed (int* ci = _w.ColumnIndices32) SddmmTiled.RunTokenMajor(m, n, rp, ci, pdy, m, px, n, rows, pdv, pdb);
            }
        }
        else for (int t0 = 0; t0 < rows; t0 += FeatureMajor.PanelRows)
        {
            int r = Math.Min(FeatureMajor.PanelRows, rows - t0), columns = FeatureMajor.Columns(r);
            FeatureMajor.From(x.Slice(t0 * n, r * n), r, n, xT);
            FeatureMajor.From(dy.Slice(t0 * m, r * m), r, m, dyT);
            // In the forward pass this was: y[t, o] = Σ_j W[o, j]·x[t, j], so dW[o, j] = Σ_t dy[t, o]·x[t, j] at the entries.
            bool tiled = SddmmTiled.Takes(nnz, n, columns);   // it adds into dValues itself
            fixed (int* rp = _w.RowPointers)
            fixed (float* a = dyT, b = xT, output = tiled ? dValues : gradient)
            {
                if (tiled && _w.ColumnIndices16 is { } t16) fixed (ushort* ci = t16) SddmmTiled.Run(m, n, rp, ci, a, b, columns, output, accumulate: true);
                else if (tiled) fixed (int* ci = _w.ColumnIndices32) SddmmTiled.Run(m, n, rp, ci, a, b, columns, output, accumulate: true);
                else if (_w.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) Sddmm.Run(m, n, rp, ci, a, b, columns, output);
                else fixed (int* ci = _w.ColumnIndices32) Sddmm.Run(m, n, rp, ci, a, b, columns, output);
            }
            if (!tiled) TensorPrimitives.Add(dValues, gradient, dValues);
            if (!dBias.IsEmpty)
                for (int o = 0; o < m; o++) dBias[o] += TensorPrimitives.Sum(dyT.Slice(o * columns, r));
            if (dx.IsEmpty || tokenMajor) continue;
            // dx[t, j] = Σ_o dy[t, o]·W[o, j]: dxᵀ = Wᵀ · dyᵀ. dx may alias x: this panel's rows of x are in xT already.
            fixed (int* rp = _wtPointers)
            fixed (float* v = transposed, px = dyT, py = xT)
            {
                if (_wtIndex16 is { } c16) fixed (ushort* ci = c16) CsrSpmm.Run(n, m, rp, ci, v, px, columns, py);
                else fixed (int* ci = _wtIndex32) CsrSpmm.Run(n, m, rp, ci, v, px, columns, py);
            }
            FeatureMajor.To(xT, r, n, dx.Slice(t0 * n, r * n), scale: dxScale.IsEmpty ? default : dxScale.Slice(t0 * n, r * n));
        }
        if (dx.IsEmpty || !tokenMajor) return;
        // dx (rows × In) = (dy · W) ⊙ dxScale: Wᵀ (In × Out, CSR) applied to dy's rows.
        fixed (int* rp = _wtPointers)
        fixed (float* v = transposed, pdy = dy, pdx = dx, ps = dxScale)
        {
            if (_wtIndex16 is { } c16) fixed (ushort* ci = c16) CsrSpmmTokenMajor.Run(n, m, rp, ci, v, pdy, m, rows, pdx, n, null, null, ps);
            else fixed (int* ci = _wtIndex32) CsrSpmmTokenMajor.Run(n, m, rp, ci, v, pdy, m, rows, pdx, n, null, null, ps);
        }
    }

    /// <summary>
    /// Builds the decode copy (in <paramref name="format"/>; Auto: per weight, the fewest bytes read) used for rows = 1 from these values (inference: they no longer change). It is used while
    /// the values span passed to Forward is the same memory and a sample of 64 of its values is unchanged; Backward
    /// drops it. After changing values in place by other means (pruning), call this again.
    /// </summary>
    public void PrepareForInference(ReadOnlySpan<float> values, DecodeCopyFormat format = DecodeCopyFormat.Auto)
    {
        CheckValues(values.Length);
        if (!_inferenceOnly) values.CopyTo(_w.Values);
        _sell = new HeldCopy(DecodeCopy.Build(OutFeatures, InFeatures, _w.RowPointers, _w.ColumnIndex, values.ToArray(), format),
            DecodeCopyCheck.Of(values));
    }

    void IDecodeCopyLayout.PrepareDecodeCopy(ReadOnlySpan<float> values, DecodeCopyFormat format) => PrepareForInference(values, format);

    // ---- a model held for inference ----

    public bool IsInferenceOnly => _inferenceOnly;

    /// <summary>"csr16" (or "csr32" when In > 65536): decoding runs the CSR SpMV on this structure; "csr16 + sell" while a
    /// SELL copy made by <see cref="PrepareForInference"/> serves rows = 1.</summary>
    public string DecodeFormat => (_w.HasShortIndices ? "csr16" : "csr32") + (_sell is null ? "" : " + " + _sell.Copy.Name);

    /// <summary>
    /// Drops the structures only training uses: the values copy inside the CSR structure, Wᵀ's structure and value
    /// permutation (dx), and the SELL copy. Forward (any rows) and ToDense/Gather/ExportIndices keep working; Backward
    /// throws InvalidOperationException. Not undone: load the model again to train. <see cref="PrepareForInference"/>
    /// may add a SELL copy again afterwards (faster SpMV, more bytes: Gpt.PrepareForInference(keepSellCopy: true)).
    /// </summary>
    public void ReleaseTrainingStructures()
    {
        if (_inferenceOnly) return;
        _w = _w.HasShortIndices
            ? CsrMatrix.StructureOnly(_w.Rows, _w.Cols, _w.RowPointers, _w.ColumnIndices16!)
            : CsrMatrix.StructureOnly(_w.Rows, _w.Cols, _w.RowPointers, _w.ColumnIndices32!);
        _wtPointers = [];
        _wtIndex16 = null;
        _wtIndex32 = null;
        _wtSource = [];
        _sell = null;
        _inferenceOnly = true;
    }

    /// <summary>Bytes of every array the layout holds (the values span is the model's, not counted): W's structure and
    /// values copy, Wᵀ's structure and permutation, the SELL copy.</summary>
    public long HeldBytes =>
        4L * _w.RowPointers.Length + (_w.ColumnIndices16 is { } c16 ? 2L * c16.Length : 4L * _w.ColumnIndices32!.Length) + 4L * _w.Values.Length
        + 4L * _wtPointers.Length + 2L * (_wtIndex16?.Length ?? 0) + 4L * (_wtIndex32?.Length ?? 0) + 4L * _wtSource.Length
        + (_sell is { } held ? held.Copy.FootprintBytes + held.Check.Bytes : 0);
}
