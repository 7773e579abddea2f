using System.Numerics.Tensors;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// N:M semi-structured W (Out × In): along the reduction dimension In, every group of M consecutive inputs of an
/// output row keeps exactly N weights (2:4, 1:4, 2:8, 4:8; N &lt; M, M divides In). Stored values: N per group,
/// row-major, ascending input index within a group.
/// Training (M of 2, 4, 8 or 16 on AVX-512, rows above <see cref="CsrLinearWeight.RowwiseMaxRows"/>) runs on x and dy
/// as they are, token-major, through <see cref="NmLinear"/>: the forward product (and dW at the stored positions, but
/// for 2:4) with 16 outputs per vector and each lane's input picked by a permute. For 2:4 both gradients run through
/// <see cref="Nm24Gradients"/> (tokens in the lanes, output rows listed by their pattern per group); for other N:M, dx
/// = dy · W runs as a dense GEMM on W expanded with zeros (its reduction runs over outputs, whose patterns differ lane
/// by lane). Otherwise the forward pass is NmSpmm
/// (per row for a handful of rows, feature-major panels else) and dW a dense GEMM gathered at the stored positions.
/// A model held only for inference (<see cref="ReleaseTrainingStructures"/>) keeps the packed in-group indices alone:
/// ⌈log2 M⌉ bits per stored value (2 for 2:4) beside the values in the model's buffer; its forward pass is then NmSpmm.
/// For decoding it may also hold a copy of its values on a 64-byte boundary (<see cref="PrepareForInference"/>).
/// </summary>
public sealed unsafe class NmLinearWeight : ISparseLinearStructure, ISparseKernel, IInferenceLayout, IDecodeCopyLayout
{
    const string Name = "nm";

    NmSparseMatrix _nm;                    // the in-group indices; its Values array is not the model's values (none
                                           // after ReleaseTrainingStructures)
    byte[]? _slotIndex;                    // in-group index of every stored value, row-major (ToDense, Gather); null
                                           // after ReleaseTrainingStructures
    int[]? _controls;                      // the same in NmLinear's panel layout (permute controls), when its kernels run
    Nm24Gradients? _grad24;                // 2:4 on AVX-512: the kernels of both gradients (their class lists)
    bool _released;                        // ReleaseTrainingStructures ran: Backward refused
    AlignedCopy? _aligned;                 // decode copy of the values on a 64-byte boundary (PrepareForInference)

    /// <summary>The copy (from <paramref name="Start"/> in <paramref name="Array"/>) and whether the values passed to
    /// Forward are still those it was made from.</summary>
    sealed record AlignedCopy(float[] Array, int Start, DecodeCopyCheck Check);
    readonly int _slotsPerRow;

    public string Layout => Name;
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount { get; }
    public int N => _nm.N;
    public int M => _nm.M;

    NmLinearWeight(NmSparseMatrix nm)
    {
        _nm = nm;
        OutFeatures = nm.Rows;
        InFeatures = nm.Cols;
        StoredCount = checked((int)nm.SlotCount);
        _slotsPerRow = nm.GroupsPerRow * nm.N;
        _slotIndex = new byte[StoredCount];
        for (int q = 0; q < _slotIndex.Length; q++) _slotIndex[q] = (byte)nm.Index(q);
        if (NmLinear.Supports(nm.M))
        {
            _controls = new int[NmLinear.PanelLength(OutFeatures, _slotsPerRow)];
            var slotIndex = _slotIndex;
            NmLinear.PackIndices(q => slotIndex[q], OutFeatures, _slotsPerRow, _controls);
        }
        if (nm.N == 2 && nm.M == 4 && _controls != null && Nm24Gradients.Supported)
        {
            var slotIndex = _slotIndex;
            _grad24 = new Nm24Gradients(OutFeatures, InFeatures, q => slotIndex[q]);
        }
    }

    /// <summary>File tensor: indices (U8, StoredCount), the in-group input index (0 ≤ i &lt; M) of every stored value.</summary>
    public IReadOnlyList<IndexTensor> ExportIndices()
    {
        var indices = new int[StoredCount];
        for (int q = 0; q < indices.Length; q++) indices[q] = _nm.Index(q);
        return [new IndexTensor("indices", IndexWidth.U8, indices)];
    }

    public IReadOnlyDictionary<string, string> FormatParameters => new Dictionary<string, string>
    {
        ["n"] = N.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["m"] = M.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public string LayoutString => $"{Name}:{N}:{M}";

    /// <summary>The packed in-group indices, a byte per stored value and the kernels' 32-bit permute controls.</summary>
    public long IndexBytesInMemory => _nm.Indices.Length + (_slotIndex?.Length ?? 0) + 4L * (_controls?.Length ?? 0) + (_grad24?.IndexBytes ?? 0);

    /// <summary>Rebuilds the layout from a file's n, m and indices (N &lt; M, M | In, indices &lt; M ascending within each group).</summary>
    public static ISparseLinearStructure FromStructure(SparseStructure s)
    {
        int n = s.IntParameter("n"), m = s.IntParameter("m");
        if (m < 2 || m > 256)
            throw new InvalidDataException($"metadata '{s.Name}.m' is {m}, expected a group size M in [2, 256]");
        if (n < 1 || n >= m)
            throw new InvalidDataException($"metadata '{s.Name}.n' is {n} with M = {m}, expected 1 <= N < M");
        if (s.InFeatures % m != 0)
            throw new InvalidDataException($"metadata '{s.Name}.m' is {m}, which does not divide the reduction dimension (in features) {s.InFeatures}");
        int groups = s.InFeatures / m;
        var indices = s.Require("indices", (long)s.OutFeatures * groups * n, IndexWidth.U8);
        var ones = new float[(long)s.OutFeatures * s.InFeatures];
        for (int o = 0; o < s.OutFeatures; o++)
            for (int g = 0; g < groups; g++)
            {
                int previous = -1;
                for (int k = 0; k < n; k++)
                {
                    long q = ((long)o * groups + g) * n + k;
                    int i = indices[q];
                    if (i >= m)
                        throw s.Fail("indices", $"holds {i} at element {q} (row {o}, group {g}), out of range: expected an in-group index < M = {m}");
                    if (i == previous)
                        throw s.Fail("indices", $"holds {i} twice in row {o}, group {g} (element {q}): duplicated index");
                    if (i < previous)
                        throw s.Fail("indices", $"holds {i} after {previous} in row {o}, group {g} (element {q}): indices must be sorted ascending within a group");
                    previous = i;
                    ones[(long)o * s.InFeatures + g * m + i] = 1;
                }
            }
        return new NmLinearWeight(NmSparseMatrix.FromDense(ones, s.OutFeatures, s.InFeatures, n, m));
    }

    static void CheckPattern(int outFeatures, int inFeatures, int n, int m)
    {
        if (outFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), outFeatures, "out features must be at least 1");
        if (inFeatures < 1) throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "in features must be at least 1");
        if (m < 2 || m > 256)
            throw new ArgumentOutOfRangeException(nameof(m), m, $"N:M group size M must be in [2, 256], got M = {m}");
        if (n < 1 || n >= m)
            throw new ArgumentOutOfRangeException(nameof(n), n, $"N:M kept count N must be in [1, M - 1] = [1, {m - 1}], got N = {n}");
        if (inFeatures % m != 0)
            throw new ArgumentException($"N:M {n}:{m}: M = {m} must divide the in features (the reduction dimension), got in = {inFeatures}", nameof(inFeatures));
    }

    /// <summary>
    /// The N:M pattern of <paramref name="dense"/> (Out × In): every group of M inputs must hold at most N nonzeros
    /// (a group with fewer keeps explicit zeros at its first free positions). Returns the values in stored order.
    /// </summary>
    public static (NmLinearWeight Weight, float[] Values) FromDense(int outFeatures, int inFeatures, int n, int m, ReadOnlySpan<float> dense)
    {
        CheckPattern(outFeatures, inFeatures, n, m);
        if (dense.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {outFeatures} x {inFeatures} = {(long)outFeatures * inFeatures}", nameof(dense));
        var nm = NmSparseMatrix.FromDense(dense, outFeatures, inFeatures, n, m);
        return (new NmLinearWeight(nm), (float[])nm.Values.Clone());
    }

    /// <summary>Each group of M inputs keeps N positions drawn uniformly (a partial Fisher–Yates shuffle of the group).</summary>
    public static NmLinearWeight Random(int outFeatures, int inFeatures, int n, int m, Rng rng)
    {
        CheckPattern(outFeatures, inFeatures, n, m);
        ArgumentNullException.ThrowIfNull(rng);
        var ones = new float[(long)outFeatures * inFeatures];
        Span<int> order = stackalloc int[m];
        for (long g0 = 0; g0 < ones.Length; g0 += m)
        {
            for (int j = 0; j < m; j++) order[j] = j;
            for (int s = 0; s < n; s++)
            {
                int pick = s + rng.NextInt(m - s);
                (order[s], order[pick]) = (order[pick], order[s]);
                ones[g0 + order[s]] = 1;
            }
        }
        return new NmLinearWeight(NmSparseMatrix.FromDense(ones, outFeatures, inFeatures, n, m));
    }

    /// <summary>values (StoredCount) = dense (Out × In) at the stored positions.</summary>
    public void Gather(ReadOnlySpan<float> dense, Span<float> values)
    {
        LinearChecks.Values(this, values);
        Check.Length(dense, (long)OutFeatures * InFeatures, nameof(dense));
        if (_slotIndex is null)
        {
            for (long q = 0; q < StoredCount; q++) values[(int)q] = dense[(int)Position(q)];
            return;
        }
        int n = N, m = M;
        for (int o = 0; o < OutFeatures; o++)
        {
            var row = dense.Slice(o * InFeatures, InFeatures);
            int q0 = o * _slotsPerRow;
            for (int q = 0; q < _slotsPerRow; q++) values[q0 + q] = row[q / n * m + _slotIndex[q0 + q]];
        }
    }

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense)
    {
        LinearChecks.Values(this, values);
        Check.Length(dense, (long)OutFeatures * InFeatures, nameof(dense));
        if (_slotIndex is null)
        {
            dense.Clear();
            for (long q = 0; q < StoredCount; q++) dense[(int)Position(q)] = values[(int)q];
            return;
        }
        int n = N, m = M;
        for (int o = 0; o < OutFeatures; o++)
        {
            var row = dense.Slice(o * InFeatures, InFeatures);
            row.Clear();
            int q0 = o * _slotsPerRow;
            for (int q = 0; q < _slotsPerRow; q++) row[q / n * m + _slotIndex[q0 + q]] = values[q0 + q];
        }
    }

    /// <summary>Row-major position in W (Out × In) of stored value q: row q / (groups·N), input (group)·M + index.</summary>
    long Position(long q)
    {
        long group = q / _nm.N;   // over all rows: group g of row o is group o·groups + g
        int groups = _nm.GroupsPerRow;
        return group / groups * InFeatures + group % groups * _nm.M + _nm.Index(q);
    }

    /// <summary>
    /// Whether a one-thread 2:4 backward (a data-parallel shard, or one kernel thread) runs both gradients in one pass
    /// over the class lists (Nm24Gradients.Backward) where that gives the same bits as the two kernels; off only to
    /// measure or test the two-kernel path.
    /// </summary>
    internal static bool FuseBackward { get; set; } = true;

    bool TokenMajor(int rows) => _controls != null && rows > CsrLinearWeight.RowwiseMaxRows;

    long PanelFloats => _controls?.Length ?? 0;

    /// <summary>
    /// Forward: the packed values (token-major kernel) or NmSpmm's feature-major panels. Backward: the packed values
    /// and gradient, a group-major block of x and W expanded to dense (dx's GEMM; dW's too without the kernels).
    /// </summary>
    public long WorkspaceFloats(int rows)
    {
        // The feature-major forward is counted always: a layout released for inference runs it at any row count.
        long featureMajor = FeatureMajor.PanelFloats(rows, InFeatures) + FeatureMajor.PanelFloats(rows, OutFeatures);
        long forward = TokenMajor(rows) ? Math.Max(PanelFloats, featureMajor) : featureMajor;
        if (_released) return forward;
        long dense = (long)OutFeatures * InFeatures;
        long backward = _grad24 != null ? Math.Max(Math.Max(_grad24.InputGradientWorkspaceFloats(rows), _grad24.WeightGradientWorkspaceFloats(rows)),
                _grad24.BackwardWorkspaceFloats(rows))
            : _controls != null ? 2 * PanelFloats + NmLinear.GradientWorkspace(rows, InFeatures) + dense : 2 * dense;
        return Math.Max(forward, backward);
    }

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        LinearChecks.Forward(this, y, x, values, bias, residual, rows, workspace);
        if (rows == 0) return;
        if (rows == 1 && _aligned is { } copy && copy.Check.Matches(values)) values = copy.Array.AsSpan(copy.Start, StoredCount);
        if (TokenMajor(rows))
        {
            var packed = workspace.Slice(0, (int)PanelFloats);
            NmLinear.Pack(values, OutFeatures, _slotsPerRow, packed);
            NmLinear.Forward(x.Slice(0, rows * InFeatures), rows, InFeatures, OutFeatures, N, M, packed, _controls, bias,
                residual.IsEmpty ? default : residual.Slice(0, rows * OutFeatures), y);
            return;
        }
        FeatureMajor.Forward(this, y, x, values, bias, residual, rows, InFeatures, OutFeatures, CsrLinearWeight.RowwiseMaxRows, workspace);
    }

    void ISparseKernel.Multiply(ReadOnlySpan<float> values, ReadOnlySpan<float> x, int columns, Span<float> y) =>
        NmSpmm.Multiply(_nm, values, x, columns, y);

    /// <summary>
    /// dValues += dW at the stored positions, dBias += Σ_rows dy, dx = (dy · W) ⊙ dxScale. dW first (dx may alias x);
    /// on exactly two threads dW and dx run at once, one per thread, as the dense Linear does.
    /// </summary>
    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace)
    {
        if (_released) throw InferenceLayout.BackwardAfterRelease(this);
        LinearChecks.Backward(this, dx, dValues, dBias, dy, x, values, dxScale, rows, workspace);
        _aligned = null;   // training: values are about to change
        if (rows > 0 && !dBias.IsEmpty)
            for (int t = 0; t < rows; t++) TensorPrimitives.Add(dBias, dy.Slice(t * OutFeatures, OutFeatures), dBias);
        if (rows == 0) return;
        long denseLength = (long)OutFeatures * InFeatures;
        if (_controls == null)
        {
            // dW (Out × In) = dyᵀ · x dense, then its stored positions; W expanded for dx after (dx may alias x).
            var dW = workspace.Slice(0, (int)denseLength);
            Gemm.Multiply(true, false, OutFeatures, InFeatures, rows, 1f, dy, OutFeatures, x, InFeatures, 0f, dW, InFeatures);
            var gathered = workspace.Slice((int)denseLength, StoredCount);
            Gather(dW, gathered);
            TensorPrimitives.Add(dValues, gathered, dValues);
            if (dx.IsEmpty) return;
            var w = workspace.Slice(0, (int)denseLength);
            ToDense(values, w);
            DenseDx(dx, dy, w, dxScale, rows, InFeatures, OutFeatures);
            return;
        }
        if (_grad24 != null)
        {
            if (!dx.IsEmpty && FuseBackward && _grad24.FusedMatchesTwoKernels && KernelThreads.ThreadsFor(2) == 1
                && !dx.Slice(0, rows * InFeatures).Overlaps(dy.Slice(0, rows * OutFeatures)))
            {
                // One thread (a data-parallel shard): both gradients in one pass over the class lists, the same bits.
                _grad24.Backward(dy.Slice(0, rows * OutFeatures), x.Slice(0, rows * InFeatures), rows, values,
                    dxScale.IsEmpty ? default : dxScale.Slice(0, rows * InFeatures), dx.Slice(0, rows * InFeatures), dValues, workspace);
                return;
            }
            // 2:4: both gradients on the class lists, dW first (dx may alias x), each kernel spread over the threads
            // itself, one after the other in the same workspace.
            _grad24.WeightGradient(dy.Slice(0, rows * OutFeatures), x.Slice(0, rows * InFeatures), rows, dValues, workspace);
            if (!dx.IsEmpty)
                _grad24.InputGradient(dy.Slice(0, rows * OutFeatures), rows, values, dxScale.IsEmpty ? default : dxScale.Slice(0, rows * InFeatures),
                    dx.Slice(0, rows * InFeatures), workspace);
            return;
        }
        int panel = (int)PanelFloats;
        var packedGradient = workspace.Slice(0, panel);
        var wDense = workspace.Slice(panel, (int)denseLength);   // W expanded for the dense dx
        var xBlock = workspace.Slice(panel + (int)denseLength, (int)NmLinear.GradientWorkspace(rows, InFeatures));
        if (!dx.IsEmpty) ToDense(values, wDense);
        fixed (float* pdx = dx, pdy = dy, px = x, pw = wDense, pg = packedGradient, pxb = xBlock, ps = dxScale)
        fixed (int* pc = _controls)
        {
            var a = new BackwardArgs
            {
                Dx = pdx, Dy = pdy, X = px, W = pw, PackedGradient = pg, XBlock = pxb, DxScale = ps, Controls = pc,
                Rows = rows, In = InFeatures, Out = OutFeatures, N = N, M = M, Panel = panel,
                HasDx = !dx.IsEmpty, HasScale = !dxScale.IsEmpty,
            };
            if (a.HasDx && KernelThreads.Max == 2 && !KernelThreads.InsideRegion && !dx.Overlaps(x))
                KernelThreads.For(2, ref a, &BackwardItem);
            else
            {
                BackwardItem(ref a, 0);
                if (a.HasDx) BackwardItem(ref a, 1);
            }
        }
        NmLinear.UnpackAdd(packedGradient, OutFeatures, _slotsPerRow, dValues);
    }

    struct BackwardArgs
    {
        public float* Dx, Dy, X, W, PackedGradient, XBlock, DxScale;
        public int* Controls;
        public int Rows, In, Out, N, M, Panel;
        public bool HasDx, HasScale;
    }

    /// <summary>Item 0: dW at the stored positions (packed); item 1: dx.</summary>
    static void BackwardItem(ref BackwardArgs a, int item)
    {
        int rows = a.Rows, inF = a.In, outF = a.Out;
        var dy = new ReadOnlySpan<float>(a.Dy, rows * outF);
        if (item == 0)
            NmLinear.WeightGradient(dy, new ReadOnlySpan<float>(a.X, rows * inF), rows, inF, outF, a.N, a.M,
                new ReadOnlySpan<int>(a.Controls, a.Panel), new Span<float>(a.PackedGradient, a.Panel),
                new Span<float>(a.XBlock, (int)NmLinear.GradientWorkspace(rows, inF)));
        else
            DenseDx(new Span<float>(a.Dx, rows * inF), dy, new ReadOnlySpan<float>(a.W, outF * inF),
                a.HasScale ? new ReadOnlySpan<float>(a.DxScale, rows * inF) : default, rows, inF, outF);
    }

    /// <summary>dx (rows, In) = (dy · W) ⊙ dxScale with W dense (Out × In).</summary>
    static void DenseDx(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ReadOnlySpan<float> dxScale, int rows, int inF, int outF)
    {
        if (dxScale.IsEmpty)
            Gemm.Multiply(false, false, rows, inF, outF, 1f, dy, outF, w, inF, 0f, dx, inF);
        else
            Gemm.MultiplyScaled(false, false, rows, inF, outF, 1f, dy, outF, w, inF, dxScale, inF, dx, inF);
    }

    // ---- a model held for inference ----

    public bool IsInferenceOnly => _released;

    public string DecodeFormat => $"nm {N}:{M} ({_nm.BitsPerIndex}-bit indices)" + (_aligned is null ? "" : " + aligned values");

    /// <summary>
    /// A decode SpMV (rows = 1) reads each row's values with 64-byte loads, and the model's buffer puts them wherever the
    /// heap placed it (24 bytes past a line on the Zen 4 host), so every load spans two lines. The 2:4 SpMV over the 48
    /// gpt2-shaped matrices (scratch harness, one thread, 2 MB pages, medians of 11 passes) took 8–16% longer with its
    /// values 24 bytes past a line than on line boundaries in nine alternated runs (6.15–8.26 ms a pass aligned), and
    /// realigning in the kernel (aligned loads and a two-source permute per 16 values) took 8.0–8.5 ms against 6.8–7.4
    /// unaligned. So this copies the values onto a 64-byte boundary (on huge pages) when they are not on one already;
    /// rows = 1 reads the copy while the values passed to Forward are the same memory with a sample of 64 of them
    /// unchanged (else the model's values, as before). In the 2:4 gpt2-shaped model's decode at one thread the SpMV took
    /// 7.19 and 7.36 ms a token against 7.86 and 7.95 without the copy (perf samples of the decode-only scratch harness,
    /// two alternated runs of 6 passes of 256 tokens). Backward drops the copy; it holds the values twice. The rows &gt; 1
    /// kernels read the model's values. Gpt.PrepareForInference(keepSellCopy: true) calls this for every N:M weight.
    /// </summary>
    public void PrepareForInference(ReadOnlySpan<float> values)
    {
        if (values.Length != StoredCount) throw new ArgumentException($"{Name} weight ({OutFeatures}x{InFeatures}): values has {values.Length} elements, expected the {StoredCount} stored ones", nameof(values));
        _aligned = null;
        fixed (float* p = values)
            if (((nint)p & 63) == 0) return;   // already on a line boundary: the model's values serve
        var (array, start) = PinnedAligned.Copy(values, 64);
        _aligned = new AlignedCopy(array, start, DecodeCopyCheck.Of(values));
    }

    void IDecodeCopyLayout.PrepareDecodeCopy(ReadOnlySpan<float> values, DecodeCopyFormat format) => PrepareForInference(values);

    /// <summary>
    /// Drops what only training needs (the per-value index bytes, the permute controls of the token-major kernels, the
    /// values array inside the N:M pattern); keeps the packed in-group indices. Forward (NmSpmm), ToDense, Gather and
    /// ExportIndices keep working; Backward throws InvalidOperationException. Not undone: load the model again to train.
    /// </summary>
    public void ReleaseTrainingStructures()
    {
        if (_released) return;
        _nm = _nm.PatternOnly();
        _slotIndex = null;
        _controls = null;
        _grad24 = null;
        _aligned = null;
        _released = true;
    }

    /// <summary>Bytes of every array the layout holds: the packed indices, the pattern's values array, the index bytes and
    /// controls, and the aligned decode copy of the values with its check.</summary>
    public long HeldBytes => _nm.Indices.Length + 4L * _nm.Values.LongLength + (_slotIndex?.Length ?? 0L) + 4L * (_controls?.Length ?? 0)
        + (_grad24?.IndexBytes ?? 0) + (_aligned is { } c ? 4L * c.Array.LongLength + c.Check.Bytes : 0);
}
