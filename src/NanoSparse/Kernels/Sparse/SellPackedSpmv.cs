using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// y (M) = S·x with S in SELL-128 without padding (<see cref="SellPackedMatrix"/>): the decode SpMV at low density.
/// Per (slice, block) x's 128 floats sit in eight Vector512 registers and a step fetches the x of its 16 slots with four
/// two-table permutes and a blend tree on index bits 5 and 6, as <see cref="SellWideSpmv"/> does at 128 columns. Full
/// steps load 16 values, aligned; a tail step loads 16 values from where its k slots start and clears lanes k and up
/// (an AND with the lane mask: AVX-512 masked loads ran ~2.5x slower on this Zen 5), then moves on by k = popcount of
/// the mask. The block's sums, in block-lane order, reach the slice's row lanes through one permute.
/// Measured on the 48 matrices of the gpt2-124m shape at 10% density (scratch harness, one thread, CPU time, loaded
/// machine): 44.2 MB read per pass against SELL-128-σ's 55.3 MB, and 0.7–0.95x its CPU time.
/// When x holds an infinity or NaN, or without AVX-512, a scalar path reads the entries only (a cleared lane's 0 times
/// an infinite x would be NaN). Slices are split over threads by slots.
/// </summary>
public static unsafe class SellPackedSpmv
{
    /// <summary>Slots (~5 bytes each) from which a second thread joins: 32K slots are ~160 KB, as for <see cref="SellWideSpmv.MinParallelSteps"/>.</summary>
    public static long MinParallelSlots { get; set; } = 32_768;


    public static void Multiply(SellPackedMatrix s, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != s.Cols) throw new ArgumentException($"x has {x.Length} elements, expected the matrix's {s.Cols} columns", nameof(x));
        if (y.Length != s.Rows) throw new ArgumentException($"y has {y.Length} elements, expected the matrix's {s.Rows} rows", nameof(y));
        if (s.Rows == 0) return;
        int k = s.Cols, kPadded = s.Blocks * SellPackedMatrix.BlockWidth;
        var (fi, fiStart) = s.FullIndexArray;
        var (fv, fvStart) = s.FullValueArray;
        var (ti, tiStart) = s.TailIndexArray;
        var (tv, tvStart) = s.TailValueArray;
        fixed (byte* headers = s.Headers, fullIdx = fi, tailIdx = ti)
        fixed (int* fullStart = s.FullStart, tailStart = s.TailStart, slotStart = s.SlotStart, rowOrder = s.RowOrder)
        fixed (float* fullVal = fv, tailVal = tv, px = x, py = y)
        {
            var args = new Args
            {
                Headers = headers, FullIndices = fullIdx + fiStart, TailIndices = tailIdx + tiStart, FullValues = fullVal + fvStart, TailValues = tailVal + tvStart,
                FullStart = fullStart, TailStart = tailStart, SlotStart = slotStart, RowOrder = rowOrder, X = px, Y = py,
                Rows = s.Rows, Slices = s.Slices, Blocks = s.Blocks,
                Exact = !Avx512F.IsSupported || !SpmvInput.AllFinite(px, k),
            };
            if (k != kPadded)
            {
                // The last block's eight loads read a whole 128 floats: x copied into a zero-padded, aligned buffer.
                args.X = SpmvInput.ZeroPadded(px, k, kPadded);
            }
            long work = s.SlotStart[^1];
            args.Chunks = work < MinParallelSlots ? 1 : SpmmMicroKernel.ChunkCount(args.Slices, work, 0);
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public byte* Headers, FullIndices, TailIndices;
        public float* FullValues, TailValues, X, Y;
        public int* FullStart, TailStart, SlotStart, RowOrder;   // RowOrder null: row lane l of slice s is row 16·s + l
        public int Rows, Slices, Blocks, Chunks;
        public bool Exact;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        const int H = SellPackedMatrix.SliceHeight;
        int first = SpmmMicroKernel.ChunkStart(a.SlotStart, a.Slices, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.SlotStart, a.Slices, chunk + 1, a.Chunks);
        float* sums = stackalloc float[H];
        for (int s = first; s < last; s++)
        {
            byte* headers = a.Headers + (long)SellPackedMatrix.HeaderBytes * s * a.Blocks;
            byte* fullIdx = a.FullIndices + (long)H * a.FullStart[s];
            float* fullVal = a.FullValues + (long)H * a.FullStart[s];
            byte* tailIdx = a.TailIndices + a.TailStart[s];
            float* tailVal = a.TailValues + a.TailStart[s];
            int lanes = Math.Min(H, a.Rows - s * H);
            if (a.Exact) SliceExact(headers, a.Blocks, fullIdx, fullVal, tailIdx, tailVal, a.X, sums);
            else
            {
                var sum = Slice(headers, a.Blocks, fullIdx, fullVal, tailIdx, tailVal, a.X);
                if (a.RowOrder == null && lanes == H) { sum.Store(a.Y + (long)s * H); continue; }
                sum.Store(sums);
            }
            if (a.RowOrder != null)
            {
                int* order = a.RowOrder + (long)s * H;
                for (int l = 0; l < lanes; l++) a.Y[order[l]] = sums[l];
            }
            else
                for (int l = 0; l < lanes; l++) a.Y[s * H + l] = sums[l];
        }
    }

    /// <summary>x at the 16 columns of a step (block columns q & 127): four permutes, a blend tree on bits 5 and 6.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Fetch(Vector512<int> q, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3,
        Vector512<float> x4, Vector512<float> x5, Vector512<float> x6, Vector512<float> x7)
    {
        // Bit b of the index spread over its lane (all ones or all zeros): shift it to the sign, then back arithmetically.
        var h5 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 26), 31).AsSingle();
        var h6 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(q, 25), 31).AsSingle();
        return Vector512.ConditionalSelect(h6,
            Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x6, q, x7), Avx512F.PermuteVar16x32x2(x4, q, x5)),
            Vector512.ConditionalSelect(h5, Avx512F.PermuteVar16x32x2(x2, q, x3), Avx512F.PermuteVar16x32x2(x0, q, x1)));
    }

    /// <summary>The 16 row-lane sums of one slice.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Vector512<float> Slice(byte* headers, int blocks, byte* fullIdx, float* fullVal, byte* tailIdx, float* tailVal, float* x)
    {
        var rows = Vector512<float>.Zero;
        for (int b = 0; b < blocks; b++, x += SellPackedMatrix.BlockWidth, headers += SellPackedMatrix.HeaderBytes)
        {
            int t = headers[0];
            if (t == 0) continue;
            var x0 = Vector512.Load(x); var x1 = Vector512.Load(x + 16);
            var x2 = Vector512.Load(x + 32); var x3 = Vector512.Load(x + 48);
            var x4 = Vector512.Load(x + 64); var x5 = Vector512.Load(x + 80);
            var x6 = Vector512.Load(x + 96); var x7 = Vector512.Load(x + 112);
            Vector512<float> acc0 = default, acc1 = default;
            int f = headers[SellPackedMatrix.SliceHeight - 1], u = 0;
            for (; u + 2 <= f; u += 2)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(fullVal), Fetch(Avx512F.ConvertToVector512Int32(Vector128.Load(fullIdx)), x0, x1, x2, x3, x4, x5, x6, x7), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(fullVal + 16), Fetch(Avx512F.ConvertToVector512Int32(Vector128.Load(fullIdx + 16)), x0, x1, x2, x3, x4, x5, x6, x7), acc1);
                fullVal += 32; fullIdx += 32;
            }
            if (u < f)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(fullVal), Fetch(Avx512F.ConvertToVector512Int32(Vector128.Load(fullIdx)), x0, x1, x2, x3, x4, x5, x6, x7), acc0);
                fullVal += 16; fullIdx += 16; u++;
            }
            if (u < t)
            {
                // Tail: lane i still holds entries while its count exceeds the step.
                var counts = Avx512F.ConvertToVector512Int32(Vector128.Load(headers));
                var step = Vector512.Create(u);
                // Steps up to the ninth-longest lane's count have more than 8 live lanes: one step per vector.
                for (int wide = Math.Min(t, headers[8]); u < wide; u++)
                {
                    var live = Vector512.GreaterThan(counts, step);
                    step += Vector512<int>.One;
                    var v = Vector512.Load(tailVal) & live.AsSingle();
                    var r = Fetch(Avx512F.ConvertToVector512Int32(Vector128.Load(tailIdx)), x0, x1, x2, x3, x4, x5, x6, x7);
                    acc1 = Vector512.FusedMultiplyAdd(v, r, acc1);   // a tail step's ~25 instructions cover the FMA's latency
                    int k = BitOperations.PopCount(live.ExtractMostSignificantBits());
                    tailVal += k; tailIdx += k;
                }
                if (u < t)
                {
                    // At most 8 live lanes from here on: two steps per vector, step u in lanes 0–7 and step u + 1 in
                    // lanes 8–15 (both block lanes 0–7). The two steps' slots follow each other in the stream; an expand
                    // puts them in place (lanes past each step's count zeroed), and lanes 8–15 fold onto 0–7 at the end.
                    var counts2 = Avx512F.PermuteVar16x32(counts, Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7));
                    var step2 = Vector512.Create(u) + Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
                    var two = Vector512.Create(2);
                    var pair = Vector512<float>.Zero;
                    for (; u < t; u += 2)
                    {
                        var live = Vector512.GreaterThan(counts2, step2);
                        step2 += two;
                        var v = Avx512F.Expand(Vector512<float>.Zero, live.AsSingle(), Vector512.Load(tailVal));
                        var q = Avx512F.Expand(Vector512<int>.Zero, live, Avx512F.ConvertToVector512Int32(Vector128.Load(tailIdx)));
                        pair = Vector512.FusedMultiplyAdd(v, Fetch(q, x0, x1, x2, x3, x4, x5, x6, x7), pair);
                        int k = BitOperations.PopCount(live.ExtractMostSignificantBits());
                        tailVal += k; tailIdx += k;
                    }
                    acc0 += Vector512.Create(pair.GetLower() + pair.GetUpper(), Vector256<float>.Zero);
                }
            }
            // block lane i's sum to row lane j: rows[j] += acc[placement[j]]
            rows += Avx512F.PermuteVar16x32(acc0 + acc1, Avx512F.ConvertToVector512Int32(Vector128.Load(headers + SellPackedMatrix.SliceHeight)));
        }
        return rows;
    }

    /// <summary>One slice, entries only: for x with infinities or NaN, and without AVX-512.</summary>
    static void SliceExact(byte* headers, int blocks, byte* fullIdx, float* fullVal, byte* tailIdx, float* tailVal, float* x, float* sums)
    {
        const int H = SellPackedMatrix.SliceHeight;
        for (int j = 0; j < H; j++) sums[j] = 0;
        float* blockSums = stackalloc float[H];
        for (int b = 0; b < blocks; b++, x += SellPackedMatrix.BlockWidth, headers += SellPackedMatrix.HeaderBytes)
        {
            int f = headers[H - 1], t = headers[0];
            for (int i = 0; i < H; i++) blockSums[i] = 0;
            for (int u = 0; u < f; u++, fullIdx += H, fullVal += H)
                for (int i = 0; i < H; i++) blockSums[i] += fullVal[i] * x[fullIdx[i]];
            for (int u = f; u < t; u++)
            {
                int k = 0;
                while (k < H && headers[k] > u) k++;
                for (int i = 0; i < k; i++) blockSums[i] += tailVal[i] * x[tailIdx[i]];
                tailVal += k; tailIdx += k;
            }
            for (int j = 0; j < H; j++) sums[j] += blockSums[headers[H + j]];
        }
    }
}
