using System.Globalization;
using System.Text;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Training;

using static NanoSparse.Tests.Cli.CliRun;

namespace NanoSparse.Tests.Cli;

/// <summary>`dejavu train` and `--act-sparsity predictor:FILE[:SPARSITY]` on eval and sample, and their bad input.</summary>
[Collection("KernelThreads")]
public sealed class DejaVuCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-dejavu-" + Guid.NewGuid().ToString("N"));
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public DejaVuCliTests()
    {
        Directory.CreateDirectory(_root);
        PrepareDataset(_root, LetterText(5), Data);
        Train(_root, new TrainConfig
        {
            OutDir = Run, Dataset = Data, NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 32, BatchSize = 2,
            MaxIters = 2, EvalInterval = 2, EvalIters = 1, LogInterval = 1, WarmupIters = 1, LrDecayIters = 2, Seed = 1, Threads = 1,
        });
    }

    string Data => Path.Combine(_root, "data");
    string Run => Path.Combine(_root, "run");

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    [Fact]
    public void TrainWritesAPredictorThatEvalAndSampleUse()
    {
        string file = Path.Combine(_root, "p.safetensors");
        var t = RunCli("dejavu", "train", "--checkpoint", Run, "--rank", "4", "--train-batches", "2", "--val-batches", "1", "--epochs", "2",
            "--batch-size", "2", "--out", file);
        Assert.True(t.Code == 0, t.Err);
        Assert.True(File.Exists(file));
        Assert.Contains("recall", t.Out);
        Assert.Empty(Directory.GetFiles(_root, ".*.tmp"));   // the atomic write left no temporary file
        var dense = RunCli("eval", "--checkpoint", Run, "--iters", "1");
        var all = RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{file}:0");
        var half = RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{file}:0.5");
        Assert.True(all.Code == 0 && half.Code == 0, all.Err + half.Err);
        Assert.Equal(ValLoss(dense.Out), ValLoss(all.Out), 3e-4);   // every neuron kept: the dense model
        Assert.Contains("computed 50.0 %", half.Out);
        Assert.NotEqual(ValLoss(dense.Out), ValLoss(half.Out));
        var s = RunCli("sample", "--checkpoint", Run, "--tokens", "20", "--act-sparsity", $"predictor:{file}:0.75");
        Assert.True(s.Code == 0, s.Err);
    }

    [Fact]
    public void BadInputGivesOneLineErrors()
    {
        OneLineError(RunCli("dejavu", "train", "--checkpoint", Run, "--rank", "0", "--out", Path.Combine(_root, "x.safetensors")), "--rank (0)");
        OneLineError(RunCli("dejavu", "train", "--checkpoint", Run, "--label", "top:2", "--out", Path.Combine(_root, "x.safetensors")), "--label \"top:2\"");
        string missing = Path.Combine(_root, "missing.safetensors");
        OneLineError(RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{missing}"), missing);
        OneLineError(RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{missing}:1.5"), "sparsity 1.5", "[0, 1)");
        OneLineError(RunCli("sample", "--checkpoint", Run, "--act-sparsity", "oracle:x"), "--act-sparsity", "predictor:FILE");
        // a predictor made for another model: n_embd 16 against 24
        string other = Path.Combine(_root, "other.safetensors");
        new NanoSparse.Sparsity.Activation.DejaVuPredictor(
            [new(24, 96, 2), new(24, 96, 2)], "active").Save(other);
        OneLineError(RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{other}"), other, "n_embd is 16", "24");
    }
}
