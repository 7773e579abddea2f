using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// y (M) = S·x with S as a bitmap (<see cref="BitmapMatrix"/>: one bit per weight, the kept values packed row-major):
/// the decode SpMV for densities from about 0.3 up, and for 2:4 (a bitmap with two of every four bits set). Per row
/// and 16 columns, the 16 mask bits pick lanes: the next 16 packed values are loaded as they lie (unaligned) and a
/// register expand (vexpandps zmm, zmm) moves the first popcount(mask) of them into the lanes whose bit is set, zeros
/// elsewhere; one FMA with x's 16 floats adds them to the row's sums. 0·x is 0 only for finite x: when x holds an
/// infinity or NaN, a scalar exact path runs over the set bits only.
/// Why this shape (measured on the Zen 5 development machine, one core, scratch microbenchmark, CPU time):
/// - the expand-load form (vexpandps zmm, [mem]) costs ~3.5 ns per 16 weights there (about 4x a plain load plus a
///   register expand), which is what made the first version of this kernel compute-bound (0.5–0.6x dense);
/// - each 16-bit mask comes from a 32-bit broadcast of two pieces' bits straight from memory, tested against per-lane
///   bit constants (vptestmd): two instructions, no general-register round trip; each mask is consumed right after it
///   is made so the JIT keeps it in a k register (four masks alive at once sent them through vector registers);
/// - the pieces' value offsets are popcounts of the word's prefixes, so no piece waits on the one before it;
/// - two words per iteration, eight accumulators.
/// A piece's load may read up to 15 floats past the row's last value; rows that end within 16 floats of the end of
/// the values array take the scalar path, so nothing is read past the array.
/// Why a bitmap: a decode step reads every stored byte once, and the bitmap costs 4 bytes per value plus 1/8 byte per
/// weight: 2.125 bytes per weight at 50% density (1.88x fewer than dense) and 1.325 at 30% (3.0x), against ~2.8 and
/// ~1.75 for SELL-128-σ (its padding and index bytes).
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
                Bits = bits, Offsets = offsets, Values = values, X = px, Y = py, Rows = s.Rows, Words = s.WordsPerRow, ValueCount = s.Values.Length,
                Exact = !Avx512F.IsSupported || !SpmvInput.AllFinite(px, k),
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
        public int Rows, Words, Chunks, ValueCount;
        public bool Exact;
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
            // The last piece's 16-float load starts at most at the row's end: it must stay inside the values array.
            bool safe = a.Offsets[i + 1] + 16 <= a.ValueCount;
            a.Y[i] = a.Exact || !safe ? RowScalar(bits, a.Words, v, a.X) : Row(bits, a.Words, v, a.X);
        }
    }

    // Lane l tests bit l of a 32-bit word (Low: the word's first 16 columns) or bit 16 + l (High: its last 16).
    static Vector512<int> LowLanes => Vector512.Create(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);
    static Vector512<int> HighLanes => Vector512.Create(1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22, 1 << 23,
        1 << 24, 1 << 25, 1 << 26, 1 << 27, 1 << 28, 1 << 29, 1 << 30, 1 << 31);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Row(ulong* bits, int words, float* v, float* x)
    {
        var lo = LowLanes;
        var hi = HighLanes;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int w = 0;
        for (; w + 2 <= words; w += 2, x += 128)
        {
            ulong word = bits[w], next = bits[w + 1];
            float* v1 = v + BitOperations.PopCount(word);
            int* half = (int*)(bits + w);
            a0 = Piece(Vector512.Create(half[0]), lo, v, x, a0);
            a1 = Piece(Vector512.Create(half[0]), hi, v + BitOperations.PopCount((uint)(ushort)word), x + 16, a1);
            a2 = Piece(Vector512.Create(half[1]), lo, v + BitOperations.PopCount((uint)word), x + 32, a2);
            a3 = Piece(Vector512.Create(half[1]), hi, v + BitOperations.PopCount(word & 0xFFFF_FFFF_FFFFUL), x + 48, a3);
            a4 = Piece(Vector512.Create(half[2]), lo, v1, x + 64, a4);
            a5 = Piece(Vector512.Create(half[2]), hi, v1 + BitOperations.PopCount((uint)(ushort)next), x + 80, a5);
            a6 = Piece(Vector512.Create(half[3]), lo, v1 + BitOperations.PopCount((uint)next), x + 96, a6);
            a7 = Piece(Vector512.Create(half[3]), hi, v1 + BitOperations.PopCount(next & 0xFFFF_FFFF_FFFFUL), x + 112, a7);
            v = v1 + BitOperations.PopCount(next);
        }
        if (w < words)
        {
            ulong word = bits[w];
            int* half = (int*)(bits + w);
            a0 = Piece(Vector512.Create(half[0]), lo, v, x, a0);
            a1 = Piece(Vector512.Create(half[0]), hi, v + BitOperations.PopCount((uint)(ushort)word), x + 16, a1);
            a2 = Piece(Vector512.Create(half[1]), lo, v + BitOperations.PopCount((uint)word), x + 32, a2);
            a3 = Piece(Vector512.Create(half[1]), hi, v + BitOperations.PopCount(word & 0xFFFF_FFFF_FFFFUL), x + 48, a3);
        }
        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)));
    }

    /// <summary>acc + (the next popcount(mask) values at v, expanded into the mask's lanes) · x[0..16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Piece(Vector512<int> bits, Vector512<int> lanes, float* v, float* x, Vector512<float> acc)
    {
        var mask = ~Vector512.Equals(bits & lanes, Vector512<int>.Zero);
        var e = Avx512F.Expand(Vector512<float>.Zero, mask.AsSingle(), Vector512.Load(v));
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
