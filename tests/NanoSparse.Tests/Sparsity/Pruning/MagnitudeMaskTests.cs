using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

public sealed class MagnitudeMaskTests
{
    static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    [InlineData(0.999)]
    public void LayerWisePrunesExactlyTheFloorCountOfSmallestMagnitudesPerWeight(double sparsity)
    {
        var weights = new[] { Random(37 * 11, 1), Random(64, 2), Random(1000, 3) };
        var masks = weights.Select(w => Ones(w.Length)).ToArray();
        MagnitudeMask.Prune(weights, masks, sparsity, global: false);
        for (int i = 0; i < weights.Length; i++)
        {
            long expected = (long)(sparsity * weights[i].Length);
            Assert.Equal(expected, masks[i].Count(m => m == 0));
            // Brute force: every pruned magnitude is at most every kept one.
            var pruned = weights[i].Where((_, j) => masks[i][j] == 0).Select(MathF.Abs).DefaultIfEmpty(0).Max();
            var kept = weights[i].Where((_, j) => masks[i][j] == 1).Select(MathF.Abs).DefaultIfEmpty(float.MaxValue).Min();
            Assert.True(pruned <= kept);
        }
    }

    [Fact]
    public void GlobalPrunesOneThresholdOverAllWeightsWithAnExactTotal()
    {
        var weights = new[] { Random(300, 4).Select(v => v * 0.1f).ToArray(), Random(500, 5), Random(200, 6).Select(v => v * 3).ToArray() };
        var masks = weights.Select(w => Ones(w.Length)).ToArray();
        MagnitudeMask.Prune(weights, masks, 0.6, global: true);
        Assert.Equal((long)(0.6 * 1000), masks.Sum(m => m.Count(v => v == 0)));
        // The threshold by brute force: the 600th smallest magnitude over everything.
        var all = weights.SelectMany(w => w).Select(MathF.Abs).OrderBy(v => v).ToArray();
        float threshold = all[599];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < weights[i].Length; j++)
                Assert.Equal(MathF.Abs(weights[i][j]) <= threshold ? 0f : 1f, masks[i][j]);
        // The small-scaled weight loses more than the large-scaled one.
        Assert.True(masks[0].Count(v => v == 0) > 250 && masks[2].Count(v => v == 0) < 100);
    }

    [Fact]
    public void PrunedPositionsStayPrunedEvenWhenTheirValuesAreLarge()
    {
        var w = Random(100, 7);
        var mask = Ones(100);
        mask[3] = 0; mask[50] = 0;
        w[3] = 100f; w[50] = -100f;   // a pruned position's value is ignored
        MagnitudeMask.Prune([w], [mask], 0.1, global: false);
        Assert.Equal(0f, mask[3]);
        Assert.Equal(0f, mask[50]);
        Assert.Equal(10, mask.Count(v => v == 0));
        var kept = w.Where((_, j) => mask[j] == 1).Select(MathF.Abs).Min();
        var newlyPruned = w.Where((_, j) => mask[j] == 0 && j != 3 && j != 50).Select(MathF.Abs).Max();
        Assert.True(newlyPruned <= kept);
    }

    [Fact]
    public void TiesGoToTheLowerPosition()
    {
        var w = new float[] { 1, -1, 1, 1, 2, 2 };
        var mask = Ones(6);
        MagnitudeMask.Prune([w], [mask], 0.5, global: false);
        Assert.Equal([0f, 0f, 0f, 1f, 1f, 1f], mask);
    }
}
