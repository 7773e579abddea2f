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
