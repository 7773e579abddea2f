using System.Globalization;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Tests.Data;
using NanoSparse.Tests.IO;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>prepare --tokenizer, and eval/sample on imported models and gpt2-tokenized data, through the CLI.</summary>
[Collection("KernelThreads")]
public sealed class TokenizerCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-tok-cli-" + Guid.NewGuid().ToString("N"));
    public TokenizerCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }
    private string P(string name) => Path.Combine(_dir, name);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private string PrepareGpt2()
    {
        File.WriteAllText(P("in.txt"), string.Concat(Enumerable.Repeat(TokenizerDatasetTests.Text, 4)));
        var r = Run("prepare", "--input", P("in.txt"), "--out", P("data"), "--tokenizer", "gpt2", "--tokenizer-dir", TokenizerDatasetTests.Gpt2Dir);
        Assert.True(r.Code == 0, r.Err);
        return P("data");
    }

    [Fact]
    public void PrepareRecordsTheTokenizerAndRejectsUnknownKinds()
    {
        string data = PrepareGpt2();
        var meta = DatasetMeta.Load(Path.Combine(data, "meta.json"));
        Assert.Equal("gpt2", meta.Tokenizer);
        Assert.Equal(50257, meta.VocabSize);
        Assert.True(Gpt2Vocabulary.IsPresent(data));

        var r = Run("prepare", "--input", P("in.txt"), "--out", P("data2"), "--tokenizer", "cl100k_base");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("UInt32", r.Out);

        r = Run("prepare", "--input", P("in.txt"), "--out", P("bad"), "--tokenizer", "wordpiece");
        Assert.Equal(2, r.Code);
        Assert.Contains("wordpiece", r.Err);
        r = Run("prepare", "--input", P("in.txt"), "--out", P("bad"), "--tokenizer", "char", "--tokenizer-dir", TokenizerDatasetTests.Gpt2Dir);
        Assert.Equal(2, r.Code);
        Assert.Contains("--tokenizer-dir", r.Err);
        Assert.False(Directory.Exists(P("bad")));
    }

    // A random GPT-2-vocabulary model written in Hugging Face's format, then imported: an "imported GPT-2".
    private string ImportedGpt2Vocab(out Gpt model)
    {
        var config = new GptConfig { NLayer = 1, NHead = 2, NEmbd = 8, BlockSize = 16, VocabSize = 50257, Bias = true };
        model = new Gpt(config, 1, 16);
        model.InitializeWeights(5);
        ModelImporter.Write(ModelFormat.Gpt2, GptInterop.ToDims(config), GptInterop.FromGpt(model), P("hf"));
        var r = Run("import", "--format", "gpt2", P("hf/model.safetensors"), "--out", P("imported"));
        Assert.True(r.Code == 0, r.Err);
        return P("imported");
    }

    private static string ExpectedSample(string dir, ITokenizer tok, string start, int tokens, ulong seed)
    {
        var gpt = Checkpoint.LoadAnyModel(dir, 1, int.MaxValue, out _);
        int[] prompt = tok.Encode(start);
        int[] all = Sampler.Generate(gpt, prompt, tokens, 0.8f, 200, new Rng(seed));
        Assert.Equal(prompt.Length + tokens, all.Length);
        return tok.Decode(all);
    }

    [Fact]
    public void SampleOnAnImportedModelDecodesWithTheGivenTokenizer()
    {
        string ck = ImportedGpt2Vocab(out _);
        // No tokenizer recorded: the error says how to give one.
        var r = Run("sample", "--checkpoint", ck, "--tokens", "5");
        Assert.Equal(1, r.Code);
        Assert.Contains("--tokenizer gpt2", r.Err);

        const string start = "Café 日本";
        r = Run("sample", "--checkpoint", ck, "--tokenizer", "gpt2", "--tokenizer-dir", TokenizerDatasetTests.Gpt2Dir,
            "--start", start, "--tokens", "12", "--seed", "7");
        Assert.True(r.Code == 0, r.Err);
        var tok = Gpt2Vocabulary.Load(TokenizerDatasetTests.Gpt2Dir);
        Assert.Equal(ExpectedSample(ck, tok, start, 12, 7) + Environment.NewLine, r.Out);
    }

    [Fact]
    public void SampleOnAGpt2DatasetCheckpointPrintsTheDecodedText()
    {
        // A training checkpoint whose dataset is gpt2-tokenized: the checkpoint carries meta.json and the vocabulary.
        string data = PrepareGpt2();
        var config = new GptConfig { NLayer = 1, NHead = 2, NEmbd = 8, BlockSize = 16, VocabSize = 50257 };
        var gpt = new Gpt(config, 1, 16);
        gpt.InitializeWeights(11);
        Checkpoint.Save(P("run"), gpt, null, new CheckpointState { Model = ModelArgs.From(config), Dataset = P("nowhere") },
            Path.Combine(data, "meta.json"));
        Assert.True(Gpt2Vocabulary.IsPresent(P("run")));

        var r = Run("sample", "--checkpoint", P("run"), "--start", "It was", "--tokens", "15", "--seed", "3");
        Assert.True(r.Code == 0, r.Err);
        var tok = DatasetMeta.Load(P("run/meta.json")).CreateTokenizer();
        Assert.Equal("gpt2", tok.Kind);
        Assert.Equal(ExpectedSample(P("run"), tok, "It was", 15, 3) + Environment.NewLine, r.Out);
    }

    [Fact]
    public void ImportCarriesAMetaJsonBesideTheWeights()
    {
        // As tools/nanogpt_to_safetensors.py --meta leaves it: weights, config.json and a char meta.json together.
        // 37 symbols, the fixture model's vocab_size, so every id it samples decodes.
        const string line = "abcdefghijklmnopqrstuvwxyz0123456789\n";
        File.WriteAllText(P("in.txt"), string.Concat(Enumerable.Range(0, 10).Select(i => line[i..^1] + line[..i] + "\n")));
        Assert.Equal(0, Run("prepare", "--input", P("in.txt"), "--out", P("data")).Code);
        Directory.CreateDirectory(P("export"));
        foreach (string f in new[] { "model.safetensors", "config.json" })
            File.Copy(ModelImporterTests.Fixture("nanogpt_nobias", f), P("export/" + f));
        File.Copy(P("data/meta.json"), P("export/meta.json"));

        var r = Run("import", "--format", "nanogpt", P("export/model.safetensors"), "--out", P("ck"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(File.ReadAllText(P("data/meta.json")), File.ReadAllText(P("ck/meta.json")));
        r = Run("sample", "--checkpoint", P("ck"), "--start", "the", "--tokens", "10", "--seed", "2");
        Assert.True(r.Code == 0, r.Err);
        var tok = DatasetMeta.Load(P("data/meta.json")).CreateTokenizer();
        Assert.Equal(37, tok.VocabSize);
        Assert.Equal(ExpectedSample(P("ck"), tok, "the", 10, 2) + Environment.NewLine, r.Out);

        // eval checks a char dataset against the recorded vocabulary, symbol by symbol.
        r = Run("eval", "--checkpoint", P("ck"), "--data", P("data"), "--iters", "1", "--batch-size", "1", "--block-size", "8");
        Assert.True(r.Code == 0, r.Err);
        File.WriteAllText(P("other.txt"), string.Concat(Enumerable.Repeat("zyx wvu 9876\n", 30)));
        Assert.Equal(0, Run("prepare", "--input", P("other.txt"), "--out", P("other")).Code);
        r = Run("eval", "--checkpoint", P("ck"), "--data", P("other"), "--iters", "1", "--batch-size", "1", "--block-size", "8");
        Assert.Equal(1, r.Code);
        Assert.Contains("different char vocabulary", r.Err);
    }

    [Fact]
    public void EvalOnAnImportedModelUsesTheGivenDataset()
    {
        string weights = ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors");
        var r = Run("import", "--format", "nanogpt", weights, "--out", P("ck"));
        Assert.True(r.Code == 0, r.Err);
        // A char dataset of at most 37 symbols (the fixture model's vocab_size).
        File.WriteAllText(P("in.txt"), string.Concat(Enumerable.Range(0, 40).Select(i => $"the cat sat on mat {i % 10}\n")));
        Assert.Equal(0, Run("prepare", "--input", P("in.txt"), "--out", P("data")).Code);

        r = Run("eval", "--checkpoint", P("ck"));
        Assert.Equal(2, r.Code);
        Assert.Contains("--data", r.Err);

        r = Run("eval", "--checkpoint", P("ck"), "--data", P("data"), "--iters", "3", "--batch-size", "2");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("imported model", r.Out);

        // Independent of the CLI's loader: the foreign file read directly, the same fixed batches.
        var gpt = GptInterop.Load(ModelFormat.NanoGpt, weights, ModelImporterTests.Fixture("nanogpt_bias", "config.json"), 2, 16);
        var meta = DatasetMeta.Load(P("data/meta.json"));
        using var val = TokenFile.OpenSplit(P("data"), "val", meta);
        var x = new int[2 * 16];
        var y = new int[x.Length];
        float loss = Evaluator.MeanLoss(gpt, val, 3, Evaluator.SplitSeed(1337, "val"), x, y);
        string valLine = r.Out.Split('\n').Single(l => l.Contains("val") && !l.Contains("dataset"));
        Assert.Contains(loss.ToString("F4", CultureInfo.InvariantCulture), valLine);

        // A dataset tokenized differently from what was asked for is refused.
        r = Run("eval", "--checkpoint", P("ck"), "--data", P("data"), "--tokenizer", "gpt2", "--iters", "1");
        Assert.Equal(1, r.Code);
        Assert.Contains("tokenized with char", r.Err);
    }
}
