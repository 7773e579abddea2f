using NanoSparse.Cli;
using NanoSparse.IO;
using NanoSparse.Tests.IO;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// Bad input at the CLI gives one line "error: ..." naming the option, key or file with the value found, a non-zero
/// exit code, and never an OverflowException, OutOfMemoryException or runtime message.
/// </summary>
[Collection("KernelThreads")]
public sealed class ErrorContractCliTests : IDisposable
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

    static void AssertOneLineError(string err, params string[] fragments)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
        foreach (var runtime in new[] { "Arithmetic operation", "OutOfMemory", "Array dimensions", "Non-negative number required", "(Parameter '" })
            Assert.DoesNotContain(runtime, lines[0]);
    }

    string ConfigFile(string run)
    {
        var c = _data.Config(run, maxIters: 2);
        string path = Path.Combine(_data.Root, run + ".json");
        File.WriteAllText(path, c.ToJson());
        return path;
    }

    string Imported()
    {
        string dir = Path.Combine(_data.Root, "imported");
        if (!Directory.Exists(dir))
            ModelImporter.Import(ModelFormat.NanoGpt, ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors"),
                ModelImporterTests.Fixture("nanogpt_bias", "config.json"), dir);
        return dir;
    }

    [Theory]
    [InlineData("block_size=100000000", "block_size (100000000) is too large")]
    [InlineData("batch_size=2000000000", "batch_size (2000000000) is too large")]
    [InlineData("n_layer=2000000000", "n_layer (2000000000) is too large")]
    [InlineData("n_embd=2000000000", "n_embd (2000000000) is too large")]
    public void TrainRefusesHugeSizesByKeyBeforeAllocating(string set, string expected)
    {
        var r = Run("train", "--config", ConfigFile("huge"), "--set", set, "--set", "n_head=1");
        Assert.NotEqual(0, r.Code);
        AssertOneLineError(r.Err, expected, "at most");
        Assert.False(Directory.Exists(_data.Run("huge")));
    }

    [Fact]
    public void ArgumentErrorsCarryNoCSharpParameterName()
    {
        // BatchSampler throws ArgumentException(paramName: "file"); the CLI line is the message alone.
        var r = Run("train", "--config", ConfigFile("long"), "--set", "block_size=20000");
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, "train.bin", "block_size + 1 = 20001");
    }

    [Theory]
    [InlineData("n_layer=100000", "n_layer (100000) is too large")]
    [InlineData("n_embd=1000000", "n_embd (1000000) is too large")]
    public void InspectRefusesAModelWhoseParametersCannotBeBuilt(string set, string expected)
    {
        var r = Run("inspect", "--preset", "baby", "--set", set, "--set", "n_head=1");
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err, "config: " + expected, "one array holds");
    }

    [Fact]
    public void HugeVocabularyInMetaJsonIsBlamedOnThatFile()
    {
        string ds = Path.Combine(_data.Root, "bigvocab");
        Directory.CreateDirectory(ds);
        foreach (var f in Directory.GetFiles(_data.DataDir)) File.Copy(f, Path.Combine(ds, Path.GetFileName(f)));
        string meta = Path.Combine(ds, "meta.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(meta))!;
        json["vocab_size"] = 2_000_000_000;
        json["dtype"] = "uint32";
        json["tokenizer"] = new System.Text.Json.Nodes.JsonObject { ["kind"] = "cl100k_base" };
        File.WriteAllText(meta, json.ToJsonString());
        var c = _data.Config("bigvocab", maxIters: 2);
        c.Dataset = ds;
        string cfg = Path.Combine(_data.Root, "bigvocab.json");
        File.WriteAllText(cfg, c.ToJson());
        var r = Run("train", "--config", cfg);
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, $"vocab_size of {meta} (2000000000) is too large", "at most");
    }

    [Fact]
    public void TrainConfigFileWithInvalidUtf8IsNamed()
    {
        string path = ConfigFile("bad");
        byte[] bytes = File.ReadAllBytes(path);
        int at = bytes.AsSpan().IndexOf("\"out_dir\""u8) + 2;
        bytes[at] = 0xFF;
        File.WriteAllBytes(path, bytes);
        var r = Run("train", "--config", path);
        Assert.Equal(1, r.Code);
        AssertOneLineError(r.Err, path, "not valid UTF-8", "0xFF");
    }

    [Theory]
    [InlineData("2147483647")]
    [InlineData("2147483591")]
    public void SampleRefusesATokenCountNoArrayHolds(string tokens)
    {
        var r = Run("sample", "--checkpoint", Imported(), "--tokens", tokens);
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err, $"--tokens ({tokens})");
    }

    [Theory]
    [InlineData("--batch-size", "2147483647")]
    [InlineData("--batch-size", "100000000")]
    public void EvalRefusesHugeBatchesByOption(string option, string value)
    {
        var r = Run("eval", "--checkpoint", Imported(), "--data", _data.DataDir, option, value);
        Assert.Equal(2, r.Code);
        AssertOneLineError(r.Err, $"{option} ({value}) is too large", "at most");
    }

    [Theory]
    [InlineData("gemm", "--reps")]
    [InlineData("kernels", "--rounds")]
    [InlineData("train", "--iters")]
    [InlineData("train", "--gemm-size")]
    [InlineData("train", "--vocab")]
    [InlineData("sample", "--tokens")]
    [InlineData("sample", "--vocab")]
    [InlineData("data", "--batch-size")]
    [InlineData("data", "--batches")]
    public void BenchRefusesHugeCountsByOption(string suite, string option)
    {
        string[] quiet = suite switch
        {
            "gemm" => [],
            "kernels" => ["--no-peers", "--quick"],
            "data" => ["--size-gib", "0.001"],
            _ => ["--no-peer"],
        };
        var r = Run(["bench", suite, option, "2147483647", .. quiet]);
        Assert.NotEqual(0, r.Code);
        AssertOneLineError(r.Err, $"{option} (2147483647)");
    }

    [Fact]
    public void CheckpointWithAnUntiedLmHeadIsRefusedNamingBothTensors()
    {
        var r = Run("train", "--config", ConfigFile("tied"));
        Assert.True(r.Code == 0, r.Err);
        string model = Path.Combine(_data.Run("tied"), Checkpoint.ModelFile);
        var tensors = new List<SafeTensor>();
        using (var f = SafeTensorsFile.Open(model))
            foreach (var info in f.Tensors)
            {
                var d = f.ReadFloat32Array(info.Name);
                if (info.Name == Checkpoint.LmHeadName) d[5] += 1f;
                tensors.Add(new SafeTensor(info.Name, info.Shape, d));
            }
        SafeTensors.Write(model, tensors);
        foreach (var args in new[] { new[] { "sample", "--checkpoint", _data.Run("tied"), "--tokens", "3" }, ["eval", "--checkpoint", _data.Run("tied")], ["inspect", "--checkpoint", _data.Run("tied")] })
        {
            r = Run(args);
            Assert.Equal(1, r.Code);
            AssertOneLineError(r.Err, model, "'lm_head.weight'", "'transformer.wte.weight'", "element 5");
        }
    }
}
