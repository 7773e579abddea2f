using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// SDDMM (out[p] = A row i · B row j for each nonzero p = (i, j) of S, see <see cref="Sddmm"/>) with B cut into tiles
/// of <see cref="KBlock"/> rows × 64 of its D columns, each copied contiguous and 64-byte aligned into this thread's
/// buffer (64 KiB): a nonzero's partner in the tile is four aligned vectors 256 bytes apart from the next row's, and a
/// row's 64-column piece of A (four vectors) stays in registers across the row's run of nonzeros in the tile. Each
/// nonzero is then four FMAs per tile whose B operands come from L1/L2 in whole lines, against Sddmm's 16 FMAs per
/// nonzero at D = 256 with B rows 1 KiB apart streamed from L2 (the gradient of a sparse Linear at 256-row panels).
/// out[p] collects the D / 64 partial dot products (stored by the first, added by the rest; all added when
/// accumulating); eight nonzeros share one transposing reduction (Sddmm.Reduce8); a run's last 1–4 take one masked
/// step of four (Sddmm.Reduce4), its last 5–7 one masked step of eight.
/// Measured on Zen 5 (scratch, one thread, D = 256, best of 20–30 rounds): 90% sparse 3072×768 1.63 ms against 2.53–2.70
/// ms for Sddmm's rows, 768×3072 1.95 against 3.17–3.29 ms; 80% sparse 3072×768 2.87 against 9.6 ms (noisy machine).
/// Tiles of 192, 384 and 512 rows measured within 5% of 256; 128 rows 20% slower.
/// Work: one range of S's rows per thread (balanced by nonzeros), so each thread copies each tile once; each range
/// splits its rows at the tile boundaries once per call (<see cref="Sddmm"/>'s vectorised forward scan).
/// </summary>
internal static unsafe class SddmmTiled
{
    const int KBlock = 256;
    const int Width = 64;

    /// <summary>Whether the tiled Run takes this product: AVX-512, D a multiple of 64, and B's rows used often enough to copy.</summary>
    public static bool Takes(long nnz, int cols, int d) =>
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported && d >= Width && d % Width == 0 && AlignedPanels.Pays(nnz, cols, d);

    struct Args<TIndex> where TIndex : unmanaged
    {
        public int* RowPointers;
        public TIndex* Index;
        public float* A, B, Output;
        public int Rows, Cols, D, Chunks;
        public bool Accumulate;
    }

    [ThreadStatic] static float[]? _tile;
    [ThreadStatic] static int[]? _split;

    /// <summary>output (= | += when <paramref name="accumulate"/>) the SDDMM; see <see cref="Takes"/> for when it runs.</summary>
    internal static void Run<TIndex>(int rows, int cols, int* rp, TIndex* index, float* a, float* b, int d, float* output, bool accumulate = false)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (rows == 0) return;
        var args = new Args<TIndex> { RowPointers = rp, Index = index, A = a, B = b, Output = output, Rows = rows, Cols = cols, D = d, Accumulate = accumulate };
        int chunks = SpmmMicroKernel.ChunkCount(rows, ((long)rp[rows] + rows) * d);
        args.Chunks = chunks > 1 ? KernelThreads.ThreadsFor(chunks) : 1;
        KernelThreads.For(args.Chunks, ref args, &Body);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body<TIndex>(ref Args<TIndex> a, int chunk) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int from = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk, a.Chunks), to = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk + 1, a.Chunks);
        if (from == to) return;
        int d = a.D, nb = (a.Cols + KBlock - 1) / KBlock, stride = nb + 1;
        TIndex* index = a.Index;
        // split[(i − from)·stride + blk]: row i's first nonzero at column ≥ blk·KBlock (blk = nb: the row's end).
        long splitInts = (long)(to - from) * stride;
        if (_split is null || _split.Length < splitInts) _split = GC.AllocateUninitializedArray<int>(checked((int)Math.Max(splitInts, 1024)), pinned: true);
        if (_tile is null) _tile = GC.AllocateUninitializedArray<float>(KBlock * Width + 16, pinned: true);
        // Both arrays are pinned and held by the thread-static fields: the pointers stay valid.
        int* split = (int*)Unsafe.AsPointer(ref _split[0]);
        float* tile = (float*)(((nint)Unsafe.AsPointer(ref _tile[0]) + 63) & ~(nint)63);
        for (int i = from; i < to; i++)
        {
            int* row = split + (long)(i - from) * stride;
            int p = rp[i], end = rp[i + 1];
            for (int blk = 0; blk < nb; blk++)
            {
                row[blk] = p;
                p = Sddmm.ScanTo(index, p, end, (blk + 1) * KBlock);
            }
            row[nb] = end;
        }
        for (int d0 = 0; d0 < d; d0 += Width)
        {
            bool first = d0 == 0 && !a.Accumulate;
            for (int blk = 0; blk < nb; blk++)
            {
                int k0 = blk * KBlock, kc = Math.Min(KBlock, a.Cols - k0);
                for (int r = 0; r < kc; r++)
                {
                    float* src = a.B + (long)(k0 + r) * d + d0;
                    float* dst = tile + r * Width;
                    Vector512.Load(src).StoreAligned(dst);
                    Vector512.Load(src + 16).StoreAligned(dst + 16);
                    Vector512.Load(src + 32).StoreAligned(dst + 32);
                    Vector512.Load(src + 48).StoreAligned(dst + 48);
                }
                float* t = tile - (long)k0 * Width;   // t + j·Width: B row j's piece (k0 ≤ j < k0 + kc)
                for (int i = from; i < to; i++)
                {
                    int* row = split + (long)(i - from) * stride + blk;
                    int p = row[0], end = row[1];
                    if (p == end) continue;
                    float* ai = a.A + (long)i * d + d0;
                    Run(Vector512.Load(ai), Vector512.Load(ai + 16), Vector512.Load(ai + 32), Vector512.Load(ai + 48), t, index, p, end, a.Output, first);
                }
            }
        }
    }

    struct TokenArgs<TIndex> where TIndex : unmanaged
    {
        public int* RowPointers;
        public TIndex* Index;
        public float* Dy, X, Output, BiasGradient;
        public int Rows, Cols, Tokens, LdDy, LdX, Chunks;
    }

    [ThreadStatic] static float[]? _dyPanel;

    /// <summary>
    /// A sparse Linear's weight gradient straight from the activations as the model keeps them (row-major, token rows):
    ///   output[p] += Σ_t dy[t, i]·x[t, j]     for each stored (i, j) = p of S (rows × cols, CSR)
    ///   biasGradient[i] += Σ_t dy[t, i]       (when not null)
    /// i.e. the tiled SDDMM with A = dyᵀ and B = xᵀ, D = tokens, without the two feature-major copies: per 64 tokens each
    /// thread transposes its rows' slice of dy (rows × 64: A's pieces, summed into the bias gradient on the way) and,
    /// per K block, a 256 × 64 tile of x (B's tile, which the feature-major path copied from xᵀ instead), zero past the
    /// last token. Needs what <see cref="Takes"/> needs of D = 64.
    /// </summary>
    internal static void RunTokenMajor<TIndex>(int rows, int cols, int* rp, TIndex* index, float* dy, int ldDy, float* x, int ldX, int tokens,
        float* output, float* biasGradient)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (rows == 0 || tokens == 0) return;
        var args = new TokenArgs<TIndex>
        {
            RowPointers = rp, Index = index, Dy = dy, X = x, Output = output, BiasGradient = biasGradient,
            Rows = rows, Cols = cols, Tokens = tokens, LdDy = ldDy, LdX = ldX,
        };
        int chunks = SpmmMicroKernel.ChunkCount(rows, ((long)rp[rows] + rows) * tokens);
        args.Chunks = chunks > 1 ? KernelThreads.ThreadsFor(chunks) : 1;
        KernelThreads.For(args.Chunks, ref args, &TokenBody);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void TokenBody<TIndex>(ref TokenArgs<TIndex> a, int chunk) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int from = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk, a.Chunks), to = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk + 1, a.Chunks);
        if (from == to) return;
        int count = to - from;
        int nb = (a.Cols + KBlock - 1) / KBlock, stride = nb + 1;
        TIndex* index = a.Index;
        long splitInts = (long)count * stride;
        if (_split is null || _split.Length < splitInts) _split = GC.AllocateUninitializedArray<int>(checked((int)Math.Max(splitInts, 1024)), pinned: true);
        if (_tile is null) _tile = GC.AllocateUninitializedArray<float>(KBlock * Width + 16, pinned: true);
        long panelFloats = (long)count * Width + 16;
        if (_dyPanel is null || _dyPanel.Length < panelFloats) _dyPanel = GC.AllocateUninitializedArray<float>(checked((int)panelFloats), pinned: true);
        // All three arrays are pinned and held by the thread-static fields: the pointers stay valid.
        int* split = (int*)Unsafe.AsPointer(ref _split[0]);
        float* tile = (float*)(((nint)Unsafe.AsPointer(ref _tile[0]) + 63) & ~(nint)63);
        float* dyPanel = (float*)(((nint)Unsafe.AsPointer(ref _dyPanel[0]) + 63) & ~(nint)63);
        for (int i = from; i < to; i++)
        {
            int* row = split + (long)(i - from) * stride;
            int p = rp[i], end = rp[i + 1];
            for (int blk = 0; blk < nb; blk++)
            {
                row[blk] = p;
                p = Sddmm.ScanTo(index, p, end, (blk + 1) * KBlock);
            }
            row[nb] = end;
        }
        for (int t0 = 0; t0 < a.Tokens; t0 += Width)
        {
            int w = Math.Min(Width, a.Tokens - t0);
            // dyPanel (count × 64) = dy[t0 .. t0 + w, from .. to)ᵀ, zero past w.
            TokenPanels.In(a.Dy + (long)t0 * a.LdDy + from, a.LdDy, count, w, dyPanel, Width);
            if (a.BiasGradient != null) AddRowSums(dyPanel, count, a.BiasGradient + from);
            for (int blk = 0; blk < nb; blk++)
            {
                int k0 = blk * KBlock, kc = Math.Min(KBlock, a.Cols - k0);
                // tile (kc × 64) = x[t0 .. t0 + w, k0 .. k0 + kc)ᵀ, zero past w.
                TokenPanels.In(a.X + (long)t0 * a.LdX + k0, a.LdX, kc, w, tile, Width);
                float* t = tile - (long)k0 * Width;   // t + j·Width: x column j's piece (k0 ≤ j < k0 + kc)
                for (int i = from; i < to; i++)
                {
                    int* row = split + (long)(i - from) * stride + blk;
                    int p = row[0], end = row[1];
                    if (p == end) continue;
                    float* ai = dyPanel + (long)(i - from) * Width;
                    Run(Vector512.LoadAligned(ai), Vector512.LoadAligned(ai + 16), Vector512.LoadAligned(ai + 32), Vector512.LoadAligned(ai + 48),
                        t, index, p, end, a.Output, first: false);
                }
            }
        }
    }

    /// <summary>biasGradient[r] += the sum of the panel's row r (64 aligned floats) for r &lt; count (CsrBackwardTokenMajor too).</summary>
    internal static void AddRowSums(float* panel, int count, float* biasGradient)
    {
        for (int r = 0; r < count; r++)
        {
            float* q = panel + (long)r * Width;
            biasGradient[r] += Vector512.Sum((Vector512.LoadAligned(q) + Vector512.LoadAligned(q + 16)) + (Vector512.LoadAligned(q + 32) + Vector512.LoadAligned(q + 48)));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float* Row<TIndex>(float* t, TIndex* index, int p) where TIndex : unmanaged, IBinaryInteger<TIndex> =>
        t + ((nint)(uint)int.CreateTruncating(index[p]) << 6);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Dot(Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3, float* b)
    {
        var c = x0 * Vector512.LoadAligned(b);
        c = Vector512.FusedMultiplyAdd(x1, Vector512.LoadAligned(b + 16), c);
        c = Vector512.FusedMultiplyAdd(x2, Vector512.LoadAligned(b + 32), c);
        return Vector512.FusedMultiplyAdd(x3, Vector512.LoadAligned(b + 48), c);
    }

    /// <summary>out[p..end) (= | +=) (x0..x3) · t row index[p], eight at a time, the last 1–4 in one masked step of four, 5–7 in one of eight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Run<TIndex>(Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3, float* t, TIndex* index,
        int p, int end, float* output, bool first) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        for (; p + 7 < end; p += 8)
        {
            float* b0, b1, b2, b3, b4, b5, b6, b7;
            if (typeof(TIndex) == typeof(ushort))
            {
                // Four 16-bit indices per 64-bit load.
                ulong q = *(ulong*)((ushort*)index + p), r = *(ulong*)((ushort*)index + p + 4);
                b0 = t + ((nint)(q & 0xFFFF) << 6); b1 = t + ((nint)((q >> 16) & 0xFFFF) << 6);
                b2 = t + ((nint)((q >> 32) & 0xFFFF) << 6); b3 = t + ((nint)(q >> 48) << 6);
                b4 = t + ((nint)(r & 0xFFFF) << 6); b5 = t + ((nint)((r >> 16) & 0xFFFF) << 6);
                b6 = t + ((nint)((r >> 32) & 0xFFFF) << 6); b7 = t + ((nint)(r >> 48) << 6);
            }
            else
            {
                b0 = Row(t, index, p); b1 = Row(t, index, p + 1); b2 = Row(t, index, p + 2); b3 = Row(t, index, p + 3);
                b4 = Row(t, index, p + 4); b5 = Row(t, index, p + 5); b6 = Row(t, index, p + 6); b7 = Row(t, index, p + 7);
            }
            var sums = Sddmm.Reduce8(Dot(x0, x1, x2, x3, b0), Dot(x0, x1, x2, x3, b1), Dot(x0, x1, x2, x3, b2), Dot(x0, x1, x2, x3, b3),
                Dot(x0, x1, x2, x3, b4), Dot(x0, x1, x2, x3, b5), Dot(x0, x1, x2, x3, b6), Dot(x0, x1, x2, x3, b7));
            if (!first) sums += Vector256.Load(output + p);
            sums.Store(output + p);
        }
        int rest = end - p;   // 0..7
        if (rest is > 0 and <= 4)
        {
            // The last 1–4 in one step of four (Reduce4): a step of eight for them computed 4–7 dot products for
            // nothing, by count an expected 7% of the work at 80% sparsity (51 nonzeros a row per 256-row tile) and 13%
            // at 90% (26). Measured on the wide step: 0.4–0.7% faster at 80%, 1.0–1.8% at 90% (README, 22nd session).
            int last = end - 1;
            float* b0 = Row(t, index, p), b1 = Row(t, index, Math.Min(p + 1, last));
            float* b2 = Row(t, index, Math.Min(p + 2, last)), b3 = Row(t, index, Math.Min(p + 3, last));
            var sums = Sddmm.Reduce4(Dot(x0, x1, x2, x3, b0), Dot(x0, x1, x2, x3, b1), Dot(x0, x1, x2, x3, b2), Dot(x0, x1, x2, x3, b3));
            var mask = Vector128.LessThan(Vector128.Create(0, 1, 2, 3), Vector128.Create(rest)).AsSingle();
            if (!first) sums += Avx.MaskLoad(output + p, mask);
            Avx.MaskStore(output + p, mask, sums);
        }
        else if (rest > 0)
        {
            // The last 5–7 nonzeros in one more step of eight (the 4-step and single-nonzero loops cost mispredicted
            // exits and a full horizontal sum per single): slots past the end repeat the row's last entry (in range),
            // and their lanes are neither loaded nor stored (masked), so nothing outside [p, end) is read or written.
            int last = end - 1;
            float* b0 = Row(t, index, p), b1 = Row(t, index, Math.Min(p + 1, last)), b2 = Row(t, index, Math.Min(p + 2, last));
            float* b3 = Row(t, index, Math.Min(p + 3, last)), b4 = Row(t, index, Math.Min(p + 4, last));
            float* b5 = Row(t, index, Math.Min(p + 5, last)), b6 = Row(t, index, Math.Min(p + 6, last));
            var sums = Sddmm.Reduce8(Dot(x0, x1, x2, x3, b0), Dot(x0, x1, x2, x3, b1), Dot(x0, x1, x2, x3, b2), Dot(x0, x1, x2, x3, b3),
                Dot(x0, x1, x2, x3, b4), Dot(x0, x1, x2, x3, b5), Dot(x0, x1, x2, x3, b6), Vector512<float>.Zero);
            var mask = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(rest)).AsSingle();
            if (!first) sums += Avx.MaskLoad(output + p, mask);
            Avx.MaskStore(output + p, mask, sums);
        }
    }
}
