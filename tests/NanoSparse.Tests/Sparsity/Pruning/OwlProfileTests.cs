using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

public sealed class OwlProfileTests
{
    [Theory]
    [InlineData(0.7, 0.08)]
    [InlineData(0.5, 0.2)]
    [InlineData(0.6, 0.0)]
    public void BlockSparsitiesAverageToTheTargetAndFallAsOutlierRatiosRise(double target, double lambda)
    {
        double[] ratios = [0.010, 0.042, 0.003, 0.027, 0.015, 0.042];
        var s = OwlProfile.Sparsities(ratios, target, lambda);
        Assert.Equal(target, s.Average(), 12);
        for (int a = 0; a < ratios.Length; a++)
            for (int b = 0; b < ratios.Length; b++)
                if (ratios[a] > ratios[b]) Assert.True(lambda == 0 ? s[a] == s[b] : s[a] < s[b], $"block {a} (ratio {ratios[a]}) must be less sparse than block {b} (ratio {ratios[b]})");
                else if (ratios[a] == ratios[b]) Assert.Equal(s[a], s[b], 12);
        // The spread is 2λ: the block with the most outliers sits 2λ below the one with the fewest.
        Assert.Equal(2 * lambda, s[2] - s[1], 12);
        // Linear in the ratios, as the paper's code: S_l = S − 2λ·(r_l − mean r), r min-max normalized.
        double min = ratios.Min(), max = ratios.Max();
        var r = ratios.Select(d => (d - min) / (max - min)).ToArray();
        for (int l = 0; l < ratios.Length; l++) Assert.Equal(target - 2 * lambda * (r[l] - r.Average()), s[l], 12);
    }

    [Fact]
    public void EqualRatiosGiveTheUniformTargetAndAnImpossibleSpreadIsRefused()
    {
        Assert.All(OwlProfile.Sparsities([0.02, 0.02, 0.02], 0.7, 0.08), v => Assert.Equal(0.7, v, 12));
        var e = Assert.Throws<ArgumentException>(() => OwlProfile.Sparsities([0.0, 1.0], 0.95, 0.2));
        Assert.Contains("--owl-lambda", e.Message);
    }

    [Fact]
    public void OutlierRatioCountsScoresAboveMTimesTheBlockMean()
    {
        double[] a = [1, 1, 1, 1, 1, 1, 1, 1, 1, 30];   // mean over both: (9 + 30 + 10·2) / 20 = 2.95
        double[] b = [2, 2, 2, 2, 2, 2, 2, 2, 2, 2];
        // Brute force: 5 × 2.95 = 14.75, one score above it.
        Assert.Equal(1.0 / 20, OwlProfile.OutlierRatio([a, b], 5), 12);
        Assert.Equal(0.0, OwlProfile.OutlierRatio([b], 5), 12);
        Assert.Equal(11.0 / 20, OwlProfile.OutlierRatio([a, b], 0.5), 12);   // above 1.475: the 30 and the ten 2s
    }
}
