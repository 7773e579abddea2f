using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

public class GptConfigTests
{
    [Fact]
    public void DefaultsAreValid() => new GptConfig().Validate();

    [Theory]
    [InlineData(130, 4, "n_embd (130) must be divisible by n_head (4)")]
    [InlineData(128, 0, "n_head (0)")]
    [InlineData(0, 4, "n_embd (0)")]
    public void RejectsBadHeadsAndWidth(int nEmbd, int nHead, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() => new GptConfig { NEmbd = nEmbd, NHead = nHead }.Validate());
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void RejectsNonPositiveSizesNamingTheField()
    {
        Assert.Contains("n_layer", Assert.Throws<ArgumentException>(() => new GptConfig { NLayer = 0 }.Validate()).Message);
        Assert.Contains("block_size", Assert.Throws<ArgumentException>(() => new GptConfig { BlockSize = -1 }.Validate()).Message);
        Assert.Contains("vocab_size", Assert.Throws<ArgumentException>(() => new GptConfig { VocabSize = 0 }.Validate()).Message);
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(1f)]
    [InlineData(float.NaN)]
    public void RejectsDropoutOutsideHalfOpenUnitInterval(float p)
    {
        var ex = Assert.Throws<ArgumentException>(() => new GptConfig { Dropout = p }.Validate());
        Assert.Contains("dropout", ex.Message);
    }

    [Fact]
    public void SerialisesWithNanoGptFieldNames()
    {
        string json = System.Text.Json.JsonSerializer.Serialize(new GptConfig { NLayer = 2, Bias = true });
        Assert.Contains("\"n_layer\":2", json);
        Assert.Contains("\"bias\":true", json);
        var back = System.Text.Json.JsonSerializer.Deserialize<GptConfig>(json);
        Assert.Equal(new GptConfig { NLayer = 2, Bias = true }, back);
    }
}
