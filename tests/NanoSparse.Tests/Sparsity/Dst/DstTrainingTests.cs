using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Dst;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Sparsity.Dst;

[Collection("KernelThreads")]
public sealed class DstTrainingTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    /// <summary>Half the block weights stored; an update every 2 steps until step 10.</summary>
    TrainConfig Dst(string run, string method, int maxIters = 12)
    {
        var c = _data.Config(run, maxIters);
        c.Sparsity = 0.5f;
        c.Dst = method;
        c.DstInterval = 2;
        c.DstStop = 10;
        c.DstDropFraction = 0.4f;
        return c;
    }

    static (List<float> Losses, float[] Params, float[] M, float[] V, int[][] Columns, Trainer T) Train(TrainConfig config)
    {
        var t = new Trainer(config);
        t.Run();
        var columns = t.Model.Parameters.Where(p => p.Layout is CsrLinearWeight)
            .Select(p => ((CsrLinearWeight)p.Layout!).ExportIndices().SelectMany(i => i.Values).ToArray()).ToArray();
        return (t.Losses, t.Model.ParameterData.ToArray(), t.Optimizer.M.ToArray(), t.Optimizer.V.ToArray(), columns, t);
    }

    [Theory]
    [InlineData("set")]
    [InlineData("rigl")]
    [InlineData("srigl")]
    public void AResumedRunContinuesBitIdenticallyAcrossUpdateSteps(string method)
    {
        var straight = Train(Dst("straight-" + method, method));
        straight.T.Dispose();
        var a = Train(Dst("split-" + method, method, maxIters: 5));   // updates at 2 and 4; checkpoint at 5
        a.T.Dispose();
        var resumed = Dst("split-" + method, method);
        resumed.InitFrom = "resume";
        var b = Train(resumed);                                          // updates at 6 and 8
        Assert.Equal(2, b.T.Dst!.Updates.Count);
        Assert.Equal(straight.T.Dst!.ItopRate, b.T.Dst.ItopRate);
        b.T.Dispose();

        Assert.Equal(straight.Losses, a.Losses.Concat(b.Losses));
        Assert.Equal(straight.Columns.Length, b.Columns.Length);
        for (int k = 0; k < straight.Columns.Length; k++) Assert.Equal(straight.Columns[k], b.Columns[k]);
        Assert.Equal(straight.Params.Select(BitConverter.SingleToInt32Bits), b.Params.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(straight.M.Select(BitConverter.SingleToInt32Bits), b.M.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(straight.V.Select(BitConverter.SingleToInt32Bits), b.V.Select(BitConverter.SingleToInt32Bits));
        var rows = File.ReadAllLines(Path.Combine(resumed.OutDir, "dst.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToArray();
        Assert.Equal([2, 4, 6, 8], rows);
    }

    [Theory]
    [InlineData("set")]
    [InlineData("rigl")]
    [InlineData("srigl")]
    public void ARunKeepsEveryLayersStoredCountAndItsITopRateGrows(string method)
    {
        var c = Dst("counts-" + method, method);
        using var t = new Trainer(c);
        var stored = t.Model.Parameters.Where(p => p.Layout is CsrLinearWeight).Select(p => p.Length).ToArray();
        var before = t.Dst!.ItopRate;
        var summary = t.Run();
        Assert.Equal(stored, t.Model.Parameters.Where(p => p.Layout is CsrLinearWeight).Select(p => p.Layout!.StoredCount).ToArray());
        Assert.Equal([2, 4, 6, 8], t.Dst.Updates.Select(u => u.Step));
        Assert.True(summary.DstItopRate > before, $"ITOP {summary.DstItopRate} after, {before} before");
        Assert.All(t.Dst.Updates, u => Assert.True(u.ChangedFraction > 0));
        if (method == "srigl")
            foreach (var l in t.Dst.Layers) Assert.True(ConstantFanIn.Check(l).Constant || RowsDifferByAtMostOne(l));
    }

    static bool RowsDifferByAtMostOne(CsrLinearWeight w)
    {
        var counts = Enumerable.Range(0, w.OutFeatures).Select(o => w.Structure.RowPointers[o + 1] - w.Structure.RowPointers[o]).Where(c => c > 0).ToArray();
        return counts.Max() - counts.Min() <= 1;
    }

    [Fact]
    public void StepsBetweenUpdatesAllocateNothing()
    {
        var c = Dst("alloc", "rigl");
        c.Prefetch = false;
        c.DstInterval = 1000;
        c.MaxIters = 2000;
        c.DstStop = 2000;
        using var t = new Trainer(c);
        t.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => t.TrainIteration(1e-3f, out _)));
    }

    [Theory]
    [InlineData("rigl")]
    [InlineData("srigl")]
    public void ACheckpointAfterUpdatesLoadsWithTheMovedLayoutsAndGivesTheSameLogits(string method)
    {
        var c = Dst("load-" + method, method, maxIters: 8);
        c.Dropout = 0;
        using var t = new Trainer(c);
        t.Run();
        var loaded = Checkpoint.LoadModel(c.OutDir, t.Model.BatchSize, t.Model.SeqLen, out _);
        foreach (var p in t.Model.Parameters)
        {
            var q = loaded.Parameters.Single(x => x.Name == p.Name);
            Assert.Equal(p.Value.ToArray(), q.Value.ToArray());
            if (p.Layout is CsrLinearWeight a)
                Assert.Equal(a.ExportIndices()[1].Values, ((CsrLinearWeight)q.Layout!).ExportIndices()[1].Values);
        }
        var tokens = Enumerable.Range(0, t.Model.BatchSize * t.Model.SeqLen).Select(i => i % t.Meta.VocabSize).ToArray();
        t.Model.Forward(tokens, default, training: false);
        var expected = t.Model.Logits.ToArray();
        loaded.Forward(tokens, default, training: false);
        Assert.Equal(expected, loaded.Logits.ToArray());
    }

    [Fact]
    public void SRigLStartsFromConstantFanIn()
    {
        var c = Dst("srigl-start", "srigl");
        using var t = new Trainer(c);
        foreach (var l in t.Dst!.Layers)
        {
            var (constant, fanIn, active) = ConstantFanIn.Check(l);
            Assert.True(constant);
            Assert.Equal(l.OutFeatures, active);
            Assert.Equal(ConstantFanIn.FanIn(l.InFeatures, 0.5), fanIn);
        }
    }

    [Theory]
    [InlineData("dst", "prune", "dst ('prune') must be one of static, set, rigl, srigl")]
    [InlineData("dst_interval", "0", "dst_interval (0) must be positive")]
    [InlineData("dst_drop_fraction", "1.5", "dst_drop_fraction (1.5) must be in [0, 1]")]
    [InlineData("dst_stop", "-2", "dst_stop (-2) must be >= 0")]
    public void BadDstKeysAreOneLineErrorsNamingTheKey(string key, string value, string expected)
    {
        var c = Dst("bad", "rigl");
        c.Set(key, value);
        var e = Assert.Throws<ArgumentException>(() => c.Validate());
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void DstWithoutSparsityIsRefusedNamingBothKeys()
    {
        var c = _data.Config("nosparsity");
        c.Dst = "rigl";
        var e = Assert.Throws<ArgumentException>(() => c.Validate());
        Assert.Contains("dst ('rigl')", e.Message);
        Assert.Contains("sparsity", e.Message);
    }
}
