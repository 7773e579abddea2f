using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Token-major kernels for a Linear layer whose weight W (Out × In) is N:M along In: every group of M consecutive
/// inputs of an output row keeps N weights, w[o, g, s] at input g·M + idx[o, g, s] (s &lt; N, idx ascending).
/// Activations stay as the model holds them (rows = token positions): x (rows, In), y and dy (rows, Out).
///
/// Both kernels put 16 consecutive outputs in the lanes of a vector, so the weights of one (group, slot) of 16
/// outputs are one vector load from a packed panel: <c>packed[((o / 16)·S + q)·16 + o % 16]</c> for stored slot
/// q = g·N + s of row o (S = In/M·N slots per row; rows past Out are zero). The input each lane needs,
/// x[t, g·M + idx], is picked from a broadcast of the group's M inputs by a permute whose control is the lane's
/// in-group index (<c>controls</c>, the same panel layout, fixed by the structure). Per multiply-add vector: one
/// permute and one FMA, and the permutes share the vector pipes with the FMAs: on Zen 5, one thread, a loop of 12
/// independent FMAs ran 7.1 G FMA/s alone and 4.2 G/s with a permute feeding each (and 6 adds per 12); these kernels
/// reach about 55–65% of the GEMM's multiply-add rate (2:4 forward 1.05–1.4x the dense GEMM, dW 1.0–1.2x; CPU
/// time on a loaded machine).
///   Forward:          y[t, o] = Σ_q w[o, q] · x[t, g·M + idx]             8 tokens × 32 outputs in 16 registers
///   Weight gradient:  dW[o, q] = Σ_t dy[t, o] · x[t, g·M + idx]           48 outputs × 4 slots in 12 registers,
///                                                                          their 12 permute controls held too
/// The input gradient dx = dy · W has no such form (its reduction runs over outputs, whose patterns differ lane by
/// lane); the layer runs it through <see cref="Nm24Gradients"/> for 2:4 (tokens in the lanes; dW too, faster there
/// than the permute tiles here) and otherwise as a dense GEMM on W expanded with zeros (`NmLinearWeight.ToDense`).
/// Group sizes 2, 4, 8, 16 on AVX-512 (<see cref="Supports"/>); callers use another path otherwise.
/// </summary>
public static unsafe class NmLinear
{
    /// <summary>Outputs per vector (lanes).</summary>
    public const int Lanes = 16;
    /// <summary>Token rows per block of the weight gradient: the block's x is repacked group-major (L2-sized) and
    /// its dy columns of one 48-output panel (128 × 192 B = 24 KiB) stay in L1 while every slot tile uses them.</summary>
    const int GradientRows = 128;

    /// <summary>Whether the vector kernels run for group size <paramref name="m"/> on this machine.</summary>
    public static bool Supports(int m) => Avx512F.IsSupported && Avx512DQ.IsSupported && (m == 2 || m == 4 || m == 8 || m == 16);

    /// <summary>Floats (or ints) of a packed panel for Out outputs and <paramref name="slotsPerRow"/> stored slots per row.</summary>
    public static long PanelLength(int outFeatures, int slotsPerRow) => (long)(outFeatures + Lanes - 1) / Lanes * Lanes * slotsPerRow;

    /// <summary>Workspace floats <see cref="WeightGradient"/> needs: the group-major copy of a block of x.</summary>
    public static long GradientWorkspace(int rows, int inFeatures) => (long)Math.Min(rows, GradientRows) * inFeatures;

    /// <summary>packed (panel layout) = values (Out × S, row-major); lanes past Out zero.</summary>
    public static void Pack(ReadOnlySpan<float> values, int outFeatures, int slotsPerRow, Span<float> packed) =>
        PanelTransposes(values, outFeatures, slotsPerRow, packed, unpack: false);

    /// <summary>values (Out × S, row-major) += packed (panel layout).</summary>
    public static void UnpackAdd(ReadOnlySpan<float> packed, int outFeatures, int slotsPerRow, Span<float> values) =>
        PanelTransposes(values, outFeatures, slotsPerRow, packed, unpack: true);

    struct PanelArgs { public float* Values, Packed; public int Out, Slots; }

    /// <summary>Values below which packing runs on the calling thread only (a region costs a few µs).</summary>
    const long ParallelPackMin = 1 << 16;

    /// <summary>
    /// Each 16-output block's panel (S × 16) is the transpose of its 16 value rows (16 × S): packing and unpacking
    /// run through the 8×8 register transposes (an element-by-element copy cost about 1.7 ns per value, a few per
    /// cent of a 2:4 training step), one block per work item.
    /// </summary>
    static void PanelTransposes(ReadOnlySpan<float> values, int outFeatures, int slotsPerRow, ReadOnlySpan<float> packed, bool unpack)
    {
        Check.Length(values, (long)outFeatures * slotsPerRow, nameof(values));
        Check.Length(packed, PanelLength(outFeatures, slotsPerRow), nameof(packed));
        if (outFeatures == 0 || slotsPerRow == 0) return;
        int blocks = (outFeatures + Lanes - 1) / Lanes;
        fixed (float* v = values, p = packed)
        {
            var a = new PanelArgs { Values = v, Packed = p, Out = outFeatures, Slots = slotsPerRow };
            bool serial = (long)outFeatures * slotsPerRow < ParallelPackMin;
            if (unpack)
            {
                if (serial) for (int b = 0; b < blocks; b++) UnpackBlock(ref a, b);
                else KernelThreads.For(blocks, ref a, &UnpackBlock);
            }
            else
            {
                if (serial) for (int b = 0; b < blocks; b++) PackBlock(ref a, b);
                else KernelThreads.For(blocks, ref a, &PackBlock);
            }
        }
    }

    /// <summary>Panel b (S × 16) = the block's value rows (lanes × S)ᵀ, lanes past Out zero.</summary>
    static void PackBlock(ref PanelArgs a, int b)
    {
        int lanes = Math.Min(Lanes, a.Out - b * Lanes);
        float* panel = a.Packed + (long)b * a.Slots * Lanes;
        if (lanes < Lanes) new Span<float>(panel, a.Slots * Lanes).Clear();
        Transpose.Serial(a.Values + (long)b * Lanes * a.Slots, a.Slots, a.Slots, lanes, panel, Lanes);
    }

    /// <summary>The block's value rows (lanes × S) += panel b (S × 16)ᵀ.</summary>
    static void UnpackBlock(ref PanelArgs a, int b)
    {
        int lanes = Math.Min(Lanes, a.Out - b * Lanes);
        float* rows = a.Values + (long)b * Lanes * a.Slots;
        Transpose.Serial(a.Packed + (long)b * a.Slots * Lanes, Lanes, lanes, a.Slots, rows, a.Slots, add: rows);
    }

    /// <summary>controls (panel layout) = the in-group index of every stored slot; lanes past Out 0.</summary>
    public static void PackIndices(Func<long, int> index, int outFeatures, int slotsPerRow, Span<int> controls)
    {
        controls.Clear();
        for (int o = 0; o < outFeatures; o++)
            for (int q = 0; q < slotsPerRow; q++)
                controls[(o / Lanes * slotsPerRow + q) * Lanes + o % Lanes] = index((long)o * slotsPerRow + q);
    }

    // ---- forward ----------------------------------------------------------------------------------------------------

    /// <summary>
    /// y (rows, Out) = x (rows, In) · Wᵀ + bias (Out, or empty) + residual (rows, Out, or empty; may be y itself), W
    /// given packed with its controls. Bias and residual are added to each finished tile (product + residual, then + bias, as the dense Linear).
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, int inFeatures, int outFeatures, int n, int m,
        ReadOnlySpan<float> packed, ReadOnlySpan<int> controls, ReadOnlySpan<float> bias, ReadOnlySpan<float> residual, Span<float> y)
    {
        CheckSupported(m);
        int slots = inFeatures / m * n;
        Check.Length(x, (long)rows * inFeatures, nameof(x));
        Check.Length(y, (long)rows * outFeatures, nameof(y));
        Check.Length(packed, PanelLength(outFeatures, slots), nameof(packed));
        Check.Length(controls, PanelLength(outFeatures, slots), nameof(controls));
        if (!bias.IsEmpty) Check.Length(bias, outFeatures, nameof(bias));
        if (!residual.IsEmpty) Check.Length(residual, (long)rows * outFeatures, nameof(residual));
        if (rows == 0 || outFeatures == 0) return;
        fixed (float* px = x, pw = packed, pb = bias, pr = residual, py = y)
        fixed (int* pc = controls)
        {
            var a = new ForwardArgs
            {
                X = px, W = pw, C = pc, Bias = pb, Residual = pr, Y = py, Rows = rows, In = inFeatures, Out = outFeatures,
                N = n, Groups = inFeatures / m, Slots = slots,
                // The product's partial sums over a block of In wait in y for the next block: not where the residual
                // still has to be read.
                KGroups = residual.Overlaps(y) ? inFeatures / m : Math.Max(1, KBlockInputs / m),
            };
            a.Tiles = (rows + TileRows - 1) / TileRows;
            a.Chunks = SpmmMicroKernel.ChunkCount(a.Tiles, (long)rows * outFeatures * slots);
            switch (m)
            {
                case 2: KernelThreads.For(a.Chunks, ref a, &ForwardBody<Group2>); break;
                case 4: KernelThreads.For(a.Chunks, ref a, &ForwardBody<Group4>); break;
                case 8: KernelThreads.For(a.Chunks, ref a, &ForwardBody<Group8>); break;
                default: KernelThreads.For(a.Chunks, ref a, &ForwardBody<Group16>); break;
            }
        }
    }

    const int TileRows = 8;
    /// <summary>Inputs per block of In in the forward tiles (1,024: one block for a 768-wide layer, three for 3,072).</summary>
    const int KBlockInputs = 1024;

    struct ForwardArgs
    {
        public float* X, W, Bias, Residual, Y;
        public int* C;
        public int Rows, In, Out, N, Groups, Slots, Tiles, Chunks, KGroups;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ForwardBody<TGroup>(ref ForwardArgs a, int chunk) where TGroup : struct, IGroupBroadcast
    {
        int firstTile = (int)((long)a.Tiles * chunk / a.Chunks), lastTile = (int)((long)a.Tiles * (chunk + 1) / a.Chunks);
        int t0 = firstTile * TileRows, t1 = Math.Min(a.Rows, lastTile * TileRows);
        int fullBlocks = a.Out / Lanes, blocks = (a.Out + Lanes - 1) / Lanes;
        long panel = (long)a.Slots * Lanes;
        // Pairs of full 16-output blocks over 8-token tiles, In cut into blocks of KBlockInputs (the 32 outputs' packed
        // weights and controls of one block, 2 · 1,024 / M · N · 128 B = 128 KiB at 2:4, stay in L2 while every tile of
        // the chunk uses them; y is re-read per block after the first); the rest (a last single or partial block, a
        // last tile of fewer than 8 tokens) one token and one block at a time over all of In.
        for (int g0 = 0; g0 < a.Groups; g0 += a.KGroups)
        {
            int gCount = Math.Min(a.KGroups, a.Groups - g0);
            for (int b = 0; b + 2 <= fullBlocks; b += 2)
                for (int t = t0; t + TileRows <= t1; t += TileRows)
                    Tile8x32<TGroup>(ref a, t, b, panel, g0, gCount);
        }
        int tailStart = t0 + (t1 - t0) / TileRows * TileRows;
        for (int b = 0; b + 2 <= fullBlocks; b += 2)
            for (int t = tailStart; t < t1; t++)
            {
                Row16<TGroup>(ref a, t, b, panel);
                Row16<TGroup>(ref a, t, b + 1, panel);
            }
        for (int b = fullBlocks / 2 * 2; b < blocks; b++)
            for (int t = t0; t < t1; t++)
                Row16<TGroup>(ref a, t, b, panel);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Start(ref ForwardArgs a, int t, int o, bool add) =>
        add ? Vector512.Load(a.Y + (long)t * a.Out + o) : Vector512<float>.Zero;

    /// <summary>y[t, o .. o+16) = acc (+ residual, then + bias, after the last block of In: the order of the dense
    /// Linear, the product summed before the larger residual joins it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Finish(ref ForwardArgs a, int t, int o, Vector512<float> acc, bool last)
    {
        if (last)
        {
            if (a.Residual != null) acc += Vector512.Load(a.Residual + (long)t * a.Out + o);
            if (a.Bias != null) acc += Vector512.Load(a.Bias + o);
        }
        acc.Store(a.Y + (long)t * a.Out + o);
    }

    /// <summary>y[t .. t+8, 16b .. 16b+32) over groups g0 .. g0+gCount (onto y after the first block): 16 accumulators; per group 8 broadcasts, per slot 2 weight and 2 control
    /// loads, 16 permutes and 16 FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile8x32<TGroup>(ref ForwardArgs a, int t, int b, long panel, int g0, int gCount) where TGroup : struct, IGroupBroadcast
    {
        int o = b * Lanes, ld = a.Out, ldx = a.In, n = a.N;
        bool add = g0 > 0;
        Vector512<float> a00 = Start(ref a, t, o, add), a01 = Start(ref a, t, o + 16, add), a10 = Start(ref a, t + 1, o, add), a11 = Start(ref a, t + 1, o + 16, add);
        Vector512<float> a20 = Start(ref a, t + 2, o, add), a21 = Start(ref a, t + 2, o + 16, add), a30 = Start(ref a, t + 3, o, add), a31 = Start(ref a, t + 3, o + 16, add);
        Vector512<float> a40 = Start(ref a, t + 4, o, add), a41 = Start(ref a, t + 4, o + 16, add), a50 = Start(ref a, t + 5, o, add), a51 = Start(ref a, t + 5, o + 16, add);
        Vector512<float> a60 = Start(ref a, t + 6, o, add), a61 = Start(ref a, t + 6, o + 16, add), a70 = Start(ref a, t + 7, o, add), a71 = Start(ref a, t + 7, o + 16, add);
        long first = (long)g0 * n * Lanes;
        float* w0 = a.W + b * panel + first, w1 = w0 + panel;
        int* c0 = a.C + b * panel + first, c1 = c0 + panel;
        int step = TGroup.Size;
        float* xr = a.X + (long)t * ldx + g0 * step;
        for (int g = 0; g < gCount; g++, xr += step)
        {
            var x0 = TGroup.Load(xr); var x1 = TGroup.Load(xr + ldx);
            var x2 = TGroup.Load(xr + 2 * ldx); var x3 = TGroup.Load(xr + 3 * ldx);
            var x4 = TGroup.Load(xr + 4 * ldx); var x5 = TGroup.Load(xr + 5 * ldx);
            var x6 = TGroup.Load(xr + 6 * ldx); var x7 = TGroup.Load(xr + 7 * ldx);
            for (int s = 0; s < n; s++, w0 += Lanes, w1 += Lanes, c0 += Lanes, c1 += Lanes)
            {
                var w = Vector512.Load(w0);
                var c = Vector512.Load(c0);
                a00 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x0, c), a00);
                a10 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x1, c), a10);
                a20 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x2, c), a20);
                a30 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x3, c), a30);
                a40 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x4, c), a40);
                a50 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x5, c), a50);
                a60 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x6, c), a60);
                a70 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x7, c), a70);
                w = Vector512.Load(w1);
                c = Vector512.Load(c1);
                a01 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x0, c), a01);
                a11 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x1, c), a11);
                a21 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x2, c), a21);
                a31 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x3, c), a31);
                a41 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x4, c), a41);
                a51 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x5, c), a51);
                a61 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x6, c), a61);
                a71 = Avx512F.FusedMultiplyAdd(w, TGroup.Pick(x7, c), a71);
            }
        }
        bool last = g0 + gCount == a.Groups;
        Finish(ref a, t, o, a00, last); Finish(ref a, t, o + 16, a01, last);
        Finish(ref a, t + 1, o, a10, last); Finish(ref a, t + 1, o + 16, a11, last);
        Finish(ref a, t + 2, o, a20, last); Finish(ref a, t + 2, o + 16, a21, last);
        Finish(ref a, t + 3, o, a30, last); Finish(ref a, t + 3, o + 16, a31, last);
        Finish(ref a, t + 4, o, a40, last); Finish(ref a, t + 4, o + 16, a41, last);
        Finish(ref a, t + 5, o, a50, last); Finish(ref a, t + 5, o + 16, a51, last);
        Finish(ref a, t + 6, o, a60, last); Finish(ref a, t + 6, o + 16, a61, last);
        Finish(ref a, t + 7, o, a70, last); Finish(ref a, t + 7, o + 16, a71, last);
    }

    /// <summary>y[t, 16b .. 16b+16) (fewer lanes for a partial last block: loads and the store masked).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row16<TGroup>(ref ForwardArgs a, int t, int b, long panel) where TGroup : struct, IGroupBroadcast
    {
        int o = b * Lanes, lanes = Math.Min(Lanes, a.Out - o);
        var mask = LaneMask(lanes);
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        float* w = a.W + b * panel;
        int* c = a.C + b * panel;
        float* xr = a.X + (long)t * a.In;
        int n = a.N;
        for (int g = 0; g < a.Groups; g++, xr += TGroup.Size)
        {
            var xg = TGroup.Load(xr);
            int s = 0;
            for (; s + 2 <= n; s += 2, w += 2 * Lanes, c += 2 * Lanes)
            {
                acc0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w), TGroup.Pick(xg, Vector512.Load(c)), acc0);
                acc1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + Lanes), TGroup.Pick(xg, Vector512.Load(c + Lanes)), acc1);
            }
            if (s < n)
            {
                acc0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w), TGroup.Pick(xg, Vector512.Load(c)), acc0);
                w += Lanes; c += Lanes;
            }
        }
        var sum = acc0 + acc1;
        if (a.Residual != null) sum += Avx512F.MaskLoad(a.Residual + (long)t * a.Out + o, mask, Vector512<float>.Zero);
        if (a.Bias != null) sum += Avx512F.MaskLoad(a.Bias + o, mask, Vector512<float>.Zero);
        Avx512F.MaskStore(a.Y + (long)t * a.Out + o, mask, sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> LaneMask(int lanes) =>
        Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create(lanes)).AsSingle();

    // ---- weight gradient --------------------------------------------------------------------------------------------

    /// <summary>
    /// packedGradient (panel layout, written) = dW at the stored positions: Σ_t dy[t, o] · x[t, g·M + idx[o, q]] for
    /// dy (rows, Out) and x (rows, In). workspace holds <see cref="GradientWorkspace"/> floats.
    /// </summary>
    public static void WeightGradient(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int rows, int inFeatures, int outFeatures,
        int n, int m, ReadOnlySpan<int> controls, Span<float> packedGradient, Span<float> workspace)
    {
        CheckSupported(m);
        int slots = inFeatures / m * n;
        Check.Length(dy, (long)rows * outFeatures, nameof(dy));
        Check.Length(x, (long)rows * inFeatures, nameof(x));
        Check.Length(controls, PanelLength(outFeatures, slots), nameof(controls));
        Check.Length(packedGradient, PanelLength(outFeatures, slots), nameof(packedGradient));
        Check.Length(workspace, GradientWorkspace(rows, inFeatures), nameof(workspace));
        packedGradient.Slice(0, (int)PanelLength(outFeatures, slots)).Clear();
        if (rows == 0 || outFeatures == 0) return;
        fixed (float* pdy = dy, px = x, pg = packedGradient, pws = workspace)
        fixed (int* pc = controls)
        {
            var a = new GradientArgs
            {
                Dy = pdy, X = px, G = pg, C = pc, Xg = pws, Out = outFeatures, In = inFeatures, N = n, M = m, Slots = slots,
                Blocks = (outFeatures + Lanes - 1) / Lanes,
            };
            // Items: panels of 3 blocks (48 outputs), each a disjoint part of the gradient.
            a.Items = (a.Blocks + 2) / 3;
            for (int t0 = 0; t0 < rows; t0 += GradientRows)
            {
                a.T0 = t0;
                a.Rows = Math.Min(GradientRows, rows - t0);
                // x's block group-major: Xg[g][t][M], so a slot tile reads its group's inputs of consecutive tokens
                // from one contiguous run instead of one cache line per token.
                RepackGroupMajor(px + (long)t0 * inFeatures, a.Rows, inFeatures, m, pws);
                switch (m)
                {
                    case 2: KernelThreads.For(a.Items, ref a, &GradientBody<Group2>); break;
                    case 4: KernelThreads.For(a.Items, ref a, &GradientBody<Group4>); break;
                    case 8: KernelThreads.For(a.Items, ref a, &GradientBody<Group8>); break;
                    default: KernelThreads.For(a.Items, ref a, &GradientBody<Group16>); break;
                }
            }
        }
    }

    struct GradientArgs
    {
        public float* Dy, X, G, Xg;
        public int* C;
        public int Out, In, N, M, Slots, Blocks, Items, T0, Rows;
    }

    struct RepackArgs { public float* X, Xg; public int Rows, In, M; }

    /// <summary>Token rows per work item of <see cref="RepackGroupMajor"/>.</summary>
    const int RepackRows = 16;

    /// <summary>xg[g][t][0..M) = x[t, g·M ..]: over the threads, 16 token rows per item (each item's writes disjoint).</summary>
    static void RepackGroupMajor(float* x, int rows, int inFeatures, int m, float* xg)
    {
        var a = new RepackArgs { X = x, Xg = xg, Rows = rows, In = inFeatures, M = m };
        int items = (rows + RepackRows - 1) / RepackRows;
        if ((long)rows * inFeatures < 1 << 16) for (int i = 0; i < items; i++) RepackItem(ref a, i);
        else KernelThreads.For(items, ref a, &RepackItem);
    }

    static void RepackItem(ref RepackArgs a, int item)
    {
        int m = a.M, inFeatures = a.In, groups = inFeatures / m;
        long stride = (long)a.Rows * m;
        int t0 = item * RepackRows, count = Math.Min(a.Rows, t0 + RepackRows) - t0;
        float* src0 = a.X + (long)t0 * inFeatures;
        float* dst0 = a.Xg + t0 * m;
        // One move per group (the element-by-element copy cost a few per cent of the 2:4 weight gradient), groups
        // outermost: each group's 16 rows land in one contiguous run of xg (16·M floats), where rows outermost wrote
        // one piece of every group's run per row, hundreds of partly written lines at a time (a perf profile of the
        // 2:4 `wide` step put 3.4% of its samples here).
        for (int g = 0; g < groups; g++, src0 += m, dst0 += stride)
        {
            float* src = src0, dst = dst0;
            switch (m)
            {
                case 2: for (int t = 0; t < count; t++, src += inFeatures, dst += 2) *(long*)dst = *(long*)src; break;
                case 4: for (int t = 0; t < count; t++, src += inFeatures, dst += 4) Vector128.Store(Vector128.Load(src), dst); break;
                case 8: for (int t = 0; t < count; t++, src += inFeatures, dst += 8) Vector256.Store(Vector256.Load(src), dst); break;
                default: for (int t = 0; t < count; t++, src += inFeatures, dst += m) Vector512.Store(Vector512.Load(src), dst); break;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GradientBody<TGroup>(ref GradientArgs a, int item) where TGroup : struct, IGroupBroadcast
    {
        int b0 = item * 3, bEnd = Math.Min(a.Blocks, b0 + 3);
        long panel = (long)a.Slots * Lanes;
        int fullEnd = Math.Min(bEnd, a.Out / Lanes);   // blocks whose 16 lanes are all real outputs
        if (fullEnd - b0 < 3)
        {
            for (int b = b0; b < bEnd; b++)
                for (int r = 0; r < a.Slots; r++) Slot16<TGroup>(ref a, b, r, panel);
            return;
        }
        // The block's dy columns of these 48 outputs, contiguous: read in place, rows Out floats apart, they would
        // fall into a few L1 sets (a row stride of 3 KiB or 12 KiB) and miss on every slot tile.
        float* dyPanel = stackalloc float[GradientRows * 48];
        for (int t = 0; t < a.Rows; t++)
        {
            float* src = a.Dy + (long)(a.T0 + t) * a.Out + b0 * Lanes;
            float* dst = dyPanel + t * 48;
            Vector512.Load(src).Store(dst);
            Vector512.Load(src + 16).Store(dst + 16);
            Vector512.Load(src + 32).Store(dst + 32);
        }
        int q = 0;
        for (; q + 4 <= a.Slots; q += 4) Tile48x4<TGroup>(ref a, dyPanel, b0, q, panel);
        for (int b = b0; b < bEnd; b++)
            for (int r = q; r < a.Slots; r++) Slot16<TGroup>(ref a, b, r, panel);
    }

    /// <summary>Slots q .. q+4 of outputs 16·b0 .. 16·b0 + 48 over the block's tokens (dy's 48 columns packed, rows of 48): per token 3 dy loads, 4 group
    /// broadcasts, 12 permutes (controls in registers) and 12 FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile48x4<TGroup>(ref GradientArgs a, float* dyPanel, int b0, int q, long panel) where TGroup : struct, IGroupBroadcast
    {
        int m = TGroup.Size;
        int* cb = a.C + b0 * panel + q * Lanes;
        var c00 = Vector512.Load(cb); var c01 = Vector512.Load(cb + panel); var c02 = Vector512.Load(cb + 2 * panel);
        var c10 = Vector512.Load(cb + 16); var c11 = Vector512.Load(cb + 16 + panel); var c12 = Vector512.Load(cb + 16 + 2 * panel);
        var c20 = Vector512.Load(cb + 32); var c21 = Vector512.Load(cb + 32 + panel); var c22 = Vector512.Load(cb + 32 + 2 * panel);
        var c30 = Vector512.Load(cb + 48); var c31 = Vector512.Load(cb + 48 + panel); var c32 = Vector512.Load(cb + 48 + 2 * panel);
        float* o = a.G + b0 * panel + q * Lanes;
        var a00 = Vector512.Load(o); var a01 = Vector512.Load(o + panel); var a02 = Vector512.Load(o + 2 * panel);
        var a10 = Vector512.Load(o + 16); var a11 = Vector512.Load(o + 16 + panel); var a12 = Vector512.Load(o + 16 + 2 * panel);
        var a20 = Vector512.Load(o + 32); var a21 = Vector512.Load(o + 32 + panel); var a22 = Vector512.Load(o + 32 + 2 * panel);
        var a30 = Vector512.Load(o + 48); var a31 = Vector512.Load(o + 48 + panel); var a32 = Vector512.Load(o + 48 + 2 * panel);
        long groupStride = (long)a.Rows * m;
        float* x0 = a.Xg + q / a.N * groupStride, x1 = a.Xg + (q + 1) / a.N * groupStride;
        float* x2 = a.Xg + (q + 2) / a.N * groupStride, x3 = a.Xg + (q + 3) / a.N * groupStride;
        float* dr = dyPanel;
        for (int t = 0; t < a.Rows; t++, dr += 48, x0 += m, x1 += m, x2 += m, x3 += m)
        {
            var d0 = Vector512.Load(dr); var d1 = Vector512.Load(dr + 16); var d2 = Vector512.Load(dr + 32);
            var xv = TGroup.Load(x0);
            a00 = Avx512F.FusedMultiplyAdd(d0, TGroup.Pick(xv, c00), a00);
            a01 = Avx512F.FusedMultiplyAdd(d1, TGroup.Pick(xv, c01), a01);
            a02 = Avx512F.FusedMultiplyAdd(d2, TGroup.Pick(xv, c02), a02);
            xv = TGroup.Load(x1);
            a10 = Avx512F.FusedMultiplyAdd(d0, TGroup.Pick(xv, c10), a10);
            a11 = Avx512F.FusedMultiplyAdd(d1, TGroup.Pick(xv, c11), a11);
            a12 = Avx512F.FusedMultiplyAdd(d2, TGroup.Pick(xv, c12), a12);
            xv = TGroup.Load(x2);
            a20 = Avx512F.FusedMultiplyAdd(d0, TGroup.Pick(xv, c20), a20);
            a21 = Avx512F.FusedMultiplyAdd(d1, TGroup.Pick(xv, c21), a21);
            a22 = Avx512F.FusedMultiplyAdd(d2, TGroup.Pick(xv, c22), a22);
            xv = TGroup.Load(x3);
            a30 = Avx512F.FusedMultiplyAdd(d0, TGroup.Pick(xv, c30), a30);
            a31 = Avx512F.FusedMultiplyAdd(d1, TGroup.Pick(xv, c31), a31);
            a32 = Avx512F.FusedMultiplyAdd(d2, TGroup.Pick(xv, c32), a32);
        }
        a00.Store(o); a01.Store(o + panel); a02.Store(o + 2 * panel);
        a10.Store(o + 16); a11.Store(o + 16 + panel); a12.Store(o + 16 + 2 * panel);
        a20.Store(o + 32); a21.Store(o + 32 + panel); a22.Store(o + 32 + 2 * panel);
        a30.Store(o + 48); a31.Store(o + 48 + panel); a32.Store(o + 48 + 2 * panel);
    }

    /// <summary>Slot q of outputs 16·b .. 16·b + 16 (dy loads masked past Out), two accumulators over the tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Slot16<TGroup>(ref GradientArgs a, int b, int q, long panel) where TGroup : struct, IGroupBroadcast
    {
        int m = TGroup.Size, lanes = Math.Min(Lanes, a.Out - b * Lanes);
        var mask = LaneMask(lanes);
        var c = Vector512.Load(a.C + b * panel + q * Lanes);
        float* o = a.G + b * panel + q * Lanes;
        var acc0 = Vector512.Load(o);
        var acc1 = Vector512<float>.Zero;
        float* xr = a.Xg + q / a.N * (long)a.Rows * m;
        float* dr = a.Dy + (long)a.T0 * a.Out + b * Lanes;
        int t = 0;
        for (; t + 2 <= a.Rows; t += 2, dr += 2 * a.Out, xr += 2 * m)
        {
            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(dr, mask, Vector512<float>.Zero), TGroup.Pick(TGroup.Load(xr), c), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(dr + a.Out, mask, Vector512<float>.Zero), TGroup.Pick(TGroup.Load(xr + m), c), acc1);
        }
        if (t < a.Rows)
            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(dr, mask, Vector512<float>.Zero), TGroup.Pick(TGroup.Load(xr), c), acc0);
        (acc0 + acc1).Store(o);
    }

    // ---- helpers ----------------------------------------------------------------------------------------------------

    static void CheckSupported(int m)
    {
        if (!Supports(m))
            throw new PlatformNotSupportedException($"N:M token-major kernels need AVX-512 and a group size M of 2, 4, 8 or 16, got M = {m}");
    }

    /// <summary>The M inputs of one group, repeated across the 16 lanes (so a permute with control idx picks input idx).</summary>
    interface IGroupBroadcast
    {
        static abstract int Size { get; }
        static abstract Vector512<float> Load(float* p);
        /// <summary>Lane l = the broadcast's input control[l]; within 128-bit lanes (vpermilps) when M ≤ 4, which
        /// measured a few per cent faster than the cross-lane vpermps.</summary>
        static abstract Vector512<float> Pick(Vector512<float> group, Vector512<int> control);
    }

    struct Group2 : IGroupBroadcast
    {
        public static int Size => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* p) => Vector512.Create(*(double*)p).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Pick(Vector512<float> group, Vector512<int> control) => Avx512F.PermuteVar4x32(group, control);
    }

    struct Group4 : IGroupBroadcast
    {
        public static int Size => 4;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* p) => Avx512F.BroadcastVector128ToVector512(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Pick(Vector512<float> group, Vector512<int> control) => Avx512F.PermuteVar4x32(group, control);
    }

    struct Group8 : IGroupBroadcast
    {
        public static int Size => 8;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* p) => Avx512DQ.BroadcastVector256ToVector512(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Pick(Vector512<float> group, Vector512<int> control) => Avx512F.PermuteVar16x32(group, control);
    }

    struct Group16 : IGroupBroadcast
    {
        public static int Size => 16;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* p) => Vector512.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Pick(Vector512<float> group, Vector512<int> control) => Avx512F.PermuteVar16x32(group, control);
    }
}
