using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Tests.Sparsity.Dst;

public sealed class TopKTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(50, 0)]
    [InlineData(50, 7)]
    [InlineData(50, 50)]
    [InlineData(1000, 333)]
    [InlineData(4096, 1)]
    [InlineData(70000, 12345)]   // RadixTopK's histogram path (n ≥ HistogramMinimum), on the same scratch
    [InlineData(70000, 69999)]
    public void LargestEqualsSortingByScoreDescendingThenIndex(int n, int k)
    {
        var rng = new Random(n * 31 + k);
        // Few distinct values, so ties are common; some −∞.
        var scores = Enumerable.Range(0, n).Select(_ => rng.Next(10) == 0 ? float.NegativeInfinity : rng.Next(12) * 0.25f - 1f).ToArray();
        var chosen = new int[k];
        TopK.Largest(scores, k, new float[n], chosen);
        var expected = Enumerable.Range(0, n).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k).Order().ToArray();
        Assert.Equal(expected, chosen);
    }

    [Fact]
    public void KOutsideTheRangeIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TopK.Largest(new float[3], 4, new float[3], new int[4]));
    }
}
