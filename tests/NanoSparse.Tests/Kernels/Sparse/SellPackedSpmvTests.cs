using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The packed SELL-128 SpMV against a double-precision reference on 1, 2 and 3 threads (bit-identical across them:
/// every row is summed by one thread in a fixed order), odd shapes, empty rows and blocks; and x with infinities and
/// NaN, where the cleared lanes of a tail step must not reach rows that do not use them.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class SellPackedSpmvTests
{
    static double[] Reference(float[] s, int m, int k, float[] x, out double[] abs)
    {
        var y = new double[m];
        abs = new double[m];
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++)
            {
                y[i] += (double)s[i * k + t] * x[t];
                abs[i] += Math.Abs((double)s[i * k + t] * x[t]);
            }
        return y;
    }

    [Theory]
    [InlineData(3072, 768, 0.1)]    // the decode shape: parallel
    [InlineData(768, 3072, 0.3)]
    [InlineData(1000, 700, 0.1)]    // partial last slice (1000 = 62·16 + 8) and block (700 = 5·128 + 60)
    [InlineData(333, 3000, 0.05)]
    [InlineData(500, 300, 0.95)]    // nearly dense: lanes of up to 128 entries
    [InlineData(64, 256, 1.0)]      // dense: full steps only
    [InlineData(17, 33, 0.5)]
    [InlineData(200, 1100, 0.003)]  // mostly empty rows and blocks
    [InlineData(40, 17000, 0.02)]   // 133 and 266 blocks: block numbers past one byte in the control records
    public void MatchesDoubleReference(int m, int k, double density)
    {
        foreach (int width in new[] { SellPackedMatrix.WideBlock, SellPackedMatrix.NarrowBlock })
        foreach (int window in new[] { 1, 64, 256 })   // row order, and SELL-C-σ (rows packed, y written through the order)
            Check(m, k, density, window, width);
    }

    static void Check(int m, int k, double density, int window, int width)
    {
        var dense = SparseTestData.RandomDense(m, k, density, (ulong)(m * 31 + k));
        for (int r = 0; r < m; r += 7) dense.AsSpan(r * k, k).Clear();   // empty rows
        var x = SparseTestData.RandomDense(k, 1, 1, (ulong)(m + k * 7));
        var packed = SellPackedMatrix.FromDense(dense, m, k, window, width);
        var expected = Reference(dense, m, k, x, out var abs);
        int saved = KernelThreads.Max;
        long savedMin = SellPackedSpmv.MinParallelSlots;
        float[]? first = null;
        try
        {
            SellPackedSpmv.MinParallelSlots = 64;
            foreach (int threads in new[] { 1, 2, 3 })
            {
                KernelThreads.Max = threads;
                var y = new float[m];
                Array.Fill(y, float.NaN);
                SellPackedSpmv.Multiply(packed, x, y);
                for (int i = 0; i < m; i++)
                    Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5 * abs[i] + 1e-6,
                        $"{m}x{k} σ {window} width {width} threads {threads}: y[{i}] = {y[i]}, expected {expected[i]}");
                if (first is null) first = y;
                else Assert.Equal(first, y);   // bit-identical to one thread
            }
        }
        finally { KernelThreads.Max = saved; SellPackedSpmv.MinParallelSlots = savedMin; }
    }

    [Theory]
    [InlineData(1, 128)]
    [InlineData(256, 128)]
    [InlineData(1, 64)]
    [InlineData(256, 64)]
    public void NonFiniteXReachesOnlyTheRowsThatUseIt(int window, int width)
    {
        // Column 0 (+∞) and column 256 (NaN): a cleared lane of a tail step fetches x at whatever index byte follows in
        // the stream, so rows that do not store them must stay finite, rows that do get what their entries give.
        int m = 400, k = 600;
        var dense = SparseTestData.RandomDense(m, k, 0.1, 7);
        var x = SparseTestData.RandomDense(k, 1, 1, 8);
        x[0] = float.PositiveInfinity;
        x[256] = float.NaN;
        var packed = SellPackedMatrix.FromDense(dense, m, k, window, width);
        var y = new float[m];
        SellPackedSpmv.Multiply(packed, x, y);
        int finiteRows = 0;
        for (int i = 0; i < m; i++)
        {
            float a = dense[i * k], b = dense[i * k + 256];
            if (b != 0) Assert.True(float.IsNaN(y[i]), $"row {i} stores column 256 (NaN): got {y[i]}");
            else if (a != 0) Assert.Equal(a > 0 ? float.PositiveInfinity : float.NegativeInfinity, y[i]);
            else
            {
                finiteRows++;
                double sum = 0;
                for (int t = 0; t < k; t++) if (dense[i * k + t] != 0) sum += (double)dense[i * k + t] * x[t];
                Assert.True(Math.Abs(y[i] - sum) <= 1e-4, $"row {i}: got {y[i]}, expected {sum}");
            }
        }
        Assert.True(finiteRows > 250, $"only {finiteRows} rows avoid both columns");
    }

    [Theory]
    [InlineData(128)]
    [InlineData(64)]
    public void InfiniteWeightsStayInTheirRows(int width)
    {
        // Stored values are entries only (no padding slots): an infinite or NaN weight reaches its own row and no other.
        int m = 48, k = 256;
        var dense = SparseTestData.RandomDense(m, k, 0.1, 9);
        dense[3 * k + 10] = float.PositiveInfinity;
        dense[20 * k + 130] = float.NaN;
        var x = SparseTestData.RandomDense(k, 1, 1, 10);
        for (int i = 0; i < k; i++) x[i] = Math.Abs(x[i]) + 0.5f;   // positive: +∞ · x stays +∞
        var y = new float[m];
        SellPackedSpmv.Multiply(SellPackedMatrix.FromDense(dense, m, k, blockWidth: width), x, y);
        for (int i = 0; i < m; i++)
        {
            if (i == 3) Assert.Equal(float.PositiveInfinity, y[i]);
            else if (i == 20) Assert.True(float.IsNaN(y[i]));
            else Assert.True(float.IsFinite(y[i]), $"row {i}: {y[i]}");
        }
    }
}
