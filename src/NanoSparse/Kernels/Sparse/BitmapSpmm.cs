using System.Runtime.CompilerServices;
using System.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y (M×N) = S·X with S as a bitmap (one bit per element + packed values), X (K×N) row-major. A row's set bits are
/// expanded into column indices (trailing-zero count per bit, a 64-column word of zeros skipped at once) in a stack
/// buffer; the row's values are already contiguous, so the CSR register-tile micro-kernel then does the product.
/// Rows are split by nnz using the stored row offsets.
/// </summary>
public static unsafe class BitmapSpmm
{
    const int Segment = 4096;

    public static void Multiply(BitmapMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        fixed (ulong* bits = s.Bits)
        fixed (int* offsets = s.RowOffsets)
        fixed (float* v = s.Values, px = x, py = y)
        {
            var args = new Args
            {
                Bits = bits, Offsets = offsets, Values = v, X = px, Y = py, Rows = s.Rows, K = s.Cols, N = n, Words = s.WordsPerRow,
                Chunks = SpmmMicroKernel.ChunkCount(s.Rows, ((long)s.NonZeroCount + s.Rows) * n),
            };
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public ulong* Bits;
        public int* Offsets;
        public float* Values, X, Y;
        public int Rows, K, N, Words, Chunks;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = SpmmMicroKernel.ChunkStart(a.Offsets, a.Rows, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.Offsets, a.Rows, chunk + 1, a.Chunks);
        int* index = stackalloc int[Segment];
        int tile = SpmmMicroKernel.TileWidth(a.K);
        for (int i = first; i < last; i++)
        {
            ulong* words = a.Bits + (long)i * a.Words;
            float* values = a.Values + a.Offsets[i];
            float* yRow = a.Y + (long)i * a.N;
            int count = 0, done = 0;
            bool written = false;
            for (int w = 0; w <= a.Words; w++)
            {
                // Flush when the buffer could overflow on the next word, and after the last word.
                if (w == a.Words || count > Segment - 64)
                {
                    if (count > 0 || (w == a.Words && !written))
                    {
                        if (a.N == 1)
                        {
                            float dot = SpmmMicroKernel.RowDot(index, values + done, count, a.X);
                            *yRow = written ? *yRow + dot : dot;
                        }
                        else
                            for (int j = 0; j < a.N; j += tile)
                                SpmmMicroKernel.RowTile(index, values + done, count, a.X + j, a.N, yRow + j, Math.Min(tile, a.N - j), add: written);
                        written = true;
                        done += count;
                        count = 0;
                    }
                    if (w == a.Words) break;
                }
                ulong word = words[w];
                while (word != 0)
                {
                    index[count++] = (w << 6) + BitOperations.TrailingZeroCount(word);
                    word &= word - 1;
                }
            }
        }
    }
}
