using System.Numerics;
using NanoSparse.Sparse;

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
        public int Rows, K, N, Chunks;
    }

    /// <summary>Core over raw CSR arrays (also used for CSC's transposed product).</summary>
    internal static void Run<TIndex>(int rows, int k, int* rowPointers, TIndex* index, float* values, float* x, int n, float* y)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (rows == 0 || n == 0) return;
        var args = new Args<TIndex>
        {
            RowPointers = rowPointers, Index = index, Values = values, X = x, Y = y, Rows = rows, K = k, N = n,
            Chunks = SpmmMicroKernel.ChunkCount(rows, ((long)rowPointers[rows] + rows) * n),
        };
        KernelThreads.For(args.Chunks, ref args, &Body);
    }

    static void Body<TIndex>(ref Args<TIndex> a, int chunk) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int* rp = a.RowPointers;
        int first = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(rp, a.Rows, chunk + 1, a.Chunks);
        int n = a.N;
        if (n == 1)
        {
            for (int i = first; i < last; i++)
                a.Y[i] = SpmmMicroKernel.RowDot(a.Index + rp[i], a.Values + rp[i], rp[i + 1] - rp[i], a.X);
            return;
        }
        int tile = SpmmMicroKernel.TileWidth(a.K);
        for (int j = 0; j < n; j += tile)
        {
            int w = Math.Min(tile, n - j);
            for (int i = first; i < last; i++)
                SpmmMicroKernel.RowTile(a.Index + rp[i], a.Values + rp[i], rp[i + 1] - rp[i], a.X + j, n, a.Y + (long)i * n + j, w, add: false);
        }
    }
}
