using System.Runtime.CompilerServices;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y = S·X with S (M×K) N:M sparse along K, X (K×N), Y (M×N) row-major. Row i's kept values are contiguous
/// (groups of M along K, N kept each); the kernel decodes the row's packed in-group indices (2 bits each for 2:4)
/// into absolute K indices k = g·M + idx once per row, in a stack buffer, then accumulates the kept rows of X
/// exactly as the CSR kernel does (Vector512 FMAs into register tiles of Y). Every row has the same nnz, so rows
/// are split evenly.
/// </summary>
public static unsafe class NmSpmm
{
    /// <summary>Longest row decoded at once (floats on the stack = 4 bytes each); longer rows run in segments.</summary>
    const int Segment = 4096;

    public static void Multiply(NmSparseMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        if (s.Cols == 0) { y.Slice(0, s.Rows * n).Clear(); return; }
        fixed (float* v = s.Values, px = x, py = y)
        fixed (byte* idx = s.Indices)
        {
            var args = new Args
            {
                Values = v, Indices = idx, X = px, Y = py, Rows = s.Rows, K = s.Cols, N = n, KeptN = s.N, M = s.M,
                Bits = s.BitsPerIndex, Chunks = SpmmMicroKernel.ChunkCount(s.Rows, (long)s.Values.Length * n),
            };
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public float* Values, X, Y;
        public byte* Indices;
        public int Rows, K, N, KeptN, M, Bits, Chunks;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int InGroup(byte* indices, long slot, int bits)
    {
        long bit = slot * bits;
        int word = indices[bit >> 3] | (indices[(bit >> 3) + 1] << 8);
        return (word >> (int)(bit & 7)) & ((1 << bits) - 1);
    }

    static void Body(ref Args a, int chunk)
    {
        int first = (int)((long)a.Rows * chunk / a.Chunks), last = (int)((long)a.Rows * (chunk + 1) / a.Chunks);
        int perRow = a.K / a.M * a.KeptN;
        int segment = Math.Min(perRow, Segment / a.KeptN * a.KeptN);
        int* k = stackalloc int[segment];
        int tile = SpmmMicroKernel.TileWidth(a.K);
        for (int i = first; i < last; i++)
        {
            long rowSlot = (long)i * perRow;
            for (int s0 = 0; s0 < perRow; s0 += segment)
            {
                int count = Math.Min(segment, perRow - s0);
                // Absolute column of each kept value: group g = slot / N, k = g·M + in-group index.
                if (a.Bits == 2 && a.KeptN == 2 && a.M == 4 && perRow % 4 == 0)
                {
                    // 2:4: one byte = two groups = four 2-bit indices.
                    byte* bytes = a.Indices + (rowSlot + s0) / 4;
                    int g0 = s0 / 2;
                    for (int q = 0; q < count; q += 4)
                    {
                        int bt = bytes[q >> 2], g = (g0 + (q >> 1)) * 4;
                        k[q] = g + (bt & 3); k[q + 1] = g + ((bt >> 2) & 3);
                        if (q + 2 < count) { k[q + 2] = g + 4 + ((bt >> 4) & 3); k[q + 3] = g + 4 + (bt >> 6); }
                    }
                }
                else
                {
                    for (int q = 0; q < count; q++)
                    {
                        long slot = rowSlot + s0 + q;
                        k[q] = (s0 + q) / a.KeptN * a.M + InGroup(a.Indices, slot, a.Bits);
                    }
                }
                float* values = a.Values + rowSlot + s0;
                if (a.N == 1)
                {
                    float dot = SpmmMicroKernel.RowDot(k, values, count, a.X);
                    a.Y[i] = s0 > 0 ? a.Y[i] + dot : dot;
                    continue;
                }
                for (int j = 0; j < a.N; j += tile)
                    SpmmMicroKernel.RowTile(k, values, count, a.X + j, a.N, a.Y + (long)i * a.N + j, Math.Min(tile, a.N - j), add: s0 > 0);
            }
        }
    }
}
