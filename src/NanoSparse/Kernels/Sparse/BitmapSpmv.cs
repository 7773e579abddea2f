using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// y (M) = S·x with S as a bitmap (<see cref="BitmapMatrix"/>: one bit per weight, the kept values packed row-major):
/// the decode SpMV for densities from about 0.3 up. Per row and 16 columns, the 16 mask bits expand the next
/// popcount(mask) packed values into their lanes (vexpandps from memory, zeros elsewhere) and one FMA with x's 16 floats
/// adds them to the row's sums. 0·x is 0 only for finite x: when x holds an infinity or NaN, a scalar exact path runs
/// over the set bits only. (Masking the FMA instead cost three more instructions per 16 weights in the JIT's code:
/// 2x slower.)
/// Why: a decode step reads every stored byte once, and the bitmap costs 4 bytes per value plus 1/8 byte per weight:
/// 2.125 bytes per weight at 50% density (1.88x fewer than dense) and 1.325 at 30% (3.0x), against 2.8 and 1.75 for
/// SELL-256 (its padding and index bytes). The price is compute: ~1.4–1.6 ns per 16 weights on one Zen 4 core
/// (scratch, matrix in cache), about half what dense streams 16 weights in at 20 GB/s, so at 50% it stays bound by the
/// bytes and at 30% it is near the compute bound.
/// </summary>
public static unsafe class BitmapSpmv
{
    /// <summary>Weights (bits) from which a second thread joins: 256K weights are ~25 µs on one core.</summary>
    public static long MinParallelWeights { get; set; } = 1L << 18;

    [ThreadStatic] static float[]? _padded;

    public static void Multiply(BitmapMatrix s, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != s.Cols) throw new ArgumentException($"x has {x.Length} elements, expected the matrix's {s.Cols} columns", nameof(x));
        if (y.Length != s.Rows) throw new ArgumentException($"y has {y.Length} elements, expected the matrix's {s.Rows} rows", nameof(y));
        if (s.Rows == 0) return;
        int k = s.Cols, kPadded = 64 * s.WordsPerRow;
        fixed (ulong* bits = s.Bits)
        fixed (int* offsets = s.RowOffsets)
        fixed (float* values = s.Values, px = x, py = y)
        {
            var args = new Args
            {
                Bits = bits, Offsets = offsets, Values = values, X = px, Y = py, Rows = s.Rows, Words = s.WordsPerRow,
                Exact = !Avx512F.IsSupported || !AllFinite(px, k),
            };
            if (k != kPadded && !args.Exact)
            {
                // The last word's 16-column loads read up to 64·words floats: x copied into a zero-padded buffer.
                if (_padded is null || _padded.Length < kPadded) _padded = GC.AllocateUninitializedArray<float>(kPadded, pinned: true);
                fixed (float* c = _padded)
                {
                    Buffer.MemoryCopy(px, c, 4L * k, 4L * k);
                    new Span<float>(c + k, kPadded - k).Clear();
                    args.X = c;
                    Run(ref args, (long)s.Rows * s.Cols);
                }
            }
            else Run(ref args, (long)s.Rows * s.Cols);
        }
    }

    static void Run(ref Args args, long weights)
    {
        args.Chunks = weights < MinParallelWeights ? 1 : SpmmMicroKernel.ChunkCount(args.Rows, weights, 0);
        KernelThreads.For(args.Chunks, ref args, &Body);
    }

    struct Args
    {
        public ulong* Bits;
        public int* Offsets;
        public float* Values, X, Y;
        public int Rows, Words, Chunks;
        public bool Exact;
    }

    static bool AllFinite(float* x, long count)
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = SpmmMicroKernel.ChunkStart(a.Offsets, a.Rows, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.Offsets, a.Rows, chunk + 1, a.Chunks);
        for (int i = first; i < last; i++)
        {
            ulong* bits = a.Bits + (long)i * a.Words;
            float* v = a.Values + a.Offsets[i];
            a.Y[i] = a.Exact ? RowScalar(bits, a.Words, v, a.X) : Row(bits, a.Words, v, a.X);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Row(ulong* bits, int words, float* v, float* x)
    {
        // Lane l of a 16-column piece tests bit l of the piece's mask.
        var laneBit = Vector512.Create(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int w = 0; w < words; w++, x += 64)
        {
            ulong word = bits[w];
            if (word == 0) continue;
            acc0 = Piece((int)word & 0xFFFF, laneBit, ref v, x, acc0);
            acc1 = Piece((int)(word >> 16) & 0xFFFF, laneBit, ref v, x + 16, acc1);
            acc2 = Piece((int)(word >> 32) & 0xFFFF, laneBit, ref v, x + 32, acc2);
            acc3 = Piece((int)(word >> 48), laneBit, ref v, x + 48, acc3);
        }
        return Vector512.Sum((acc0 + acc1) + (acc2 + acc3));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Piece(int bits, Vector512<int> laneBit, ref float* v, float* x, Vector512<float> acc)
    {
        var mask = Vector512.Equals(Vector512.Create(bits) & laneBit, laneBit).AsSingle();
        var e = Avx512F.ExpandLoad(v, mask, Vector512<float>.Zero);
        v += BitOperations.PopCount((uint)bits);
        return Vector512.FusedMultiplyAdd(e, Vector512.Load(x), acc);
    }

    static float RowScalar(ulong* bits, int words, float* v, float* x)
    {
        float sum = 0;
        for (int w = 0; w < words; w++)
            for (ulong word = bits[w]; word != 0; word &= word - 1)
                sum += *v++ * x[64 * w + BitOperations.TrailingZeroCount(word)];
        return sum;
    }
}
