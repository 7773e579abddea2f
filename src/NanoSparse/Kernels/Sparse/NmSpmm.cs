using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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

    /// <summary>For each byte of 2:4 indices (two groups): the four kept columns relative to the first group's start.</summary>
    static readonly int[] TwoFourOffsets = BuildTwoFourOffsets();

    static int[] BuildTwoFourOffsets()
    {
        var t = new int[256 * 4];
        for (int b = 0; b < 256; b++)
        {
            t[b * 4] = b & 3; t[b * 4 + 1] = (b >> 2) & 3; t[b * 4 + 2] = 4 + ((b >> 4) & 3); t[b * 4 + 3] = 4 + (b >> 6);
        }
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int InGroup(byte* indices, long slot, int bits)
    {
        long bit = slot * bits;
        int word = indices[bit >> 3] | (indices[(bit >> 3) + 1] << 8);
        return (word >> (int)(bit & 7)) & ((1 << bits) - 1);
    }

    /// <summary>Decodes the absolute columns of slots [slot0, slot0 + count) of one row (slot0 relative to the row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Decode(ref Args a, long rowSlot, int slot0, int count, int* k, int* lut)
    {
        // Absolute column of each kept value: group g = slot / N, k = g·M + in-group index.
        if (a.Bits == 2 && a.KeptN == 2 && a.M == 4 && (rowSlot + slot0) % 4 == 0)
        {
            // 2:4: one byte = two groups = four 2-bit indices; a 256-entry table turns a byte into its four
            // offsets within the 8 columns it covers (one 128-bit load + add + store per byte).
            byte* bytes = a.Indices + (rowSlot + slot0) / 4;
            int g0 = slot0 * 2;
            int q = 0;
            if (Vector128.IsHardwareAccelerated)
                for (; q + 4 <= count; q += 4)
                    (Vector128.Load(lut + bytes[q >> 2] * 4) + Vector128.Create(g0 + q * 2)).Store(k + q);
            for (; q < count; q++) k[q] = g0 + (q >> 2) * 8 + lut[bytes[q >> 2] * 4 + (q & 3)];
            return;
        }
        for (int q = 0; q < count; q++)
            k[q] = (slot0 + q) / a.KeptN * a.M + InGroup(a.Indices, rowSlot + slot0 + q, a.Bits);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = (int)((long)a.Rows * chunk / a.Chunks), last = (int)((long)a.Rows * (chunk + 1) / a.Chunks);
        int groups = a.K / a.M;
        int perRow = groups * a.KeptN;
        fixed (int* lut = TwoFourOffsets)
        {
            if (a.N == 1)
            {
                // SpMV: decode a whole row (in segments) and take its gathered dot product with x.
                int segmentGroups = Math.Max(1, Segment / a.KeptN);
                int* k1 = stackalloc int[Math.Min(perRow, segmentGroups * a.KeptN)];
                for (int i = first; i < last; i++)
                {
                    long rowSlot = (long)i * perRow;
                    float sum = 0;
                    for (int g = 0; g < groups; g += segmentGroups)
                    {
                        int count = Math.Min(segmentGroups, groups - g) * a.KeptN;
                        Decode(ref a, rowSlot, g * a.KeptN, count, k1, lut);
                        sum += SpmmMicroKernel.RowDot(k1, a.Values + rowSlot + g * a.KeptN, count, a.X);
                    }
                    a.Y[i] = sum;
                }
                return;
            }

            // S·X blocked along K: the rows of X for a block of K (blockGroups·M rows × tile columns, ≤ 16 KiB) stay
            // in L1 while every row of the chunk uses them, so the kernel's X loads come from L1, not L2 (the
            // bandwidth limit at 50% density); Y's tile is re-loaded and stored once per K block.
            int tile = a.N >= 128 ? 128 : a.N >= 64 ? 64 : 32;
            int blockGroups = Math.Max(2, 16384 / (tile * 4) / a.M / 2 * 2);
            if (blockGroups >= groups) blockGroups = groups;
            int* k = stackalloc int[blockGroups * a.KeptN];
            for (int j = 0; j < a.N; j += tile)
            {
                int w = Math.Min(tile, a.N - j);
                for (int g = 0; g < groups; g += blockGroups)
                {
                    int count = Math.Min(blockGroups, groups - g) * a.KeptN;
                    for (int i = first; i < last; i++)
                    {
                        long rowSlot = (long)i * perRow;
                        Decode(ref a, rowSlot, g * a.KeptN, count, k, lut);
                        SpmmMicroKernel.RowTile(k, a.Values + rowSlot + g * a.KeptN, count, a.X + j, a.N, a.Y + (long)i * a.N + j, w, add: g > 0);
                    }
                }
            }
        }
    }
}
