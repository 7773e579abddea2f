using System.Text.Json;
using NanoSparse.Nn;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>model_args in state.json: the part choices are recorded only when not the default, so checkpoints of dense
/// models (and nanoGPT's own model_args) read and write exactly as before.</summary>
public class ModelArgsTests
{
    [Fact]
    public void AllDenseModelsWriteNoWeightLayouts()
    {
        Assert.DoesNotContain("weight_layouts", JsonSerializer.Serialize(ModelArgs.From(new GptConfig())));
        var spelledOut = new GptConfig { WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = "dense" } };
        Assert.DoesNotContain("weight_layouts", JsonSerializer.Serialize(ModelArgs.From(spelledOut)));
        Assert.Null(JsonSerializer.Deserialize<ModelArgs>("{\"n_layer\":2,\"n_head\":2,\"n_embd\":8,\"block_size\":4,\"vocab_size\":5}")!.ToConfig().WeightLayouts);
    }

    [Fact]
    public void OtherLayoutsRoundTripThroughModelArgs()
    {
        var config = new GptConfig { WeightLayouts = new Dictionary<string, string> { ["h.1.mlp.c_proj"] = "sparse-kind" } };
        string json = JsonSerializer.Serialize(ModelArgs.From(config));
        Assert.Contains("\"weight_layouts\":{\"h.1.mlp.c_proj\":\"sparse-kind\"}", json);
        Assert.Equal(config, JsonSerializer.Deserialize<ModelArgs>(json)!.ToConfig());
    }
}
