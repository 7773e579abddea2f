using System.Runtime.CompilerServices;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y (M×N) = S·X with S in canonical COO (sorted by row, then column), X (K×N) row-major. Sorted COO is CSR with
/// the row pointer spelled out per entry, so the kernel cuts the entries into chunks of equal nnz, moves each cut
/// forward to the start of a row (a row never straddles two threads), and runs each row through the CSR
/// register-tile micro-kernel. Rows with no entries get zeros.
/// </summary>
public static unsafe class CooSpmm
{
    public static void Multiply(CooMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        fixed (int* r = s.RowIndices, c = s.ColumnIndices)
        fixed (float* v = s.Values, px = x, py = y)
        {
            var args = new Args
            {
                Rows = r, Cols = c, Values = v, X = px, Y = py, RowCount = s.Rows, K = s.Cols, N = n, Nnz = s.NonZeroCount,
                Chunks = SpmmMicroKernel.ChunkCount(s.Rows, ((long)s.NonZeroCount + s.Rows) * n),
            };
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public int* Rows, Cols;
        public float* Values, X, Y;
        public int RowCount, K, N, Nnz, Chunks;
    }

    /// <summary>First entry of chunk c: the first entry at or after c·nnz/chunks that starts a row.</summary>
    static int EntryStart(ref Args a, int c)
    {
        if (c <= 0) return 0;
        if (c >= a.Chunks) return a.Nnz;
        int p = (int)((long)a.Nnz * c / a.Chunks);
        while (p > 0 && p < a.Nnz && a.Rows[p] == a.Rows[p - 1]) p++;
        return p;
    }

    static int RowAt(ref Args a, int p, int c) => c <= 0 ? 0 : c >= a.Chunks || p >= a.Nnz ? a.RowCount : a.Rows[p];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int p0 = EntryStart(ref a, chunk), p1 = EntryStart(ref a, chunk + 1);
        int firstRow = RowAt(ref a, p0, chunk), lastRow = RowAt(ref a, p1, chunk + 1);
        int tile = SpmmMicroKernel.TileWidth(a.K);
        for (int j = 0; j < a.N; j += tile)
        {
            int w = Math.Min(tile, a.N - j);
            int p = p0;
            for (int i = firstRow; i < lastRow; i++)
            {
                int start = p;
                while (p < p1 && a.Rows[p] == i) p++;
                float* yTile = a.Y + (long)i * a.N + j;
                if (a.N == 1) *yTile = SpmmMicroKernel.RowDot(a.Cols + start, a.Values + start, p - start, a.X);
                else SpmmMicroKernel.RowTile(a.Cols + start, a.Values + start, p - start, a.X + j, a.N, yTile, w, add: false);
            }
        }
    }
}
