using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

public sealed class GptSizeTests
{
    static GptConfig Baby(int vocab = 65) => new() { NLayer = 4, NHead = 4, NEmbd = 128, BlockSize = 64, VocabSize = vocab };

    [Theory]
    [InlineData(1, 2, 16, 16, 37, true)]
    [InlineData(4, 4, 128, 64, 65, false)]
    [InlineData(3, 3, 48, 20, 1000, true)]
    public void ParameterCountMatchesTheModel(int l, int nh, int c, int block, int vocab, bool bias)
    {
        var config = new GptConfig { NLayer = l, NHead = nh, NEmbd = c, BlockSize = block, VocabSize = vocab, Bias = bias };
        Assert.Equal(new Gpt(config, 1, 1).ParameterCount, (long)GptSize.ParameterCount(config));
    }

    [Fact]
    public void ParameterCountMatchesAModelWithPerLayerWidths()
    {
        var config = new GptConfig { NLayer = 3, NHead = 4, NEmbd = 16, BlockSize = 8, VocabSize = 13, Bias = true, NHeadPerLayer = [1, 4, 6], MlpHiddenPerLayer = [3, 64, 100] };
        Assert.Equal(new Gpt(config, 1, 1).ParameterCount, (long)GptSize.ParameterCount(config));
    }

    [Theory]
    [InlineData(4, 32, 0f, false, false)]
    [InlineData(2, 64, 0.1f, true, false)]
    [InlineData(3, 100, 0f, true, false)]
    [InlineData(2, 64, 0.1f, true, true)]
    [InlineData(3, 100, 0f, false, true)]
    public void ParametersGradientsAndActivationsAreWhatTheConstructorAllocates(int b, int t, float dropout, bool bias, bool perLayer)
    {
        // Reference: the bytes the constructor really allocates (parameters, gradients, activations, token arrays,
        // plus small bookkeeping objects). perLayer: a structurally pruned shape, one layer wider than n_head.
        var config = new GptConfig { NLayer = 2, NHead = 4, NEmbd = 64, BlockSize = 128, VocabSize = 100, Bias = bias, Dropout = dropout };
        if (perLayer) config = config with { NHeadPerLayer = [1, 5], MlpHiddenPerLayer = [100, 7] };
        var d = GptSize.DimsOf(config, b, t);
        double predicted = 4 * (2 * GptSize.ParameterCount(d) + GptSize.ActivationCount(d)) + 2 * 4.0 * b * t;
        _ = new Gpt(config, b, t);   // JIT and statics first
        long before = GC.GetAllocatedBytesForCurrentThread();
        _ = new Gpt(config, b, t);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.InRange(allocated - predicted, 0, 32 * 1024);
    }

    [Fact]
    public void HugeBlockSizeIsBlamedWithTheLargestValueThatFits()
    {
        var config = Baby();
        var keys = new List<GptSize.Key>
        {
            new("batch_size", 12, (d, v) => d with { B = v }),
            new("block_size", 100_000_000, (d, v) => d with { T = v, BlockSize = v }),
        };
        keys.AddRange(GptSize.ModelKeys(config, includeBlockSize: false));
        var dims = GptSize.DimsOf(config, 12, 100_000_000) with { BlockSize = 100_000_000 };
        var e = Assert.Throws<ArgumentException>(() => GptSize.Check(dims, GptUse.Training, keys, "config: ", availableBytes: 0, threads: 2));
        Assert.StartsWith("config: block_size (100000000) is too large", e.Message);
        Assert.Contains("one array holds", e.Message);
        // The maximum it reports fits and one more does not.
        int max = int.Parse(e.Message[(e.Message.LastIndexOf("at most ", StringComparison.Ordinal) + 8)..].Replace(",", ""));
        Assert.Null(GptSize.FirstProblem(dims with { T = max, BlockSize = max }, GptUse.Training, 0, 2));
        Assert.NotNull(GptSize.FirstProblem(dims with { T = max + 1, BlockSize = max + 1 }, GptUse.Training, 0, 2));
        Assert.InRange(max, 64, 100_000);
    }

    [Fact]
    public void MemoryLimitIsNamedWithTheKeyAndTheMachinesMemory()
    {
        var config = Baby();
        var dims = GptSize.DimsOf(config, 1024, 64);   // about 2.3 GiB of activations
        var keys = new List<GptSize.Key> { new("--batch-size", 1024, (d, v) => d with { B = v }) };
        var e = Assert.Throws<ArgumentException>(() => GptSize.Check(dims, GptUse.Evaluation, keys, availableBytes: 1L << 30, threads: 1));
        Assert.Contains("--batch-size (1024) is too large", e.Message);
        Assert.Contains("1.0 GiB this machine has", e.Message);
        GptSize.Check(dims, GptUse.Evaluation, keys, availableBytes: 1L << 40, threads: 1);   // fits in 1 TiB
    }

    [Theory]
    [InlineData(2_000_000_000, 128, 65, "n_layer")]
    [InlineData(4, 2_000_000_000, 65, "n_embd")]
    [InlineData(4, 128, 2_000_000_000, "vocab_size")]
    public void ConfigWhoseParametersOverflowAnArrayIsAnArgumentErrorNamingTheField(int layers, int embd, int vocab, string field)
    {
        var config = new GptConfig { NLayer = layers, NHead = 1, NEmbd = embd, BlockSize = 64, VocabSize = vocab };
        var e = Assert.Throws<ArgumentException>(() => config.Validate());
        Assert.StartsWith($"{field} (", e.Message);
        Assert.Contains("is too large", e.Message);
        Assert.Throws<ArgumentException>(() => new Gpt(config, 1, 1));
    }

    [Fact]
    public void DecodingChecksTheKvCache()
    {
        // 4 × block_size × n_embd floats in one KV-cache array: more than an int can index.
        var config = new GptConfig { NLayer = 1, NHead = 1, NEmbd = 4096, BlockSize = 140_000, VocabSize = 2 };
        var dims = GptSize.DimsOf(config, 1, 1) with { T = 1 };
        Assert.Contains("KV cache", GptSize.FirstProblem(dims, GptUse.Decoding, 0, 1));
        Assert.Null(GptSize.FirstProblem(dims with { BlockSize = 100_000 }, GptUse.Decoding, 0, 1));
    }
}
