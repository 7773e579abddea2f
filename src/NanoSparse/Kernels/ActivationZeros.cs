using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// What activation sparsity needs besides the activations themselves: counting the zeros (or near-zeros) of a hidden
/// activation, and the gradient of an L1 penalty on it (ProSparse's regulariser, λ · Σ|a|).
/// </summary>
public static unsafe class ActivationZeros
{
    /// <summary>The number of elements of <paramref name="values"/> that are exactly 0 (−0 included).</summary>
    public static long CountZeros(ReadOnlySpan<float> values)
    {
        long count = 0;
        int i = 0, n = values.Length;
        fixed (float* p = values)
        {
            for (; i + 16 <= n; i += 16)
                count += Vector512.Equals(Vector512.Load(p + i), Vector512<float>.Zero).ExtractMostSignificantBits() is var bits
                    ? System.Numerics.BitOperations.PopCount(bits) : 0;
            for (; i < n; i++) if (p[i] == 0f) count++;
        }
        return count;
    }

    /// <summary>The number of elements with |a| &lt; <paramref name="epsilon"/> (epsilon &gt; 0; GELU makes few exact zeros).</summary>
    public static long CountBelow(ReadOnlySpan<float> values, float epsilon)
    {
        if (!(epsilon > 0f && float.IsFinite(epsilon)))
            throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "must be finite and > 0 (use CountZeros for exact zeros)");
        long count = 0;
        int i = 0, n = values.Length;
        var e = Vector512.Create(epsilon);
        fixed (float* p = values)
        {
            for (; i + 16 <= n; i += 16)
                count += System.Numerics.BitOperations.PopCount(Vector512.LessThan(Vector512.Abs(Vector512.Load(p + i)), e).ExtractMostSignificantBits());
            for (; i < n; i++) if (MathF.Abs(p[i]) < epsilon) count++;
        }
        return count;
    }

    /// <summary>
    /// Adds the gradient of the penalty coefficient · Σ|a| with a = f(h) to dh (N):
    ///   dh += coefficient · sign(a) · f'(h),
    /// where <paramref name="activation"/> (N) is a and <paramref name="derivative"/> (N) is f'(h) as the training forward
    /// pass left it. sign(0) = 0, as PyTorch's abs backward.
    /// </summary>
    public static void AddL1Gradient(Span<float> dh, ReadOnlySpan<float> activation, ReadOnlySpan<float> derivative, float coefficient)
    {
        Check.Length(activation, dh.Length, nameof(activation));
        Check.Length(derivative, dh.Length, nameof(derivative));
        int i = 0, n = dh.Length;
        var c = Vector512.Create(coefficient);
        var zero = Vector512<float>.Zero;
        fixed (float* d = dh, a = activation, f = derivative)
        {
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(a + i);
                // sign(a): +1, −1 or 0, built from the sign bit and a nonzero mask
                var sign = (Vector512<float>.One | (v & Vector512.Create(-0f))) & ~Vector512.Equals(v, zero);
                Vector512.FusedMultiplyAdd(c * sign, Vector512.Load(f + i), Vector512.Load(d + i)).Store(d + i);
            }
            for (; i < n; i++) d[i] += coefficient * MathF.Sign(a[i]) * f[i];
        }
    }
}
