using NanoSparse.Cli;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>`train` with activation / act_l1 / init_from DIR, and `eval --activation-stats`, through the CLI.</summary>
[Collection("KernelThreads")]
public sealed class ActivationSparsityCliTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    string ConfigFile(string run, int maxIters = 4)
    {
        var c = _data.Config(run, maxIters);
        string path = Path.Combine(_data.Root, run + ".json");
        File.WriteAllText(path, c.ToJson());
        return path;
    }

    [Fact]
    public void TrainHelpListsTheActivationKeys()
    {
        var help = Run("train", "--help");
        Assert.Equal(0, help.Code);
        foreach (var key in new[] { "activation=", "relu2", "fatrelu_threshold", "act_l1", "act_l1_warmup", "init_from=scratch|resume|DIR", "act_sparsity" })
            Assert.Contains(key, help.Out);
    }

    [Fact]
    public void ReluFiedFineTuneThenEvalReportsPerLayerSparsityAndDrawsIt()
    {
        var gelu = Run("train", "--config", ConfigFile("gelu"), "--threads", "1");
        Assert.True(gelu.Code == 0, gelu.Err);
        var relu = Run("train", "--config", ConfigFile("relu"), "--threads", "1", "--set", "init_from=" + _data.Run("gelu"),
            "--set", "activation=relu", "--set", "act_l1=1", "--set", "act_l1_warmup=2");
        Assert.True(relu.Code == 0, relu.Err);
        Assert.Contains("MLP activation sparsity", relu.Out);

        string png = Path.Combine(_data.Root, "act.png");
        var r = Run("eval", "--checkpoint", _data.Run("relu"), "--threads", "1", "--activation-stats", "--activation-png", png);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("MLP activation sparsity (relu)", r.Out);
        Assert.Contains("mean", r.Out);
        Assert.Contains("|a| < 0.01", r.Out);
        Assert.True(new FileInfo(png).Length > 1000);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png).Take(4).ToArray());

        // the GELU model has (almost) no exact zeros; only the near-zero column is non-trivial
        var g = Run("eval", "--checkpoint", _data.Run("gelu"), "--threads", "1", "--activation-stats", "--activation-png", png);
        Assert.True(g.Code == 0, g.Err);
        Assert.Contains("MLP activation sparsity (gelu)", g.Out);
    }

    [Theory]
    [InlineData("0", "--activation-epsilon (0) must be a finite number > 0")]
    [InlineData("-1", "--activation-epsilon (-1)")]
    public void BadEpsilonIsAOneLineError(string epsilon, string expected)
    {
        var t = Run("train", "--config", ConfigFile("e"), "--threads", "1", "--set", "max_iters=1");
        Assert.True(t.Code == 0, t.Err);
        var r = Run("eval", "--checkpoint", _data.Run("e"), "--activation-stats", "--activation-epsilon", epsilon);
        Assert.NotEqual(0, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
    }

    [Fact]
    public void AMissingInitFromCheckpointIsAOneLineError()
    {
        var r = Run("train", "--config", ConfigFile("m"), "--set", "init_from=" + Path.Combine(_data.Root, "nothing-here"), "--set", "activation=relu");
        Assert.NotEqual(0, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("init_from ('", lines[0]);
        Assert.Contains("checkpoint directory", lines[0]);
    }
}
