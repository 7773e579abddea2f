using System.Numerics.Tensors;

namespace NanoSparse.Optim;

/// <summary>
/// Clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_:
///   norm = sqrt(Σ g²) over all gradients; if norm &gt; max_norm: g ← g · max_norm / (norm + 1e-6).
/// </summary>
public static class GradientClipping
{
    const int Block = 4096;

    /// <summary>
    /// The global L2 norm of <paramref name="gradients"/>. Squares are summed in float over fixed blocks of 4096 and the
    /// block sums in double, so the result does not depend on thread count and keeps precision for millions of values.
    /// </summary>
    public static double GlobalNorm(ReadOnlySpan<float> gradients)
    {
        double sum = 0;
        for (int i = 0; i < gradients.Length; i += Block)
            sum += TensorPrimitives.SumOfSquares(gradients.Slice(i, Math.Min(Block, gradients.Length - i)));
        return Math.Sqrt(sum);
    }

    /// <summary>
    /// Scales <paramref name="gradients"/> in place so that their global norm is at most <paramref name="maxNorm"/>
    /// (no-op when maxNorm &lt;= 0, nanoGPT's grad_clip = 0). Returns the norm before clipping (NaN/Inf passes through).
    /// </summary>
    public static double ClipByGlobalNorm(Span<float> gradients, double maxNorm)
    {
        double norm = GlobalNorm(gradients);
        if (maxNorm <= 0 || !double.IsFinite(norm)) return norm;
        double coeff = maxNorm / (norm + 1e-6);
        if (coeff < 1.0) TensorPrimitives.Multiply(gradients, (float)coeff, gradients);
        return norm;
    }
}
