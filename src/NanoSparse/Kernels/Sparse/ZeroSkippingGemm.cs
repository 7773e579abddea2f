using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Dense Y (M×N) = A (M×K) · B (K×N), all row-major, for an A that is mostly zero at run time (an activation after
/// ReLU) but is stored dense. Each row of A is scanned 16 floats at a time: an all-zero block costs one compare and
/// is skipped, an all-zero row just clears its row of Y; the nonzero lanes are compacted (index, value) into a stack
/// buffer and then accumulated like a CSR row: Y[i,:] = Σ A[i,k]·B[k,:] over the nonzero k, in Vector512 register
/// tiles. Work is O(nnz(A)·N + M·K/16) instead of O(M·K·N).
/// </summary>
public static unsafe class ZeroSkippingGemm
{
    const int Segment = 4096;

    public static void Multiply(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"negative shape M={m}, N={n}, K={k}");
        if (a.Length < (long)m * k) throw new ArgumentException($"A has {a.Length} elements, expected M*K = {m}*{k}", nameof(a));
        if (b.Length < (long)k * n) throw new ArgumentException($"B has {b.Length} elements, expected K*N = {k}*{n}", nameof(b));
        if (y.Length < (long)m * n) throw new ArgumentException($"Y has {y.Length} elements, expected M*N = {m}*{n}", nameof(y));
        if (m == 0 || n == 0) return;
        fixed (float* pa = a, pb = b, py = y)
        {
            var args = new Args { A = pa, B = pb, Y = py, M = m, N = n, K = k, Chunks = SpmmMicroKernel.ChunkCount(m, (long)m * k + (long)m * n * 8) };
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public float* A, B, Y;
        public int M, N, K, Chunks;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = (int)((long)a.M * chunk / a.Chunks), last = (int)((long)a.M * (chunk + 1) / a.Chunks);
        int segment = Math.Min(Math.Max(a.K, 1), Segment);
        int* index = stackalloc int[segment];
        float* value = stackalloc float[segment];
        int tile = SpmmMicroKernel.TileWidth(a.K);
        for (int i = first; i < last; i++)
        {
            float* row = a.A + (long)i * a.K;
            float* yRow = a.Y + (long)i * a.N;
            bool written = false;
            for (int k0 = 0; k0 < a.K; k0 += segment)
            {
                int kEnd = Math.Min(a.K, k0 + segment);
                int count = 0;
                int k = k0;
                if (Vector512.IsHardwareAccelerated)
                {
                    for (; k + 16 <= kEnd; k += 16)
                    {
                        var v = Vector512.Load(row + k);
                        ulong nonzero = ~Vector512.Equals(v, Vector512<float>.Zero).ExtractMostSignificantBits() & 0xFFFF;
                        while (nonzero != 0)
                        {
                            int lane = BitOperations.TrailingZeroCount(nonzero);
                            index[count] = k + lane;
                            value[count++] = row[k + lane];
                            nonzero &= nonzero - 1;
                        }
                    }
                }
                for (; k < kEnd; k++)
                    if (row[k] != 0) { index[count] = k; value[count++] = row[k]; }
                if (count == 0) continue;
                for (int j = 0; j < a.N; j += tile)
                    SpmmMicroKernel.RowTile(index, value, count, a.B + j, a.N, yRow + j, Math.Min(tile, a.N - j), add: written);
                written = true;
            }
            if (!written) new Span<float>(yRow, a.N).Clear();
        }
    }
}
