using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>
/// Dense single-precision matrix multiply, row-major:
/// C (m×n) = alpha · op(A) · op(B) + beta · C, where op(A) is m×k and op(B) is k×n.
/// A is stored m×k (row stride lda) or, when transA, k×m; B is stored k×n (ldb) or, when transB, n×k.
/// When beta == 0, C is not read (NaN in C does not propagate).
/// </summary>
/// <remarks>
/// Goto/BLIS layering (Goto and van de Geijn 2008; Van Zee and van de Geijn 2015). C is cut into blocks of at most
/// <see cref="MC"/> rows, which are the parallel work items (column blocks instead when C is wide and short, as in
/// dW = dYᵀ·X with few output rows). op(B) is packed once per call into NR-column micro-panels shared by all items
/// (when it fits <see cref="SharedPackLimit"/>; otherwise each item packs KC×NC blocks itself). Inside an item, k is
/// cut into <see cref="KC"/> slices; <see cref="GemmMicroKernel"/> computes 12×32 tiles with 24 zmm accumulators,
/// the A micro-panel (MR×KC, 12 KiB) staying in L1 while B micro-panels stream from L2/L3. Full A micro-panels are
/// read where op(A) is stored (row-major A as 12 rows, Aᵀ with each k step 12 contiguous floats); otherwise, and for
/// the partial last panel, the item packs them into MR-row micro-panels in a buffer allocated once per thread. Tiles
/// cut by the edge of C run the same kernel on zero-padded panels into a stack tile. Tiny products and m = 1 skip
/// packing and threads.
/// </remarks>
public static unsafe class Gemm
{
    /// <summary>Depth of a packed block (k slice).</summary>
    public const int KC = 256;
    /// <summary>Most rows of C per work item (rows of a packed A block); a multiple of MR.</summary>
    public const int MC = 192;
    /// <summary>Most rows per work item when op(B) is too large to share (see <see cref="SharedPackLimit"/>).</summary>
    const int MaxRowChunk = 4 * MC;
    /// <summary>Most columns of a packed B block; a multiple of NR.</summary>
    public const int NC = 512;

    const int MR = GemmMicroKernel.MR;
    const int NR = GemmMicroKernel.NR;

    /// <summary>Below this many multiply-adds (m·n·k), the direct loops win over packing.</summary>
    const long SmallWork = 1 << 16;
    /// <summary>Below this many multiply-adds, one thread does the whole product.</summary>
    const long SerialWork = 1 << 19;

    /// <summary>The instruction set the micro-kernel uses on this machine: avx512, avx2 or scalar.</summary>
    public static string InstructionSet => GemmMicroKernel.InstructionSet;

    [ThreadStatic] static float* _packA;
    [ThreadStatic] static float* _packB;
    [ThreadStatic] static float* _sharedB;
    [ThreadStatic] static long _sharedBCapacity;

    /// <summary>
    /// Largest op(B), in floats, that is packed once per call into a buffer of the calling thread and shared by all
    /// work items (default 8 Mi floats = 32 MiB: every weight matrix, and the activations X of dW = dYᵀ·X for
    /// B·T·C up to 8 Mi), per thread taking part. Larger op(B) is packed block by block inside each item. Tuning knob;
    /// results do not depend on it.
    /// </summary>
    public static long SharedPackLimit { get; set; } = 8L << 20;
    /// <summary>Largest row stride (floats) of an operand read in place rather than packed.</summary>
    const int InPlaceStride = 1024;
    /// <summary>Columns per pre-packing work item.</summary>
    const int PrepackCols = 4 * NR;

    public static void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc) =>
        Multiply(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Epilogue.None, default, 0);

    /// <summary>
    /// C (m×n) = alpha · op(A) · op(B) + R, with R (m×n, row stride ldr) added to each tile of C while the tile is still
    /// in cache (a residual connection without a separate pass over C). R must not overlap C.
    /// </summary>
    public static void MultiplyAdd(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, ReadOnlySpan<float> addend, int ldr, Span<float> c, int ldc) =>
        Multiply(transA, transB, m, n, k, alpha, a, lda, b, ldb, 0f, c, ldc, Epilogue.Add, addend, ldr);

    /// <summary>
    /// C (m×n) = (alpha · op(A) · op(B)) ⊙ S, elementwise with S (m×n, row stride lds), applied to each tile of C while
    /// it is still in cache (e.g. a gradient times an activation's derivative). S must not overlap C.
    /// </summary>
    public static void MultiplyScaled(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, ReadOnlySpan<float> scale, int lds, Span<float> c, int ldc) =>
        Multiply(transA, transB, m, n, k, alpha, a, lda, b, ldb, 0f, c, ldc, Epilogue.Multiply, scale, lds);

    /// <summary>What is done to each finished tile of C with a second matrix E.</summary>
    enum Epilogue { None, Add, Multiply }

    static void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        Epilogue epilogue, ReadOnlySpan<float> e, int lde)
    {
        Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (m == 0 || n == 0) return;
        if (epilogue != Epilogue.None)
        {
            string name = epilogue == Epilogue.Add ? "addend" : "scale";
            CheckOperand(name, epilogue == Epilogue.Add ? "ldr" : "lds", m, n, e.Length, lde);
            if (e.Overlaps(c)) throw new ArgumentException($"{name} must not overlap c", name);
        }
        if (k == 0 || alpha == 0)
        {
            ScaleC(m, n, beta, c, ldc);
            ApplyEpilogue(m, n, c, ldc, epilogue, e, lde);
            return;
        }
        long work = (long)m * n * k;
        if (m == 1 || work < SmallWork)
        {
            MultiplySmall(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            ApplyEpilogue(m, n, c, ldc, epilogue, e, lde);
            return;
        }

        int threads = work < SerialWork || KernelThreads.InsideRegion ? 1 : KernelThreads.Max;
        long sharedFloats = (long)k * RoundUp(n, NR);
        // The shared pack is filled by all threads at once, so the limit scales with them: on one thread a large op(B)
        // is better packed block by block (it stays in cache); on several, packing it once beats every item repacking it.
        long shareLimit = SharedPackLimit * threads;
        int rowChunk, colChunk;
        if (threads == 1 || m >= n)
        {
            // Split rows (the B·T rows of a layer): items share the packed op(B) and each packs only its op(A) rows.
            // An op(B) too large to share is packed again by every item: then items take up to MaxRowChunk rows
            // (the A block only has to fit L3: its micro-panels are what sits in L1) so it is repacked less often.
            colChunk = n;
            int most = sharedFloats <= shareLimit ? MC : MaxRowChunk;
            rowChunk = Math.Min(most, RoundUp(CeilDiv(m, threads), MR));
        }
        else
        {
            // Wide, short C (e.g. dW with few output rows): split columns, so the small op(A) is what gets packed again.
            rowChunk = Math.Min(MC, RoundUp(m, MR));
            colChunk = RoundUp(CeilDiv(n, threads), NR);
        }

        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        fixed (float* pe = e)
        {
            var args = new Args
            {
                A = pa, B = pb, C = pc, Lda = lda, Ldb = ldb, Ldc = ldc, E = pe, Lde = lde, Epilogue = epilogue,
                M = m, N = n, K = k, Alpha = alpha, Beta = beta, TransA = transA, TransB = transB,
                RowChunk = rowChunk, ColChunk = colChunk,
                ColItems = CeilDiv(n, colChunk),
            };
            int rowItems = CeilDiv(m, rowChunk);
            int items = rowItems * args.ColItems;
            // op(A) read in place (see Block): as Aᵀ when its rows are short enough to keep a micro-panel's k steps
            // close together; as A when the strided 12×32 kernel exists, no column panel is partial (edge tiles take packed
            // panels) and the 12 rows do not all fall into the same L1 sets (a row stride of a multiple of 4 KiB).
            bool aInPlace = transA
                ? lda <= InPlaceStride
                : GemmMicroKernel.HasStridedKernel && n % NR == 0 && lda % 1024 != 0;
            args.AInPlace = aInPlace;

            // When several row items would each pack the same op(B) columns again, pack all of op(B) once, in
            // parallel, into a buffer of the calling thread: k slices of KC rows, each a row of NR-column
            // micro-panels. Items of one row block own disjoint columns and pack their blocks themselves, which
            // keeps those blocks in cache (a shared pack of a large op(B) would go through memory twice).
            int nPad = RoundUp(n, NR);
            if (rowItems > 1 && sharedFloats <= shareLimit)
            {
                args.PackedB = EnsureSharedB(sharedFloats);
                args.NPad = nPad;
                args.PrepackGroups = CeilDiv(n, PrepackCols);
                int packItems = CeilDiv(k, KC) * args.PrepackGroups;
                if (threads == 1)
                    for (int i = 0; i < packItems; i++) PrepackB(ref args, i);
                else
                    KernelThreads.For(packItems, ref args, &PrepackB);
            }

            if (threads == 1)
                for (int i = 0; i < items; i++) Block(ref args, i);
            else
                KernelThreads.For(items, ref args, &Block);
        }
    }

    struct Args
    {
        public float* A, B, C;
        public int Lda, Ldb, Ldc, M, N, K;
        public float Alpha, Beta;
        public bool TransA, TransB;
        public int RowChunk, ColChunk, ColItems;
        public float* PackedB;          // all of op(B) packed once, or null: each item packs its own
        public float* E;                // the epilogue's matrix (row stride Lde), applied to finished tiles
        public int Lde;
        public Epilogue Epilogue;
        public int NPad, PrepackGroups;
        public bool AInPlace;           // full MR-row panels of op(A) are read where they are stored (see Block)
    }

    /// <summary>Packs one KC slice × PrepackCols columns of op(B) into the shared buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot from the first call: no tier-0 phase
    static void PrepackB(ref Args g, int item)
    {
        int p0 = item / g.PrepackGroups * KC;
        int jc = item % g.PrepackGroups * PrepackCols;
        int kc = Math.Min(KC, g.K - p0);
        int nc = Math.Min(PrepackCols, g.N - jc);
        GemmPacking.PackB(g.TransB, g.B, g.Ldb, p0, kc, jc, nc, g.PackedB + (long)p0 * g.NPad + (long)jc * kc);
    }

    static float* EnsureSharedB(long floats)
    {
        if (_sharedBCapacity < floats)
        {
            if (_sharedB != null) NativeMemory.AlignedFree(_sharedB);
            _sharedB = AllocatePackBuffer(floats);
            _sharedBCapacity = floats;
        }
        return _sharedB;
    }

    /// <summary>One work item: rows [i0, i0+RowChunk) × columns [j0, j0+ColChunk) of C, all of k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot from the first call: no tier-0 phase
    static void Block(ref Args g, int item)
    {
        int i0 = item / g.ColItems * g.RowChunk;
        int j0 = item % g.ColItems * g.ColChunk;
        int mc = Math.Min(g.RowChunk, g.M - i0);
        int jEnd = Math.Min(j0 + g.ColChunk, g.N);
        float* packA = _packA;
        if (packA == null) packA = _packA = AllocatePackBuffer(MaxRowChunk * KC);
        float* packB = _packB;
        if (packB == null) packB = _packB = AllocatePackBuffer(KC * NC);
        int fullRows = mc / MR * MR;
        long lda = g.Lda;

        for (int p0 = 0; p0 < g.K; p0 += KC)
        {
            int kc = Math.Min(KC, g.K - p0);
            float beta = p0 == 0 ? g.Beta : 1f; // later k slices accumulate onto the first
            // op(A): full MR-row panels are read in place when the layout allows (see AInPlace); the partial last
            // panel, or all of them otherwise, are packed, each at offset ir·kc of packA.
            bool last = g.Epilogue != Epilogue.None && p0 + kc == g.K;   // the epilogue runs after the last k slice
            if (!g.AInPlace) GemmPacking.PackA(g.TransA, g.A, g.Lda, i0, mc, p0, kc, packA);
            else if (fullRows < mc) GemmPacking.PackA(g.TransA, g.A, g.Lda, i0 + fullRows, mc - fullRows, p0, kc, packA + fullRows * kc);
            for (int jc = j0; jc < jEnd; jc += NC)
            {
                int nc = Math.Min(NC, jEnd - jc);
                float* bBlock;
                if (g.PackedB != null) bBlock = g.PackedB + (long)p0 * g.NPad + (long)jc * kc;
                else GemmPacking.PackB(g.TransB, g.B, g.Ldb, p0, kc, jc, nc, bBlock = packB);
                for (int ir = 0; ir < mc; ir += MR)
                {
                    int rows = Math.Min(MR, mc - ir);
                    float* cRow = g.C + (long)(i0 + ir) * g.Ldc + jc;
                    // The A micro-panel and its k step: packed (MR), or in place: op(A) = Aᵀ has each k step as MR
                    // contiguous floats of a stored row (step lda); op(A) = A is 12 stored rows (row stride lda).
                    float* ap = packA + ir * kc;
                    int aStep = MR;
                    bool rowsKernel = false;
                    if (rows == MR && g.AInPlace)
                    {
                        if (g.TransA) { ap = g.A + (long)p0 * lda + i0 + ir; aStep = g.Lda; }
                        else { ap = g.A + (i0 + ir) * lda + p0; rowsKernel = true; }
                    }
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int cols = Math.Min(NR, nc - jr);
                        float* bp = bBlock + jr * kc;
                        if (last) GemmMicroKernel.PrefetchRows(g.E + (long)(i0 + ir) * g.Lde + jc + jr, g.Lde, rows);
                        if (rows == MR && cols == NR)
                        {
                            if (rowsKernel) GemmMicroKernel.Kernel12x32Avx512(kc, ap, lda, 1, bp, cRow + jr, g.Ldc, g.Alpha, beta);
                            else GemmMicroKernel.Run(kc, ap, aStep, bp, cRow + jr, g.Ldc, g.Alpha, beta);
                        }
                        else
                            EdgeTile(kc, ap, aStep, bp, cRow + jr, g.Ldc, rows, cols, g.Alpha, beta);
                        if (last)   // the tile is final and still in L1
                            TileEpilogue(cRow + jr, g.Ldc, g.E + (long)(i0 + ir) * g.Lde + jc + jr, g.Lde, rows, cols, g.Epilogue);
                    }
                }
            }
        }
    }

    /// <summary>A tile cut by the edge of C: the kernel writes a full tile on the stack, the valid part is merged.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot from the first call: no tier-0 phase
    static void EdgeTile(int kc, float* ap, int aStep, float* bp, float* c, int ldc, int rows, int cols, float alpha, float beta)
    {
        float* tile = stackalloc float[MR * NR];
        // Only as many columns as the panel has, rounded up to 8 (e.g. the last 21 of n = V = 85 run 24, not 32).
        GemmMicroKernel.RunColumns(cols, kc, ap, aStep, bp, tile, NR, 1f, 0f);
        for (int r = 0; r < rows; r++)
        {
            float* cr = c + (long)r * ldc;
            float* tr = tile + r * NR;
            if (beta == 0)
                for (int j = 0; j < cols; j++) cr[j] = alpha * tr[j];
            else
                for (int j = 0; j < cols; j++) cr[j] = alpha * tr[j] + beta * cr[j];
        }
    }

    /// <summary>c (rows×cols, stride ldc) += e or *= e (stride lde), a tile at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void TileEpilogue(float* c, int ldc, float* e, int lde, int rows, int cols, Epilogue kind)
    {
        bool add = kind == Epilogue.Add;
        for (int r = 0; r < rows; r++, c += ldc, e += lde)
        {
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; j + 16 <= cols; j += 16)
                {
                    var x = Vector512.Load(c + j);
                    var y = Vector512.Load(e + j);
                    (add ? x + y : x * y).Store(c + j);
                }
            for (; j < cols; j++) c[j] = add ? c[j] + e[j] : c[j] * e[j];
        }
    }

    static void ApplyEpilogue(int m, int n, Span<float> c, int ldc, Epilogue kind, ReadOnlySpan<float> e, int lde)
    {
        if (kind == Epilogue.None) return;
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (kind == Epilogue.Add) TensorPrimitives.Add(row, e.Slice(i * lde, n), row);
            else TensorPrimitives.Multiply(row, e.Slice(i * lde, n), row);
        }
    }

    /// <summary>Per-thread packing buffer, allocated once for the life of the thread (workers never exit), 64-byte aligned.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static float* AllocatePackBuffer(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);

    /// <summary>
    /// Direct loops for tiny products and m == 1 (one token through a layer): packing would cost more than it saves.
    /// </summary>
    static void MultiplySmall(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var cRow = c.Slice(i * ldc, n);
            if (transB)
            {
                // C[i, j] = Σ_p op(A)[i, p] · B[j, p]: dot products with the stored rows of B.
                if (!transA)
                {
                    var aRow = a.Slice(i * lda, k);
                    for (int j = 0; j < n; j++)
                    {
                        float dot = TensorPrimitives.Dot(aRow, b.Slice(j * ldb, k));
                        cRow[j] = beta == 0 ? alpha * dot : alpha * dot + beta * cRow[j];
                    }
                }
                else
                {
                    for (int j = 0; j < n; j++)
                    {
                        var bRow = b.Slice(j * ldb, k);
                        float dot = 0;
                        for (int p = 0; p < k; p++) dot += a[p * lda + i] * bRow[p];
                        cRow[j] = beta == 0 ? alpha * dot : alpha * dot + beta * cRow[j];
                    }
                }
            }
            else
            {
                // C[i, :] = beta·C[i, :] + Σ_p (alpha·op(A)[i, p]) · B[p, :]: row updates with the stored rows of B.
                if (beta == 0) cRow.Clear();
                else if (beta != 1) TensorPrimitives.Multiply(cRow, beta, cRow);
                for (int p = 0; p < k; p++)
                {
                    float av = alpha * (transA ? a[p * lda + i] : a[i * lda + p]);
                    TensorPrimitives.MultiplyAdd(b.Slice(p * ldb, n), av, cRow, cRow);
                }
            }
        }
    }

    static void ScaleC(int m, int n, float beta, Span<float> c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (beta == 0) row.Clear();
            else if (beta != 1) TensorPrimitives.Multiply(row, beta, row);
        }
    }

    static void Validate(bool transA, bool transB, int m, int n, int k,
        int aLength, int lda, int bLength, int ldb, int cLength, int ldc)
    {
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, "m must be >= 0");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be >= 0");
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be >= 0");
        CheckOperand("a", "lda", transA ? k : m, transA ? m : k, aLength, lda);
        CheckOperand("b", "ldb", transB ? n : k, transB ? k : n, bLength, ldb);
        CheckOperand("c", "ldc", m, n, cLength, ldc);
    }

    static void CheckOperand(string name, string ldName, int rows, int cols, int length, int ld)
    {
        if (ld < Math.Max(1, cols))
            throw new ArgumentOutOfRangeException(ldName, ld, $"{ldName} ({ld}) must be at least the stored row length of {name} ({cols})");
        if (rows == 0 || cols == 0) return;
        long needed = (long)(rows - 1) * ld + cols;
        if (length < needed)
            throw new ArgumentException($"{name} has {length} elements but a {rows}×{cols} matrix with row stride {ldName} = {ld} needs {needed}", name);
    }

    static int CeilDiv(int x, int y) => (x + y - 1) / y;
    static int RoundUp(int x, int y) => CeilDiv(x, y) * y;
}
