using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Sampled dense-dense matrix product: out[p] = Σ_t A[i,t]·B[j,t] = (A·Bᵀ)[i,j] for every nonzero p = (i, j) of S,
/// with S (M×K) in CSR, A (M×D) and B (K×D) row-major; out is aligned with S.Values. This is a sparse weight's
/// gradient: for Y = S·X, dS = (dY·Xᵀ) sampled at S's pattern, i.e. A = dY (M×N), B = X (K×N), D = N.
/// Layout: both operands row-major so each nonzero is a dot product of two contiguous rows. Eight (then four)
/// nonzeros of a row are done together so each load of A[i, t..t+16] feeds eight FMAs and the eight horizontal sums
/// share one transposing reduction. Rows are split into chunks of equal nnz.
/// </summary>
public static unsafe class Sddmm
{
    public static void Compute(CsrMatrix s, ReadOnlySpan<float> a, ReadOnlySpan<float> b, int d, Span<float> output)
    {
        if (d < 0) throw new ArgumentOutOfRangeException(nameof(d), d, "inner dimension must be non-negative");
        if (a.Length < (long)s.Rows * d) throw new ArgumentException($"A has {a.Length} elements, expected M*D = {s.Rows}*{d}", nameof(a));
        if (b.Length < (long)s.Cols * d) throw new ArgumentException($"B has {b.Length} elements, expected K*D = {s.Cols}*{d}", nameof(b));
        if (output.Length < s.NonZeroCount) throw new ArgumentException($"output has {output.Length} elements, expected nnz = {s.NonZeroCount}", nameof(output));
        fixed (int* rp = s.RowPointers)
        fixed (float* pa = a, pb = b, po = output)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) Run(s.Rows, s.Cols, rp, ci, pa, pb, d, po);
            else fixed (int* ci = s.ColumnIndices32) Run(s.Rows, s.Cols, rp, ci, pa, pb, d, po);
        }
    }

    struct Args<TIndex> where TIndex : unmanaged
    {
        public int* RowPointers;
        public TIndex* Index;
        public float* A, B, Output;
        public int Rows, Cols, D, LdB, Chunks, KBlock;
        // BodyPerThreadCopy's tag for this call's copies of B (AlignedPanels.CopyToThreadBuffer).
        public long Call;
    }

    /// <summary>
    /// Columns of S (rows of B) per block when B is beyond the L2 budget (K·D floats > 768 KiB, e.g. 768×512 or
    /// 3072×128): every row of a chunk takes its nonzeros in one 256-row block of B (≤ 512 KiB at D = 512) before the
    /// next. Measured on Zen 4, one thread, 90% sparse: 768×3072 D = 128 1.45–1.5 ms against 1.7–2.2 ms unblocked;
    /// D = 512: 768×768 1.23–1.26 ms against 1.31–1.39 ms (aligned operands), 768×3072 5.95–6.0 against 6.8–7.1 ms.
    /// Below the budget blocking measured 0–10% slower (shorter runs of nonzeros, more tails), and with more rows than
    /// columns (3072×768, D = 512: 6.3–7.4 ms against 6.0) too: each block pass re-reads the chunk's rows of A, then
    /// the larger operand (re-measured with the dot products inlined: 5.86 ms with 256-row blocks, 5.56 with 384,
    /// against 5.52–5.58 unblocked). Splitting D instead (B in panels of 64–256 columns, each pass adding into out, one
    /// pass at a time over all rows) measured no better either (scratch, one thread): 768×768 D = 512 1.34–1.40 ms
    /// against 1.32, 3072×768 D = 512 6.0–7.4 against 5.6, 768×3072 D = 512 6.6–7.0 against 6.0 ms; L1-sized tiles
    /// (32–128 columns by 48–192 rows) read in place 2–2.5x slower. (Tiles copied aligned into a per-thread buffer, with
    /// each row's 64 columns of A held in registers, did win: <see cref="SddmmTiled"/>, which Run sends D a multiple of
    /// 64 to, measured 1.63 against 2.53–2.70 ms at 3072×768, D = 256, 90% sparse.) Each D pass pays one more reduction and output update per
    /// nonzero, and the kernel's speed hardly depends on where B's rows come from: ~45 GFLOP/s per core with B in L2,
    /// 42–43 from L3, 64 only with all of B in L1 (80% dense rows; every B element is used by one FMA, so one 64-byte
    /// load per FMA either way).
    /// </summary>
    const int KBlock = 256;
    const int MaxBlockedRows = 16384;

    internal static void Run<TIndex>(int rows, int cols, int* rp, TIndex* index, float* a, float* b, int d, float* output)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (rows == 0) return;
        var args = new Args<TIndex>
        {
            RowPointers = rp, Index = index, A = a, B = b, Output = output, Rows = rows, Cols = cols, D = d, LdB = d,
            // D = 1 costs a scalar multiply per nonzero, like SpMV: parallel from the same 16K (see CsrSpmm).
            Chunks = SpmmMicroKernel.ChunkCount(rows, ((long)rp[rows] + rows) * Math.Max(d, 1), d == 1 ? 16_384 : 131_072),
        };
        if (SddmmTiled.Takes(rp[rows], cols, d))
        {
            SddmmTiled.Run(rows, cols, rp, index, a, b, d, output);
            return;
        }
        // B's rows are loaded once per nonzero of their column: aligned (one panel of all D columns) when that pays.
        bool pack = AlignedPanels.Pays(rp[rows], cols, d) && !AlignedPanels.AlreadyAligned(b, d, d);
        int ld = pack ? AlignedPanels.Ld(d) : d;
        args.KBlock = d >= 16 && cols > 2 * KBlock && cols >= rows && (long)cols * ld * 4 > 786432 ? KBlock : cols;
        int blocks = args.KBlock > 0 ? (cols + args.KBlock - 1) / args.KBlock : 1;
        if (pack && args.Chunks > 1 && (blocks > 1 ? d >= 256 : (long)cols * ld * 4 <= 786432))
        {
            // On several threads each copies the blocks of B it reads into its own aligned buffer: a shared copy of
            // all of B is written half by each core and then read whole by both, across cores. Measured (scratch,
            // 2 threads, 90% sparse, the two alternated 8 times in one process, best per-thread/best shared): B
            // unblocked 768×768 D = 128 0.89, 3072×768 D = 128 0.96; K-blocked 768×768 D = 512 0.95, 768×3072 D = 512
            // 0.98 (medians 0.96); but K-blocked 768×3072 D = 128 1.11 (its 128 KiB blocks are copied by both threads
            // for 12 short runs of nonzeros per row), so blocks of D < 256 keep the shared copy.
            args.Call = AlignedPanels.NextCall();
            args.LdB = ld;
            KernelThreads.For(blocks * args.Chunks, ref args, &BodyPerThreadCopy);
            return;
        }
        if (pack)
        {
            args.B = AlignedPanels.Pack(b, cols, d, d);
            args.LdB = ld;
        }
        KernelThreads.For(args.Chunks, ref args, &Body);
    }

    /// <summary>
    /// Work item = K block, then chunk of rows: the nonzeros of the chunk's rows whose columns fall in the block,
    /// against this thread's copy of the block (made once per block per thread). Each row's run of nonzeros in the
    /// block is found by binary search over its sorted columns, so items are independent (outputs are disjoint).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void BodyPerThreadCopy<TIndex>(ref Args<TIndex> a, int item) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int block = item / a.Chunks, c = item % a.Chunks;
        int first = SpmmMicroKernel.ChunkStart(rp, a.Rows, c, a.Chunks), last = SpmmMicroKernel.ChunkStart(rp, a.Rows, c + 1, a.Chunks);
        int d = a.D, ldb = a.LdB;
        int k0 = block * a.KBlock, kEnd = Math.Min(a.Cols, k0 + a.KBlock);
        bool whole = k0 == 0 && kEnd == a.Cols;
        // b + j·ldb is row j of B in this thread's copy of the block (whose row 0 is B's row k0).
        float* b = AlignedPanels.CopyToThreadBuffer(a.B + (long)k0 * d, kEnd - k0, d, d, a.Call, block) - (long)k0 * ldb;
        for (int i = first; i < last; i++)
        {
            float* ai = a.A + (long)i * d;
            int p = rp[i], end = rp[i + 1];
            if (!whole)
            {
                p = LowerBound(a.Index, p, end, k0);
                end = ScanTo(a.Index, p, end, kEnd);
            }
            RowRun(ai, b, ldb, a.Index, p, end, d, a.Output);
        }
    }

    /// <summary>The first p in [lo, hi) with index[p] ≥ column (hi if none); index[lo..hi) is sorted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int LowerBound<TIndex>(TIndex* index, int lo, int hi, int column) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (int.CreateTruncating(index[mid]) < column) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// The first p in [lo, hi) with index[p] ≥ column (hi if none), index[lo..hi) sorted, scanning forward from lo
    /// sixteen (or eight) indices per compare: a row's run in one K block is short (~26 nonzeros at 90% sparsity), so
    /// its end is found in two or three predictable steps where a binary search over the rest of the row (up to ~300
    /// nonzeros) takes 8–9 unpredictable branches. Measured (scratch, 90% sparse, against LowerBound, alternated in one
    /// process, best of 8–10 rounds): 768×3072 D = 128 (K-blocked over the shared copy) 1.26 against 1.37 ms on one
    /// thread, 1.10 against 1.15 ms on two; D = 512 (per-thread copies, one search per row and block) 1–2%.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int ScanTo<TIndex>(TIndex* index, int lo, int hi, int column) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (Vector256.IsHardwareAccelerated && typeof(TIndex) == typeof(ushort))
        {
            if (column > ushort.MaxValue) return hi;
            var limit = Vector256.Create((ushort)column);
            for (; lo + 16 <= hi; lo += 16)
            {
                uint below = Vector256.LessThan(Vector256.Load((ushort*)index + lo), limit).ExtractMostSignificantBits();
                if (below != 0xFFFF) return lo + BitOperations.TrailingZeroCount(~below);
            }
        }
        else if (Vector256.IsHardwareAccelerated && typeof(TIndex) == typeof(int))
        {
            var limit = Vector256.Create(column);
            for (; lo + 8 <= hi; lo += 8)
            {
                uint below = Vector256.LessThan(Vector256.Load((int*)index + lo), limit).ExtractMostSignificantBits();
                if (below != 0xFF) return lo + BitOperations.TrailingZeroCount(~below);
            }
        }
        while (lo < hi && int.CreateTruncating(index[lo]) < column) lo++;
        return lo;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body<TIndex>(ref Args<TIndex> a, int chunk) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int first = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk + 1, a.Chunks);
        int d = a.D, ldb = a.LdB;
        if (d == 1)
        {
            // A rank-1 product sampled at the nonzeros: one multiply each, no dot-product machinery. The pointers are
            // locals: read through `a` the JIT reloads them after every store (the store might alias the struct).
            float* av = a.A, bv = a.B, output = a.Output;
            TIndex* index = a.Index;
            for (int i = first; i < last; i++)
                SpmmMicroKernel.ScaledLookup(av[i], index + rp[i], rp[i + 1] - rp[i], bv, output + rp[i]);
            return;
        }
        if (a.KBlock < a.Cols)
        {
            // Per-row cursors advance through the sorted columns, one block of B's rows at a time; at most
            // MaxBlockedRows rows at once (the cursors live on the stack).
            int* cursor = stackalloc int[Math.Min(last - first, MaxBlockedRows)];
            for (int f = first; f < last; f += MaxBlockedRows)
                BlockedRows(ref a, f, Math.Min(last, f + MaxBlockedRows), cursor);
            return;
        }
        for (int i = first; i < last; i++)
        {
            float* ai = a.A + (long)i * d;
            RowRun(ai, a.B, ldb, a.Index, rp[i], rp[i + 1], d, a.Output);
        }
    }

    /// <summary>Rows [first, last) of the K-blocked product; <paramref name="cursor"/> has room for last − first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void BlockedRows<TIndex>(ref Args<TIndex> a, int first, int last, int* cursor) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int d = a.D, ldb = a.LdB;
        for (int i = first; i < last; i++) cursor[i - first] = rp[i];
        for (int k0 = 0; k0 < a.Cols; k0 += a.KBlock)
        {
            int kEnd = k0 + a.KBlock;
            float* b = a.B;
            for (int i = first; i < last; i++)
            {
                float* ai = a.A + (long)i * d;
                int p = cursor[i - first], end = ScanTo(a.Index, p, rp[i + 1], kEnd);
                RowRun(ai, b, ldb, a.Index, p, end, d, a.Output);
                cursor[i - first] = end;
            }
        }
    }

    /// <summary>
    /// output[p] = A row · B row index[p] for p in [p, end): eight at a time, then four, then one by one.
    /// Dot8, Dot4 and Dot are inlined here (and this into the three bodies): as calls, each group of eight passed 11
    /// arguments (three on the stack), saved and restored four registers, reloaded the permutation constant and ended
    /// in vzeroupper, about 30 instructions per eight nonzeros, as many as the FMAs themselves at D = 16. Measured
    /// (scratch, 2 threads, 90% sparse, best of 12 rounds, called/inlined Dot8 alternated in one process): D = 16
    /// 0.093/0.077 ms (768×768), 0.168/0.135 (3072×768), 0.169/0.135 (768×3072); D = 128 0.181/0.167, 0.689/0.621,
    /// 0.81/0.78; D = 512 0.705/0.675, 2.90/2.83, 3.18/3.07 ms. Inlining Dot4 and Dot as well: another 1–3% (3072×768
    /// D = 16 0.134/0.130, 768×3072 D = 128 0.750/0.733, D = 512 2.89/2.83 ms). Tried without gain (scratch): software
    /// prefetch of the next group's eight rows (first line of each: 0–4% slower; more lines: 5–50% slower), sixteen
    /// nonzeros per A load (16 accumulators: 1–15% slower), row strides padded off 2 KiB at D = 512 (no change).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void RowRun<TIndex>(float* ai, float* b, int ldb, TIndex* index, int p, int end, int d, float* output)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (Vector512.IsHardwareAccelerated && d % 16 == 0)
            for (; p + 7 < end; p += 8)
                Dot8(ai, b + (long)int.CreateTruncating(index[p]) * ldb, b + (long)int.CreateTruncating(index[p + 1]) * ldb,
                    b + (long)int.CreateTruncating(index[p + 2]) * ldb, b + (long)int.CreateTruncating(index[p + 3]) * ldb,
                    b + (long)int.CreateTruncating(index[p + 4]) * ldb, b + (long)int.CreateTruncating(index[p + 5]) * ldb,
                    b + (long)int.CreateTruncating(index[p + 6]) * ldb, b + (long)int.CreateTruncating(index[p + 7]) * ldb, d, output + p);
        for (; p + 3 < end; p += 4)
            Dot4(ai, b + (long)int.CreateTruncating(index[p]) * ldb, b + (long)int.CreateTruncating(index[p + 1]) * ldb,
                b + (long)int.CreateTruncating(index[p + 2]) * ldb, b + (long)int.CreateTruncating(index[p + 3]) * ldb, d, output + p);
        for (; p < end; p++)
            output[p] = Dot(ai, b + (long)int.CreateTruncating(index[p]) * ldb, d);
    }

    /// <summary>
    /// Eight dot products of x with b0..b7 (d a multiple of 16): each load of x feeds eight FMAs into eight
    /// accumulators, and the eight horizontal sums come out of one transposing reduction (pairs of accumulators
    /// folded into one register per step: 512-bit halves, then 128-bit lanes, then within lanes) instead of eight
    /// separate ones, about 3 shuffles and adds per dot product instead of 5–6. Measured (scratch, one thread, 90%
    /// sparse, against Dot4 alone): D = 16 0.08 against 0.105 ms (768×768), 0.30–0.31 against 0.41 ms (3072×768);
    /// D = 128 1.34 against 1.41–1.42 ms (3072×768), 1.38 against 1.52–1.53 ms (768×3072); D = 512 0–8% faster.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Dot8(float* x, float* b0, float* b1, float* b2, float* b3, float* b4, float* b5, float* b6, float* b7, int d, float* output)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int t = 0; t < d; t += 16)
        {
            var xv = Vector512.Load(x + t);
            c0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b0 + t), c0);
            c1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b1 + t), c1);
            c2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b2 + t), c2);
            c3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b3 + t), c3);
            c4 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b4 + t), c4);
            c5 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b5 + t), c5);
            c6 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b6 + t), c6);
            c7 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b7 + t), c7);
        }
        Reduce8(c0, c1, c2, c3, c4, c5, c6, c7).Store(output);
    }

    /// <summary>[Σc0, Σc1, …, Σc7]: eight horizontal sums in one transposing reduction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Reduce8(Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3,
        Vector512<float> c4, Vector512<float> c5, Vector512<float> c6, Vector512<float> c7)
    {
        // Step 1 (FoldPair) for pairs (i, j) of the inputs.
        var s01 = FoldPair(c0, c1);
        var s23 = FoldPair(c2, c3);
        var s45 = FoldPair(c4, c5);
        var s67 = FoldPair(c6, c7);
        // Step 2: lane m of v0123 holds four partial sums of c_m (m = 0..3); v4567 likewise for c_{4+m}.
        var v0123 = FoldQuad(s01, s23);
        var v4567 = FoldQuad(s45, s67);
        // Step 3, within lanes: w lane m = [c_m(0+2), c_{4+m}(0+2), c_m(1+3), c_{4+m}(1+3)].
        var w = Avx512F.UnpackLow(v0123, v4567) + Avx512F.UnpackHigh(v0123, v4567);
        // Step 4: lane m = [Σc_m, Σc_{4+m}, …]; gather elements 0 of each lane then elements 1.
        var r = w + Avx512F.Permute4x32(w, 0b01_00_11_10);
        var sums = Avx512F.PermuteVar16x32(r, Vector512.Create(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0));
        return sums.GetLower();
    }

    /// <summary>[ci.L0+ci.L2, ci.L1+ci.L3, cj.L0+cj.L2, cj.L1+cj.L3] (128-bit lanes L0..L3): the first step of the reductions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> FoldPair(Vector512<float> ci, Vector512<float> cj) =>
        Avx512F.Shuffle4x128(ci, cj, 0b01_00_01_00) + Avx512F.Shuffle4x128(ci, cj, 0b11_10_11_10);

    /// <summary>From FoldPair(c0, c1) and FoldPair(c2, c3): lane m holds four partial sums of c_m.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> FoldQuad(Vector512<float> s01, Vector512<float> s23) =>
        Avx512F.Shuffle4x128(s01, s23, 0b10_00_10_00) + Avx512F.Shuffle4x128(s01, s23, 0b11_01_11_01);

    /// <summary>[Σc0, Σc1, Σc2, Σc3]: four horizontal sums in one transposing reduction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Reduce4(Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3)
    {
        // Lane m of v holds four partial sums of c_m (Reduce8's first two steps); two in-lane steps put each lane's
        // total in its element 0.
        var v = FoldQuad(FoldPair(c0, c1), FoldPair(c2, c3));
        var w = v + Avx512F.Permute4x32(v, 0b01_00_11_10);
        var r = w + Avx512F.Permute4x32(w, 0b10_11_00_01);
        return Avx512F.PermuteVar16x32(r, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Dot4(float* x, float* b0, float* b1, float* b2, float* b3, int d, float* output)
    {
        int t = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Vector512.IsHardwareAccelerated && d >= 16)
        {
            var c0 = Vector512<float>.Zero; var c1 = Vector512<float>.Zero;
            var c2 = Vector512<float>.Zero; var c3 = Vector512<float>.Zero;
            for (; t + 16 <= d; t += 16)
            {
                var xv = Vector512.Load(x + t);
                c0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b0 + t), c0);
                c1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b1 + t), c1);
                c2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b2 + t), c2);
                c3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b3 + t), c3);
            }
            if (Avx.IsSupported)
            {
                // The four horizontal sums at once: fold 512 → 256 bits, then two rounds of pairwise adds leave
                // [Σc0, Σc1, Σc2, Σc3] in each 128-bit half (a third of the shuffles of four separate sums).
                var h0 = c0.GetLower() + c0.GetUpper();
                var h1 = c1.GetLower() + c1.GetUpper();
                var h2 = c2.GetLower() + c2.GetUpper();
                var h3 = c3.GetLower() + c3.GetUpper();
                var q = Avx.HorizontalAdd(Avx.HorizontalAdd(h0, h1), Avx.HorizontalAdd(h2, h3));
                var sums = q.GetLower() + q.GetUpper();
                s0 = sums.GetElement(0); s1 = sums.GetElement(1); s2 = sums.GetElement(2); s3 = sums.GetElement(3);
            }
            else
            {
                s0 = Vector512.Sum(c0); s1 = Vector512.Sum(c1); s2 = Vector512.Sum(c2); s3 = Vector512.Sum(c3);
            }
        }
        for (; t < d; t++)
        {
            float xv = x[t];
            s0 += xv * b0[t]; s1 += xv * b1[t]; s2 += xv * b2[t]; s3 += xv * b3[t];
        }
        output[0] = s0; output[1] = s1; output[2] = s2; output[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(float* x, float* y, int d)
    {
        int t = 0;
        float s = 0;
        if (Vector512.IsHardwareAccelerated && d >= 16)
        {
            var c = Vector512<float>.Zero;
            for (; t + 16 <= d; t += 16) c = Vector512.FusedMultiplyAdd(Vector512.Load(x + t), Vector512.Load(y + t), c);
            s = Vector512.Sum(c);
        }
        for (; t < d; t++) s += x[t] * y[t];
        return s;
    }
}
