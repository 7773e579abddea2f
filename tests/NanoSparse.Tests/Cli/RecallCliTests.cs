using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Training;

using static NanoSparse.Tests.Cli.CliRun;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// recall-data writes a dataset whose val stream the associative-recall probe reads; eval --probe recall and
/// probe-compare --probe recall agree on a checkpoint trained on it (with RoPE on); bad input is a one-line error.
/// </summary>
[Collection("KernelThreads")]
public sealed class RecallCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-recall-" + Guid.NewGuid().ToString("N"));
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public RecallCliTests()
    {
        Directory.CreateDirectory(_root);
        var r = RunCli("recall-data", "--out", Data, "--keys", "24", "--values", "8", "--every", "6", "--max-distance", "40",
            "--reuse-distance", "64", "--train-tokens", "20000", "--val-tokens", "5000");
        Assert.True(r.Code == 0, r.Err);
        var config = new TrainConfig
        {
            OutDir = Model, Dataset = Data, NLayer = 1, NHead = 2, NEmbd = 32, BlockSize = 64, BatchSize = 2,
            MaxIters = 3, EvalInterval = 3, EvalIters = 1, LogInterval = 1, WarmupIters = 1, LrDecayIters = 3, Seed = 1, Threads = 1,
        };
        Train(_root, config, "--set", "rope=true");
    }

    string Data => Path.Combine(_root, "recall");
    string Model => Path.Combine(_root, "model");

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    [Fact]
    public void TheDatasetHoldsTheTasksStreamAndItsVocabulary()
    {
        var meta = DatasetMeta.Load(Path.Combine(Data, DatasetMeta.FileName));
        var task = AssociativeRecall.FromSymbols(meta.Symbols, "meta.json");
        Assert.Equal((24, 8, 33), (task.Keys, task.Values, meta.VocabSize));
        Assert.Equal(AssociativeRecall.CorpusName, meta.Corpus);
        using var val = TokenFile.OpenSplit(Data, "val", meta, fullScan: true);
        var tokens = new int[val.Length];
        val.Read(0, tokens);
        // every key's second occurrence repeats the value of its first, 0-40 tokens later
        var last = new Dictionary<int, int>();
        int queries = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (!task.IsKey(tokens[i])) continue;
            if (last.Remove(tokens[i], out int record))
            {
                Assert.Equal(tokens[record + 1], tokens[i + 1]);
                Assert.InRange(i - record - 2, 0, 40);
                queries++;
            }
            else last[tokens[i]] = i;
        }
        Assert.True(queries > 5000 / 20, $"{queries} queries");
        Assert.Empty(last);
        Assert.True(File.Exists(Path.Combine(Model, "model.safetensors")));
    }

    /// <summary>eval --probe's table: distance → exact accuracy.</summary>
    static Dictionary<int, double> EvalTable(string output)
    {
        var rows = new Dictionary<int, double>();
        foreach (var line in output.Split('\n'))
        {
            var cells = line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (cells.Length == 4 && int.TryParse(cells[0], CultureInfo.InvariantCulture, out int d))
                rows[d] = double.Parse(cells[1].TrimEnd('%').Trim(), CultureInfo.InvariantCulture) / 100;
        }
        return rows;
    }

    [Fact]
    public void ProbeCompareEqualsEvalProbeRecallAndWritesThePlotAndCsv()
    {
        string png = Path.Combine(_root, "figs", "recall.png"), csv = Path.Combine(_root, "recall.csv");
        var r = RunCli("probe-compare", "m=" + Model, "--probe", "recall", "--data", Data, "--distances", "0", "9", "61",
            "--probe-samples", "6", "--batch-size", "2", "--seed", "1", "--out", png, "--csv", csv);
        Assert.True(r.Code == 0, r.Err);
        string said = string.Join(' ', r.Out.Split((char[])['\n', '\r', ' '], StringSplitOptions.RemoveEmptyEntries));   // the console wraps long lines
        Assert.Contains("recall probe: 6 samples per distance", said);
        Assert.Contains("chance: 12.5% exact", said);
        Assert.True(new FileInfo(png).Length > 1000);
        var lines = File.ReadAllLines(csv);
        Assert.Equal(4, lines.Length);
        var e = RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "recall", "--distances", "0", "9", "61", "--probe-samples", "6");
        Assert.True(e.Code == 0, e.Err);
        var table = EvalTable(e.Out);
        Assert.Equal(3, table.Count);
        foreach (var line in lines.Skip(1))
        {
            var f = line.Split(',');
            Assert.Equal("m", f[0]);
            double exact = double.Parse(f[3], CultureInfo.InvariantCulture);
            Assert.Equal(Math.Round(exact * 1000) / 1000, table[int.Parse(f[1], CultureInfo.InvariantCulture)], 3);
            Assert.Equal(f[3], f[4]);   // one answer token: exact = per token
        }
    }

    [Fact]
    public void ProbeCompareAtAShorterBlockEqualsEvalAtThatBlock()
    {
        string csv = Path.Combine(_root, "short.csv");
        var r = RunCli("probe-compare", "m=" + Model, "--probe", "recall", "--data", Data, "--block-size", "32", "--distances", "0", "9", "29",
            "--probe-samples", "6", "--batch-size", "2", "--seed", "1", "--out", Path.Combine(_root, "short.png"), "--csv", csv);
        Assert.True(r.Code == 0, r.Err);
        var e = RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "recall", "--block-size", "32", "--distances", "0", "9", "29", "--probe-samples", "6");
        Assert.True(e.Code == 0, e.Err);
        var table = EvalTable(e.Out);
        var lines = File.ReadAllLines(csv);
        Assert.Equal(4, lines.Length);
        foreach (var f in lines.Skip(1).Select(l => l.Split(',')))
            Assert.Equal(Math.Round(double.Parse(f[3], CultureInfo.InvariantCulture) * 1000) / 1000, table[int.Parse(f[1], CultureInfo.InvariantCulture)], 3);
        // the window is the block: a distance of a 64-token window does not fit into 32
        OneLineError(RunCli("probe-compare", Model, "--probe", "recall", "--data", Data, "--block-size", "32", "--distances", "40", "--out", Path.Combine(_root, "z.png")),
            "--distances: 40 must lie in [0, 29]");
        OneLineError(RunCli("probe-compare", Model, "--probe", "recall", "--data", Data, "--block-size", "65", "--out", Path.Combine(_root, "z.png")),
            "--block-size (65) exceeds the block_size of");
        OneLineError(RunCli("probe-compare", Model, "--probe", "recall", "--data", Data, "--block-size", "0", "--out", Path.Combine(_root, "z.png")),
            "--block-size (0) must be at least 1");
    }

    [Theory]
    [InlineData("--keys (0) must lie in [2, 256]", "--keys", "0")]
    [InlineData("--values (1) must lie in [2, 256]", "--values", "1")]
    [InlineData("--every (0) must be at least 1", "--every", "0")]
    [InlineData("--min-distance (50) and --max-distance (40) must satisfy 0 <= min <= max", "--min-distance", "50", "--max-distance", "40")]
    [InlineData("--reuse-distance (-1) must be >= 0", "--reuse-distance", "-1")]
    [InlineData("--val-tokens (100) must lie in [1004,", "--val-tokens", "100")]
    public void BadRecallDataOptionsAreOneLineErrors(string expected, params string[] options)
    {
        var r = RunCli(["recall-data", "--out", Path.Combine(_root, "bad"), .. options]);
        OneLineError(r, expected);
        Assert.False(Directory.Exists(Path.Combine(_root, "bad")));
    }

    [Fact]
    public void ProbeRecallOnAnotherDatasetAndDistancesBeyondTheBlockAreOneLineErrors()
    {
        // a distance the block cannot hold
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "recall", "--distances", "62"),
            "--distances: 62 must lie in [0, 61]");
        OneLineError(RunCli("probe-compare", Model, "--probe", "recall", "--data", Data, "--distances", "100", "--out", Path.Combine(_root, "x.png")),
            "--distances: 100 must lie in [0, 61]");
        // a text dataset is not an associative-recall dataset
        string text = Path.Combine(_root, "text");
        PrepareDataset(_root, ProbeText(3), text);
        OneLineError(RunCli("probe-compare", Model, "--probe", "recall", "--data", text, "--out", Path.Combine(_root, "y.png")),
            Path.Combine(text, "meta.json"), "tokenizer.symbols starts with", "associative-recall task expects");
        // and the text probe refuses the recall dataset
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "retrieval"),
            "is an associative-recall dataset", "--probe recall");
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "copy"), "--probe copy", "corpus \"assoc-recall\"", "copy-data");
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "copies"), "'copies'", "recall");
    }
}
