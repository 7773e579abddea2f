using NanoSparse.IO;
using NanoSparse.Kernels;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

[Collection("KernelThreads")]
public sealed class TrainerTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    static (List<float> Losses, List<EvalReport> Evals, float[] Params) Train(TrainConfig config)
    {
        using var t = new Trainer(config);
        t.Run();
        return (t.Losses, t.Evaluations, t.Model.ParameterData.ToArray());
    }

    [Fact]
    public void TheSummarysMedianAndMeanAreThoseOfTheStepsReported()
    {
        using var t = new Trainer(_data.Config("timing", maxIters: 7));
        var reported = new List<double>();
        t.StepCompleted = r => reported.Add(r.MsPerIter);
        var summary = t.Run();
        Assert.Equal(7, reported.Count);
        var sorted = reported.Order().ToArray();
        Assert.Equal(sorted[3], summary.MedianMsPerIter, 9);
        Assert.Equal(reported.Average(), summary.MeanMsPerIter, 6);
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(1, false)]
    public void ResumeContinuesBitIdentically(int threads, bool prefetch)
    {
        var straight = _data.Config("straight");
        straight.Threads = threads;
        straight.Prefetch = prefetch;
        var a = Train(straight);
        Assert.Equal(8, a.Losses.Count);

        var half = _data.Config("split", maxIters: 4);
        half.Threads = threads;
        half.Prefetch = prefetch;
        var b1 = Train(half);
        Assert.True(Checkpoint.Exists(half.OutDir));
        var resumed = half.Clone();
        resumed.MaxIters = 8;
        resumed.InitFrom = "resume";
        var b2 = Train(resumed);

        Assert.Equal(a.Losses, b1.Losses.Concat(b2.Losses));   // float equality: bit-identical
        Assert.Equal(a.Params, b2.Params);
        Assert.Equal(a.Evals.Select(e => (e.Step, e.TrainLoss, e.ValLoss)), b1.Evals.Concat(b2.Evals).Select(e => (e.Step, e.TrainLoss, e.ValLoss)));
        Assert.All(a.Losses, l => Assert.True(float.IsFinite(l)));

        // The resumed log.csv reads as the uninterrupted one (timing columns aside).
        static string[] Logged(string dir) => File.ReadAllLines(Path.Combine(dir, TrainingLog.FileName))
            .Select(l => string.Join(',', l.Split(',').Take(4))).ToArray();
        Assert.Equal(Logged(straight.OutDir), Logged(half.OutDir));
    }

    [Fact]
    public void SameSeedSameThreadsGivesSameRunAndDifferentSeedDiffers()
    {
        var c1 = _data.Config("r1");
        var c2 = _data.Config("r2");
        var c3 = _data.Config("r3");
        c3.Seed = 43;
        var a = Train(c1);
        var b = Train(c2);
        var c = Train(c3);
        Assert.Equal(a.Losses, b.Losses);
        Assert.NotEqual(a.Losses, c.Losses);
    }

    [Fact]
    public void EvaluationIsDeterministicAndDoesNotPerturbTraining()
    {
        var often = _data.Config("often");
        often.EvalInterval = 1;
        var rarely = _data.Config("rarely");
        rarely.EvalInterval = 100;
        var a = Train(often);
        var b = Train(rarely);
        Assert.Equal(a.Losses, b.Losses);
        Assert.Equal(a.Evals[^1].ValLoss, b.Evals[^1].ValLoss);

        using var t = new Trainer(_data.Config("twice"));
        var first = t.Evaluate();
        var second = t.Evaluate();
        Assert.Equal(first, second);
        Assert.True(first.Val > 0 && float.IsFinite(first.Val));
    }

    [Fact]
    public void LossDecreasesOnTheTinyDataset()
    {
        var c = _data.Config("learn", maxIters: 40);
        c.EvalInterval = 40;
        c.LrDecayIters = 40;
        var r = Train(c);
        Assert.True(r.Evals[^1].ValLoss < r.Evals[0].ValLoss - 0.3f, $"val loss {r.Evals[0].ValLoss} -> {r.Evals[^1].ValLoss}");
    }

    [Fact]
    public void WritesCsvLogWithOneRowPerIterationAndPerEvaluation()
    {
        var c = _data.Config("log");
        Train(c);
        var lines = File.ReadAllLines(Path.Combine(c.OutDir, TrainingLog.FileName));
        Assert.Equal(TrainingLog.Header, lines[0]);
        Assert.Equal(8, lines.Skip(1).Count(l => l.Split(',')[2].Length == 0));
        Assert.Equal(3, lines.Skip(1).Count(l => l.Split(',')[2].Length > 0));   // steps 0, 4, 8
    }

    [Fact]
    public void NaNLossStopsWithStepAndLeavesLastCheckpointLoadable()
    {
        var c = _data.Config("nan", maxIters: 4);
        Train(c);
        var stateBefore = File.ReadAllBytes(Path.Combine(c.OutDir, Checkpoint.StateFile));
        var modelBefore = File.ReadAllBytes(Path.Combine(c.OutDir, Checkpoint.ModelFile));

        var blowUp = c.Clone();
        blowUp.InitFrom = "resume";
        blowUp.MaxIters = 12;
        blowUp.EvalInterval = 1;             // would checkpoint every step if the weights were accepted
        blowUp.LearningRate = 1e30f;
        blowUp.DecayLr = false;
        blowUp.GradClip = 0;
        using var t = new Trainer(blowUp);
        var e = Assert.Throws<TrainingDivergedException>(() => t.Run());
        Assert.Contains($"step {e.Step}", e.Message);
        Assert.True(e.Step > 4);

        Assert.Equal(stateBefore, File.ReadAllBytes(Path.Combine(c.OutDir, Checkpoint.StateFile)));
        Assert.Equal(modelBefore, File.ReadAllBytes(Path.Combine(c.OutDir, Checkpoint.ModelFile)));
        var gpt = Checkpoint.LoadModel(c.OutDir, 1, 16, out var state);
        Assert.Equal(4, state.IterNum);
        Assert.All(gpt.ParameterData.ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrainIterationAllocatesNothingAfterWarmUp(bool prefetch)
    {
        var c = _data.Config("alloc");
        c.Prefetch = prefetch;
        using var t = new Trainer(c);
        for (int i = 0; i < 3; i++) t.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 3; i++) t.TrainIteration(1e-3f, out _); }));
    }

    [Fact]
    public void BadDatasetFailsBeforeWritingAnything()
    {
        var c = _data.Config("never");
        c.Dataset = Path.Combine(_data.Root, "missing");
        var e = Assert.Throws<DirectoryNotFoundException>(() => new Trainer(c));
        Assert.Contains("missing", e.Message);
        Assert.False(Directory.Exists(c.OutDir));
    }
}
