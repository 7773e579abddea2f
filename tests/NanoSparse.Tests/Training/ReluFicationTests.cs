using System.Security.Cryptography;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// ReLU-fication as the trainer does it: init_from a checkpoint directory (weights and shape kept, activation swapped,
/// step 0, the input checkpoint untouched), the act_l1 penalty, and log.csv's act_sparsity column.
/// </summary>
[Collection("KernelThreads")]
public sealed class ReluFicationTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    TrainConfig Base(string run, int maxIters = 8)
    {
        var c = _data.Config(run, maxIters);
        c.Dropout = 0f;
        return c;
    }

    static Dictionary<string, string> Hashes(string dir) => Directory.GetFiles(dir)
        .ToDictionary(Path.GetFileName, f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))))!;

    static double[] ActSparsity(string dir) => TrainingLogFile.Read(Path.Combine(dir, TrainingLog.FileName))
        .Where(r => !r.IsEvaluation && r.ActivationSparsity is not null).Select(r => r.ActivationSparsity!.Value).ToArray();

    [Fact]
    public void InitFromACheckpointKeepsTheWeightsSwapsTheActivationAndLeavesTheInputAlone()
    {
        var gelu = Base("gelu");
        using (var t = new Trainer(gelu)) t.Run();
        var before = Hashes(gelu.OutDir);
        var source = Checkpoint.LoadModel(gelu.OutDir, 1, 16, out _);

        var relu = Base("relu", maxIters: 4);
        relu.InitFrom = gelu.OutDir;
        relu.Activation = "relu";
        using (var t = new Trainer(relu))
        {
            Assert.Equal(0, t.Step);
            Assert.Equal("relu", t.Model.Config.Activation);
            Assert.Equal(source.Config with { Activation = "relu" }, t.Model.Config);
            Assert.Equal(source.ParameterData.ToArray(), t.Model.ParameterData.ToArray());
            Assert.Equal(0L, t.Optimizer.StepCount);
            t.Run();
            Assert.Equal(4, t.Step);
        }
        Assert.Equal(before, Hashes(gelu.OutDir));   // the input checkpoint was only read
        var state = Checkpoint.ReadState(relu.OutDir);
        Assert.Equal("relu", state.Model.Activation);
        Assert.Equal(4, state.IterNum);
        var logged = ActSparsity(relu.OutDir);
        Assert.Equal(4, logged.Length);
        Assert.All(logged, s => Assert.InRange(s, 0.05, 1.0));
        // the GELU run logs no activation sparsity (its column is empty)
        Assert.Empty(ActSparsity(gelu.OutDir));

        // resuming the relu run keeps relu (the checkpoint's model args), and fatrelu's threshold is stored with it
        var fat = Base("fat", maxIters: 2);
        fat.InitFrom = gelu.OutDir;
        fat.Activation = "fatrelu";
        fat.FatreluThreshold = 0.05f;
        using (var t = new Trainer(fat)) t.Run();
        Assert.Equal(0.05f, Checkpoint.ReadState(fat.OutDir).Model.FatreluThreshold);
        var resumed = fat.Clone();
        resumed.InitFrom = "resume";
        resumed.Activation = "";
        resumed.FatreluThreshold = 0f;
        resumed.MaxIters = 3;
        using (var t = new Trainer(resumed)) Assert.Equal(("fatrelu", 0.05f), (t.Model.Config.Activation, t.Model.Config.FatreluThreshold));
    }


    [Fact]
    public void ActL1RaisesTheActivationSparsityItLogs()
    {
        var gelu = Base("gelu2");
        using (var t = new Trainer(gelu)) t.Run();
        double Final(float lambda)
        {
            var c = Base("relu-l1-" + lambda.ToString(System.Globalization.CultureInfo.InvariantCulture), maxIters: 12);
            c.InitFrom = gelu.OutDir;
            c.Activation = "relu";
            c.ActL1 = lambda;
            using var t = new Trainer(c);
            t.Run();
            Assert.Equal(ActSparsity(c.OutDir)[^1], t.LastActivationSparsity, 5);   // log.csv writes 6 decimals
            return t.LastActivationSparsity;
        }
        double plain = Final(0f), penalised = Final(50f);
        Assert.True(penalised > plain + 0.05, $"act_l1 = 50 reached {penalised:P1} activation sparsity, without it {plain:P1}");
    }

    [Theory]
    [InlineData("activation=swish", "activation ('swish')")]
    [InlineData("fatrelu_threshold=-0.1", "fatrelu_threshold (-0.1)")]
    [InlineData("act_l1=-1", "act_l1 (-1)")]
    [InlineData("act_l1_warmup=-5", "act_l1_warmup (-5)")]
    [InlineData("init_from=/no/such/checkpoint", "init_from ('/no/such/checkpoint')")]
    public void BadKeysAreOneLineErrorsNamingTheKey(string assignment, string expected)
    {
        var c = Base("bad");
        c.Set(assignment);
        var e = Assert.Throws<ArgumentException>(() => c.Validate());
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AThresholdWithoutFatReluAndInitFromOutDirAreRefused()
    {
        var c = Base("bad2");
        c.Activation = "relu";
        c.FatreluThreshold = 0.2f;
        Assert.Contains("expected 'fatrelu'", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
        var gelu = Base("gelu3", maxIters: 4);
        using (var t = new Trainer(gelu)) t.Run();
        var same = gelu.Clone();
        same.InitFrom = gelu.OutDir;
        Assert.Contains("out_dir itself", Assert.Throws<ArgumentException>(() => same.Validate()).Message);
    }

    [Fact]
    public void AnOlderLogWithoutActSparsityStillReadsAndResumes()
    {
        string dir = _data.Run("oldlog");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, TrainingLog.FileName);
        File.WriteAllLines(path, [TrainingLog.HeaderWithoutActivationSparsity, "0,2.5,2.6,0.001,,,", "0,2.4,,0.001,10.00,100.0,", "1,2.3,,0.001,10.00,100.0,"]);
        var rows = TrainingLogFile.Read(path);
        Assert.Equal(3, rows.Count);
        Assert.All(rows, r => Assert.Null(r.ActivationSparsity));
        using (var log = new TrainingLog(dir, resumeStep: 1)) log.Iteration(1, 2.2f, 0.001, 10, 100, double.NaN, 0.75);
        rows = TrainingLogFile.Read(path);
        Assert.Equal(TrainingLog.Header, File.ReadLines(path).First());
        Assert.Equal(0.75, rows[^1].ActivationSparsity);
        Assert.Null(rows[0].ActivationSparsity);
    }
}
