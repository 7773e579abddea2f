using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// Attention over keys and values stored compressed (Mustafar: per-token magnitude pruning of K and V): one head of one
/// token is a bitmap of hs bits (which entries are kept) and its kept entries packed in index order. The attention
/// kernel reads them as stored: q·k is Σ over set bits b of q[b]·packed[i], and y += p·v adds packed[i] at bit b.
/// With AVX-512 each 16 entries are one VEXPANDPS of the packed floats under the bitmap's 16-bit mask (the zeros are
/// made in registers, never read from memory) and one FMA; the scalar path walks the set bits.
/// A bitmap is ⌈hs / 64⌉ ulongs, bit b of word b / 64 for entry b.
/// </summary>
public static unsafe class KvAttention
{
    static readonly bool UseAvx512 = Avx512F.IsSupported;

    /// <summary>Words of one head's bitmap.</summary>
    public static int BitmapWords(int headSize) => (headSize + 63) / 64;

    /// <summary>
    /// Entries one token keeps per head at the given sparsity (fraction of entries dropped, in [0, 1)):
    /// keep = hs − round(sparsity · hs), at least 1.
    /// </summary>
    public static int KeepCount(int headSize, double sparsity) =>
        Math.Max(1, headSize - (int)Math.Round(sparsity * headSize, MidpointRounding.AwayFromZero));

    /// <summary>
    /// Keeps the <paramref name="keep"/> entries of x (hs) with the largest |x| (ties: the lower index) as a bitmap
    /// (⌈hs / 64⌉ words) and their values packed in index order (keep floats).
    /// </summary>
    public static void Pack(ReadOnlySpan<float> x, int keep, Span<ulong> bits, Span<float> packed)
    {
        int hs = x.Length;
        if (keep < 1 || keep > hs) throw new ArgumentOutOfRangeException(nameof(keep), keep, $"keep must lie in [1, {hs}] (the head size)");
        Check.Length(packed, keep, nameof(packed));
        if (bits.Length < BitmapWords(hs)) throw new ArgumentException($"bits has {bits.Length} words but needs {BitmapWords(hs)}", nameof(bits));
        bits.Slice(0, BitmapWords(hs)).Clear();
        // The keep-th largest magnitude is the threshold: every entry above it is kept, then entries equal to it in
        // index order until keep are taken.
        Span<float> magnitude = hs <= 256 ? stackalloc float[hs] : new float[hs];
        for (int b = 0; b < hs; b++) magnitude[b] = MathF.Abs(x[b]);
        magnitude.Sort();
        float threshold = magnitude[hs - keep];
        int above = 0;
        for (int b = 0; b < hs; b++) if (MathF.Abs(x[b]) > threshold) above++;
        int ties = keep - above;
        int n = 0;
        for (int b = 0; b < hs; b++)
        {
            float a = MathF.Abs(x[b]);
            if (a > threshold || (a == threshold && ties-- > 0))
            {
                bits[b >> 6] |= 1UL << (b & 63);
                packed[n++] = x[b];
            }
        }
    }

    /// <summary>q (hs) · k, k given as its bitmap and packed kept entries.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(ReadOnlySpan<float> q, ReadOnlySpan<ulong> bits, ReadOnlySpan<float> packed)
    {
        fixed (float* pq = q, pv = packed)
        fixed (ulong* pb = bits)
            return Dot(pq, pb, pv, q.Length);
    }

    /// <summary>y (hs) += a · v, v given as its bitmap and packed kept entries.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(Span<float> y, float a, ReadOnlySpan<ulong> bits, ReadOnlySpan<float> packed)
    {
        fixed (float* py = y, pv = packed)
        fixed (ulong* pb = bits)
            MultiplyAdd(py, a, pb, pv, y.Length);
    }

    /// <summary>q (hs) · k for a bitmap-packed k; the pointers' caller guarantees the lengths.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* q, ulong* bits, float* packed, int hs)
    {
        if (UseAvx512 && (hs & 15) == 0)
        {
            var laneBits = LaneBits();
            var acc = Vector512<float>.Zero;
            for (int c = 0; c < hs; c += 16)
            {
                uint m = (uint)(bits[c >> 6] >> (c & 63)) & 0xFFFF;
                var mask = Vector512.Equals(Vector512.Create(m) & laneBits, laneBits).AsSingle();
                var k = Avx512F.ExpandLoad(packed, mask, Vector512<float>.Zero);
                acc = Avx512F.FusedMultiplyAdd(Vector512.Load(q + c), k, acc);
                packed += BitOperations.PopCount(m);
            }
            return Vector512.Sum(acc);
        }
        float sum = 0;
        for (int w = 0; w < (hs + 63) >> 6; w++)
            for (ulong word = bits[w]; word != 0; word &= word - 1)
                sum += q[(w << 6) + BitOperations.TrailingZeroCount(word)] * *packed++;
        return sum;
    }

    /// <summary>y (hs) += a · v for a bitmap-packed v.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyAdd(float* y, float a, ulong* bits, float* packed, int hs)
    {
        if (UseAvx512 && (hs & 15) == 0)
        {
            var laneBits = LaneBits();
            var av = Vector512.Create(a);
            for (int c = 0; c < hs; c += 16)
            {
                uint m = (uint)(bits[c >> 6] >> (c & 63)) & 0xFFFF;
                var mask = Vector512.Equals(Vector512.Create(m) & laneBits, laneBits).AsSingle();
                var v = Avx512F.ExpandLoad(packed, mask, Vector512<float>.Zero);
                Vector512.Store(Avx512F.FusedMultiplyAdd(v, av, Vector512.Load(y + c)), y + c);
                packed += BitOperations.PopCount(m);
            }
            return;
        }
        for (int w = 0; w < (hs + 63) >> 6; w++)
            for (ulong word = bits[w]; word != 0; word &= word - 1)
            {
                int b = (w << 6) + BitOperations.TrailingZeroCount(word);
                y[b] += a * *packed++;
            }
    }

    // lane i holds 1 << i: a 16-bit mask broadcast and tested against it gives one AVX-512 mask lane per bit
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> LaneBits() => Vector512.Create(1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u, 256u, 512u, 1024u, 2048u, 4096u, 8192u, 16384u, 32768u);
}
