using System.Runtime.CompilerServices;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y (M×N) = S·X with S in BSR (blocks r×c), X (K×N) row-major. For each row inside a block row, the stored blocks'
/// columns and that row's slice of their values are laid out as one CSR-like row (c consecutive columns per block)
/// in a stack buffer, then run through the CSR register-tile micro-kernel; a block's c consecutive rows of X are
/// contiguous in memory (one K-strip), which is what makes blocks friendlier to the prefetcher than scattered nonzeros.
/// Block rows are split evenly over threads by stored blocks.
/// </summary>
public static unsafe class BsrSpmm
{
    const int Segment = 4096;

    public static void Multiply(BsrMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        fixed (int* bp = s.BlockRowPointers)
        fixed (float* v = s.Values, px = x, py = y)
        {
            int[] idx32 = s.BlockColumnIndices32 ?? [];
            ushort[] idx16 = s.BlockColumnIndices16 ?? [];
            fixed (int* i32 = idx32)
            fixed (ushort* i16 = idx16)
            {
                var args = new Args
                {
                    Pointers = bp, Index32 = s.HasShortIndices ? null : i32, Index16 = s.HasShortIndices ? i16 : null, Values = v, X = px, Y = py,
                    BlockRowCount = s.BlockRowCount, R = s.BlockRows, C = s.BlockCols, K = s.Cols, N = n,
                    Chunks = SpmmMicroKernel.ChunkCount(s.BlockRowCount, ((long)s.Values.Length + s.Rows) * n),
                };
                KernelThreads.For(args.Chunks, ref args, &Body);
            }
        }
    }

    struct Args
    {
        public int* Pointers, Index32;
        public ushort* Index16;
        public float* Values, X, Y;
        public int BlockRowCount, R, C, K, N, Chunks;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = SpmmMicroKernel.ChunkStart(a.Pointers, a.BlockRowCount, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.Pointers, a.BlockRowCount, chunk + 1, a.Chunks);
        int blocksPerSegment = Math.Max(1, Segment / a.C);
        int* index = stackalloc int[blocksPerSegment * a.C];
        float* value = stackalloc float[blocksPerSegment * a.C];
        int tile = SpmmMicroKernel.TileWidth(a.K);
        int rc = a.R * a.C;
        for (int b = first; b < last; b++)
            for (int r = 0; r < a.R; r++)
            {
                float* yRow = a.Y + ((long)b * a.R + r) * a.N;
                int p0 = a.Pointers[b], p1 = a.Pointers[b + 1];
                bool written = false;
                for (int ps = p0; ps < p1 || !written; ps += blocksPerSegment)
                {
                    int pe = Math.Min(p1, ps + blocksPerSegment);
                    int count = 0;
                    for (int p = ps; p < pe; p++)
                    {
                        int col0 = (a.Index16 != null ? a.Index16[p] : a.Index32[p]) * a.C;
                        float* blockRow = a.Values + (long)p * rc + r * a.C;
                        for (int q = 0; q < a.C; q++) { index[count] = col0 + q; value[count++] = blockRow[q]; }
                    }
                    if (a.N == 1)
                    {
                        float dot = SpmmMicroKernel.RowDot(index, value, count, a.X);
                        *yRow = written ? *yRow + dot : dot;
                    }
                    else
                        for (int j = 0; j < a.N; j += tile)
                            SpmmMicroKernel.RowTile(index, value, count, a.X + j, a.N, yRow + j, Math.Min(tile, a.N - j), add: written);
                    written = true;
                }
            }
    }
}
