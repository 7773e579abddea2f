using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The SELL kernel at sizes that go parallel (≥ 4096 steps), on 1, 2 and 3 threads, against a double-precision
/// reference; and x with infinities and NaN, where padding must not turn a row's result into NaN.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class SellSpmmTests
{
    static double[] Reference(float[] s, int m, int k, float[] x, int n, out double[] abs)
    {
        var y = new double[m * n];
        abs = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++)
            {
                if (s[i * k + t] == 0) continue;
                for (int j = 0; j < n; j++)
                {
                    y[i * n + j] += (double)s[i * k + t] * x[t * n + j];
                    abs[i * n + j] += Math.Abs((double)s[i * k + t] * x[t * n + j]);
                }
            }
        return y;
    }

    [Theory]
    [InlineData(768, 768, 0.1, 1)]    // the benchmark's shape: ~7.5K steps, full slices and blocks
    [InlineData(1000, 700, 0.1, 1)]   // partial last slice (1000 = 62·16 + 8) and block (700 = 21·32 + 28)
    [InlineData(333, 3000, 0.05, 1)]
    [InlineData(500, 300, 0.9, 1)]     // dense: block steps up to 32
    [InlineData(300, 200, 0.2, 3)]     // N > 1: per column of X
    [InlineData(17, 33, 0.5, 2)]
    public void MatchesDoubleReference(int m, int k, double density, int n)
    {
        var dense = SparseTestData.RandomDense(m, k, density, (ulong)(m * 31 + k));
        var x = SparseTestData.RandomDense(k, n, 1, (ulong)(m + k * 7));
        var sell = SellMatrix.FromDense(dense, m, k);
        var expected = Reference(dense, m, k, x, n, out var abs);
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                KernelThreads.Max = threads;
                var y = new float[m * n];
                Array.Fill(y, float.NaN);
                SellSpmm.Multiply(sell, x, n, y);
                for (int i = 0; i < y.Length; i++)
                    Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5 * abs[i] + 1e-6,
                        $"{m}x{k} N={n} threads {threads}: y[{i}] = {y[i]}, expected {expected[i]}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void NonFiniteXReachesOnlyTheRowsThatUseIt()
    {
        // Column 32 holds +∞ and column 64 NaN: the first columns of blocks 1 and 2, where a padded slot's index byte
        // (0x80, low five bits 0) points. Rows that do not store those columns must stay finite (0·∞ in a padded slot
        // would make them NaN), and rows that do get what their entries give.
        int m = 400, k = 256;
        var dense = SparseTestData.RandomDense(m, k, 0.1, 7);
        var x = SparseTestData.RandomDense(k, 1, 1, 8);
        x[32] = float.PositiveInfinity;
        x[64] = float.NaN;
        var sell = SellMatrix.FromDense(dense, m, k);
        var y = new float[m];
        SellSpmm.Multiply(sell, x, 1, y);
        int finiteRows = 0;
        for (int i = 0; i < m; i++)
        {
            float a = dense[i * k + 32], b = dense[i * k + 64];
            if (b != 0) Assert.True(float.IsNaN(y[i]), $"row {i} stores column 64 (NaN): got {y[i]}");
            else if (a != 0) Assert.Equal(a > 0 ? float.PositiveInfinity : float.NegativeInfinity, y[i]);
            else
            {
                finiteRows++;
                double sum = 0;
                for (int t = 0; t < k; t++) if (dense[i * k + t] != 0) sum += (double)dense[i * k + t] * x[t];
                Assert.True(Math.Abs(y[i] - sum) <= 1e-4, $"row {i}: got {y[i]}, expected {sum}");
            }
        }
        Assert.True(finiteRows > 200, $"only {finiteRows} rows avoid both columns");
    }
}
