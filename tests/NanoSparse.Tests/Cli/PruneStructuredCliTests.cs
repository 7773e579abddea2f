using System.Security.Cryptography;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Training;
using NanoSparse.Tests.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>`nanosparse prune-structured` on a small trained checkpoint: the smaller model, its report, and bad input.</summary>
[Collection("KernelThreads")]
public sealed class PruneStructuredCliTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;
    readonly string _trained;

    public PruneStructuredCliTests()
    {
        var c = _data.Config("trained", maxIters: 2);
        c.NLayer = 2;
        c.NHead = 4;
        c.Dropout = 0;
        using (var t = new Trainer(c)) t.Run();
        _trained = c.OutDir;
    }

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

    static string Hashes(string dir) => string.Join(",", Directory.GetFiles(dir).Order().Select(f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))));

    [Fact]
    public void PrunesReportsAndWritesASmallerCheckpointThatTrainingResumes()
    {
        string before = Hashes(_trained);
        string outDir = _data.Run("pruned");
        var (code, stdout, stderr) = Run("prune-structured", "--checkpoint", _trained, "--out", outDir, "--heads", "0.5", "--neurons", "0.5",
            "--score", "activation", "--scope", "global", "--calibration-windows", "6", "--speed-rounds", "1", "--prompt", "4", "--new-tokens", "4");
        Assert.True(code == 0, stderr);
        Assert.Equal(before, Hashes(_trained));   // the input checkpoint is only read
        foreach (var text in new[] { "kept per layer", "val perplexity", "parameters", "model.safetensors bytes", "decode tokens/s", "prefill tokens/s", "train step ms", "calibration: 96 tokens" })
            Assert.Contains(text, stdout);
        Assert.True(File.Exists(Path.Combine(outDir, "structured_pruning.png")));

        var state = Checkpoint.ReadState(outDir);
        Assert.Equal(4, state.Model.NHeadPerLayer!.Sum());                  // 8 heads, half removed
        Assert.Equal(64, state.Model.MlpHiddenPerLayer!.Sum());             // 128 neurons, half removed
        var pruned = Checkpoint.LoadModel(outDir, 4, 16, out _);
        Assert.True(pruned.ParameterCount < Checkpoint.LoadModel(_trained, 1, 1, out _).ParameterCount);

        // The pruned checkpoint fine-tunes: train resumes from it with its AdamW moments at the kept positions.
        var c = state.Config.Clone();
        c.OutDir = outDir;
        c.InitFrom = "resume";
        c.MaxIters = state.IterNum + 2;
        using (var t = new Trainer(c))
        {
            var summary = t.Run();
            Assert.Equal(state.IterNum + 2, summary.FinalStep);
            Assert.Equal(pruned.Config, t.Model.Config);
        }
        Assert.Equal(state.IterNum + 2, Checkpoint.ReadState(outDir).IterNum);
    }

    [Fact]
    public void ValLossBeforeIsTheOriginalsAndAfterThePrunedModels()
    {
        string outDir = _data.Run("pruned-eval");
        var result = StructuredPruning.Run(new StructuredPruneSettings { Checkpoint = _trained, OutDir = outDir, Heads = 0.25, Neurons = 0.75, EvalIters = 3 });
        var state = Checkpoint.ReadState(_trained);
        var meta = DatasetMeta.Load(Path.Combine(_data.DataDir, DatasetMeta.FileName));
        using var val = TokenFile.OpenSplit(_data.DataDir, "val", meta);
        float Loss(string dir)
        {
            var gpt = Checkpoint.LoadModel(dir, state.Config.BatchSize, state.Config.BlockSize, out _);
            var x = new int[gpt.BatchSize * gpt.SeqLen];
            return Evaluator.MeanLoss(gpt, val, 3, Evaluator.SplitSeed(state.Config.Seed, "val"), x, new int[x.Length]);
        }
        Assert.Equal(Loss(_trained), result.ValLossBefore, 5);
        Assert.Equal(Loss(outDir), result.ValLossAfter, 5);
        Assert.NotEqual(result.ValLossBefore, result.ValLossAfter);
        // the smaller model's best val loss is its own, so a fine-tuning run saves once it improves on it
        Assert.Equal(result.ValLossAfter, Checkpoint.ReadState(outDir).BestValLoss);
        Assert.Equal([3, 3], result.Layers.Select(r => r.HeadsKept));
        Assert.Equal([16, 16], result.Layers.Select(r => r.NeuronsKept));
    }

    [Theory]
    [InlineData("--heads", "1", "--heads (1) must lie in [0, 1)")]
    [InlineData("--neurons", "-0.5", "--neurons (-0.5) must lie in [0, 1)")]
    [InlineData("--calibration-windows", "0", "--calibration-windows (0) must be positive")]
    [InlineData("--score", "taylor", "taylor")]
    [InlineData("--scope", "row", "row")]
    public void BadOptionsGiveOneLineUsageErrors(string option, string value, string expected)
    {
        var (code, _, stderr) = Run("prune-structured", "--checkpoint", _trained, "--out", _data.Run("x"), option, value);
        Assert.Equal(2, code);
        AssertOneLine(stderr, expected);
        Assert.False(Directory.Exists(_data.Run("x")));
    }

    [Fact]
    public void BadInputGivesOneLineErrors()
    {
        string outDir = _data.Run("bad");
        var (code, _, stderr) = Run("prune-structured", "--checkpoint", _trained, "--out", _trained, "--heads", "0.5");
        Assert.Equal(1, code);
        AssertOneLine(stderr, "is the checkpoint itself");

        (code, _, stderr) = Run("prune-structured", "--checkpoint", _data.Run("missing"), "--out", outDir);
        Assert.Equal(1, code);
        AssertOneLine(stderr, "missing", "does not exist");

        // calibration data tokenized with another vocabulary than the model's
        string other = Path.Combine(_data.Root, "other");
        string input = Path.Combine(_data.Root, "other.txt");
        File.WriteAllText(input, string.Concat(Enumerable.Repeat("ZYXWVU 0123456789 qzj! ", 400)));
        DatasetPreparer.Prepare(new PrepareOptions { Input = input, OutDir = other });
        (code, _, stderr) = Run("prune-structured", "--checkpoint", _trained, "--out", outDir, "--heads", "0.5", "--score", "activation", "--calibration", other);
        Assert.Equal(1, code);
        AssertOneLine(stderr, "--calibration dataset", other, "vocab");

        // too few calibration tokens for one window of the model's block size
        string tiny = Path.Combine(_data.Root, "tiny");
        var meta = DatasetMeta.Load(Path.Combine(_data.DataDir, DatasetMeta.FileName));
        Directory.CreateDirectory(tiny);
        var metaJson = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_data.DataDir, DatasetMeta.FileName)))!;
        metaJson["train_tokens"] = 10;
        metaJson["documents"] = new System.Text.Json.Nodes.JsonArray();
        File.WriteAllText(Path.Combine(tiny, DatasetMeta.FileName), metaJson.ToJsonString());
        File.Copy(Path.Combine(_data.DataDir, "val.bin"), Path.Combine(tiny, "val.bin"));
        File.WriteAllBytes(Path.Combine(tiny, "train.bin"), File.ReadAllBytes(Path.Combine(_data.DataDir, "train.bin"))[..(10 * meta.Dtype.SizeInBytes())]);
        (code, _, stderr) = Run("prune-structured", "--checkpoint", _trained, "--out", outDir, "--heads", "0.5", "--score", "activation", "--calibration", tiny);
        Assert.Equal(1, code);
        AssertOneLine(stderr, "--calibration", "10 tokens", "too few");
        Assert.False(File.Exists(Path.Combine(outDir, Checkpoint.ModelFile)));
    }

    static void AssertOneLine(string err, params string[] fragments)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.True(lines[0].Contains(f, StringComparison.Ordinal), $"'{f}' not in: {lines[0]}");
    }
}
