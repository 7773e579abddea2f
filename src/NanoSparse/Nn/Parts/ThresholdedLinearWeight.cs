using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Training-free activation sparsity (TEAL, Liu et al. 2024; WINA, Chen et al. 2025) as a decorator around any Linear
/// weight layout: the input entries below a per-input threshold are zeroed before the product,
///   x'_i = x_i if |x_i| ≥ τ_i else 0,      y = x' · Wᵀ + bias + residual
/// TEAL uses one τ per weight (τ_i = t, a quantile of |x| on calibration tokens); WINA scores an input by
/// |x_i|·‖W_:,i‖₂ against one t, which is the same test with τ_i = t / ‖W_:,i‖₂ (+∞ for an all-zero column).
/// At decode (rows ≤ <see cref="DecodeRows"/>, once <see cref="BuildDecodeCopy"/> has run) the product reads only the
/// kept inputs' columns of W, from a transposed (In, Out) copy (<see cref="SparseInputGemv"/>); otherwise the thresholded
/// input goes through the wrapped layout's own kernels. The stored values are the wrapped layout's, unchanged.
/// Inference only: Backward throws.
/// </summary>
public sealed class ThresholdedLinearWeight : IInferenceLayout
{
    /// <summary>Largest row count that takes the sparse-input path (decode steps).</summary>
    public const int DecodeRows = Gemv.MaxRows;

    readonly ILinearWeight _inner;
    readonly float[] _thresholds;   // (In): τ_i
    float[]? _wt;                   // (In, Out): Wᵀ, the decode copy
    long _kept, _seen;

    /// <param name="inner">the weight's layout (its stored values stay in the model's buffer)</param>
    /// <param name="thresholds">τ_i per input feature (In), each ≥ 0 or +∞</param>
    public ThresholdedLinearWeight(ILinearWeight inner, ReadOnlySpan<float> thresholds)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (inner is ThresholdedLinearWeight) throw new ArgumentException("the weight is already thresholded", nameof(inner));
        if (thresholds.Length != inner.InFeatures)
            throw new ArgumentException($"thresholds has {thresholds.Length} entries, expected one per input feature ({inner.InFeatures})", nameof(thresholds));
        for (int i = 0; i < thresholds.Length; i++)
            if (!(thresholds[i] >= 0)) throw new ArgumentException($"threshold {i} ({thresholds[i]}) must be >= 0", nameof(thresholds));
        _inner = inner;
        _thresholds = thresholds.ToArray();
    }

    /// <summary>The wrapped layout.</summary>
    public ILinearWeight Inner => _inner;
    /// <summary>τ_i per input feature.</summary>
    public ReadOnlySpan<float> Thresholds => _thresholds;
    /// <summary>
    /// Replaces τ (In), each ≥ 0 or +∞: calibration searches (TEAL's greedy allocation) try several thresholds on one
    /// built model. Not while another thread runs this weight.
    /// </summary>
    public void SetThresholds(ReadOnlySpan<float> thresholds)
    {
        if (thresholds.Length != InFeatures)
            throw new ArgumentException($"thresholds has {thresholds.Length} entries, expected one per input feature ({InFeatures})", nameof(thresholds));
        for (int i = 0; i < thresholds.Length; i++)
            if (!(thresholds[i] >= 0)) throw new ArgumentException($"threshold {i} ({thresholds[i]}) must be >= 0", nameof(thresholds));
        thresholds.CopyTo(_thresholds);
    }

    /// <summary>Whether decode steps read the transposed copy (<see cref="BuildDecodeCopy"/>).</summary>
    public bool HasDecodeCopy => _wt is not null;
    /// <summary>How the sparse-input product uses threads at decode (kept rows: faster in 10 of 12 shape × sparsity cells of `bench activation --parts kernel` at 2 threads).</summary>
    public SparseInputSplit Split { get; set; } = SparseInputSplit.Inputs;

    public string Layout => _inner.Layout;
    public int OutFeatures => _inner.OutFeatures;
    public int InFeatures => _inner.InFeatures;
    public int StoredCount => _inner.StoredCount;

    /// <summary>Input entries zeroed over all forward calls since construction (or <see cref="ResetCounts"/>), as a fraction.</summary>
    public double MeasuredSparsity
    {
        get
        {
            long seen = Interlocked.Read(ref _seen);
            return seen == 0 ? double.NaN : 1.0 - (double)Interlocked.Read(ref _kept) / seen;
        }
    }

    /// <summary>(kept, seen) input entries since construction or <see cref="ResetCounts"/>.</summary>
    public (long Kept, long Seen) Counts => (Interlocked.Read(ref _kept), Interlocked.Read(ref _seen));

    public void ResetCounts()
    {
        Interlocked.Exchange(ref _kept, 0);
        Interlocked.Exchange(ref _seen, 0);
    }

    /// <summary>Builds the (In, Out) transposed copy of W that decode steps read (4·In·Out bytes held beside the values).</summary>
    public void BuildDecodeCopy(ReadOnlySpan<float> values)
    {
        int O = OutFeatures, I = InFeatures;
        var dense = new float[(long)O * I];
        _inner.ToDense(values, dense);
        var wt = new float[dense.Length];
        Transpose.Run(dense, I, O, wt);   // src (O, I) → dst (I, O)
        _wt = wt;
    }

    // thresholded input (rows, In) | the sparse-input path's indices (In) and values (In) and partials | the inner layout's
    public long WorkspaceFloats(int rows) =>
        (long)rows * InFeatures + 2L * InFeatures + SparseInputGemv.PartialFloats(OutFeatures) + _inner.WorkspaceFloats(rows);

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        int I = InFeatures, O = OutFeatures;
        Check.Length(x, (long)rows * I, nameof(x));
        Check.Length(y, (long)rows * O, nameof(y));
        long kept = 0;
        if (_wt is not null && rows >= 1 && rows <= DecodeRows)
        {
            var indices = MemoryMarshal.Cast<float, int>(workspace.Slice(0, I));
            var kx = workspace.Slice(I, I);
            var partials = workspace.Slice(2 * I, (int)SparseInputGemv.PartialFloats(O));
            for (int r = 0; r < rows; r++)
            {
                int count = SparseInputGemv.Gather(x.Slice(r * I, I), _thresholds, indices, kx);
                kept += count;
                SparseInputGemv.Forward(y.Slice(r * O, O), _wt, I, O, indices, kx, count, bias,
                    residual.IsEmpty ? default : residual.Slice(r * O, O), partials, Split);
            }
        }
        else
        {
            var xs = workspace.Slice(0, rows * I);
            kept = Apply(x.Slice(0, rows * I), xs, _thresholds);
            int rest = checked((int)(WorkspaceFloats(rows) - _inner.WorkspaceFloats(rows)));
            _inner.Forward(y, xs, values, bias, residual, rows, workspace.Slice(rest));
        }
        Interlocked.Add(ref _kept, kept);
        Interlocked.Add(ref _seen, (long)rows * I);
    }

    /// <summary>xs (rows, In) = x with every entry below its column's threshold zeroed; returns the kept count.</summary>
    public static long Apply(ReadOnlySpan<float> x, Span<float> xs, ReadOnlySpan<float> thresholds)
    {
        int I = thresholds.Length;
        long kept = 0;
        for (int r = 0; r < x.Length; r += I)
        {
            var row = x.Slice(r, I);
            var dst = xs.Slice(r, I);
            for (int i = 0; i < I; i++)
            {
                bool keep = MathF.Abs(row[i]) >= thresholds[i];
                dst[i] = keep ? row[i] : 0f;
                kept += keep ? 1 : 0;
            }
        }
        return kept;
    }

    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace) =>
        throw new InvalidOperationException($"a thresholded ({OutFeatures}x{InFeatures}) weight (activation sparsity) runs forward only: load the model without --act-sparsity to train it");

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense) => _inner.ToDense(values, dense);

    public bool IsInferenceOnly => true;

    public string DecodeFormat =>
        $"thresholded input, {(_wt is null ? (_inner is IInferenceLayout l ? l.DecodeFormat : _inner.Layout) : "transposed dense copy")}";

    public void ReleaseTrainingStructures()
    {
        if (_inner is IInferenceLayout l) l.ReleaseTrainingStructures();
    }

    public long HeldBytes => (_inner is IInferenceLayout l ? l.HeldBytes : 0) + 4L * _thresholds.Length + 4L * (_wt?.LongLength ?? 0);
}
