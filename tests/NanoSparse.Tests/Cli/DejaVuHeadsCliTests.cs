using System.Globalization;
using System.Text;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Training;

using static NanoSparse.Tests.Cli.CliRun;

namespace NanoSparse.Tests.Cli;

/// <summary>`dejavu train --target heads|both` and `--act-sparsity predictor:FILE[:S[:HEADS]]` on eval and sample, and their bad input.</summary>
[Collection("KernelThreads")]
public sealed class DejaVuHeadsCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-dejavu-heads-" + Guid.NewGuid().ToString("N"));
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public DejaVuHeadsCliTests()
    {
        Directory.CreateDirectory(_root);
        PrepareDataset(_root, LetterText(6), Data);
        Train(_root, new TrainConfig
        {
            OutDir = Run, Dataset = Data, NLayer = 2, NHead = 4, NEmbd = 16, BlockSize = 32, BatchSize = 2,
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
    public void TrainBothWritesOneFileThatEvalAndSampleUseForHeadsAndNeurons()
    {
        string file = Path.Combine(_root, "both.safetensors");
        var t = RunCli("dejavu", "train", "--checkpoint", Run, "--target", "both", "--rank", "4", "--head-rank", "3", "--train-batches", "2",
            "--val-batches", "1", "--epochs", "2", "--batch-size", "2", "--out", file);
        Assert.True(t.Code == 0, t.Err);
        Assert.Contains("head predictors", t.Out);
        var p = DejaVuPredictor.Load(file);
        Assert.Equal("mlp,heads", p.Kinds);
        Assert.Equal(3, p.HeadLayers[0].Rank);
        Assert.Equal(4, p.HeadLayers[1].Hidden);
        var dense = RunCli("eval", "--checkpoint", Run, "--iters", "1");
        var allHeads = RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{file}:-:4");
        var twoHeads = RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{file}:-:2");
        var both = RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{file}:0.5:3");
        Assert.True(allHeads.Code == 0 && twoHeads.Code == 0 && both.Code == 0, allHeads.Err + twoHeads.Err + both.Err);
        Assert.Equal(ValLoss(dense.Out), ValLoss(allHeads.Out), 3e-4);   // every head kept: the dense model
        Assert.Contains("heads computed 50.0 %", twoHeads.Out);
        Assert.DoesNotContain("MLP neurons computed", twoHeads.Out);
        Assert.NotEqual(ValLoss(dense.Out), ValLoss(twoHeads.Out));
        Assert.Contains("heads computed 75.0 %", both.Out);
        Assert.Contains("MLP neurons computed 50.0 %", both.Out);
        var s = RunCli("sample", "--checkpoint", Run, "--tokens", "20", "--act-sparsity", $"predictor:{file}:0.5:2");
        Assert.True(s.Code == 0, s.Err);
    }

    [Fact]
    public void BadInputGivesOneLineErrors()
    {
        string x = Path.Combine(_root, "x.safetensors");
        OneLineError(RunCli("dejavu", "train", "--checkpoint", Run, "--target", "heads", "--head-rank", "0", "--out", x), "--head-rank (0)");
        OneLineError(RunCli("dejavu", "train", "--checkpoint", Run, "--target", "heads", "--head-label", "share:3", "--out", x), "--head-label \"share:3\"");
        string mlpOnly = Path.Combine(_root, "mlp.safetensors");
        new DejaVuPredictor([new(16, 64, 2), new(16, 64, 2)], "active").Save(mlpOnly);
        OneLineError(RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{mlpOnly}::2"), mlpOnly, "no head predictors");
        string heads = Path.Combine(_root, "heads.safetensors");
        new DejaVuPredictor([], "active", null, [new(16, 4, 2), new(16, 4, 2)]).Save(heads);
        OneLineError(RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{heads}::5"), "heads kept per token (5)", "[1, 4]");
        OneLineError(RunCli("eval", "--checkpoint", Run, "--iters", "1", "--act-sparsity", $"predictor:{heads}::0"), "heads per token 0");
        // a head predictor for another head count: 2 against the model's 4
        string other = Path.Combine(_root, "other.safetensors");
        new DejaVuPredictor([], "active", null, [new(16, 2, 2), new(16, 2, 2)]).Save(other);
        OneLineError(RunCli("sample", "--checkpoint", Run, "--act-sparsity", $"predictor:{other}"), other, "scores 2 heads", "has 4");
    }
}
