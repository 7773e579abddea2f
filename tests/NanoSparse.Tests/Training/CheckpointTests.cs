using NanoSparse.IO;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

[Collection("KernelThreads")]
public sealed class CheckpointTests : IDisposable
{
    readonly TinyDataset _data = new();
    public void Dispose() => _data.Dispose();

    string TrainedCheckpoint(out float[] parameters, out float[] m, out float[] v)
    {
        var c = _data.Config("ckpt", maxIters: 4);
        using var t = new Trainer(c);
        t.Run();
        parameters = t.Model.ParameterData.ToArray();
        m = t.Optimizer.M.ToArray();
        v = t.Optimizer.V.ToArray();
        return c.OutDir;
    }

    [Fact]
    public void RoundTripRestoresParametersOptimizerAndState()
    {
        string dir = TrainedCheckpoint(out var p, out var m, out var v);
        var gpt = Checkpoint.LoadModel(dir, 2, 16, out var state);
        Assert.Equal(p, gpt.ParameterData.ToArray());
        Assert.Equal(4, state.IterNum);
        Assert.Equal(4, state.OptimizerStep);   // one AdamW step per iteration, whatever the accumulation
        Assert.Equal(16, state.Model.NEmbd);
        Assert.Equal(_data.DataDir, state.Dataset);
        Assert.True(File.Exists(Path.Combine(dir, Checkpoint.MetaFile)));
    }

    [Fact]
    public void ModelFileUsesNanoGptNamesWithLmHeadCopyOfWte()
    {
        string dir = TrainedCheckpoint(out _, out _, out _);
        using var f = SafeTensorsFile.Open(Path.Combine(dir, Checkpoint.ModelFile));
        Assert.True(f.Contains("transformer.wte.weight"));
        Assert.True(f.Contains("transformer.wpe.weight"));
        Assert.True(f.Contains("lm_head.weight"));
        var wte = new float[f.Get("transformer.wte.weight").Shape.Aggregate(1, (a, b) => a * b)];
        var head = new float[wte.Length];
        f.ReadInto("transformer.wte.weight", wte);
        f.ReadInto("lm_head.weight", head);
        Assert.Equal(wte, head);
        using var o = SafeTensorsFile.Open(Path.Combine(dir, Checkpoint.OptimizerFile));
        Assert.True(o.Contains("transformer.wte.weight.exp_avg"));
        Assert.True(o.Contains("transformer.wte.weight.exp_avg_sq"));
    }

    [Fact]
    public void MissingTensorIsNamedWithExpectedShape()
    {
        string dir = TrainedCheckpoint(out _, out _, out _);
        string path = Path.Combine(dir, Checkpoint.ModelFile);
        Rewrite(path, drop: "transformer.wpe.weight", reshape: null);
        var e = Assert.Throws<FormatException>(() => Checkpoint.LoadModel(dir, 1, 16, out _));
        Assert.Contains("'transformer.wpe.weight'", e.Message);
        Assert.Contains("[16, 16]", e.Message);
    }

    [Fact]
    public void WrongShapeIsNamedWithBothShapes()
    {
        string dir = TrainedCheckpoint(out _, out _, out _);
        string path = Path.Combine(dir, Checkpoint.ModelFile);
        Rewrite(path, drop: null, reshape: "transformer.wpe.weight");
        var e = Assert.Throws<FormatException>(() => Checkpoint.LoadModel(dir, 1, 16, out _));
        Assert.Contains("'transformer.wpe.weight'", e.Message);
        Assert.Contains("[8, 32]", e.Message);
        Assert.Contains("expected [16, 16]", e.Message);
    }

    [Fact]
    public void MissingStateFileIsReported()
    {
        string dir = TrainedCheckpoint(out _, out _, out _);
        File.Delete(Path.Combine(dir, Checkpoint.StateFile));
        var e = Assert.Throws<FileNotFoundException>(() => Checkpoint.ReadState(dir));
        Assert.Contains("state.json", e.Message);
    }

    [Fact]
    public void SaveDeletesThePreviousSavesFilesItDoesNotWrite()
    {
        string dir = TrainedCheckpoint(out var p, out _, out _);
        Assert.True(File.Exists(Path.Combine(dir, Checkpoint.OptimizerFile)));
        var gpt = Checkpoint.LoadModel(dir, 1, 16, out var state);
        Checkpoint.Save(dir, gpt, optimizer: null, state, metaPath: null);

        Assert.False(File.Exists(Path.Combine(dir, Checkpoint.OptimizerFile)));
        Assert.False(File.Exists(Path.Combine(dir, Checkpoint.MetaFile)));
        var after = Checkpoint.ReadState(dir);
        Assert.Equal([Checkpoint.ModelFile], after.Files!.Keys);
        Assert.Equal(p, Checkpoint.LoadModel(dir, 1, 16, out _).ParameterData.ToArray());
        Assert.True(File.Exists(Path.Combine(dir, TrainingLog.FileName)));   // not a checkpoint file: kept
    }

    /// <summary>Writes the file back without <paramref name="drop"/>, or with <paramref name="reshape"/> (16, 16) stored as (8, 32).</summary>
    static void Rewrite(string path, string? drop, string? reshape)
    {
        var tensors = new List<SafeTensor>();
        using (var f = SafeTensorsFile.Open(path))
        {
            foreach (var info in f.Tensors)
            {
                if (info.Name == drop) continue;
                var data = new float[info.Shape.Aggregate(1, (a, b) => a * b)];
                f.ReadInto(info.Name, data);
                tensors.Add(new SafeTensor(info.Name, info.Name == reshape ? [8, 32] : info.Shape, data));
            }
        }
        SafeTensors.Write(path, tensors);
    }
}
