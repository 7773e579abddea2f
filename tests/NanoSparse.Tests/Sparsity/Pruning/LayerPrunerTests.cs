using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

/// <summary>Magnitude, random and Wanda on small layers against brute-force references written here.</summary>
public sealed class LayerPrunerTests
{
    static float[] RandomWeights(int count, ulong seed, bool withTies = false)
    {
        var rng = new Rng(seed);
        var w = new float[count];
        // With ties: values on a coarse grid, so equal magnitudes are common and the tie rule is exercised.
        for (int i = 0; i < count; i++) w[i] = withTies ? (rng.NextInt(9) - 4) * 0.25f : (float)rng.NextGaussian();
        return w;
    }

    static LayerInputStats Stats(int features, ulong seed, int rows = 20)
    {
        var rng = new Rng(seed);
        var x = new float[rows * features];
        // Feature scales differ by up to 30x, as activation outliers do, so Wanda and magnitude disagree.
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < features; j++) x[r * features + j] = (float)(rng.NextGaussian() * (1 + (j % 5) * 7));
        var s = new LayerInputStats(features, withGram: false);
        s.Accumulate(x, rows);
        return s;
    }

    // Brute force: removal order = (score ascending, index ascending) over the given indices.
    static HashSet<int> LowestOf(IEnumerable<int> indices, Func<int, double> score, long count) =>
        indices.OrderBy(score).ThenBy(i => i).Take((int)count).ToHashSet();

    static void AssertMask(LayerPruneRequest r, HashSet<int> removed, float[] original)
    {
        for (int i = 0; i < r.Weight.Length; i++)
        {
            bool gone = removed.Contains(i);
            Assert.True(r.Mask[i] == (gone ? 0 : 1), $"{r.Name}: weight {i} mask {r.Mask[i]}, expected {(gone ? 0 : 1)}");
            Assert.Equal(gone ? 0f : original[i], r.Weight[i]);
        }
    }

    [Theory]
    [InlineData(0.5, false)]
    [InlineData(0.7, false)]
    [InlineData(0.37, true)]
    [InlineData(0.0, false)]
    public void MagnitudeRemovesExactlyTheLowestMagnitudesOfTheLayer(double sparsity, bool ties)
    {
        int rows = 12, cols = 20;
        var w = RandomWeights(rows * cols, 3, ties);
        var r = new LayerPruneRequest("t", (float[])w.Clone(), rows, cols, new SparsityTarget(sparsity), null, new Rng(1));
        new MagnitudePruner().Prune(r);
        long count = (long)(rows * cols * sparsity);
        var removed = LowestOf(Enumerable.Range(0, w.Length), i => Math.Abs(w[i]), count);
        Assert.Equal(count, r.Mask.Count(m => m == 0));
        AssertMask(r, removed, w);
    }

    [Theory]
    [InlineData(2, 4)]
    [InlineData(1, 4)]
    [InlineData(4, 8)]
    [InlineData(3, 5)]
    public void NmGroupsKeepExactlyTheNLargestScores(int n, int m)
    {
        int rows = 6, cols = 40;
        var w = RandomWeights(rows * cols, 5, withTies: true);
        var stats = Stats(cols, 9);
        foreach (ILayerPruner pruner in new ILayerPruner[] { new MagnitudePruner(), new WandaPruner(), new RandomPruner() })
        {
            var r = new LayerPruneRequest(pruner.Name, (float[])w.Clone(), rows, cols, new SparsityTarget(1 - (double)n / m, n, m), stats, new Rng(11));
            pruner.Prune(r);
            var scores = new double[w.Length];
            if (pruner is RandomPruner)
            {
                var rng = new Rng(11);
                for (int i = 0; i < scores.Length; i++) scores[i] = rng.NextDouble();
            }
            else
                for (int i = 0; i < w.Length; i++)
                    scores[i] = Math.Abs((double)w[i]) * (pruner is WandaPruner ? Math.Sqrt(stats.SumSquares[i % cols]) : 1);
            var removed = new HashSet<int>();
            for (int g = 0; g < w.Length; g += m)
            {
                Assert.Equal(n, r.Mask.AsSpan(g, m).ToArray().Count(b => b == 1));
                removed.UnionWith(LowestOf(Enumerable.Range(g, m), i => scores[i], m - n));
            }
            AssertMask(r, removed, w);
        }
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.7)]
    [InlineData(0.25)]
    public void WandaRemovesTheLowestScoresOfEveryRow(double sparsity)
    {
        int rows = 9, cols = 30;
        var w = RandomWeights(rows * cols, 13);
        var stats = Stats(cols, 17);
        var r = new LayerPruneRequest("w", (float[])w.Clone(), rows, cols, new SparsityTarget(sparsity), stats, new Rng(1));
        new WandaPruner().Prune(r);
        // Brute force: the score |W_ij| · ‖X_j‖₂ with ‖X_j‖₂ from the rows themselves, argsorted per row.
        int perRow = (int)(cols * sparsity);
        var removed = new HashSet<int>();
        for (int row = 0; row < rows; row++)
        {
            removed.UnionWith(LowestOf(Enumerable.Range(row * cols, cols), i => Math.Abs((double)w[i]) * Math.Sqrt(stats.SumSquares[i % cols]), perRow));
            Assert.Equal(perRow, r.Mask.AsSpan(row * cols, cols).ToArray().Count(b => b == 0));
        }
        AssertMask(r, removed, w);
        // The input norms matter: magnitude alone chooses differently on these inputs.
        var byMagnitude = new LayerPruneRequest("m", (float[])w.Clone(), rows, cols, new SparsityTarget(sparsity), null, new Rng(1));
        new MagnitudePruner().Prune(byMagnitude);
        Assert.NotEqual(byMagnitude.Mask, r.Mask);
    }

    [Fact]
    public void LayerInputStatsSumSquaresMatchDoublePrecisionSums()
    {
        var rng = new Rng(4);
        int rows = 33, f = 7;
        var x = new float[rows * f];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextGaussian();
        var s = new LayerInputStats(f, false);
        s.Accumulate(x.AsSpan(0, 10 * f), 10);
        s.Accumulate(x.AsSpan(10 * f), rows - 10);
        Assert.Equal(rows, s.Tokens);
        for (int j = 0; j < f; j++)
        {
            double sq = 0;
            for (int r = 0; r < rows; r++) sq += (double)x[r * f + j] * x[r * f + j];
            Assert.Equal(sq, s.SumSquares[j], 10);
        }
    }

    [Fact]
    public void RandomRemovesTheExactCountAndDependsOnlyOnTheSeed()
    {
        int rows = 10, cols = 16;
        var w = RandomWeights(rows * cols, 2);
        byte[] Mask(ulong seed)
        {
            var r = new LayerPruneRequest("r", (float[])w.Clone(), rows, cols, new SparsityTarget(0.6), null, new Rng(seed));
            new RandomPruner().Prune(r);
            Assert.Equal((long)(rows * cols * 0.6), r.Mask.Count(b => b == 0));
            return r.Mask;
        }
        Assert.Equal(Mask(5), Mask(5));
        Assert.NotEqual(Mask(5), Mask(6));
        // Brute force: the same uniform draws, lowest removed.
        var rng = new Rng(5);
        var scores = Enumerable.Range(0, w.Length).Select(_ => rng.NextDouble()).ToArray();
        var removed = LowestOf(Enumerable.Range(0, w.Length), i => scores[i], (long)(rows * cols * 0.6));
        var mask = Mask(5);
        for (int i = 0; i < w.Length; i++) Assert.Equal(removed.Contains(i) ? 0 : 1, mask[i]);
    }

    [Fact]
    public void RegistryNamesTheKnownMethodsForAnUnknownOne()
    {
        var e = Assert.Throws<ArgumentException>(() => PruningMethods.Pruner("obs"));
        Assert.Contains("'obs'", e.Message);
        Assert.Contains("magnitude, random, sparsegpt, wanda", e.Message);
        Assert.Throws<ArgumentException>(() => PruningMethods.Refiner("nosuch"));
        Assert.IsType<WandaPruner>(PruningMethods.Pruner("wanda"));
    }
}
