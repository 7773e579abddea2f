using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// SDDMM over tiles of 256 rows × 64 columns of B (SddmmTiled, D a multiple of 64): runs of 0..20 nonzeros inside one
/// tile (eight per step, then four, then one), rows spread over every tile (runs split at the boundaries), a last tile
/// shorter than 256 rows, D of one, three and four 64-column pieces (partial sums added into the output), 1 and 2
/// threads, both index widths, written and added into the output; against a double-precision reference.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class SddmmTiledTests
{
    [Theory]
    [InlineData(630, 300, 64, true)]
    [InlineData(630, 300, 192, false)]
    [InlineData(1600, 1000, 256, true)]
    [InlineData(1600, 1000, 128, false)]
    public void RunsWithinAndAcrossTilesMatchDoubleReference(int m, int k, int d, bool shortIndices)
    {
        var rng = new Rng((ulong)(m + k + d));
        int tiles = (k + 255) / 256;
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            var picked = new SortedSet<int>();
            if (i % 5 == 4)
                while (picked.Count < 40) picked.Add((int)(rng.NextDouble() * k));   // across every tile
            else
            {
                int tile = i % tiles, first = tile * 256, width = Math.Min(256, k - first);
                while (picked.Count < i % 21) picked.Add(first + (int)(rng.NextDouble() * width));   // one tile, 0..20 long
            }
            columns.AddRange(picked);
            rowPointers[i + 1] = columns.Count;
        }
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), new float[columns.Count], shortIndices);
        Assert.True(SddmmTiled.Takes(columns.Count, k, d) || !CsrSpmmTokenMajor.Supported, "the shape must reach the tiled path");
        var a = SparseTestData.RandomDense(m, d, 1, 18);
        var b = SparseTestData.RandomDense(k, d, 1, 19);
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                var output = new float[columns.Count];
                Array.Fill(output, float.NaN);
                Sddmm.Compute(s, a, b, d, output);
                SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, d, output);
                // Accumulating (a Linear's dValues +=): every output gains exactly its dot product.
                var start = SparseTestData.RandomDense(1, columns.Count, 1, 20);
                var sum = (float[])start.Clone();
                RunAccumulating(s, a, b, d, sum);
                for (int p = 0; p < sum.Length; p++) sum[p] -= start[p];
                SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, d, sum);
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(630, 300, 64, true)]     // one full block of 64 tokens
    [InlineData(630, 300, 45, false)]    // one short block (zero-padded)
    [InlineData(1600, 1000, 130, true)]  // two full blocks and a 2-token one; four K tiles, the last 232 rows
    [InlineData(97, 513, 200, false)]    // a 1-row last K tile, rows not a multiple of 8
    public void TokenMajorMatchesDoubleReference(int m, int k, int tokens, bool shortIndices)
    {
        if (!CsrSpmmTokenMajor.Supported) return;   // the layouts take the feature-major panels (their own tests)
        var rng = new Rng((ulong)(m + k + tokens));
        int tiles = (k + 255) / 256;
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            var picked = new SortedSet<int>();
            if (i % 5 == 4)
                while (picked.Count < 40) picked.Add((int)(rng.NextDouble() * k));   // across every tile
            else
            {
                int tile = i % tiles, first = tile * 256, width = Math.Min(256, k - first);
                while (picked.Count < Math.Min(i % 21, width)) picked.Add(first + (int)(rng.NextDouble() * width));   // one tile, 0..20 long
            }
            columns.AddRange(picked);
            rowPointers[i + 1] = columns.Count;
        }
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), new float[columns.Count], shortIndices);
        var dy = SparseTestData.RandomDense(tokens, m, 1, 21);   // (tokens, m): A = dyᵀ
        var x = SparseTestData.RandomDense(tokens, k, 1, 22);    // (tokens, k): B = xᵀ
        var a = new float[m * tokens];
        var b = new float[k * tokens];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < m; i++) a[i * tokens + t] = dy[t * m + i];
            for (int j = 0; j < k; j++) b[j * tokens + t] = x[t * k + j];
        }
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                KernelThreads.Max = threads;
                var start = SparseTestData.RandomDense(1, columns.Count, 1, 23);
                var sum = (float[])start.Clone();
                var biasStart = SparseTestData.RandomDense(1, m, 1, 24);
                var bias = (float[])biasStart.Clone();
                RunTokenMajor(s, dy, x, tokens, sum, bias);
                for (int p = 0; p < sum.Length; p++) sum[p] -= start[p];
                SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, tokens, sum);
                for (int i = 0; i < m; i++)
                {
                    double expected = biasStart[i], abs = Math.Abs(biasStart[i]);
                    for (int t = 0; t < tokens; t++) { expected += dy[t * m + i]; abs += Math.Abs(dy[t * m + i]); }
                    Assert.True(Math.Abs(bias[i] - expected) <= 1e-5 * abs + 1e-6, $"threads={threads}: dBias[{i}] = {bias[i]}, expected {expected}");
                }
                // Without a bias gradient the weight gradient is the same.
                var again = (float[])start.Clone();
                RunTokenMajor(s, dy, x, tokens, again, null);
                for (int p = 0; p < again.Length; p++) again[p] -= start[p];
                SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, tokens, again);
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    static unsafe void RunTokenMajor(CsrMatrix s, float[] dy, float[] x, int tokens, float[] output, float[]? biasGradient)
    {
        fixed (int* rp = s.RowPointers)
        fixed (float* pdy = dy, px = x, po = output, pb = biasGradient)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) SddmmTiled.RunTokenMajor(s.Rows, s.Cols, rp, ci, pdy, s.Rows, px, s.Cols, tokens, po, pb);
            else fixed (int* ci = s.ColumnIndices32) SddmmTiled.RunTokenMajor(s.Rows, s.Cols, rp, ci, pdy, s.Rows, px, s.Cols, tokens, po, pb);
        }
    }

    static unsafe void RunAccumulating(CsrMatrix s, float[] a, float[] b, int d, float[] output)
    {
        fixed (int* rp = s.RowPointers)
        fixed (float* pa = a, pb = b, po = output)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) SddmmTiled.Run(s.Rows, s.Cols, rp, ci, pa, pb, d, po, accumulate: true);
            else fixed (int* ci = s.ColumnIndices32) SddmmTiled.Run(s.Rows, s.Cols, rp, ci, pa, pb, d, po, accumulate: true);
        }
    }
}
