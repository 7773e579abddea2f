using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>What the SpMV kernels of the decode copies do to their input vector x before the product.</summary>
internal static unsafe class SpmvInput
{
    [ThreadStatic] static float[]? _padded;

    /// <summary>
    /// Whether every float of x is finite: the kernels that multiply padding slots by x (SELL, SELL-C-σ, the packed
    /// SELL, the bitmap) take their exact path when it is not, so that a padded 0 · ∞ cannot make a NaN.
    /// </summary>
    public static bool AllFinite(float* x, long count)
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

    /// <summary>
    /// x (k floats) copied into this thread's 64-byte aligned buffer and zero-padded to kPadded, for a kernel whose last
    /// block reads whole vectors past k. The buffer is reused by the next call on the same thread.
    /// </summary>
    public static float* ZeroPadded(float* x, int k, int kPadded)
    {
        if (_padded is null || _padded.Length < kPadded + 16) _padded = GC.AllocateUninitializedArray<float>(kPadded + 16, pinned: true);
        float* c = (float*)(((nint)Unsafe.AsPointer(ref _padded[0]) + 63) & ~(nint)63);
        Buffer.MemoryCopy(x, c, 4L * k, 4L * k);
        new Span<float>(c + k, kPadded - k).Clear();
        return c;
    }
}
