using NanoSparse.Cli;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

[Collection("KernelThreads")]
public sealed class PruningWhileTrainingCliTests : IDisposable
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

    string ConfigFile(string run, int maxIters = 6)
    {
        var c = _data.Config(run, maxIters);
        string path = Path.Combine(_data.Root, run + ".json");
        File.WriteAllText(path, c.ToJson());
        return path;
    }

    static void AssertOneLineError(string err, params string[] fragments)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    [Fact]
    public void TrainHelpDocumentsThePruningKeys()
    {
        var help = Run("train", "--help");
        Assert.Equal(0, help.Code);
        foreach (var key in new[] { "prune_schedule", "prune_initial_sparsity", "prune_final_sparsity", "prune_start", "prune_end", "prune_frequency", "prune_scope", "prune_switch_sparsity", "l1", "l2" })
            Assert.Contains(key, help.Out);
    }

    [Fact]
    public void GmpTrainPrintsMsPerIterBeforeAndAfterTheSwitchAndPerWeightZeros()
    {
        string cfg = ConfigFile("gmp", maxIters: 8);
        var r = Run("train", "--config", cfg, "--threads", "1", "--set", "prune_schedule=gmp", "--set", "prune_start=1", "--set", "prune_end=5",
            "--set", "prune_frequency=2", "--set", "prune_final_sparsity=0.8", "--set", "prune_switch_sparsity=0.6");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("ms/iter dense (masked)", r.Out);
        Assert.Contains("ms/iter sparse (csr)", r.Out);
        Assert.Contains("switch to sparse layout", r.Out);
        Assert.Contains("exact zeros", r.Out);
        Assert.Contains("transformer.h.0.mlp.c_fc.weight", r.Out);
        Assert.Contains(",sparsity", File.ReadLines(Path.Combine(_data.Run("gmp"), TrainingLog.FileName)).First());
    }

    [Theory]
    [InlineData("prune_schedule=cubic", "prune_schedule ('cubic') must be 'none' or 'gmp'")]
    [InlineData("prune_final_sparsity=1.2", "prune_final_sparsity (1.2) must be in [0, 1)")]
    [InlineData("l1=abc", "invalid value 'abc' for config key 'l1'")]
    public void BadPruningKeysAreOneLineErrors(string set, string expected)
    {
        string cfg = ConfigFile("bad");
        var r = Run("train", "--config", cfg, "--set", set);
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err, expected);
    }

    [Theory]
    [InlineData("--rate", "1.5", "--rate (1.5) must be in (0, 1)")]
    [InlineData("--rounds", "0", "--rounds (0) must be at least 1")]
    [InlineData("--rewind-step", "6", "--rewind-step (6) must be in [0, max_iters = 6)")]
    public void ImpBadArgumentsAreOneLineErrors(string option, string value, string expected)
    {
        string cfg = ConfigFile("imp-bad");
        var r = Run("imp", "--config", cfg, option, value, "--out", Path.Combine(_data.Root, "imp-bad-out"));
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err, expected);
        Assert.False(Directory.Exists(Path.Combine(_data.Root, "imp-bad-out")));
    }

    [Fact]
    public void ImpWritesARoundTableCsvPngAndCheckpoints()
    {
        string cfg = ConfigFile("imp");
        string outDir = Path.Combine(_data.Root, "imp-out");
        var r = Run("imp", "--config", cfg, "--threads", "1", "--rounds", "2", "--rate", "0.5", "--rewind-step", "1", "--out", outDir);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("best val loss", r.Out);
        var csv = File.ReadAllLines(Path.Combine(outDir, "imp.csv"));
        Assert.Equal("round,sparsity,val_loss,best_val_loss,ms_per_iter,layout,checkpoint", csv[0]);
        Assert.Equal(4, csv.Length);
        Assert.True(new FileInfo(Path.Combine(outDir, "imp.png")).Length > 1000);
        for (int round = 0; round <= 2; round++) Assert.True(Checkpoint.Exists(Path.Combine(outDir, $"round-{round}")));
        // The round-2 checkpoint (75%) is sparse and evaluates through the CLI.
        var eval = Run("eval", "--checkpoint", Path.Combine(outDir, "round-2"), "--threads", "1");
        Assert.True(eval.Code == 0, eval.Err);
    }
}
