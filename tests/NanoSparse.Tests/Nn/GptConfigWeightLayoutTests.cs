using System.Text.Json;
using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

/// <summary>GptConfig.WeightLayouts: which storage layout each Linear weight of each block uses.</summary>
public class GptConfigWeightLayoutTests
{
    [Fact]
    public void ALayersOwnEntryWinsOverTheEntryForEveryLayerWhichWinsOverDense()
    {
        var config = new GptConfig
        {
            NLayer = 3,
            WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = "a", ["h.2.mlp.c_fc"] = "b", ["h.1.attn.c_proj"] = "c" },
        };
        Assert.Equal("a", config.WeightLayout(0, "mlp.c_fc"));
        Assert.Equal("b", config.WeightLayout(2, "mlp.c_fc"));
        Assert.Equal("c", config.WeightLayout(1, "attn.c_proj"));
        Assert.Equal("dense", config.WeightLayout(0, "attn.c_proj"));
        Assert.Equal("dense", new GptConfig().WeightLayout(0, "attn.c_attn"));
        Assert.True(new GptConfig().AllWeightsDense);
        Assert.True(new GptConfig { WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = "dense" } }.AllWeightsDense);
        Assert.False(config.AllWeightsDense);
    }

    [Theory]
    [InlineData("mlp.c_fx", "dense", "weight_layouts key \"mlp.c_fx\"")]
    [InlineData("h.4.mlp.c_fc", "dense", "weight_layouts key \"h.4.mlp.c_fc\"")]   // n_layer is 4
    [InlineData("h.x.mlp.c_fc", "dense", "weight_layouts key \"h.x.mlp.c_fc\"")]
    [InlineData("attn.c_attn", "no-such-layout", "weight_layouts[\"attn.c_attn\"] (\"no-such-layout\") must name one of: dense")]
    public void RejectsUnknownWeightsLayersAndLayoutsNamingThem(string key, string layout, string message)
    {
        var config = new GptConfig { WeightLayouts = new Dictionary<string, string> { [key] = layout } };
        var e = Assert.Throws<ArgumentException>(config.Validate);
        Assert.Contains(message, e.Message);
        Assert.Throws<ArgumentException>(() => new Gpt(config, 1, 4));
    }

    [Fact]
    public void SerialisesUnderItsJsonNameOnlyWhenSetAndComparesByValue()
    {
        Assert.DoesNotContain("weight_layouts", JsonSerializer.Serialize(new GptConfig()));
        var config = new GptConfig { WeightLayouts = new Dictionary<string, string> { ["h.0.mlp.c_fc"] = "dense" } };
        string json = JsonSerializer.Serialize(config);
        Assert.Contains("\"weight_layouts\":{\"h.0.mlp.c_fc\":\"dense\"}", json);
        var back = JsonSerializer.Deserialize<GptConfig>(json)!;
        Assert.Equal(config, back);                              // a different dictionary with the same entries
        Assert.Equal(config.GetHashCode(), back.GetHashCode());
        Assert.NotEqual(config, config with { WeightLayouts = new Dictionary<string, string> { ["h.0.mlp.c_fc"] = "other" } });
        Assert.Equal(new GptConfig(), new GptConfig { WeightLayouts = new Dictionary<string, string>() });
        Assert.NotEqual(new GptConfig(), new GptConfig { NLayer = 5 });
    }
}
