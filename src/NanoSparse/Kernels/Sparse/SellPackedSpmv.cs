using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// y (M) = S·x with S in packed SELL (<see cref="SellPackedMatrix"/>): the decode SpMV at low density. Per (slice, block)
/// x's block sits in registers (eight Vector512 for 128 columns, four for 64) and a step fetches the x of its 16 slots
/// with two-table permutes (each reads index bits 0–4) and masked blends whose masks are compares of the index with a
/// constant (q &gt; 31 and so on): four permutes and three blends for 128 columns, two and one for 64. A step loads 16 values from where its k slots start and clears lanes k
/// and up with the k-th of 17 prefix masks (k read from the matrix's control stream: AVX-512 masked loads ran ~2.5x
/// slower on a Zen 5), then moves on by k. One loop per (slice, block), so the end of its steps is the one branch that
/// depends on the data: a Zen 4 core lost ~18 cycles per mispredicted branch here, and the layout this replaced (full
/// steps, masked tail steps, then pairs of short steps) took three or four per block. Each instruction in the step
/// counts: the blend's mask is one compare (vpcmpgtd into a mask register; testing bit 5 took an AND and a test), the
/// JIT's second permute overwrites the index register instead of copying a table, and k scales into byte offsets unsigned (no sign extensions); with the
/// 32-byte headers replaced by control records of 17 + t bytes (19 + t since they name their block), a pass over the gpt2-shaped blocks at 10% (harness
/// below, machine loaded, four runs of 11 rounds alternating in one process) took 2.24–2.34 ms against 2.34–2.40 for a
/// copy of the previous kernel and layout. The loop prefetches the value stream 2 KB ahead and the index stream 512
/// bytes ahead with the non-temporal hint, so the weights, read once per token, displace less of the KV cache that
/// attention reads next. The block's sums, in block-lane order, reach the slice's row lanes through one permute.
/// A slice's blocks come longest first (the matrix's kernel order; each record names its block, and blocks without
/// entries have none), so the loop that ends a block's steps sees runs of equal trip counts: the 90%-sparse gpt2-shaped
/// model decoded at 334–352 tokens/s against 308–361 in column order at one thread and 447–475 against 376–464 at two
/// (decode-only scratch harness, medians of four passes of 256 tokens, three alternated runs each, Zen 4, loaded).
/// Measured on the 48 matrices of the gpt2-124m shape at 10% density (scratch harness, one thread, wall clock, Zen 4,
/// medians of 7 passes over 44.2 MB, 128 columns): 2.11–2.15 ms a pass with an L2 prefetch 8 KB ahead against 2.74–2.76
/// for the layout this replaced; with the non-temporal prefetch instead (copies of the kernel differing only there) a
/// 14 MB buffer read after the pass took 0.35 ms against 0.42, and the model decoded the 90%-sparse model at 330.8 and
/// 333.9 tokens/s against 313.1 and 328.0 (alternated runs).
/// When x holds an infinity or NaN, or without AVX-512, a scalar path reads the entries only (a cleared lane's 0 times
/// an infinite x would be NaN). Slices are split over threads by slots.
/// </summary>
public static unsafe class SellPackedSpmv
{
    /// <summary>Slots (~5 bytes each) from which a second thread joins: 32K slots are ~160 KB, as for <see cref="SellWideSpmv.MinParallelSteps"/>.</summary>
    public static long MinParallelSlots { get; set; } = 32_768;

    /// <summary>How far ahead of a step the value stream is prefetched (the index stream a quarter as far): the
    /// non-temporal hint fills L1, so the distance stays well inside its 32 KB.</summary>
    const int PrefetchBytes = 2048;

    // Row k (0–16): lanes below k all ones, each row on its own 64-byte line (a row that straddles two lines costs a
    // second cache access every step). Pinned, so the kernel reads it through a pointer.
    static readonly (int[] Array, int Start) PrefixMasks = PinnedAligned.Copy<int>(MakePrefixMasks(), 0);

    static int[] MakePrefixMasks()
    {
        var masks = new int[17 * 16];
        for (int k = 0; k <= 16; k++)
            for (int i = 0; i < k; i++) masks[16 * k + i] = -1;
        return masks;
    }

    public static void Multiply(SellPackedMatrix s, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != s.Cols) throw new ArgumentException($"x has {x.Length} elements, expected the matrix's {s.Cols} columns", nameof(x));
        if (y.Length != s.Rows) throw new ArgumentException($"y has {y.Length} elements, expected the matrix's {s.Rows} rows", nameof(y));
        if (s.Rows == 0) return;
        int k = s.Cols, kPadded = s.Blocks * s.BlockWidth;
        var (ia, iStart) = s.IndexArray;
        var (va, vStart) = s.ValueArray;
        var (ca, cStart) = s.ControlArray;
        fixed (byte* indices = ia, control = ca)
        fixed (int* slotStart = s.SlotStart, controlStart = s.ControlStart, rowOrder = s.RowOrder, masks = PrefixMasks.Array)
        fixed (float* values = va, px = x, py = y)
        {
            var args = new Args
            {
                Control = control + cStart, Indices = indices + iStart, Values = values + vStart, Masks = (float*)(masks + PrefixMasks.Start),
                SlotStart = slotStart, ControlStart = controlStart, RowOrder = rowOrder, X = px, Y = py,
                Rows = s.Rows, Slices = s.Slices, BlockWidth = s.BlockWidth,
                Exact = !Avx512F.IsSupported || !SpmvInput.AllFinite(px, k),
            };
            if (k != kPadded)
            {
                // The last block's loads read a whole block of floats: x copied into a zero-padded, aligned buffer.
                args.X = SpmvInput.ZeroPadded(px, k, kPadded);
            }
            long work = s.SlotStart[^1];
            args.Chunks = work < MinParallelSlots ? 1 : SpmmMicroKernel.ChunkCount(args.Slices, work, 0);
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public byte* Control, Indices;
        public float* Values, Masks, X, Y;
        public int* SlotStart, ControlStart, RowOrder;   // RowOrder null: row lane l of slice s is row 16·s + l
        public int Rows, Slices, BlockWidth, Chunks;
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
            byte* control = a.Control + a.ControlStart[s];
            byte* controlEnd = a.Control + a.ControlStart[s + 1];
            byte* indices = a.Indices + a.SlotStart[s];
            float* values = a.Values + a.SlotStart[s];
            int lanes = Math.Min(H, a.Rows - s * H);
            if (a.Exact) SliceExact(control, controlEnd, a.BlockWidth, indices, values, a.X, sums);
            else
            {
                var sum = a.BlockWidth == SellPackedMatrix.NarrowBlock
                    ? Slice<Block64>(control, controlEnd, indices, values, a.X, a.Masks)
                    : Slice<Block128>(control, controlEnd, indices, values, a.X, a.Masks);
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

    /// <summary>x's floats of one column block, held in registers, and the fetch of a step's 16 slots from them.</summary>
    interface IBlockX<TSelf> where TSelf : struct, IBlockX<TSelf>
    {
        static abstract int Width { get; }
        static abstract TSelf Load(float* x);
        /// <summary>x at the 16 block columns in q (each below <see cref="Width"/>).</summary>
        Vector512<float> Fetch(Vector512<int> q);
    }

    /// <summary>
    /// 128 columns in eight registers: four permutes (each reads bits 0–4 of q), then masked blends pick between the
    /// pairs of quarters (q &gt; 31 in the low half, q &gt; 95 in the high half) and between the halves (q &gt; 63).
    /// </summary>
    struct Block128 : IBlockX<Block128>
    {
        Vector512<float> _x0, _x1, _x2, _x3, _x4, _x5, _x6, _x7;

        public static int Width => SellPackedMatrix.WideBlock;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Block128 Load(float* x) => new()
        {
            _x0 = Vector512.Load(x), _x1 = Vector512.Load(x + 16), _x2 = Vector512.Load(x + 32), _x3 = Vector512.Load(x + 48),
            _x4 = Vector512.Load(x + 64), _x5 = Vector512.Load(x + 80), _x6 = Vector512.Load(x + 96), _x7 = Vector512.Load(x + 112),
        };

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly Vector512<float> Fetch(Vector512<int> q)
        {
            // Each blend's mask is one compare of q against a constant (q ≥ 32 picks the second pair of quarters in the
            // low half, q ≥ 96 in the high half, q ≥ 64 the high half): one instruction each, where testing bits 5 and
            // 6 took an AND and a test for each.
            var low = Vector512.ConditionalSelect(Vector512.GreaterThan(q, Vector512.Create(31)).AsSingle(),
                Avx512F.PermuteVar16x32x2(_x2, q, _x3), Avx512F.PermuteVar16x32x2(_x0, q, _x1));
            var high = Vector512.ConditionalSelect(Vector512.GreaterThan(q, Vector512.Create(95)).AsSingle(),
                Avx512F.PermuteVar16x32x2(_x6, q, _x7), Avx512F.PermuteVar16x32x2(_x4, q, _x5));
            return Vector512.ConditionalSelect(Vector512.GreaterThan(q, Vector512.Create(63)).AsSingle(), high, low);
        }
    }

    /// <summary>64 columns in four registers: two permutes and one blend on q &gt; 31.</summary>
    struct Block64 : IBlockX<Block64>
    {
        Vector512<float> _x0, _x1, _x2, _x3;

        public static int Width => SellPackedMatrix.NarrowBlock;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Block64 Load(float* x) => new()
        {
            _x0 = Vector512.Load(x), _x1 = Vector512.Load(x + 16), _x2 = Vector512.Load(x + 32), _x3 = Vector512.Load(x + 48),
        };

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly Vector512<float> Fetch(Vector512<int> q) =>
            Vector512.ConditionalSelect(Vector512.GreaterThan(q, Vector512.Create(31)).AsSingle(),
                Avx512F.PermuteVar16x32x2(_x2, q, _x3), Avx512F.PermuteVar16x32x2(_x0, q, _x1));
    }

    /// <summary>The 16 row-lane sums of one slice, blocks of <typeparamref name="TBlock"/>'s width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Vector512<float> Slice<TBlock>(byte* control, byte* controlEnd, byte* indices, float* values, float* x, float* masks)
        where TBlock : struct, IBlockX<TBlock>
    {
        var rows = Vector512<float>.Zero;
        while (control < controlEnd)
        {
            // A record: t, the block (two bytes), 16 placements, t step widths.
            nuint t = control[0];
            var block = TBlock.Load(x + (nuint)TBlock.Width * *(ushort*)(control + 1));
            byte* placement = control + 3;
            control += SellPackedMatrix.RecordBytes;
            var acc = Vector512<float>.Zero;
            for (byte* end = control + t; control < end; control++)
            {
                nuint k = *control;
                Sse.PrefetchNonTemporal((byte*)values + PrefetchBytes);
                Sse.PrefetchNonTemporal(indices + PrefetchBytes / 4);
                var v = Vector512.Load(values) & Vector512.Load((float*)((byte*)masks + (k << 6)));
                acc = Vector512.FusedMultiplyAdd(v, block.Fetch(Avx512F.ConvertToVector512Int32(Vector128.Load(indices))), acc);
                values = (float*)((byte*)values + (k << 2)); indices += k;
            }
            // block lane i's sum to row lane j: rows[j] += acc[placement[j]]
            rows += Avx512F.PermuteVar16x32(acc, Avx512F.ConvertToVector512Int32(Vector128.Load(placement)));
        }
        return rows;
    }

    /// <summary>One slice, entries only: for x with infinities or NaN, and without AVX-512.</summary>
    static void SliceExact(byte* control, byte* controlEnd, int blockWidth, byte* indices, float* values, float* x, float* sums)
    {
        const int H = SellPackedMatrix.SliceHeight;
        for (int j = 0; j < H; j++) sums[j] = 0;
        float* blockSums = stackalloc float[H];
        while (control < controlEnd)
        {
            int t = control[0];
            float* xb = x + blockWidth * *(ushort*)(control + 1);
            byte* placement = control + 3;
            control += SellPackedMatrix.RecordBytes;
            for (int i = 0; i < H; i++) blockSums[i] = 0;
            for (int u = 0; u < t; u++)
            {
                int k = *control++;
                for (int i = 0; i < k; i++) blockSums[i] += values[i] * xb[indices[i]];
                values += k; indices += k;
            }
            for (int j = 0; j < H; j++) sums[j] += blockSums[placement[j]];
        }
    }
}
