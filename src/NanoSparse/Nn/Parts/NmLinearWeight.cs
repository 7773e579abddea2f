using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// N:M semi-structured W (Out × In): along the reduction dimension In, every group of M consecutive inputs of an
/// output row keeps exactly N weights (2:4, 1:4, 2:8, 4:8; N &lt; M, M divides In). Stored values: N per group,
/// row-major, ascending input index within a group, which is also W's CSR order, so the backward pass is the CSR
/// layout's (SDDMM for dW at the kept positions, CsrSpmm on Wᵀ's structure for dx) over the same values span.
/// Forward: yᵀ = W · xᵀ with NmSpmm (2:4 has its own tiled/register-blocked paths and a permute-based SpMV); at
/// rows ≤ <see cref="CsrLinearWeight.RowwiseMaxRows"/> one NmSpmm SpMV per row of x, without transposes.
/// A model held only for inference (<see cref="ReleaseTrainingStructures"/>) keeps the packed in-group indices alone:
/// ⌈log2 M⌉ bits per stored value (2 for 2:4) beside the values in the model's buffer.
/// </summary>
public sealed class NmLinearWeight : ISparseLinearStructure, ISparseKernel, IInferenceLayout
{
    const string Name = "nm";

    NmSparseMatrix _nm;                    // the in-group indices; its Values array is not the model's values (none
                                           // after ReleaseTrainingStructures)
    CsrLinearWeight? _csr;                 // the same positions in CSR (same value order): backward and ToDense; null
                                           // after ReleaseTrainingStructures

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
        // The kept positions as a 0/1 matrix (explicit zeros included: they are stored values that training updates).
        var ones = new float[(long)OutFeatures * InFeatures];
        int groups = nm.GroupsPerRow;
        for (int o = 0; o < OutFeatures; o++)
            for (int g = 0; g < groups; g++)
                for (int s = 0; s < nm.N; s++)
                    ones[(long)o * InFeatures + g * nm.M + nm.Index(((long)o * groups + g) * nm.N + s)] = 1;
        _csr = CsrLinearWeight.FromDense(OutFeatures, InFeatures, ones).Weight;
        if (_csr.StoredCount != StoredCount)
            throw new InvalidOperationException($"N:M pattern gave {_csr.StoredCount} CSR entries for {StoredCount} slots");
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

    /// <summary>The packed in-group indices and the CSR copy's structure (backward).</summary>
    public long IndexBytesInMemory => _nm.Indices.Length + (_csr?.IndexBytesInMemory ?? 0);

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
        LinearChecks.Values(this, values);   // errors name this layout, not the CSR copy
        if (_csr is not null) { _csr.Gather(dense, values); return; }
        if (dense.Length != (long)OutFeatures * InFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {OutFeatures} x {InFeatures}", nameof(dense));
        for (long q = 0; q < StoredCount; q++) values[(int)q] = dense[(int)Position(q)];
    }

    /// <summary>Row-major position in W (Out × In) of stored value q: row q / (groups·N), input (group)·M + index.</summary>
    long Position(long q)
    {
        long group = q / _nm.N;   // over all rows: group g of row o is group o·groups + g
        int groups = _nm.GroupsPerRow;
        return group / groups * InFeatures + group % groups * _nm.M + _nm.Index(q);
    }

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense)
    {
        LinearChecks.Values(this, values);
        if (_csr is not null) { _csr.ToDense(values, dense); return; }
        if (dense.Length != (long)OutFeatures * InFeatures)
            throw new ArgumentException($"dense has {dense.Length} elements, expected out x in = {OutFeatures} x {InFeatures}", nameof(dense));
        dense.Clear();
        for (long q = 0; q < StoredCount; q++) dense[(int)Position(q)] = values[(int)q];
    }

    public long WorkspaceFloats(int rows) =>
        _csr?.WorkspaceFloats(rows) ?? FeatureMajor.PanelFloats(rows, InFeatures) + FeatureMajor.PanelFloats(rows, OutFeatures);

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        LinearChecks.Forward(this, y, x, values, bias, residual, rows, workspace);
        if (rows == 0) return;
        FeatureMajor.Forward(this, y, x, values, bias, residual, rows, InFeatures, OutFeatures, CsrLinearWeight.RowwiseMaxRows, workspace);
    }

    void ISparseKernel.Multiply(ReadOnlySpan<float> values, ReadOnlySpan<float> x, int columns, Span<float> y) =>
        NmSpmm.Multiply(_nm, values, x, columns, y);

    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace)
    {
        if (_csr is null) throw InferenceLayout.BackwardAfterRelease(this);
        LinearChecks.Backward(this, dx, dValues, dBias, dy, x, values, dxScale, rows, workspace);
        _csr.Backward(dx, dValues, dBias, dy, x, values, dxScale, rows, workspace);
    }

    // ---- a model held for inference ----

    public bool IsInferenceOnly => _csr is null;

    public string DecodeFormat => $"nm {N}:{M} ({_nm.BitsPerIndex}-bit indices)";

    /// <summary>
    /// Drops the CSR twin (W's and Wᵀ's structure, the backward pass) and the values array inside the N:M pattern; keeps
    /// the packed in-group indices. Forward, ToDense, Gather and ExportIndices keep working; Backward throws
    /// InvalidOperationException. Not undone: load the model again to train.
    /// </summary>
    public void ReleaseTrainingStructures()
    {
        if (_csr is null) return;
        _nm = _nm.PatternOnly();
        _csr = null;
    }

    /// <summary>Bytes of every array the layout holds: the packed indices, the pattern's values array, the CSR twin's.</summary>
    public long HeldBytes => _nm.Indices.Length + 4L * _nm.Values.LongLength + (_csr?.HeldBytes ?? 0);
}
