using NanoSparse.Kernels;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

[Collection("KernelThreads")]
public class LayerInputStatsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void GemmGramEqualsTheDoubleLoopAcrossBatchesOfAnySize(int threads)
    {
        const int f = 72;
        int before = KernelThreads.Max;
        KernelThreads.Max = threads;
        try
        {
            var (_, x) = PruningLayers.Make(1, f, 700, 9);
            var stats = new LayerInputStats(f, true);
            // batches: one under a chunk, one over several chunks, a single row
            int[] batches = [100, 599, 1];
            int offset = 0;
            foreach (int rows in batches)
            {
                stats.Accumulate(x.AsSpan(offset * f, rows * f), rows);
                offset += rows;
            }
            Assert.Equal(700, stats.Tokens);
            var gram = new double[f * f];
            var abs = new double[f * f];
            var sum = new double[f];
            var sq = new double[f];
            for (int t = 0; t < 700; t++)
                for (int i = 0; i < f; i++)
                {
                    double xi = x[t * f + i];
                    sum[i] += xi;
                    sq[i] += xi * xi;
                    for (int j = 0; j < f; j++)
                    {
                        gram[i * f + j] += xi * x[t * f + j];
                        abs[i * f + j] += Math.Abs(xi * x[t * f + j]);
                    }
                }
            for (int i = 0; i < f * f; i++)
                Assert.True(Math.Abs(stats.Gram![i] - gram[i]) <= 2e-6 * abs[i], $"Gram[{i}] {stats.Gram[i]} vs {gram[i]}");
            for (int i = 0; i < f; i++)
            {
                Assert.Equal(sum[i], stats.Sum[i], 1e-9);
                Assert.Equal(sq[i], stats.SumSquares[i], 1e-9);
            }
        }
        finally { KernelThreads.Max = before; }
    }

    [Fact]
    public void WithoutGramOnlySumsAreKept()
    {
        var stats = new LayerInputStats(3, false);
        stats.Accumulate([1, 2, 3, -1, 0, 5], 2);
        Assert.Null(stats.Gram);
        Assert.Equal([0.0, 2, 8], stats.Sum);
        Assert.Equal([2.0, 4, 34], stats.SumSquares);
        Assert.Throws<ArgumentException>(() => stats.Accumulate([1, 2], 1));
    }
}
