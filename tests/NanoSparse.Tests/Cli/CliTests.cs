using System.Buffers.Binary;
using System.Text.Json.Nodes;
using NanoSparse.Cli;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

[Collection("KernelThreads")]
public sealed class CliTests : IDisposable
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

    /// <summary>A config file for the tiny model; the dataset is a copy the test may damage.</summary>
    string ConfigFile(string run, string? dataset = null, int maxIters = 4)
    {
        var c = _data.Config(run, maxIters);
        if (dataset is not null) c.Dataset = dataset;
        string path = Path.Combine(_data.Root, run + ".json");
        File.WriteAllText(path, c.ToJson());
        return path;
    }

    string CopyOfDataset(string name)
    {
        string dir = Path.Combine(_data.Root, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(_data.DataDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    static void AssertOneLineError(string err, params string[] fragments)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    [Fact]
    public void HelpNamesTheCommandNanosparse()
    {
        var help = Run("bench", "train", "--help");
        Assert.Equal(0, help.Code);
        Assert.Contains("nanosparse bench train [options]", help.Out);
        Assert.DoesNotContain("NanoSparse.Cli", help.Out);
    }

    [Fact]
    public void BenchKernelsRejectsAnImpossibleRoundCountByName()
    {
        var r = Run("bench", "kernels", "--rounds", "0", "--no-peers");
        Assert.NotEqual(0, r.Code);
        AssertOneLineError(r.Err, "--rounds", "0");
    }

    [Fact]
    public void TrainThenInspectEvalAndSample()
    {
        string cfg = ConfigFile("run");
        var train = Run("train", "--config", cfg, "--set", "eval_interval=2", "--threads", "1");
        Assert.True(train.Code == 0, train.Err);
        Assert.Contains("step 2: train loss", train.Out);
        Assert.Contains("best val loss", train.Out);
        string run = _data.Run("run");
        Assert.True(Checkpoint.Exists(run));
        Assert.True(File.Exists(Path.Combine(run, "log.csv")));
        Assert.True(File.Exists(Path.Combine(run, "loss.png")));
        Assert.True(new FileInfo(Path.Combine(run, "loss.png")).Length > 1000);

        var inspect = Run("inspect", "--checkpoint", run);
        Assert.True(inspect.Code == 0, inspect.Err);
        Assert.Contains("transformer.wte.weight", inspect.Out);
        Assert.Contains("total", inspect.Out);
        Assert.Contains("n_embd", inspect.Out);

        var eval = Run("eval", "--checkpoint", run);
        Assert.True(eval.Code == 0, eval.Err);
        Assert.Contains("val", eval.Out);

        var sample = Run("sample", "--checkpoint", run, "--start", "the ", "--tokens", "20", "--seed", "3");
        Assert.True(sample.Code == 0, sample.Err);
        Assert.StartsWith("the ", sample.Out);
        Assert.True(sample.Out.TrimEnd('\n').Length >= 4 + 20 - 2);
        Assert.Equal(sample.Out, Run("sample", "--checkpoint", run, "--start", "the ", "--tokens", "20", "--seed", "3").Out);
    }

    /// <summary>A sparse model samples through its decode copies by default, or from its stored layouts: the same argmax tokens.</summary>
    [Fact]
    public void SampleDecodesASparseModelWithOrWithoutDecodeCopies()
    {
        string cfg = ConfigFile("sparse");
        var train = Run("train", "--config", cfg, "--set", "sparsity=0.7", "--threads", "1");
        Assert.True(train.Code == 0, train.Err);
        string run = _data.Run("sparse");
        string[] common = ["sample", "--checkpoint", run, "--start", "the ", "--tokens", "30", "--top-k", "1", "--threads", "1"];
        var copies = Run(common);
        Assert.True(copies.Code == 0, copies.Err);
        Assert.StartsWith("the ", copies.Out);
        foreach (var format in new[] { "none", "sell64packed", "bitmap" })
        {
            var other = Run([.. common, "--decode-copy", format]);
            Assert.True(other.Code == 0, other.Err);
            Assert.Equal(copies.Out, other.Out);
        }
        var bad = Run([.. common, "--decode-copy", "sell512"]);
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("sell512", bad.Err);
    }

    [Fact]
    public void InspectPresetPrintsParameterTable()
    {
        var r = Run("inspect", "--preset", "baby");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("transformer.h.3.mlp.c_fc.weight", r.Out);
        Assert.Contains("(512, 128)", r.Out);
    }

    [Fact]
    public void UnknownSetKeyIsAUsageError()
    {
        var r = Run("train", "--config", ConfigFile("x"), "--set", "n_layers=2");
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err, "n_layers", "valid keys");
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void NEmbdNotDivisibleByNHeadIsRejected()
    {
        var r = Run("train", "--config", ConfigFile("x"), "--set", "n_embd=17");
        Assert.NotEqual(0, r.Code);
        AssertOneLineError(r.Err, "n_embd (17) must be divisible by n_head (2)");
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void UnknownOptionIsAUsageError()
    {
        var r = Run("train", "--bogus");
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err);
    }

    [Fact]
    public void MissingBinFileIsNamed()
    {
        string ds = CopyOfDataset("nobin");
        File.Delete(Path.Combine(ds, "val.bin"));
        var r = Run("train", "--config", ConfigFile("x", ds));
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, "val.bin");
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void TruncatedBinFileIsNamed()
    {
        string ds = CopyOfDataset("trunc");
        using (var f = new FileStream(Path.Combine(ds, "train.bin"), FileMode.Append)) f.WriteByte(1);
        var r = Run("train", "--config", ConfigFile("x", ds));
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, "train.bin");
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void WrongDtypeInMetaIsNamed()
    {
        string ds = CopyOfDataset("dtype");
        string meta = Path.Combine(ds, "meta.json");
        var json = JsonNode.Parse(File.ReadAllText(meta))!;
        json["dtype"] = "float32";
        File.WriteAllText(meta, json.ToJsonString());
        var r = Run("train", "--config", ConfigFile("x", ds));
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, "meta.json", "float32");
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void TokenIdBeyondVocabIsNamed()
    {
        string ds = CopyOfDataset("vocab");
        string bin = Path.Combine(ds, "train.bin");
        var bytes = File.ReadAllBytes(bin);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * 100), 60000);
        File.WriteAllBytes(bin, bytes);
        var r = Run("train", "--config", ConfigFile("x", ds));
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, "train.bin", "60000");
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void CheckpointMissingTensorIsNamedAndNothingIsOverwritten()
    {
        string cfg = ConfigFile("ck");
        Assert.Equal(0, Run("train", "--config", cfg).Code);
        string run = _data.Run("ck");
        string model = Path.Combine(run, Checkpoint.ModelFile);
        var tensors = new List<NanoSparse.IO.SafeTensor>();
        using (var f = NanoSparse.IO.SafeTensorsFile.Open(model))
            foreach (var info in f.Tensors.Where(t => t.Name != "transformer.ln_f.weight"))
            {
                var d = new float[info.Shape.Aggregate(1, (a, b) => a * b)];
                f.ReadInto(info.Name, d);
                tensors.Add(new NanoSparse.IO.SafeTensor(info.Name, info.Shape, d));
            }
        NanoSparse.IO.SafeTensors.Write(model, tensors);
        var before = File.ReadAllBytes(model);

        foreach (var args in new[] { new[] { "eval", "--checkpoint", run }, ["sample", "--checkpoint", run], ["inspect", "--checkpoint", run],
                                     ["train", "--config", cfg, "--set", "init_from=resume", "--set", "max_iters=8"] })
        {
            var r = Run(args);
            Assert.Equal(1, r.Code);
            AssertOneLineError(r.Err, "transformer.ln_f.weight", "[16]");
        }
        Assert.Equal(before, File.ReadAllBytes(model));
    }

    [Fact]
    public void UnknownPresetListsAvailableOnes()
    {
        var r = Run("inspect", "--preset", "huge");
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, "huge", "baby");
    }
}

[Collection("KernelThreads")]
public sealed class CliImportedCheckpointTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-cli-import-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact]
    public void InspectReadsAnImportedCheckpointWithoutTrainingState()
    {
        string weights = Path.Combine(AppContext.BaseDirectory, "Fixtures", "interop", "nanogpt_nobias", "model.safetensors");
        var o = new StringWriter();
        var e = new StringWriter();
        Assert.True(Program.Run(["import", "--format", "nanogpt", weights, "--out", _dir], o, e) == 0, e.ToString());
        o = new StringWriter();
        e = new StringWriter();
        Assert.True(Program.Run(["inspect", "--checkpoint", _dir], o, e) == 0, e.ToString());
        Assert.Contains("imported model", o.ToString());
        Assert.Contains("transformer.h.0.attn.c_attn.weight", o.ToString());
        e = new StringWriter();
        Assert.Equal(1, Program.Run(["sample", "--checkpoint", _dir], new StringWriter(), e));
        Assert.Contains("meta.json", e.ToString());
    }
}
