using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// Inverted dropout with a counter-based mask: element i of a call with seed s is kept when
/// uniform(hash(s, i)) ≥ p, and kept values are scaled by 1 / (1 − p). The mask is a pure function of
/// (seed, index), so the backward pass regenerates it instead of storing it, and threads need no shared state.
/// The seed comes from the model's dropout Rng, once per site per forward pass.
/// The row kernels hash 16 indices at a time in two Vector512&lt;ulong&gt; (AVX-512DQ's 64-bit multiply) and give
/// exactly the mask of <see cref="Keep"/>: u = (z ≫ 40)·2⁻²⁴ ≥ p is the integer test z ≫ 40 ≥ ⌈p·2²⁴⌉.
/// </summary>
public static unsafe class Dropout
{
    const int Block = 4096;
    const ulong Golden = 0x9E3779B97F4A7C15UL;

    struct Args { public float* X; public long Offset; public ulong Seed; public float P, Scale; public int N; }

    /// <summary>True when element <paramref name="index"/> survives for this seed and drop probability.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep(ulong seed, long index, float p)
    {
        // SplitMix64 finaliser of (seed + index·golden ratio): a well-mixed 64-bit value per element.
        ulong z = seed + (ulong)index * Golden;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        float u = (z >> 40) * (1.0f / (1 << 24));
        return u >= p;
    }

    /// <summary>The integer form of <see cref="Keep"/>'s test: keep when (hash ≫ 40) ≥ this.</summary>
    static ulong Threshold(float p) => (ulong)Math.Ceiling((double)p * (1 << 24));

    static bool VectorPath => Vector512.IsHardwareAccelerated && Avx512DQ.IsSupported;

    /// <summary>All-ones lanes where elements index0 … index0+15 are kept, zero lanes where dropped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> KeepMask16(ulong seed, long index0, Vector512<ulong> threshold)
    {
        // z = seed + (index0 + lane)·golden for lanes 0..7 and 8..15
        var lanes = Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7);
        var golden = Vector512.Create(Golden);
        var zLo = Vector512.Create(seed + (ulong)index0 * Golden) + lanes * golden;
        var zHi = zLo + Vector512.Create(unchecked(8 * Golden));
        var keepLo = Vector512.GreaterThanOrEqual(Mix(zLo) >>> 40, threshold);
        var keepHi = Vector512.GreaterThanOrEqual(Mix(zHi) >>> 40, threshold);
        // each 64-bit lane is all ones or zero: narrowing to 32 bits keeps that
        var lo = Avx512F.ConvertToVector256UInt32(keepLo);
        var hi = Avx512F.ConvertToVector256UInt32(keepHi);
        return Vector512.Create(lo, hi).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<ulong> Mix(Vector512<ulong> z)
    {
        z = (z ^ (z >>> 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ (z >>> 27)) * Vector512.Create(0x94D049BB133111EBUL);
        return z ^ (z >>> 31);
    }

    /// <summary>
    /// dst[i] = Keep(seed, baseIndex + i) ? src[i]·scale : 0 for i in [0, count). dst may equal src.
    /// </summary>
    public static void ApplyRow(float* dst, float* src, int count, ulong seed, long baseIndex, float p, float scale)
    {
        int i = 0;
        if (VectorPath)
        {
            var threshold = Vector512.Create(Threshold(p));
            var vscale = Vector512.Create(scale);
            for (; i + 16 <= count; i += 16)
            {
                var mask = KeepMask16(seed, baseIndex + i, threshold);
                Vector512.Store(Vector512.BitwiseAnd(Vector512.Load(src + i) * vscale, mask), dst + i);
            }
        }
        for (; i < count; i++)
            dst[i] = Keep(seed, baseIndex + i, p) ? src[i] * scale : 0f;
    }

    /// <summary>
    /// The same mask applied to two rows at once: pd[i] = keep ? p[i]·scale : 0 and dp[i] = keep ? dp[i]·scale : 0
    /// (the attention backward pass needs the dropped probabilities and the gradient through dropout together).
    /// </summary>
    public static void ApplyRowPair(float* pd, float* p, float* dp, int count, ulong seed, long baseIndex, float prob, float scale)
    {
        int i = 0;
        if (VectorPath)
        {
            var threshold = Vector512.Create(Threshold(prob));
            var vscale = Vector512.Create(scale);
            for (; i + 16 <= count; i += 16)
            {
                var mask = KeepMask16(seed, baseIndex + i, threshold);
                Vector512.Store(Vector512.BitwiseAnd(Vector512.Load(p + i) * vscale, mask), pd + i);
                Vector512.Store(Vector512.BitwiseAnd(Vector512.Load(dp + i) * vscale, mask), dp + i);
            }
        }
        for (; i < count; i++)
        {
            bool keep = Keep(seed, baseIndex + i, prob);
            pd[i] = keep ? p[i] * scale : 0f;
            dp[i] = keep ? dp[i] * scale : 0f;
        }
    }

    /// <summary>
    /// x (N) *= mask · 1/(1−p) in place, element i using mask index offset + i. Used by both passes: the
    /// gradient of dropout is the same mask and scale applied to dout.
    /// </summary>
    public static void Apply(Span<float> x, float p, ulong seed, long offset = 0)
    {
        if (p <= 0f) return;
        fixed (float* px = x)
        {
            var a = new Args { X = px, Offset = offset, Seed = seed, P = p, Scale = 1f / (1f - p), N = x.Length };
            RowParallel.For((x.Length + Block - 1) / Block, Block * 4L, ref a, &ApplyBlocks);
        }
    }

    static void ApplyBlocks(ref Args a, int startBlock, int endBlock)
    {
        int start = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        ApplyRow(a.X + start, a.X + start, end - start, a.Seed, a.Offset + start, a.P, a.Scale);
    }
}
