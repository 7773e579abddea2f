using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity;
using NanoSparse.Training;

namespace NanoSparse.Tests.Sparsity;

public class SparseModelConfigTests
{
    static readonly GptConfig Small = new() { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 11 };

    [Fact]
    public void UniformGivesEveryChosenWeightOneMinusSparsityAndTheModelStoresThatMany()
    {
        var config = SparseModelConfig.Apply(Small, 0.75, "uniform", "csr", weights: ["attn.c_attn", "mlp.c_fc"], seed: 5);
        Assert.Equal("csr", config.WeightLayout(1, "attn.c_attn"));
        Assert.Equal("dense", config.WeightLayout(1, "attn.c_proj"));
        Assert.Equal(0.25, config.WeightDensity(0, "mlp.c_fc"));
        Assert.Equal(1.0, config.WeightDensity(0, "mlp.c_proj"));
        var gpt = new Gpt(config, 1, 8);
        var rows = SparseModelConfig.Describe(gpt);
        Assert.Equal(8, rows.Count);
        foreach (var r in rows)
        {
            bool sparse = r.Name.EndsWith("c_attn.weight") || r.Name.EndsWith("c_fc.weight");
            Assert.Equal(sparse ? "csr" : "dense", r.Layout);
            Assert.Equal(sparse ? (long)Math.Round(0.25 * r.OutFeatures * r.InFeatures) : (long)r.OutFeatures * r.InFeatures, r.Stored);
        }
    }

    [Fact]
    public void ErkDensitiesAreTheHandComputedOnesAndEqualEr()
    {
        // n_embd 16: the hand computation of ErdosRenyiTests (global density 0.2, the same for every layer).
        var erk = SparseModelConfig.Apply(Small, 0.8, "erk");
        Assert.Equal(erk.WeightDensities, SparseModelConfig.Apply(Small, 0.8, "er").WeightDensities);
        Assert.Equal(0.2, erk.WeightDensity(0, "attn.c_attn"), 12);
        Assert.Equal(0.3, erk.WeightDensity(1, "attn.c_proj"), 12);
        Assert.Equal(0.1875, erk.WeightDensity(0, "mlp.c_fc"), 12);
        Assert.Equal(0.1875, erk.WeightDensity(1, "mlp.c_proj"), 12);
        var gpt = new Gpt(erk, 1, 8);
        long stored = SparseModelConfig.Describe(gpt).Sum(r => r.Stored);
        Assert.InRange(stored, 1228 - 8, 1229 + 8);   // 0.2 · 6144 = 1228.8, ± one per weight from rounding
    }

    [Fact]
    public void AWeightWhoseDistributedDensityReachesOneStaysDense()
    {
        // At 10% sparsity ER asks for c_proj (raw 1/8) a density of 10.8/8 = 1.35: it is dense, the others share the rest.
        var config = SparseModelConfig.Apply(Small, 0.1, "er");
        Assert.Equal("dense", config.WeightLayout(0, "attn.c_proj"));
        Assert.False(config.WeightDensities!.ContainsKey("attn.c_proj"));
        Assert.All(config.WeightDensities.Values, d => Assert.InRange(d, 0.5, 1.0 - 1e-9));
    }

    [Fact]
    public void NmOverridesSparsityAndBsrCarriesItsBlock()
    {
        var nm = SparseModelConfig.Apply(Small, 0.9, "erk", "csr", nm: "2:4");
        Assert.All(GptConfig.BlockWeights, w => Assert.Equal("nm:2:4", nm.WeightLayout(0, w)));
        Assert.Null(nm.WeightDensities);
        var gpt = new Gpt(nm, 1, 8);
        Assert.All(SparseModelConfig.Describe(gpt), r => Assert.Equal(0.5, r.Density));
        var bsr = new Gpt(SparseModelConfig.Apply(Small, 0.5, "uniform", "bsr:4x4"), 1, 8);
        Assert.All(SparseModelConfig.Describe(bsr), r => { Assert.Equal("bsr:4x4", r.Layout); Assert.Equal(0.5, r.Density); });
    }

    [Fact]
    public void ZeroSparsityLeavesTheModelDense() =>
        Assert.Equal(Small, SparseModelConfig.Apply(Small, 0, "erk", "csr"));

    [Fact]
    public void TheSameConfigRebuildsTheSameStructureAndAnotherSeedAnother()
    {
        static float[] Mask(GptConfig c)
        {
            var gpt = new Gpt(c, 1, 8);
            var p = gpt.Parameters.First(p => p.Name == "transformer.h.1.mlp.c_fc.weight");
            var mask = new float[p.LogicalLength];
            p.Layout!.ToDense(Enumerable.Repeat(1f, p.Length).ToArray(), mask);
            return mask;
        }
        var a = SparseModelConfig.Apply(Small, 0.7, seed: 1);
        Assert.Equal(Mask(a), Mask(a with { }));
        // through model_args JSON, as a checkpoint records it
        var json = System.Text.Json.JsonSerializer.Serialize(ModelArgs.From(a));
        Assert.Contains("\"weight_densities\"", json);
        Assert.Contains("\"sparsity_seed\":1", json);
        var back = System.Text.Json.JsonSerializer.Deserialize<ModelArgs>(json)!.ToConfig();
        Assert.Equal(a, back);
        Assert.Equal(Mask(a), Mask(back));
        Assert.NotEqual(Mask(a), Mask(SparseModelConfig.Apply(Small, 0.7, seed: 2)));
        // layers draw different positions
        Assert.NotEqual(a.WeightSeed(0, "mlp.c_fc"), a.WeightSeed(1, "mlp.c_fc"));
    }

    [Theory]
    [InlineData(1.0, "uniform", "csr", null, null, "sparsity (1) must be in [0, 1)")]
    [InlineData(-0.1, "uniform", "csr", null, null, "sparsity (-0.1)")]
    [InlineData(0.5, "gaussian", "csr", null, null, "sparsity_distribution ('gaussian') must be one of uniform, er, erk")]
    [InlineData(0.5, "uniform", "coo", null, null, "sparse_format ('coo') must be one of")]
    [InlineData(0.5, "uniform", "bsr", null, null, "sparse_format ('bsr') does not fit")]
    [InlineData(0.5, "uniform", "bsr:5x4", null, null, "sparse_format ('bsr:5x4') does not fit attn.c_attn (48x16)")]
    [InlineData(0.5, "uniform", "dense", null, null, "sparse_format ('dense') must be a sparse layout")]
    [InlineData(0.5, "uniform", "nm:2:4", null, null, "sparse_format ('nm:2:4'): N:M patterns are chosen with the nm key")]
    [InlineData(0, "uniform", "csr", "4:4", null, "nm ('4:4'): N = 4 must be at least 1 and less than M = 4")]
    [InlineData(0, "uniform", "csr", "5:4", null, "nm ('5:4')")]
    [InlineData(0, "uniform", "csr", "2-4", null, "nm ('2-4') must be N:M")]
    [InlineData(0, "uniform", "csr", "2:5", null, "nm ('2:5'): M = 5 must divide the in features (the reduction dimension) of attn.c_attn, which has 16")]
    [InlineData(0.5, "uniform", "csr", null, "mlp.c_fc,lm_head", "sparse_weights ('lm_head') must name weights among")]
    public void BadSettingsGiveOneLineNamingTheKey(double sparsity, string distribution, string format, string? nm, string? weights, string message)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => SparseModelConfig.Apply(Small, sparsity, distribution, format, nm, weights?.Split(',')));
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain("(Parameter", e.Message);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void WeightDensitiesOutsideZeroOneAreRefusedByName(double density)
    {
        var config = Small with
        {
            WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = "csr" },
            WeightDensities = new Dictionary<string, double> { ["h.1.mlp.c_fc"] = density },
        };
        var e = Assert.Throws<ArgumentException>(config.Validate);
        Assert.Contains("weight_densities[\"h.1.mlp.c_fc\"]", e.Message);
        Assert.Contains("must be in (0, 1]", e.Message);
    }
}

public class SparseWeightLayoutErrorTests
{
    [Theory]
    [InlineData("csr:0.5", "expected csr, got 1 argument(s)")]
    [InlineData("nm:2:5", "M = 5 must divide the in features")]
    [InlineData("bsr:3x3", "BSR block rows must be positive and divide the out features 64")]
    public void ALayoutThatCannotBeBuiltIsOneLineNamingTheWeight(string layout, string message)
    {
        var config = new GptConfig { NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 11,
            WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = layout } };
        var e = Assert.ThrowsAny<ArgumentException>(() => new Gpt(config, 1, 8));
        Assert.StartsWith($"weight_layouts: \"{layout}\" for h.0.mlp.c_fc (64x16)", e.Message);
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
