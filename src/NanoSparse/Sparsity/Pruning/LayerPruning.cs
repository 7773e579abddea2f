using System.Runtime.Intrinsics;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// What one Linear weight must become: unstructured with a fraction <see cref="Sparsity"/> of zeros, or N:M along the
/// input (reduction) dimension: in every group of M consecutive inputs of an output row, exactly N weights are kept.
/// </summary>
public readonly record struct SparsityTarget(double Sparsity, int N = 0, int M = 0)
{
    public bool IsNm => M > 0;

    /// <summary>Weights to remove from a layer of <paramref name="count"/> weights (unstructured) — rounding as PyTorch's int().</summary>
    public long PrunedCount(long count) => IsNm ? count / M * (M - N) : (long)(count * Sparsity);

    public override string ToString() => IsNm ? $"{N}:{M}" : Sparsity.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>
/// Statistics of one Linear layer's input over the calibration tokens (x rows of length <see cref="Features"/>):
/// Σx_j and Σx_j² per feature (Wanda's ‖X_j‖₂² and DSnoT's mean), and optionally the Gram matrix Σ x xᵀ
/// (Features × Features, row-major; SparseGPT's Hessian is 2/Tokens · Gram).
/// </summary>
public sealed class LayerInputStats
{
    public LayerInputStats(int features, bool withGram)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(features);
        Features = features;
        Sum = new double[features];
        SumSquares = new double[features];
        Gram = withGram ? new double[(long)features * features] : null;
    }

    public int Features { get; }
    public long Tokens { get; private set; }
    public double[] Sum { get; }
    public double[] SumSquares { get; }
    public double[]? Gram { get; }

    /// <summary>Rows per single-precision GEMM X_chunkᵀ·X_chunk before it is added into the double Gram.</summary>
    public const int GramChunkRows = 256;

    float[]? _gramChunk;

    /// <summary>Adds <paramref name="rows"/> input rows (row-major, rows × Features).</summary>
    /// <remarks>
    /// The Gram matrix grows by X_cᵀ·X_c for chunks of at most <see cref="GramChunkRows"/> rows: each chunk's product is
    /// one fp32 GEMM (fp32 accumulation over at most 256 terms, about 1e-6 relative), added into the fp64 Gram, so the
    /// rounding does not grow with the number of calibration tokens. The O(rows·F²) scalar loop was the cost of
    /// calibration; the GEMM runs at the machine's sgemm rate.
    /// </remarks>
    public void Accumulate(ReadOnlySpan<float> x, int rows)
    {
        int f = Features;
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (x.Length < (long)rows * f)
            throw new ArgumentException($"x holds {x.Length} floats, expected {rows} rows of {f}");
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * f, f);
            for (int j = 0; j < f; j++)
            {
                double v = row[j];
                Sum[j] += v;
                SumSquares[j] += v * v;
            }
        }
        if (Gram is { } g)
        {
            var chunk = _gramChunk ??= new float[(long)f * f];
            for (int r0 = 0; r0 < rows; r0 += GramChunkRows)
            {
                int n = Math.Min(GramChunkRows, rows - r0);
                var xc = x.Slice(r0 * f, n * f);
                // chunk (F×F) = X_cᵀ (F×n) · X_c (n×F)
                NanoSparse.Kernels.Gemm.Multiply(true, false, f, f, n, 1f, xc, f, xc, f, 0f, chunk, f);
                AddInto(g, chunk);
            }
        }
        Tokens += rows;
    }

    static void AddInto(double[] g, float[] c)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= c.Length; i += 8)
            {
                var v = Vector256.Create<float>(c.AsSpan(i, 8));
                var (lo, hi) = Vector256.Widen(v);
                (Vector256.Create<double>(g.AsSpan(i, 4)) + lo).CopyTo(g.AsSpan(i, 4));
                (Vector256.Create<double>(g.AsSpan(i + 4, 4)) + hi).CopyTo(g.AsSpan(i + 4, 4));
            }
        for (; i < c.Length; i++) g[i] += c[i];
    }
}

/// <summary>
/// One Linear weight handed to a pruner: W (Out × In, row-major as PyTorch's Linear.weight), modified in place (a
/// pruner that reconstructs, like SparseGPT, also updates the weights it keeps); on return every removed weight is
/// exactly 0 and <see cref="Mask"/> marks the kept ones (1) and the removed ones (0).
/// </summary>
public sealed class LayerPruneRequest
{
    public LayerPruneRequest(string name, float[] weight, int outFeatures, int inFeatures, SparsityTarget target,
        LayerInputStats? stats, Rng rng)
    {
        if (weight.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"{name}: weight has {weight.Length} values, expected {outFeatures}×{inFeatures}");
        Name = name;
        Weight = weight;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        Target = target;
        Stats = stats;
        Rng = rng;
        Mask = new byte[weight.Length];
    }

    public string Name { get; }
    public float[] Weight { get; }
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public SparsityTarget Target { get; }
    /// <summary>Calibration statistics of the layer's input (null for methods that need none).</summary>
    public LayerInputStats? Stats { get; }
    public Rng Rng { get; }
    public byte[] Mask { get; }
}

/// <summary>A per-layer pruning criterion (magnitude, random, Wanda, SparseGPT, ...).</summary>
public interface ILayerPruner
{
    /// <summary>The method's name on the command line (--method).</summary>
    string Name { get; }
    /// <summary>Whether <see cref="LayerPruneRequest.Stats"/> must be given (calibration data needed).</summary>
    bool NeedsCalibration { get; }
    /// <summary>Whether the stats must carry the Gram matrix.</summary>
    bool NeedsGram { get; }
    void Prune(LayerPruneRequest request);
}

/// <summary>
/// Changes a pruned layer's mask without changing its sparsity (DSnoT's prune-and-grow): given the request after a
/// pruner ran (its Mask and pruned Weight) and the layer's weights before pruning.
/// </summary>
public interface IMaskRefiner
{
    string Name { get; }
    /// <summary>Whether the refiner uses <see cref="LayerPruneRequest.Stats"/>'s Gram matrix when it is given (DSnoT
    /// checks each swap against the layer's true reconstruction error with it); the driver then accumulates it.</summary>
    bool NeedsGram => false;
    void Refine(LayerPruneRequest request, ReadOnlySpan<float> weightBeforePruning);
}
