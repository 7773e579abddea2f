using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// A dense row-major operand (rows × n) copied into 64-byte-aligned column panels, for kernels that load whole rows of
/// it per nonzero (S·X's X, SDDMM's B). Why: a Vector512 load straddles two cache lines unless the row starts are
/// 64-byte aligned, and a .NET array is only 8- or 16-byte aligned; measured on Zen 4 (one thread, 90% sparse,
/// N = 128), the CSR kernel over a 64-byte-aligned X is 1.15x (768×768) to 1.3x (3072×768) faster than over X at a
/// 16-byte offset. Panel t holds columns [t·tile, t·tile + tile) of every row, row stride Ld (tile rounded up to
/// 16, zero-padded), so a panel narrower than n is also contiguous (no unused half-rows dragged through the cache).
/// The buffer is per calling thread, grown once and pinned, so steady-state calls allocate nothing.
/// </summary>
internal static unsafe class AlignedPanels
{
    [ThreadStatic] static float[]? _buffer;

    /// <summary>
    /// Packing pays when the operand's rows are used ≥ 8 times on average (the copy is then ≤ 1/8 of the row traffic)
    /// and the operand is not so small that it sits in L1/L2 either way: measured at 90% sparsity, 2 threads,
    /// packed/in place is 0.92x for 768×768 N=16 (X 48 KiB, rows used 77 times), 1.3x for 3072×768 N=16 (same X,
    /// used 307 times), 1.05–1.3x for 768×768 N=32 and 1.7x for 768×3072 N=16.
    /// </summary>
    public static bool Pays(long uses, int rows, int n) =>
        n >= 16 && Vector512.IsHardwareAccelerated && uses >= 8L * rows && ((long)rows * n > 16_384 || uses >= 128L * rows);

    /// <summary>
    /// Whether x as it is already gives what a single full-width panel would: every row start 64-byte aligned
    /// (x aligned and n a multiple of 16). Then only a narrowed tile (tile &lt; n) is worth a copy.
    /// </summary>
    public static bool AlreadyAligned(float* x, int n, int tile) => tile == n && n % 16 == 0 && ((nint)x & 63) == 0;

    /// <summary>Row stride of a panel of <paramref name="tile"/> columns.</summary>
    public static int Ld(int tile) => (tile + 15) / 16 * 16;

    /// <summary>Copies x (rows × n) into panels of <paramref name="tile"/> columns; returns panel 0 (panel t at + t·rows·Ld).</summary>
    public static float* Pack(float* x, int rows, int n, int tile)
    {
        int ld = Ld(tile);
        int panels = (n + tile - 1) / tile;
        long need = (long)panels * rows * ld + 16;
        if (_buffer is null || _buffer.Length < need) _buffer = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
        // The array is pinned (never moves) and stays referenced by _buffer, so the pointer outlives this frame.
        float* packed = (float*)(((nint)Unsafe.AsPointer(ref _buffer[0]) + 63) & ~(nint)63);
        // Split over the threads from 32K floats (768×128 takes ~25 µs on one core, a tenth of the product it feeds).
        var args = new Args { X = x, Packed = packed, Rows = rows, N = n, Tile = tile, Ld = ld, Chunks = SpmmMicroKernel.ChunkCount(rows, (long)rows * n, 32_768) };
        KernelThreads.For(args.Chunks, ref args, &Body);
        return packed;
    }

    [ThreadStatic] static float[]? _private;
    [ThreadStatic] static long _privateCall;
    [ThreadStatic] static int _privatePart;
    static long _calls;

    /// <summary>A fresh tag for one kernel call's per-thread copies (see <see cref="CopyToThreadBuffer"/>).</summary>
    public static long NextCall() => Interlocked.Increment(ref _calls);

    /// <summary>
    /// Copies <paramref name="cols"/> columns of rows [0, rows) of x (row stride ldx) into this thread's own
    /// 64-byte-aligned buffer with row stride Ld(cols) (zero-padded) and returns it, unless the buffer already holds
    /// part <paramref name="part"/> of call <paramref name="call"/> (a thread that takes several work items of the same
    /// part copies it once). For a kernel's worker threads: each copies what it reads itself, so the copy lands in its
    /// own L2 instead of being written half by one core and read whole by the other (see Sddmm, CsrSpmm).
    /// </summary>
    public static float* CopyToThreadBuffer(float* x, int rows, int cols, int ldx, long call, int part)
    {
        int ld = Ld(cols);
        long need = (long)rows * ld + 16;
        if (_private is null || _private.Length < need)
        {
            _private = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
            _privateCall = 0;
        }
        float* packed = (float*)(((nint)Unsafe.AsPointer(ref _private[0]) + 63) & ~(nint)63);
        if (_privateCall == call && _privatePart == part) return packed;
        _privateCall = call;
        _privatePart = part;
        for (int r = 0; r < rows; r++)
        {
            float* dst = packed + (long)r * ld;
            Buffer.MemoryCopy(x + (long)r * ldx, dst, (long)cols * 4, (long)cols * 4);
            for (int c = cols; c < ld; c++) dst[c] = 0;
        }
        return packed;
    }

    struct Args
    {
        public float* X, Packed;
        public int Rows, N, Tile, Ld, Chunks;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = (int)((long)a.Rows * chunk / a.Chunks), last = (int)((long)a.Rows * (chunk + 1) / a.Chunks);
        for (int j = 0, t = 0; j < a.N; j += a.Tile, t++)
        {
            int w = Math.Min(a.Tile, a.N - j);
            float* panel = a.Packed + (long)t * a.Rows * a.Ld;
            for (int r = first; r < last; r++)
            {
                float* dst = panel + (long)r * a.Ld;
                Buffer.MemoryCopy(a.X + (long)r * a.N + j, dst, (long)w * 4, (long)w * 4);
                for (int c = w; c < a.Ld; c++) dst[c] = 0;
            }
        }
    }
}
