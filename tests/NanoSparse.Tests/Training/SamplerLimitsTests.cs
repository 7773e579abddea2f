using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

public sealed class SamplerLimitsTests
{
    [Fact]
    public void TokenCountBeyondOneArrayIsAnArgumentErrorNotAnOverflow()
    {
        var gpt = new Gpt(new GptConfig { NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 11 }, 1, 8);
        gpt.InitializeWeights(1);
        var e = Assert.Throws<ArgumentException>(() => Sampler.Generate(gpt, [1, 2], int.MaxValue, 1f, 0, new Rng(1)));
        Assert.Contains($"max_new_tokens ({int.MaxValue})", e.Message);
        Assert.Contains("prompt's 2 tokens", e.Message);
        Assert.Throws<ArgumentException>(() => Sampler.Generate(gpt, [1], Array.MaxLength, 1f, 0, new Rng(1)));
        Assert.Equal(5, Sampler.Generate(gpt, [1, 2], 3, 1f, 0, new Rng(1)).Length);
    }
}
