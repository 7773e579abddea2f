using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Whether every float of a vector is finite: the SpMV kernels that multiply padding slots by x (SELL, SELL-C-σ, the
/// packed SELL, the bitmap) take their exact path when it is not, so that a padded 0 · ∞ cannot make a NaN.
/// </summary>
internal static unsafe class FiniteCheck
{
    public static bool All(float* x, long count)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // x − x is 0 for finite x and NaN for ±∞ and NaN; NaN ≠ NaN.
            var bad = Vector512<float>.Zero;
            for (; i + 16 <= count; i += 16)
            {
                var v = Vector512.Load(x + i);
                bad |= ~Vector512.Equals(v - v, Vector512<float>.Zero);
            }
            if (bad != Vector512<float>.Zero) return false;
        }
        for (; i < count; i++) if (!float.IsFinite(x[i])) return false;
        return true;
    }
}
