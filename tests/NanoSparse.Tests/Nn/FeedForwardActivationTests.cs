using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

/// <summary>
/// The MoE and gated feed-forward parts compute GELU only: a config that asks them for a ReLU-family activation is a
/// one-line error naming the activation, not a model that silently runs GELU.
/// </summary>
public sealed class FeedForwardActivationTests
{
    static readonly GptConfig Small = new() { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 16, VocabSize = 13 };

    [Theory]
    [InlineData("relu")]
    [InlineData("relu2")]
    [InlineData("fatrelu")]
    public void MoeWithAReluActivationIsRefused(string activation)
    {
        var config = Small with { NExperts = 4, TopK = 2, Activation = activation };
        var e = Assert.Throws<ArgumentException>(config.Validate);
        Assert.Contains($"activation (\"{activation}\") is not supported by the mixture-of-experts blocks", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("mlp", "relu")]
    [InlineData("both", "relu2")]
    public void GatedMlpWithAReluActivationIsRefused(string gate, string activation)
    {
        var config = Small with { Gate = gate, GateGroup = 16, Activation = activation };
        var e = Assert.Throws<ArgumentException>(config.Validate);
        Assert.Contains($"activation (\"{activation}\") is not supported by the gated MLP", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void GeluMoeAndGatedHeadsWithReluStillValidate()
    {
        (Small with { NExperts = 4, TopK = 2, Activation = GptConfig.GeluTanh }).Validate();
        (Small with { Gate = "heads", Activation = "relu" }).Validate();   // only the heads are gated: the MLP is nanoGPT's
    }
}
