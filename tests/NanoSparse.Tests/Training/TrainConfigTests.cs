using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

public sealed class TrainConfigTests
{
    static string Preset(string name) => Path.Combine(AppContext.BaseDirectory, "configs", name + ".json");

    [Fact]
    public void DefaultsAreValidAndFollowNanoGptWhereNotScaledForCpu()
    {
        var c = new TrainConfig();
        c.Validate();
        Assert.Equal(0.1f, c.WeightDecay);
        Assert.Equal(0.9f, c.Beta1);
        Assert.Equal(0.95f, c.Beta2);
        Assert.Equal(1.0f, c.GradClip);
        Assert.Equal(1337UL, c.Seed);
        Assert.True(c.AlwaysSaveCheckpoint);
        Assert.Equal("scratch", c.InitFrom);
    }

    [Fact]
    public void BabyPresetHasTheAgreedValues()
    {
        var c = TrainConfig.Load(Preset("baby"));
        Assert.Equal((4, 4, 128, 64, 12), (c.NLayer, c.NHead, c.NEmbd, c.BlockSize, c.BatchSize));
        Assert.False(c.Bias);
        Assert.Equal(0f, c.Dropout);
        Assert.Equal((1e-3f, 1e-4f, 0.99f), (c.LearningRate, c.MinLr, c.Beta2));
        Assert.Equal((100, 2000, 2000, 250, 20), (c.WarmupIters, c.MaxIters, c.LrDecayIters, c.EvalInterval, c.EvalIters));
        Assert.Equal("data/brown", c.Dataset);
    }

    [Fact]
    public void SmallPresetFollowsShakespeareCharConfig()
    {
        var c = TrainConfig.Load(Preset("small"));
        Assert.Equal((6, 6, 384, 256, 64), (c.NLayer, c.NHead, c.NEmbd, c.BlockSize, c.BatchSize));
        Assert.Equal(0.2f, c.Dropout);
        Assert.Equal((1e-3f, 1e-4f, 0.99f), (c.LearningRate, c.MinLr, c.Beta2));
        Assert.Equal((100, 5000, 5000, 250, 200, 1), (c.WarmupIters, c.MaxIters, c.LrDecayIters, c.EvalInterval, c.EvalIters, c.GradientAccumulationSteps));
    }

    [Fact]
    public void JsonRoundTripKeepsEveryValue()
    {
        var c = new TrainConfig { NLayer = 2, LearningRate = 3.3e-4f, Seed = ulong.MaxValue, Prefetch = false, OutDir = "x/y" };
        var back = TrainConfig.FromJson(c.ToJson());
        Assert.Equal(c.Entries(), back.Entries());
    }

    [Fact]
    public void SetOverridesTypedValues()
    {
        var c = new TrainConfig();
        c.Set("n_layer=6");
        c.Set("learning_rate", "2.5e-4");
        c.Set("bias=true");
        c.Set("out_dir=runs/a=b");
        Assert.Equal(6, c.NLayer);
        Assert.Equal(2.5e-4f, c.LearningRate);
        Assert.True(c.Bias);
        Assert.Equal("runs/a=b", c.OutDir);
    }

    [Fact]
    public void UnknownSetKeyNamesTheKeyAndListsValidOnes()
    {
        var e = Assert.Throws<FormatException>(() => new TrainConfig().Set("n_layers=3"));
        Assert.Contains("'n_layers'", e.Message);
        Assert.Contains("n_layer, n_head", e.Message);
    }

    [Theory]
    [InlineData("n_layer=four", "'four'", "'n_layer'")]
    [InlineData("learning_rate=fast", "'fast'", "'learning_rate'")]
    [InlineData("bias=maybe", "'maybe'", "'bias'")]
    [InlineData("n_layer", "'n_layer'", "key=value")]
    public void BadSetValueNamesKeyAndValue(string assignment, string value, string key)
    {
        var e = Assert.Throws<FormatException>(() => new TrainConfig().Set(assignment));
        Assert.Contains(value, e.Message);
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void UnknownJsonKeyIsAnErrorNamingIt()
    {
        var e = Assert.Throws<FormatException>(() => TrainConfig.FromJson("{\"n_layer\": 2, \"n_lyer\": 3}", "cfg.json"));
        Assert.Contains("cfg.json", e.Message);
        Assert.Contains("n_lyer", e.Message);
    }

    [Fact]
    public void WrongJsonTypeIsAnErrorNamingTheKey()
    {
        var e = Assert.Throws<FormatException>(() => TrainConfig.FromJson("{\"n_layer\": \"two\"}", "cfg.json"));
        Assert.Contains("n_layer", e.Message);
    }

    [Theory]
    [InlineData("n_embd=130", "n_embd (130) must be divisible by n_head (4)")]
    [InlineData("batch_size=0", "batch_size (0)")]
    [InlineData("dropout=1", "dropout (1)")]
    [InlineData("init_from=gpt2", "init_from ('gpt2')")]
    [InlineData("lr_decay_iters=50", "lr_decay_iters (50) must be greater than warmup_iters (100)")]
    [InlineData("beta2=1", "beta2 (1)")]
    public void ValidationNamesFieldAndValue(string assignment, string expected)
    {
        var c = new TrainConfig();
        c.Set(assignment);
        var e = Assert.Throws<ArgumentException>(() => c.Validate());
        Assert.Contains(expected, e.Message);
    }
}
