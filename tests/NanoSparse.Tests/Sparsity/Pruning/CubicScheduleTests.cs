using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

public sealed class CubicScheduleTests
{
    [Theory]
    // s_i = 0, s_f = 0.9, t0 = 100, end = 500 (n·Δt = 400): s_t = 0.9 − 0.9·(1 − (t − 100)/400)³, by hand.
    [InlineData(0, 0.0)]
    [InlineData(99, 0.0)]
    [InlineData(100, 0.0)]
    [InlineData(200, 0.5203125)]      // 0.9 − 0.9·0.75³ = 0.9 − 0.3796875
    [InlineData(300, 0.7875)]         // 0.9 − 0.9·0.125
    [InlineData(400, 0.8859375)]      // 0.9 − 0.9·0.015625
    [InlineData(500, 0.9)]
    [InlineData(10_000, 0.9)]
    public void SparsityAtGivenStepsMatchesTheHandComputedFormula(int step, double expected)
    {
        var s = new CubicSchedule(0, 0.9, 100, 500, 50);
        Assert.Equal(expected, s.SparsityAt(step), 12);
    }

    [Fact]
    public void SparsityWithAnInitialSparsityMatchesTheExpandedPolynomial()
    {
        // s_f + (s_i − s_f)(1 − x)³ with x = (t − t0)/(end − t0), expanded: s_i + (s_f − s_i)(3x − 3x² + x³).
        var s = new CubicSchedule(0.3, 0.8, 10, 70, 7);
        for (int t = 10; t <= 70; t++)
        {
            decimal x = (t - 10) / 60m;
            decimal expected = 0.3m + 0.5m * (3 * x - 3 * x * x + x * x * x);
            Assert.Equal((double)expected, s.SparsityAt(t), 12);
        }
        Assert.Equal(0.0, s.SparsityAt(9));
        Assert.Equal(0.3, s.SparsityAt(10), 12);
    }

    [Fact]
    public void PruningStepsAreEveryFrequencyFromStartAndTheEndStep()
    {
        var s = new CubicSchedule(0, 0.9, 100, 500, 150);
        var steps = Enumerable.Range(0, 700).Where(s.IsPruningStep).ToArray();
        Assert.Equal([100, 250, 400, 500], steps);
    }

    [Fact]
    public void SparsityNeverDecreasesAlongTheSchedule()
    {
        var s = new CubicSchedule(0.1, 0.95, 3, 1003, 1);
        for (int t = 1; t < 1100; t++) Assert.True(s.SparsityAt(t) >= s.SparsityAt(t - 1));
    }

    [Theory]
    [InlineData(-0.1, 0.9, 0, 10, 1)]
    [InlineData(0, 1.0, 0, 10, 1)]
    [InlineData(0.5, 0.4, 0, 10, 1)]
    [InlineData(0, 0.9, -1, 10, 1)]
    [InlineData(0, 0.9, 10, 10, 1)]
    [InlineData(0, 0.9, 0, 10, 0)]
    public void BadArgumentsAreRefused(double si, double sf, int start, int end, int frequency) =>
        Assert.ThrowsAny<ArgumentException>(() => new CubicSchedule(si, sf, start, end, frequency));
}
