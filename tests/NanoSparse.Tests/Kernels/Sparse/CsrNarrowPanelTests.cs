using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// CSR S·X over 32-column panels (N ≥ 32; K > 1536 in blocks of 768 rows of X with each row split at the block
/// boundaries): full panels through SpmmMicroKernel.RowsNarrow, a narrower last panel through the general row tile, rows of every parity and empty rows, at 1, 2 and 3 threads (one row range per
/// thread, items stolen across ranges), both index widths; against a double-precision reference.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class CsrNarrowPanelTests
{
    [Theory]
    [InlineData(300, 768, 0.1, 128)]   // four full panels
    [InlineData(257, 1000, 0.2, 48)]   // a full panel and a 16-column one
    [InlineData(120, 1536, 0.1, 100)]  // K at the limit; three full panels and a 4-column scalar one
    [InlineData(90, 64, 0.5, 32)]      // one panel, short K
    [InlineData(1000, 1537, 0.05, 64)] // K past the limit: blocks of 768, 768 and 1 rows of X (32-bit indices: the tiles)
    [InlineData(300, 3072, 0.1, 128)]  // four K blocks, four panels
    [InlineData(200, 2000, 0.2, 48)]   // three K blocks (the last short), a full and a 16-column panel
    [InlineData(50, 2304, 0.6, 33)]    // dense rows: every row crosses every boundary; a 1-column scalar panel
    [InlineData(3, 200, 0.3, 64)]      // fewer rows than some thread counts' ranges would like
    public void MatchesDoubleReference(int m, int k, double density, int n)
    {
        var dense = SparseTestData.RandomDense(m, k, density, (ulong)(m * 31 + k));
        // Every 7th row empty, every 5th row a single nonzero: both parities and the empty case in every panel.
        for (int i = 0; i < m; i++)
        {
            if (i % 7 == 3) Array.Clear(dense, i * k, k);
            else if (i % 5 == 1) { float keep = dense[i * k + i % k]; Array.Clear(dense, i * k, k); dense[i * k + i % k] = keep == 0 ? 1.5f : keep; }
        }
        var x = SparseTestData.RandomDense(k, n, 1, 77);
        var y = new double[m * n];
        var abs = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++)
            {
                double s = dense[i * k + t];
                if (s == 0) continue;
                for (int j = 0; j < n; j++) { y[i * n + j] += s * x[t * n + j]; abs[i * n + j] += Math.Abs(s * x[t * n + j]); }
            }
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
                foreach (bool shortIndices in new[] { true, false })
                {
                    KernelThreads.Max = threads;
                    var csr = CsrMatrix.FromDense(dense, m, k, shortIndices);
                    var got = new float[m * n];
                    Array.Fill(got, float.NaN);
                    CsrSpmm.Multiply(csr, x, n, got);
                    for (int e = 0; e < got.Length; e++)
                    {
                        double tol = 1e-5 * abs[e] + 1e-6;
                        if (!(Math.Abs(got[e] - y[e]) <= tol))
                            Assert.Fail($"{m}x{k} N={n} threads={threads} short={shortIndices}: Y[{e / n},{e % n}] = {got[e]}, expected {y[e]}");
                    }
                }
        }
        finally { KernelThreads.Max = saved; }
    }
}
