using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y (T × M) = (X (T × K) · Sᵀ + bias (M) + add (T × M)) ⊙ scale (T × M), S (M × K) in CSR, X and Y row-major (T
/// token rows): a sparse Linear's forward (S = W) or its input gradient (S = Wᵀ in CSR, X = dY, scale = the activation
/// derivative), with the activations in the model's own layout.
/// <para>
/// CsrSpmm wants X feature-major (K × N), so a Linear used to transpose X in (FeatureMajor.From), run the product, and
/// transpose Y back (FeatureMajor.To): two passes over activations that are megabytes (256 rows × 3072 features is
/// 3 MiB), out of L2, per call. Here each work item (one range of S's rows, balanced by nonzeros; one per thread)
/// walks the tokens 64 at a time (<see cref="Width"/>) and fuses both transposes into what it does anyway:
///   panel  (K × 64, 64-byte aligned, this thread's) = the 64 token rows of X transposed (zero past T): this replaces
///          CsrSpmm's copy of a panel of Xᵀ into the thread's buffer, so the transpose in costs nothing extra;
///   tile   (rows × 64) = S[rows, :] · panel, SpmmMicroKernel.RowsWide; with 16-bit indices and K in blocks (see
///          KBlockRows) SpmmMicroKernel.RowsWideBlock, RowBlock rows at a time through every block;
///   Y      [64 tokens, rows] = tileᵀ with bias, add and scale applied on the way (Transpose's epilogue), while the
///          tile is in L2.
/// Both transposes run on 16×16 blocks in AVX-512 registers (TokenPanels).
/// Threads take ranges of token panels (each with every row of S) when there are at least two panels per thread, so
/// each panel is transposed once and every thread gets the same share of multiply-adds; with fewer tokens, one range
/// of S's rows per thread, each thread transposing every panel itself.
/// </para>
/// add may be Y itself (each element is read before it is written); X must not overlap Y.
/// </summary>
internal static unsafe class CsrSpmmTokenMajor
{
    /// <summary>
    /// Tokens per panel: SpmmMicroKernel.RowsWide's 64 columns (four vectors per nonzero, so each index and value load
    /// feeds four FMAs instead of two). Measured against 32-token panels (RowsNarrow) on Zen 5 (scratch harness
    /// alternating both in one process, thread CPU time, one thread, T = 2048, machine loaded; medians of 15–21 calls):
    /// forward 90% sparse 768→3072 25.7 against 29.1 ms, 3072→768 28.8 against 33.7 ms, 768→2304 17.5 against 19.7 ms;
    /// 80% sparse 768→3072 47.3 against 53.2 ms, 3072→768 57.7 against 65.2 ms. Blocking K at 384 or 512 rows of the
    /// panel (96 or 128 KiB) measured the same as the 768 used for long K at 90%; at 80% 256-row blocks pay (KBlockRows).
    /// </summary>
    const int Width = 64;

    /// <summary>Whether this machine runs the kernel (RowsWide and the transposes need AVX-512 and AVX).</summary>
    public static bool Supported => Vector512.IsHardwareAccelerated && Avx.IsSupported;

    struct Args<TIndex> where TIndex : unmanaged
    {
        public int* RowPointers;
        public TIndex* Index;
        public float* Values, X, Y, Bias, Add, Scale;
        public int Rows, K, Tokens, LdX, LdY, Chunks, Blocks, BlockRows;
        public long Call;
        public bool TokenSplit;
    }

    [ThreadStatic] static float[]? _panel;
    [ThreadStatic] static float[]? _tile;

    /// <summary>See the class summary; bias, add, scale may be null (none).</summary>
    internal static void Run<TIndex>(int rows, int k, int* rowPointers, TIndex* index, float* values, float* x, int ldx, int tokens,
        float* y, int ldy, float* bias, float* add, float* scale)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (!Supported) throw new PlatformNotSupportedException("CsrSpmmTokenMajor needs AVX-512");
        if (rows == 0 || tokens == 0) return;
        long nnz = rowPointers[rows];
        var (blocks, blockRows) = Blocks(nnz, rows, k, shortIndices: typeof(TIndex) == typeof(ushort));
        var args = new Args<TIndex>
        {
            RowPointers = rowPointers, Index = index, Values = values, X = x, Y = y, Bias = bias, Add = add, Scale = scale,
            Rows = rows, K = k, Tokens = tokens, LdX = ldx, LdY = ldy, Blocks = blocks, BlockRows = blockRows, Call = AlignedPanels.NextCall(),
        };
        int chunks = SpmmMicroKernel.ChunkCount(rows, (nnz + rows) * tokens);
        int threads = chunks > 1 ? KernelThreads.ThreadsFor(chunks) : 1;
        int panels = (tokens + Width - 1) / Width;
        if (threads > 1 && panels >= 2 * threads)
        {
            // Ranges of token panels, every row in each: each panel of X is transposed by one thread only (a range of
            // rows per thread made every thread transpose every panel, and the threads' shares of nonzeros uneven).
            args.TokenSplit = true;
            args.Chunks = Math.Min(panels, 4 * threads);
        }
        else args.Chunks = threads;   // one range of rows per thread (few tokens): as CsrSpmm's narrow panels
        KernelThreads.For(args.Chunks, ref args, &Body);
    }

    /// <summary>
    /// The K blocks (count, panel rows per block) the product of an S with these sizes runs in: <see cref="KBlockRows"/>
    /// with 16-bit indices and something stored (RowsWideBlock reads entry 0 for an empty slot), one block of all of K
    /// otherwise or when the split table would pass CsrSpmm.MaxNarrowSplitInts. CsrBackwardTokenMajor takes the same.
    /// </summary>
    internal static (int Blocks, int BlockRows) Blocks(long nnz, int rows, int k, bool shortIndices)
    {
        int blockRows = shortIndices && nnz > 0 ? KBlockRows(nnz, rows, k) : k;
        int blocks = (k + blockRows - 1) / blockRows;
        return blocks > 1 && (long)rows * (blocks + 1) > CsrSpmm.MaxNarrowSplitInts ? (1, k) : (blocks, blockRows);
    }

    /// <summary>
    /// Rows of the panel per K block (16-bit indices; K itself: no blocking). <see cref="DenseKBlock"/> rows while rows
    /// average at least <see cref="MinBlockNonzeros"/> nonzeros per block, else CsrSpmm.NarrowKBlock for K beyond
    /// CsrSpmm.NarrowPanelMaxK, else all of K. A 256 × 64 block of the panel is 64 KiB, about L1 (48 KiB) plus the
    /// lines in flight, where a whole 768 × 64 panel (192 KiB) is read from L2 for every nonzero; each block costs every
    /// row one more pass of its 16 accumulators through the tile and one more loop exit, which only rows with enough
    /// nonzeros per block repay. Measured on Zen 5 (scratch harness running RowsWide over one 64-token panel, random
    /// columns, one thread, best of 30–40 alternating rounds, machine shared), 80% sparse: 3072×768 0.644 ms in 256-row
    /// blocks against 0.772 unblocked (128-row blocks 0.790; an older copy of the kernel: 192 rows 0.662, 384 0.650 against
    /// 0.635 at 256); 768×2304 0.539 against 0.608 in 768-row blocks; 768×3072 0.846 against 0.931. 90% sparse (26
    /// nonzeros per row and 256 columns), the older copy: 3072×768 0.353 against 0.350 unblocked, 768×3072 0.388 against
    /// 0.398 at 768; this kernel in a busier run 3072×768 0.443 against 0.464: within the noise, so 90% keeps what it had. A whole CSR Linear at 80% (bench linear --cpu-time, T = 2048, one thread, five runs
    /// alternated with the unblocked binary, min / median ms): 768→3072 76.5 / 81.4 against 82.9 / 89.3, 3072→768
    /// 81.1 / 84.2 against 83.3 / 87.6, 768→2304 55.4 / 59.6 against 60.9 / 61.1.
    /// On Zen 4 (32 KiB L1, half Zen 5's L2-to-L1 bandwidth) 256-row blocks pay at 90% and 95% too, so the threshold is
    /// 10 (was 40): scratch harness, one thread, one 64-token panel, medians of 40 calls, quiet machine, unblocked against
    /// 256-row blocks through RowsWide against RowsWideBlock over RowBlock rows at a time, 90%: 3072×768 0.523 / 0.467 /
    /// 0.441 ms, 768×3072 0.601 / 0.503 / 0.482, 2304×768 0.389 / 0.347 / 0.327, 768×2304 0.442 / 0.368 / 0.348,
    /// 768×768 0.129 / 0.111 / 0.107; 95%: 3072×768 0.264 / 0.259 / 0.242, 768×3072 0.309 / 0.281 / 0.259, 2304×768
    /// 0.199 / 0.192 / 0.179, 768×2304 0.226 / 0.207 / 0.190; 96.5% (9 per block) 3072×768 0.189 unblocked against 0.182;
    /// 98% (5 per block) 0.111 against 0.114, 768×3072 0.122 against 0.134 (unblocked there). 128-row blocks (32 KiB,
    /// all of L1) were slower than 256 (90%: 0.467 and 0.520 ms for the first two). Where blocks were already used
    /// RowsWideBlock (256 rows at a time) replaced RowsWide over all rows (one pass per block): in a quiet spell, 80%
    /// 3072×768 0.867–0.868 against 0.878–0.884 ms, 768×3072 0.925–0.931 against 0.954–0.964, 2304×768 0.662–0.682
    /// against 0.682, 768×2304 0.678–0.679 against 0.694–0.697, 768×768 0.210 against 0.216; 70% 3072×768 1.344–1.359
    /// against 1.342–1.349; 50% 3072×768 2.497–2.503 against 2.524–2.576, 768×3072 2.658–2.667 against 2.652–2.711,
    /// 2304×768 1.864–1.873 against 1.880–1.887 (two alternations each; a noisier run had 50% 3–6% slower).
    /// </summary>
    internal static int KBlockRows(long nnz, int rows, int k)
    {
        if (k >= 2 * DenseKBlock && nnz * DenseKBlock >= (long)MinBlockNonzeros * rows * k) return DenseKBlock;
        return k <= CsrSpmm.NarrowPanelMaxK ? k : CsrSpmm.NarrowKBlock;
    }

    /// <summary>Panel rows per K block for rows dense enough (see <see cref="KBlockRows"/>).</summary>
    internal const int DenseKBlock = 256;

    /// <summary>Average nonzeros per row and block from which <see cref="DenseKBlock"/> blocks pay (80%: 51; 90%: 26; 95%: 13).</summary>
    internal const int MinBlockNonzeros = 10;

    /// <summary>Rows per pass through the K blocks (their part of the tile: 64 KiB).</summary>
    internal const int RowBlock = 256;

    /// <summary>buffer (grown to at least floats + 16) from its first 64-byte boundary.</summary>
    internal static float* Aligned(ref float[]? buffer, long floats)
    {
        if (buffer is null || buffer.Length < floats + 16) buffer = GC.AllocateUninitializedArray<float>(checked((int)(floats + 16)), pinned: true);
        // Pinned and referenced by the thread-static field: the pointer stays valid.
        return (float*)(((nint)Unsafe.AsPointer(ref buffer[0]) + 63) & ~(nint)63);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body<TIndex>(ref Args<TIndex> a, int chunk) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int from, to, first, last;
        if (a.TokenSplit)
        {
            int panels = (a.Tokens + Width - 1) / Width;
            (from, to) = (0, a.Rows);
            first = (int)((long)panels * chunk / a.Chunks) * Width;
            last = Math.Min(a.Tokens, (int)((long)panels * (chunk + 1) / a.Chunks) * Width);
        }
        else
        {
            from = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk, a.Chunks);
            to = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk + 1, a.Chunks);
            (first, last) = (0, a.Tokens);
        }
        int count = to - from;
        if (count == 0) return;
        int k = a.K, nb = a.Blocks;
        // The panel's row k is RowsWide's zero row (the weight-0 slots of a row's last step); In writes rows 0..k − 1 only.
        float* panel = Aligned(ref _panel, (long)(k + 1) * Width);
        float* zero = panel + (long)k * Width;
        new Span<float>(zero, Width).Clear();
        float* tile = Aligned(ref _tile, (long)count * Width);
        // Row r's nonzeros in K block b are [split[(r − from)·stride + b], split[(r − from)·stride + b + 1]): the row
        // pointers themselves for one block, else this thread's table of where the rows cross the block boundaries.
        int stride = nb == 1 ? 1 : nb + 1;
        int[]? table = nb == 1 ? null : CsrSpmm.SplitTable(rp, from, to, (ushort*)a.Index, nb, a.Call, a.TokenSplit ? 0 : chunk, a.BlockRows);
        fixed (int* pinned = table)
        {
            int* split = nb == 1 ? rp + from : pinned;
            for (int t0 = first; t0 < last; t0 += Width)
            {
                int w = Math.Min(Width, last - t0);
                // panel (K × 64) = X[t0 .. t0 + w, :]ᵀ, columns past w zero.
                TokenPanels.In(a.X + (long)t0 * a.LdX, a.LdX, k, w, panel, Width);
                if (nb == 1) SpmmMicroKernel.RowsWide(split, stride, count, a.Index, a.Values, panel, zero, tile, Width, add: false);
                else
                    // K blocks (16-bit indices only): RowBlock rows at a time through every block, so their part of
                    // the tile stays in L1/L2 while each block of the panel is read.
                    for (int r0 = 0; r0 < count; r0 += RowBlock)
                    {
                        int rows = Math.Min(RowBlock, count - r0);
                        for (int b = 0; b < nb; b++)
                            SpmmMicroKernel.RowsWideBlock(split + (long)r0 * stride + b, stride, rows, (ushort*)a.Index, a.Values, panel, zero,
                                tile + (long)r0 * Width, add: b > 0);
                    }
                // Y[t0 .. t0 + w, from .. to) = tileᵀ (+ bias, + add, ⊙ scale).
                long at = (long)t0 * a.LdY + from;
                TokenPanels.Out(tile, count, w, a.Y + at, a.LdY,
                    a.Bias == null ? null : a.Bias + from, a.Add == null ? null : a.Add + at, a.Scale == null ? null : a.Scale + at, Width);
            }
        }
    }
}
