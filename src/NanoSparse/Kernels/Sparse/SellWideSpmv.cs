using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// y (M) = S·x with S in SELL-128 or SELL-256 (<see cref="SellWideMatrix"/>): the decode SpMV. Per (slice, block)
/// x's 256 (128) floats sit in sixteen (eight) Vector512 registers; a step widens its 16 index bytes (vpmovzxbd),
/// fetches the x of 16 slots (one per row of the slice) with eight (four) two-table permutes (vpermt2ps reads the
/// index's low five bits) and a blend tree on bits 5, 6 and 7 (5 and 6), and adds the 16 products to the slice's 16
/// row sums. Measured with the matrix in cache, one Zen 4 core (`bench gemv --sparse`): ~2.5 ns per step at 256
/// columns, ~1.45 ns at 128, against ~4 ns to stream a step's 80 bytes at 20 GB/s. Slices are split over threads by
/// stored steps.
/// Padded slots hold 0 at index 0, and 0·x is 0 only for finite x: when x holds an infinity or NaN, a slower exact
/// path reads the lane counts and skips the padding.
/// </summary>
public static unsafe class SellWideSpmv
{
    /// <summary>
    /// Steps (16 slots, ~80 bytes each) from which a second thread joins: 2048 steps are ~160 KB, ~8 µs at one core's
    /// 20 GB/s, well above the ~1–2 µs a hand-off to a waiting worker costs.
    /// </summary>
    public static long MinParallelSteps { get; set; } = 2048;


    public static void Multiply(SellWideMatrix s, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != s.Cols) throw new ArgumentException($"x has {x.Length} elements, expected the matrix's {s.Cols} columns", nameof(x));
        if (y.Length != s.Rows) throw new ArgumentException($"y has {y.Length} elements, expected the matrix's {s.Rows} rows", nameof(y));
        if (s.Rows == 0) return;
        int k = s.Cols, kPadded = s.Blocks * s.BlockWidth;
        fixed (ushort* steps = s.Steps, laneCounts = s.LaneCounts)
        fixed (int* stepStart = s.StepStart, rowOrder = s.RowOrder)
        fixed (byte* indices = s.Indices)
        fixed (float* values = s.Values, px = x, py = y)
        {
            var args = new Args
            {
                Steps = steps, LaneCounts = laneCounts, StepStart = stepStart, Indices = indices,
                Values = values, Y = py, X = px, RowOrder = rowOrder, Rows = s.Rows, Slices = s.Slices, Blocks = s.Blocks, Width = s.BlockWidth,
                Exact = !Avx512F.IsSupported || !SpmvInput.AllFinite(px, k),
            };
            if (k != kPadded)
            {
                // The last block's 16 loads read a whole 256 floats: x copied into a zero-padded, aligned buffer.
                args.X = SpmvInput.ZeroPadded(px, k, kPadded);
            }
            long work = s.StepStart[^1];
            args.Chunks = work < MinParallelSteps ? 1 : SpmmMicroKernel.ChunkCount(args.Slices, work, 0);
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public ushort* Steps, LaneCounts;
        public byte* Indices;
        public int* StepStart, RowOrder;   // RowOrder null: lane l of slice s is row 16·s + l
        public float* Values, X, Y;
        public int Rows, Slices, Blocks, Width, Chunks;
        public bool Exact;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = SpmmMicroKernel.ChunkStart(a.StepStart, a.Slices, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.StepStart, a.Slices, chunk + 1, a.Chunks);
        float* sums = stackalloc float[SellWideMatrix.SliceHeight];
        for (int s = first; s < last; s++)
        {
            int lanes = Math.Min(SellWideMatrix.SliceHeight, a.Rows - s * SellWideMatrix.SliceHeight);
            ushort* steps = a.Steps + (long)s * a.Blocks;
            byte* idx = a.Indices + (long)SellWideMatrix.SliceHeight * a.StepStart[s];
            float* val = a.Values + (long)SellWideMatrix.SliceHeight * a.StepStart[s];
            float* y = a.Y + (long)s * SellWideMatrix.SliceHeight;
            if (a.RowOrder != null)
            {
                // SELL-C-σ: lane l's sum belongs to row RowOrder[16·s + l]
                if (a.Exact) SliceExact(steps, a.LaneCounts + 16L * s * a.Blocks, a.Blocks, a.Width, idx, val, a.X, sums);
                else (a.Width == 256 ? Slice(steps, a.Blocks, idx, val, a.X) : Slice128(steps, a.Blocks, idx, val, a.X)).Store(sums);
                int* order = a.RowOrder + (long)s * SellWideMatrix.SliceHeight;
                for (int l = 0; l < lanes; l++) a.Y[order[l]] = sums[l];
                continue;
            }
            if (a.Exact)
                SliceExact(steps, a.LaneCounts + 16L * s * a.Blocks, a.Blocks, a.Width, idx, val, a.X, sums);
            else
            {
                var sum = a.Width == 256 ? Slice(steps, a.Blocks, idx, val, a.X) : Slice128(steps, a.Blocks, idx, val, a.X);
                if (lanes == SellWideMatrix.SliceHeight) { sum.Store(y); continue; }
                sum.Store(sums);
            }
            for (int l = 0; l < lanes; l++) y[l] = sums[l];
        }
    }

    /// <summary>The 16 row sums of one slice, 256-column blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Vector512<float> Slice(ushort* steps, int blocks, byte* idx, float* val, float* x)
    {
        Vector512<float> acc0 = default, acc1 = default;
        for (int b = 0; b < blocks; b++, x += 256)
        {
            int t = steps[b];
            if (t == 0) continue;
            var x0 = Vector512.Load(x); var x1 = Vector512.Load(x + 16);
            var x2 = Vector512.Load(x + 32); var x3 = Vector512.Load(x + 48);
            var x4 = Vector512.Load(x + 64); var x5 = Vector512.Load(x + 80);
            var x6 = Vector512.Load(x + 96); var x7 = Vector512.Load(x + 112);
            var x8 = Vector512.Load(x + 128); var x9 = Vector512.Load(x + 144);
            var x10 = Vector512.Load(x + 160); var x11 = Vector512.Load(x + 176);
            var x12 = Vector512.Load(x + 192); var x13 = Vector512.Load(x + 208);
            var x14 = Vector512.Load(x + 224); var x15 = Vector512.Load(x + 240);
            for (int u = 0; u < t; u++)
            {
                var q = Avx512F.ConvertToVector512Int32(Vector128.Load(idx + 16 * u));   // vpmovzxbd: 16 bytes to 16 ints
                // vpermt2ps reads the low five bits: the column within each 32-column pair of registers.
                var p0 = Avx512F.PermuteVar16x32x2(x0, q, x1);
                var p1 = Avx512F.PermuteVar16x32x2(x2, q, x3);
                var p2 = Avx512F.PermuteVar16x32x2(x4, q, x5);
                var p3 = Avx512F.PermuteVar16x32x2(x6, q, x7);
                var p4 = Avx512F.PermuteVar16x32x2(x8, q, x9);
                var p5 = Avx512F.PermuteVar16x32x2(x10, q, x11);
                var p6 = Avx512F.PermuteVar16x32x2(x12, q, x13);
                var p7 = Avx512F.PermuteVar16x32x2(x14, q, x15);
                // Bit b of the index spread over its lane (all ones or all zeros): shift it to the sign, then back arithmetically.
                var high5 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 26), 31).AsSingle();
                var high6 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 25), 31).AsSingle();
                var high7 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 24), 31).AsSingle();
                var r0 = Vector512.ConditionalSelect(high6, Vector512.ConditionalSelect(high5, p3, p2), Vector512.ConditionalSelect(high5, p1, p0));
                var r1 = Vector512.ConditionalSelect(high6, Vector512.ConditionalSelect(high5, p7, p6), Vector512.ConditionalSelect(high5, p5, p4));
                var v = Vector512.Load(val + 16 * u);
                if ((u & 1) == 0) acc0 = Vector512.FusedMultiplyAdd(v, Vector512.ConditionalSelect(high7, r1, r0), acc0);
                else acc1 = Vector512.FusedMultiplyAdd(v, Vector512.ConditionalSelect(high7, r1, r0), acc1);
            }
            idx += SellWideMatrix.SliceHeight * t;
            val += SellWideMatrix.SliceHeight * t;
        }
        return acc0 + acc1;
    }

    /// <summary>The 16 row sums of one slice, 128-column blocks: four permutes and a blend tree on bits 5 and 6.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Vector512<float> Slice128(ushort* steps, int blocks, byte* idx, float* val, float* x)
    {
        Vector512<float> acc0 = default, acc1 = default;
        for (int b = 0; b < blocks; b++, x += 128)
        {
            int t = steps[b];
            if (t == 0) continue;
            var x0 = Vector512.Load(x); var x1 = Vector512.Load(x + 16);
            var x2 = Vector512.Load(x + 32); var x3 = Vector512.Load(x + 48);
            var x4 = Vector512.Load(x + 64); var x5 = Vector512.Load(x + 80);
            var x6 = Vector512.Load(x + 96); var x7 = Vector512.Load(x + 112);
            int u = 0;
            for (; u + 2 <= t; u += 2)
            {
                var q = Avx512F.ConvertToVector512Int32(Vector128.Load(idx + 16 * u));
                var h5 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 26), 31).AsSingle();
                var h6 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 25), 31).AsSingle();
                var r = Vector512.ConditionalSelect(h6,
                    Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x6, q, x7), Avx512F.PermuteVar16x32x2(x4, q, x5)),
                    Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x2, q, x3), Avx512F.PermuteVar16x32x2(x0, q, x1)));
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 16 * u), r, acc0);
                q = Avx512F.ConvertToVector512Int32(Vector128.Load(idx + 16 * u + 16));
                h5 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 26), 31).AsSingle();
                h6 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 25), 31).AsSingle();
                r = Vector512.ConditionalSelect(h6,
                    Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x6, q, x7), Avx512F.PermuteVar16x32x2(x4, q, x5)),
                    Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x2, q, x3), Avx512F.PermuteVar16x32x2(x0, q, x1)));
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 16 * u + 16), r, acc1);
            }
            if (u < t)
            {
                var q = Avx512F.ConvertToVector512Int32(Vector128.Load(idx + 16 * u));
                var h5 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 26), 31).AsSingle();
                var h6 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 25), 31).AsSingle();
                var r = Vector512.ConditionalSelect(h6,
                    Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x6, q, x7), Avx512F.PermuteVar16x32x2(x4, q, x5)),
                    Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x2, q, x3), Avx512F.PermuteVar16x32x2(x0, q, x1)));
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 16 * u), r, acc0);
            }
            idx += SellWideMatrix.SliceHeight * t;
            val += SellWideMatrix.SliceHeight * t;
        }
        return acc0 + acc1;
    }

    /// <summary>One slice, entries only (padding skipped): for x with infinities or NaN, and without AVX-512.</summary>
    static void SliceExact(ushort* steps, ushort* laneCounts, int blocks, int width, byte* idx, float* val, float* x, float* sums)
    {
        for (int l = 0; l < SellWideMatrix.SliceHeight; l++) sums[l] = 0;
        for (int b = 0; b < blocks; b++, x += width, laneCounts += 16)
        {
            int t = steps[b];
            for (int l = 0; l < SellWideMatrix.SliceHeight; l++)
                for (int u = 0; u < laneCounts[l]; u++)
                    sums[l] += val[SellWideMatrix.SliceHeight * u + l] * x[idx[SellWideMatrix.SliceHeight * u + l]];
            idx += SellWideMatrix.SliceHeight * t;
            val += SellWideMatrix.SliceHeight * t;
        }
    }
}
