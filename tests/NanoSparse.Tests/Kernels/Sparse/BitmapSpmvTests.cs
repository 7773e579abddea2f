using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The bitmap SpMV against a double-precision reference on 1, 2 and 3 threads, odd shapes (columns not a multiple of
/// 64 or 16), empty rows and words; and x with infinities and NaN, which must reach only the rows that store their column.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class BitmapSpmvTests
{
    [Theory]
    [InlineData(3072, 768, 0.5)]    // the decode shape
    [InlineData(768, 3072, 0.3)]
    [InlineData(1000, 700, 0.1)]    // 700 = 10·64 + 60
    [InlineData(333, 37, 0.7)]
    [InlineData(17, 1, 1.0)]
    [InlineData(200, 1100, 0.003)]  // mostly empty rows and words
    public void MatchesDoubleReference(int m, int k, double density)
    {
        var dense = SparseTestData.RandomDense(m, k, density, (ulong)(m * 13 + k));
        for (int r = 0; r < m; r += 5) dense.AsSpan(r * k, k).Clear();
        var x = SparseTestData.RandomDense(k, 1, 1, (ulong)(m + k * 3));
        var bitmap = BitmapMatrix.FromDense(dense, m, k);
        var expected = new double[m];
        var abs = new double[m];
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++)
            {
                expected[i] += (double)dense[i * k + t] * x[t];
                abs[i] += Math.Abs((double)dense[i * k + t] * x[t]);
            }
        int saved = KernelThreads.Max;
        long savedMin = BitmapSpmv.MinParallelWeights;
        try
        {
            BitmapSpmv.MinParallelWeights = 1024;
            foreach (int threads in new[] { 1, 2, 3 })
            {
                KernelThreads.Max = threads;
                var y = new float[m];
                Array.Fill(y, float.NaN);
                BitmapSpmv.Multiply(bitmap, x, y);
                for (int i = 0; i < m; i++)
                    Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5 * abs[i] + 1e-6,
                        $"{m}x{k} threads {threads}: y[{i}] = {y[i]}, expected {expected[i]}");
            }
        }
        finally { KernelThreads.Max = saved; BitmapSpmv.MinParallelWeights = savedMin; }
    }

    [Fact]
    public void NonFiniteXReachesOnlyTheRowsThatUseIt()
    {
        int m = 300, k = 200;
        var dense = SparseTestData.RandomDense(m, k, 0.3, 11);
        var x = SparseTestData.RandomDense(k, 1, 1, 12);
        x[3] = float.PositiveInfinity;
        x[100] = float.NaN;
        var y = new float[m];
        BitmapSpmv.Multiply(BitmapMatrix.FromDense(dense, m, k), x, y);
        int finiteRows = 0;
        for (int i = 0; i < m; i++)
        {
            float a = dense[i * k + 3], b = dense[i * k + 100];
            if (b != 0) Assert.True(float.IsNaN(y[i]), $"row {i} stores column 100 (NaN): got {y[i]}");
            else if (a != 0) Assert.Equal(a > 0 ? float.PositiveInfinity : float.NegativeInfinity, y[i]);
            else
            {
                finiteRows++;
                double sum = 0;
                for (int t = 0; t < k; t++) if (dense[i * k + t] != 0) sum += (double)dense[i * k + t] * x[t];
                Assert.True(Math.Abs(y[i] - sum) <= 1e-4, $"row {i}: got {y[i]}, expected {sum}");
            }
        }
        Assert.True(finiteRows > 100, $"only {finiteRows} rows avoid both columns");
    }

    [Fact]
    public void NonFiniteWeightsReachOnlyTheirRows()
    {
        // The fast path loads 16 values from each piece's start, so lanes past the piece's count hold the next piece's
        // (or row's) values: an infinity or NaN there must not leak into the rows around it.
        int m = 200, k = 300;
        var dense = SparseTestData.RandomDense(m, k, 0.5, 21);
        var x = SparseTestData.RandomDense(k, 1, 1, 22);
        int nanRow = 50, infRow = 51;
        int nanCol = Array.FindIndex(dense, nanRow * k, k, v => v != 0) - nanRow * k;
        int infCol = Array.FindLastIndex(dense, infRow * k + k - 1, k, v => v != 0) - infRow * k;
        dense[nanRow * k + nanCol] = float.NaN;
        dense[infRow * k + infCol] = float.PositiveInfinity;
        x[infCol] = Math.Abs(x[infCol]) + 0.5f;
        var y = new float[m];
        BitmapSpmv.Multiply(BitmapMatrix.FromDense(dense, m, k), x, y);
        for (int i = 0; i < m; i++)
        {
            if (i == nanRow) { Assert.True(float.IsNaN(y[i]), $"row {i} stores a NaN weight: got {y[i]}"); continue; }
            if (i == infRow) { Assert.Equal(float.PositiveInfinity, y[i]); continue; }
            double sum = 0, abs = 0;
            for (int t = 0; t < k; t++) { sum += (double)dense[i * k + t] * x[t]; abs += Math.Abs((double)dense[i * k + t] * x[t]); }
            Assert.True(Math.Abs(y[i] - sum) <= 1e-5 * abs + 1e-6, $"row {i}: got {y[i]}, expected {sum}");
        }
    }

    [Theory]
    [InlineData(768, 3072)]
    [InlineData(50, 200)]      // 200 = 3·64 + 8: a partial last word
    public void TwoFourPatternMatchesDoubleReference(int m, int k)
    {
        // 2:4 is a bitmap with exactly two of every four bits set (8 values per 16-column piece).
        var rng = new Random(m + k);
        var dense = new float[m * k];
        for (int i = 0; i < m; i++)
            for (int g = 0; g < k / 4; g++)
            {
                int a = rng.Next(4), b;
                do b = rng.Next(4); while (b == a);
                dense[i * k + 4 * g + a] = (float)(rng.NextDouble() * 2 - 1);
                dense[i * k + 4 * g + b] = (float)(rng.NextDouble() * 2 - 1);
            }
        var x = SparseTestData.RandomDense(k, 1, 1, 5);
        var y = new float[m];
        BitmapSpmv.Multiply(BitmapMatrix.FromDense(dense, m, k), x, y);
        for (int i = 0; i < m; i++)
        {
            double sum = 0, abs = 0;
            for (int t = 0; t < k; t++) { sum += (double)dense[i * k + t] * x[t]; abs += Math.Abs((double)dense[i * k + t] * x[t]); }
            Assert.True(Math.Abs(y[i] - sum) <= 1e-5 * abs + 1e-6, $"{m}x{k} row {i}: got {y[i]}, expected {sum}");
        }
    }
}
