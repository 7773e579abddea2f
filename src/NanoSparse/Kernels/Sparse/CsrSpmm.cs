using System.Runtime.CompilerServices;
using System.Numerics;
using NanoSparse.Sparse;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y = S·X with S (M×K) in CSR and X (K×N), Y (M×N) dense row-major: a sparse Linear's forward (N = 1 is SpMV).
/// Layout: X row-major so the partner of nonzero (i, k) is the contiguous row X[k, :]; row i of Y is a weighted
/// sum of those rows, accumulated in Vector512 registers over a tile of ≤ 128 columns (see SpmmMicroKernel).
/// For N = 1 each row is a gathered dot product. Rows are split into chunks of equal nnz; within a chunk the
/// column tiles are the outer loop so the K×tile panel of X stays in L2 while every row of the chunk uses it.
/// </summary>
public static unsafe class CsrSpmm
{
    public static void Multiply(CsrMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        Check(s.Rows, s.Cols, x.Length, n, y.Length);
        fixed (int* rp = s.RowPointers)
        fixed (float* v = s.Values, px = x, py = y)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) Run(s.Rows, s.Cols, rp, ci, v, px, n, py);
            else fixed (int* ci = s.ColumnIndices32) Run(s.Rows, s.Cols, rp, ci, v, px, n, py);
        }
    }

    internal static void Check(int rows, int cols, int xLength, int n, int yLength)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "N must be non-negative");
        if (xLength < (long)cols * n) throw new ArgumentException($"X has {xLength} elements, expected K*N = {cols}*{n}", "x");
        if (yLength < (long)rows * n) throw new ArgumentException($"Y has {yLength} elements, expected M*N = {rows}*{n}", "y");
    }

    struct Args<TIndex> where TIndex : unmanaged
    {
        public int* RowPointers;
        public TIndex* Index;
        public float* Values, X, Y;
        public int Rows, K, N, Chunks, Tile, KBlock;
        // X copied into 64-byte-aligned column panels when that pays (see AlignedPanels; null: X used in place):
        // panel t holds columns [t·Tile, t·Tile + Tile) of every row of X, row stride PanelLd, at Packed + t·K·PanelLd.
        public float* Packed;
        public int PanelLd;
        // Unblocked on several threads: instead, each thread copies the panel it reads into its own aligned buffer
        // (AlignedPanels.CopyToThreadBuffer, tagged with Call so a thread copies each panel once per call). Work
        // items are then (panel, chunk) pairs, panel-major, so a thread moves through the panels in order.
        public bool PackPerThread;
        public long Call;
        public int Items;
        // Narrow panels (see NarrowPanelMaxK) when NarrowBlocks > 0: items are (chunk, panel) pairs, chunk-major, one
        // chunk per thread; K in NarrowBlocks blocks (one: all of K; more: NarrowKBlock rows of X each).
        public int NarrowBlocks;
        public int Panels;
    }

    /// <summary>
    /// For K up to this, N ≥ 32 is done in 32-column panels (a K×32 panel of X is 96 KiB at K = 768) rather than
    /// 128-column ones (384 KiB): each nonzero then loads 128 bytes of X instead of 512, from a panel of which about a
    /// third sits in L1 at any time instead of a twelfth, and RowsNarrow takes two nonzeros per step into four
    /// accumulators. Each thread takes one range of rows and copies each panel into its own buffer once. Measured on
    /// Zen 4 (scratch, 90% sparse, alternated in one process, medians): 768×768 N = 128 one thread 245 against 299 µs,
    /// two threads 129 against 155 µs; N = 512 two threads 506 against 606 µs; 3072×768 N = 128 two threads 496
    /// against 588 µs. At K = 3072 it measured no better (2 threads 658 against 675 µs), so longer K keeps the tiles.
    /// </summary>
    internal const int NarrowPanelMaxK = 1536;

    /// <summary>
    /// Longer K (16-bit indices) is cut into blocks of this many rows of X (a 96 KiB block of a panel), each row's
    /// nonzeros split at the block boundaries by a table made once per call and thread (AlignedPanels-style tag), and
    /// Y's tile accumulated across blocks. Measured on Zen 4 (scratch, 90% sparse 768×3072, medians against the
    /// 64-column tiles used before): N = 128 one thread 1157 against 1275 µs, two threads 636–780 against 626–694 µs
    /// (best 600–611 against 615–635); N = 512 one thread 5.8 against 7.5 ms, two threads 2.49 against 2.86 ms. In a
    /// first scratch version, blocks of 512 rows measured the same as 768 and no blocking 10% slower.
    /// </summary>
    internal const int NarrowKBlock = 768;

    /// <summary>Rows of one thread's split table at most (its rows × (blocks + 1) ints live in a thread buffer).</summary>
    internal const int MaxNarrowSplitInts = 1 << 22;

    [ThreadStatic] static int[]? _split;
    [ThreadStatic] static long _splitCall;
    [ThreadStatic] static int _splitChunk;

    /// <summary>Core over raw CSR arrays (also used for CSC's transposed product).</summary>
    internal static void Run<TIndex>(int rows, int k, int* rowPointers, TIndex* index, float* values, float* x, int n, float* y)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (rows == 0 || n == 0) return;
        long nnz = rowPointers[rows];
        var args = new Args<TIndex>
        {
            RowPointers = rowPointers, Index = index, Values = values, X = x, Y = y, Rows = rows, K = k, N = n,
            Chunks = SpmmMicroKernel.ChunkCount(rows, (nnz + rows) * n, n == 1 ? SpmvMinWork : 131_072),
        };
        int narrowBlocks = k <= NarrowPanelMaxK ? 1 : typeof(TIndex) == typeof(ushort) ? (k + NarrowKBlock - 1) / NarrowKBlock : 0;
        if (n >= 32 && narrowBlocks > 0 && Vector512.IsHardwareAccelerated && AlignedPanels.Pays(nnz, k, n)
            && (narrowBlocks == 1 || (long)rows * (narrowBlocks + 1) <= MaxNarrowSplitInts))
        {
            args.NarrowBlocks = narrowBlocks;
            args.Panels = (n + 31) / 32;
            args.Call = AlignedPanels.NextCall();
            // One range of rows per thread, so each thread copies each panel once (KernelThreads gives thread t the
            // t-th contiguous range of items first: chunk t's panels).
            if (args.Chunks > 1) args.Chunks = KernelThreads.ThreadsFor(args.Chunks);
            args.Items = args.Chunks * args.Panels;
            KernelThreads.For(args.Items, ref args, &Body);
            return;
        }
        if (n > 1)
        {
            int tile = Math.Min(128, n);
            int kBlock = KBlock(rowPointers, rows, k, tile);
            // Unblocked: narrow the tile until the K×tile panel of X fits in L2 (768 KiB), e.g. 64 columns for K = 3072.
            if (kBlock == k)
                while (tile > 16 && (long)k * tile * 4 > 786432) tile /= 2;
            args.Tile = tile;
            args.KBlock = kBlock;
            if (AlignedPanels.Pays(nnz, k, n) && !AlignedPanels.AlreadyAligned(x, n, tile))
            {
                if (args.Chunks > 1 && kBlock == k)
                {
                    // A shared copy is written half by each core and then read whole by both, across cores; a copy
                    // per thread stays in that core's L2. Scratch, 2 threads, 90% sparse, the two alternated 8 times
                    // in one process, best per-thread/best shared: N = 16 0.83–0.86 (3072×768, 768×3072), N = 128
                    // 0.87 (768×768), 0.97 (3072×768), 0.91 (768×3072), N = 512 0.91–0.92; X already aligned (no
                    // copy at all) is faster still: 768×768 N = 128 0.137–0.142 ms against 0.159–0.167 ms.
                    args.PackPerThread = true;
                    args.Call = AlignedPanels.NextCall();
                }
                else
                {
                    args.Packed = AlignedPanels.Pack(x, k, n, tile);
                    args.PanelLd = AlignedPanels.Ld(tile);
                }
            }
        }
        args.Items = args.PackPerThread ? (n + args.Tile - 1) / args.Tile * args.Chunks : args.Chunks;
        KernelThreads.For(args.Items, ref args, &Body);
    }

    const int MaxBlockedRows = 16384;

    /// <summary>
    /// SpMV goes parallel from ~16K nonzeros: a row dot costs ~0.28 ns per nonzero (SpmmMicroKernel.RowDot), so
    /// 768×768 at 90% sparsity (59K nonzeros) is ~16.5 µs on one core and ~9–12 µs on two (Zen 4); an empty parallel
    /// region costs ~0.3 µs when the worker is spinning, a few µs when it has to be woken.
    /// </summary>
    const long SpmvMinWork = 16_384;

    /// <summary>
    /// This thread's table of where rows [from, to) cross the K blocks of <paramref name="blockRows"/> columns
    /// (<see cref="NarrowKBlock"/> unless given): entry (r − from)·(nb + 1) + b is the first nonzero of row r at column
    /// ≥ b·blockRows (b = nb: the row's end). Made once per call and chunk: a row's columns are compared 32 at a time
    /// against every boundary and the hits counted.
    /// </summary>
    internal static int[] SplitTable(int* rp, int from, int to, ushort* index, int nb, long call, int chunk, int blockRows = NarrowKBlock)
    {
        int stride = nb + 1;
        int need = (to - from) * stride;
        if (_split is null || _split.Length < need) { _split = GC.AllocateUninitializedArray<int>(Math.Max(need, 1024), pinned: true); _splitCall = 0; }
        var table = _split;
        if (_splitCall == call && _splitChunk == chunk) return table;
        fixed (int* t = table)
            for (int r = from; r < to; r++)
            {
                int* row = t + (long)(r - from) * stride;
                int start = rp[r], end = rp[r + 1], p = start;
                for (int b = 1; b < nb; b++) row[b] = start;
                for (; p + 32 <= end; p += 32)
                {
                    var columns = Vector512.Load(index + p);
                    for (int b = 1; b < nb; b++)
                        row[b] += BitOperations.PopCount(Vector512.LessThan(columns, Vector512.Create((ushort)(b * blockRows))).ExtractMostSignificantBits());
                }
                for (; p < end; p++)
                    for (int b = index[p] / blockRows + 1; b < nb; b++) row[b]++;
                row[0] = start;
                row[nb] = end;
            }
        _splitCall = call;
        _splitChunk = chunk;
        return table;
    }

    /// <summary>
    /// Rows of X per K block: all of K while the K×tile panel of X fits 256 KiB of L2 or while rows are so sparse
    /// that a block would hold fewer than 64 of a row's nonzeros (then reloading Y's tile per block costs more
    /// than the cache misses it saves); else the block that fits.
    /// </summary>
    static int KBlock(int* rp, int rows, int k, int tile)
    {
        int block = Math.Max(64, 262144 / (tile * 4) / 64 * 64);
        if (k <= block) return k;
        double density = (double)rp[rows] / ((double)rows * k);
        return density * block >= 64 ? block : k;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body<TIndex>(ref Args<TIndex> a, int item) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        if (a.NarrowBlocks > 0)
        {
            int c = item / a.Panels, t = item % a.Panels;
            int from = SpmmMicroKernel.ChunkStart(rp, a.Rows, c, a.Chunks), to = SpmmMicroKernel.ChunkStart(rp, a.Rows, c + 1, a.Chunks);
            int j0 = t * 32, width = Math.Min(32, a.N - j0), ld = AlignedPanels.Ld(width);
            float* yTile = a.Y + (long)from * a.N + j0;
            int nb = a.NarrowBlocks, blockRows = nb == 1 ? a.K : NarrowKBlock;
            // Row r's nonzeros in block b are [split[(r − from)·stride + b], split[(r − from)·stride + b + 1]): the row
            // pointers themselves for one block, else this thread's table of where the rows cross the boundaries.
            int stride = nb == 1 ? 1 : nb + 1;
            int[]? table = nb == 1 ? null : SplitTable(rp, from, to, (ushort*)a.Index, nb, a.Call, c);
            fixed (int* pinned = table)
            {
                int* split = nb == 1 ? rp + from : pinned;
                for (int b = 0; b < nb; b++)
                {
                    int k0 = b * blockRows, kc = Math.Min(blockRows, a.K - k0);
                    // This block's rows of the panel, copied aligned; x + index·ld is X's row index (index ≥ k0) within it.
                    float* x = AlignedPanels.CopyToThreadBuffer(a.X + (long)k0 * a.N + j0, kc, width, a.N, a.Call, t * nb + b) - (long)k0 * ld;
                    if (width == 32)
                        SpmmMicroKernel.RowsNarrow(split + b, stride, to - from, a.Index, a.Values, x, yTile, a.N, add: b > 0);
                    else
                        for (int i = from; i < to; i++)
                        {
                            int* row = split + (long)(i - from) * stride + b;
                            SpmmMicroKernel.RowTile(a.Index + row[0], a.Values + row[0], row[1] - row[0], x, ld, a.Y + (long)i * a.N + j0, width, add: b > 0);
                        }
                }
            }
            return;
        }
        if (a.PackPerThread)
        {
            // Item = panel t, then chunk: this thread's copy of panel t (all K rows of columns [t·Tile, t·Tile + w)).
            int t = item / a.Chunks, c = item % a.Chunks;
            int from = SpmmMicroKernel.ChunkStart(rp, a.Rows, c, a.Chunks), to = SpmmMicroKernel.ChunkStart(rp, a.Rows, c + 1, a.Chunks);
            int j0 = t * a.Tile, width = Math.Min(a.Tile, a.N - j0);
            float* panel = AlignedPanels.CopyToThreadBuffer(a.X + j0, a.K, width, a.N, a.Call, t);
            for (int i = from; i < to; i++)
                SpmmMicroKernel.RowTile(a.Index + rp[i], a.Values + rp[i], rp[i + 1] - rp[i], panel, AlignedPanels.Ld(width), a.Y + (long)i * a.N + j0, width, add: false);
            return;
        }
        int chunk = item;
        int first = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk + 1, a.Chunks);
        int n = a.N;
        if (n == 1)
        {
            for (int i = first; i < last; i++)
                a.Y[i] = SpmmMicroKernel.RowDot(a.Index + rp[i], a.Values + rp[i], rp[i + 1] - rp[i], a.X);
            return;
        }
        int tile = a.Tile, kBlock = a.KBlock;
        if (kBlock < a.K && last - first <= MaxBlockedRows)
        {
            // Long K: blocked along K so the kBlock×tile panel of X (≤ 512 KiB) stays in L2 while every row of the
            // chunk takes its nonzeros in that K range (per-row cursors advance through the sorted columns); Y's
            // tile is accumulated across blocks (reloaded once per block, cheap next to a block's nonzeros).
            int* cursor = stackalloc int[last - first];
            for (int j = 0; j < n; j += tile)
            {
                int w = Math.Min(tile, n - j);
                float* x = a.Packed != null ? a.Packed + (long)(j / tile) * a.K * a.PanelLd : a.X + j;
                int ldx = a.Packed != null ? a.PanelLd : n;
                for (int i = first; i < last; i++) cursor[i - first] = rp[i];
                for (int k0 = 0; k0 < a.K; k0 += kBlock)
                {
                    int kEnd = k0 + kBlock;
                    for (int i = first; i < last; i++)
                    {
                        int start = cursor[i - first], end = rp[i + 1], p = start;
                        while (p < end && int.CreateTruncating(a.Index[p]) < kEnd) p++;
                        cursor[i - first] = p;
                        if (p > start || k0 == 0)
                            SpmmMicroKernel.RowTile(a.Index + start, a.Values + start, p - start, x, ldx, a.Y + (long)i * n + j, w, add: k0 > 0);
                    }
                }
            }
            return;
        }
        for (int j = 0; j < n; j += tile)
        {
            int w = Math.Min(tile, n - j);
            float* x = a.Packed != null ? a.Packed + (long)(j / tile) * a.K * a.PanelLd : a.X + j;
            int ldx = a.Packed != null ? a.PanelLd : n;
            for (int i = first; i < last; i++)
                SpmmMicroKernel.RowTile(a.Index + rp[i], a.Values + rp[i], rp[i + 1] - rp[i], x, ldx, a.Y + (long)i * n + j, w, add: false);
        }
    }
}
