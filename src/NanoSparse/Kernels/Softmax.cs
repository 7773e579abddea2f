using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>Numerically stable softmax of one row: p = exp(x − max x) / Σ exp(x − max x).</summary>
public static class Softmax
{
    /// <summary>probs (n) = softmax(logits (n)); returns log Σ exp(x) (the log-partition). probs may alias logits.</summary>
    public static float Row(Span<float> probs, ReadOnlySpan<float> logits)
    {
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, probs);
        TensorPrimitives.Exp(probs, probs);
        float sum = TensorPrimitives.Sum(probs);
        TensorPrimitives.Multiply(probs, 1f / sum, probs);
        return max + MathF.Log(sum);
    }
}
