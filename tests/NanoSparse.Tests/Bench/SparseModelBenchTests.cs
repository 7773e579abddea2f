using NanoSparse.Bench;
using NanoSparse.Nn;

namespace NanoSparse.Tests.Bench;

public class SparseModelBenchTests
{
    static readonly (int Out, int In)[] WideBlock = [(2304, 768), (768, 768), (3072, 768), (768, 3072)];

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.1)]
    [InlineData(0.05)]
    public void ErkDensitiesKeepTheOverallDensityAndScaleWithOutPlusInOverOutTimesIn(double density)
    {
        var d = SparseModelBench.ErkDensities(WideBlock, density);
        double total = WideBlock.Sum(s => (double)s.Out * s.In);
        double stored = WideBlock.Select((s, l) => d[l] * s.Out * s.In).Sum();
        Assert.Equal(density, stored / total, 12);
        // Unclipped layers: d_l·Out·In/(Out+In) is the same ε for all (written out, not taken from the code).
        var eps = WideBlock.Select((s, l) => d[l] * s.Out * s.In / (s.Out + s.In)).ToArray();
        foreach (double e in eps) Assert.Equal(eps[0], e, 6);
        // 768×768 has the largest (Out + In)/(Out·In): densest.
        Assert.True(d[1] > d[0] && d[0] > d[2]);
        Assert.Equal(d[2], d[3], 12);
    }

    [Fact]
    public void ErkDensitiesMakeALayerDenseWhenItsShareWouldExceedOne()
    {
        // A 4×4 layer beside a 1000×1000 one: at density 0.9 the small layer's ε·8/16 exceeds 1, so it is dense and the
        // large one takes the rest of the budget.
        (int, int)[] shapes = [(4, 4), (1000, 1000)];
        var d = SparseModelBench.ErkDensities(shapes, 0.9);
        Assert.Equal(1.0, d[0]);
        Assert.Equal((0.9 * 1_000_016 - 16) / 1_000_000, d[1], 12);
    }

    [Theory]
    [InlineData("uniform", 0.1)]
    [InlineData("erk", 0.2)]
    [InlineData("nm", 0.5)]
    public void ConfigForBuildsAGptWhoseBlockWeightsStoreTheWantedDensity(string kind, double density)
    {
        var dense = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 8, VocabSize = 11 };
        var variant = kind == "nm" ? new SparseModelBench.Variant("2:4", "nm", 0.5, 2, 4) : new SparseModelBench.Variant(kind, kind, density);
        var gpt = new Gpt(SparseModelBench.ConfigFor(dense, variant), 1, 8);
        var weights = gpt.Parameters.Where(p => p.Layout != null).ToList();
        Assert.Equal(8, weights.Count);
        double stored = weights.Sum(p => (double)p.Length), logical = weights.Sum(p => (double)p.LogicalLength);
        Assert.Equal(density, stored / logical, 3);
        Assert.All(weights, p => Assert.True(p.IsSparse));
        Assert.All(weights, p => Assert.Equal(kind == "nm" ? "nm" : "csr", p.Layout!.Layout));
        if (kind == "uniform")
            foreach (var p in weights) Assert.Equal(density, (double)p.Length / p.LogicalLength, 3);
        var dPlain = new Gpt(SparseModelBench.ConfigFor(dense, SparseModelBench.Variant.Dense), 1, 8);
        Assert.All(dPlain.Parameters, p => Assert.False(p.IsSparse));
    }
}
