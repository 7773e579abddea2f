namespace NanoSparse.Kernels;

/// <summary>
/// Runs a row-wise kernel over [0, rows) in a few coarse contiguous chunks on <see cref="KernelThreads"/>, and
/// serially when the work is too small to pay for waking threads. The body receives a row range [start, end).
/// </summary>
internal static unsafe class RowParallel
{
    /// <summary>Below this many scalar operations a kernel runs on the calling thread.</summary>
    const long MinParallelWork = 1 << 15;

    struct Chunked<TArgs> where TArgs : unmanaged
    {
        public TArgs* Args;
        public delegate*<ref TArgs, int, int, void> Body;
        public int Rows;
        public int RowsPerChunk;
    }

    public static void For<TArgs>(int rows, long workPerRow, ref TArgs args, delegate*<ref TArgs, int, int, void> body)
        where TArgs : unmanaged
    {
        if (rows <= 0) return;
        int threads = KernelThreads.ThreadsFor(rows);
        if (threads <= 1 || rows * workPerRow < MinParallelWork)
        {
            body(ref args, 0, rows);
            return;
        }
        // A few chunks per thread balance uneven progress without paying per-row dispatch.
        int chunks = Math.Min(rows, threads * 4);
        int perChunk = (rows + chunks - 1) / chunks;
        chunks = (rows + perChunk - 1) / perChunk;
        fixed (TArgs* p = &args)
        {
            var chunked = new Chunked<TArgs> { Args = p, Body = body, Rows = rows, RowsPerChunk = perChunk };
            KernelThreads.For(chunks, ref chunked, &ChunkBody<TArgs>);
        }
    }

    static void ChunkBody<TArgs>(ref Chunked<TArgs> c, int chunk) where TArgs : unmanaged
    {
        int start = chunk * c.RowsPerChunk;
        int end = Math.Min(c.Rows, start + c.RowsPerChunk);
        c.Body(ref *c.Args, start, end);
    }
}
