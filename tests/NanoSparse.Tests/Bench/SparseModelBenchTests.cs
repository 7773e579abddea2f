using NanoSparse.Bench;
using NanoSparse.Nn;

namespace NanoSparse.Tests.Bench;

public class SparseModelBenchTests
{
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
