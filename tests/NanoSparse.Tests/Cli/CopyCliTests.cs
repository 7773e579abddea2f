using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Training;

using static NanoSparse.Tests.Cli.CliRun;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// copy-data writes a dataset whose val stream the copying probe reads (checked by brute force against its
/// meta.json vocabulary); eval --probe copy and probe-compare --probe copy agree on a checkpoint trained on it; bad
/// input is a one-line error that writes nothing.
/// </summary>
[Collection("KernelThreads")]
public sealed class CopyCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-copy-" + Guid.NewGuid().ToString("N"));
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public CopyCliTests()
    {
        Directory.CreateDirectory(_root);
        var r = RunCli("copy-data", "--out", Data, "--alphabet", "20", "--min-distance", "2", "--max-distance", "40",
            "--run-length", "12", "--train-tokens", "20000", "--val-tokens", "5000");
        Assert.True(r.Code == 0, r.Err);
        var config = new TrainConfig
        {
            OutDir = Model, Dataset = Data, NLayer = 1, NHead = 2, NEmbd = 32, BlockSize = 48, BatchSize = 2,
            MaxIters = 3, EvalInterval = 3, EvalIters = 1, LogInterval = 1, WarmupIters = 1, LrDecayIters = 3, Seed = 1, Threads = 1,
        };
        Train(_root, config);
    }

    string Data => Path.Combine(_root, "copy");
    string Model => Path.Combine(_root, "model");

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    [Fact]
    public void TheDatasetHoldsRunsFollowedByTheirRepeatAndItsVocabulary()
    {
        var meta = DatasetMeta.Load(Path.Combine(Data, DatasetMeta.FileName));
        Assert.Equal(22, meta.VocabSize);
        Assert.Equal(CopyProbe.CorpusName, meta.Corpus);
        Assert.Equal(20, CopyProbe.FromSymbols(meta.Symbols, "meta.json").Alphabet);
        Assert.Equal(["|", "."], meta.Symbols.Take(2));
        foreach (string split in new[] { "train", "val" })
        {
            using var file = TokenFile.OpenSplit(Data, split, meta, fullScan: true);
            var tokens = new int[file.Length];
            file.Read(0, tokens);
            // brute force: split at the separators; every stretch is a run of distinct tokens, fillers, the run again,
            // with distance = run + fillers in [2, 40] and runs of at most 12 (fillers only where the distance exceeds 12)
            int segments = 0, gaps = 0, start = 1;
            Assert.Equal(0, tokens[0]);
            for (int i = 1; i <= tokens.Length; i++)
            {
                if (i < tokens.Length && tokens[i] != 0) continue;
                var stretch = tokens[start..i];
                if (stretch.Length > 0)
                {
                    int fillers = stretch.Count(t => t == 1), r = (stretch.Length - fillers) / 2, d = r + fillers;
                    Assert.InRange(d, 2, 40);
                    Assert.Equal(Math.Min(d, 12), r);
                    Assert.Equal(r, stretch.Take(r).Distinct().Count());
                    Assert.All(stretch.Take(r), t => Assert.InRange(t, 2, 21));
                    Assert.All(stretch.Skip(r).Take(fillers), t => Assert.Equal(1, t));
                    Assert.Equal(stretch.Take(r), stretch.Skip(d));
                    segments++;
                    if (fillers > 0) gaps++;
                }
                start = i + 1;
            }
            Assert.True(segments > tokens.Length / 60 && gaps > 0, $"{split}: {segments} segments, {gaps} with fillers");
        }
        Assert.True(File.Exists(Path.Combine(Model, "model.safetensors")));
    }

    /// <summary>eval --probe copy's table: bin label → accuracy (NaN for "-").</summary>
    static Dictionary<string, double> EvalTable(string output)
    {
        var rows = new Dictionary<string, double>();
        foreach (var line in output.Split('\n'))
        {
            var cells = line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (cells.Length == 3 && cells[0].Length > 0 && char.IsDigit(cells[0][0]))
                rows[cells[0]] = cells[1] == "-" ? double.NaN : double.Parse(cells[1].TrimEnd('%').Trim(), CultureInfo.InvariantCulture) / 100;
        }
        return rows;
    }

    [Fact]
    public void ProbeCompareEqualsEvalProbeCopyAndWritesThePlotAndCsv()
    {
        string png = Path.Combine(_root, "figs", "copy.png"), csv = Path.Combine(_root, "copy.csv");
        var r = RunCli("probe-compare", "a=" + Model, "b=" + Model, "--probe", "copy", "--data", Data, "--distances", "2", "4", "16",
            "--probe-samples", "7", "--batch-size", "3", "--out", png, "--csv", csv);
        Assert.True(r.Code == 0, r.Err);
        string said = string.Join(' ', r.Out.Split((char[])['\n', '\r', ' '], StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("copy probe: 7 windows", said);
        Assert.Contains("chance: 5%", said);
        Assert.True(new FileInfo(png).Length > 1000);
        var lines = File.ReadAllLines(csv);
        Assert.Equal(7, lines.Length);   // header, 3 bins × 2 models
        string evalPng = Path.Combine(_root, "eval-figs", "copy.png");
        var e = RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "copy", "--distances", "2", "4", "16", "--probe-samples", "7",
            "--plot", evalPng);
        Assert.True(e.Code == 0, e.Err);
        Assert.True(new FileInfo(evalPng).Length > 1000);
        var table = EvalTable(e.Out);
        Assert.Equal(["2-3", "4-15", "16-47"], table.Keys.ToArray());
        string[] labels = ["2-3", "4-15", "16-47"];
        var a = lines.Skip(1).Select(l => l.Split(',')).Where(f => f[0] == "a").ToArray();
        var b = lines.Skip(1).Select(l => l.Split(',')).Where(f => f[0] == "b").ToArray();
        for (int k = 0; k < 3; k++)
        {
            Assert.Equal(a[k][1..], b[k][1..]);   // the same model on the same windows
            Assert.True(int.Parse(a[k][2], CultureInfo.InvariantCulture) > 0);
            double acc = double.Parse(a[k][3], CultureInfo.InvariantCulture);
            Assert.Equal(Math.Round(acc * 1000) / 1000, table[labels[k]], 3);
        }
    }

    [Theory]
    [InlineData("--alphabet (1) must lie in [2, 256]", "--alphabet", "1")]
    [InlineData("--min-distance (0) and --max-distance (8) must satisfy 1 <= min <= max", "--min-distance", "0", "--max-distance", "8")]
    [InlineData("--min-distance (9) and --max-distance (8) must satisfy 1 <= min <= max", "--min-distance", "9", "--max-distance", "8")]
    [InlineData("--run-length (40) must lie in [1, 32] (--alphabet)", "--alphabet", "32", "--run-length", "40")]
    [InlineData("--run-length (0) must lie in [1, 256]", "--run-length", "0")]
    [InlineData("--val-tokens (100) must lie in [501,", "--val-tokens", "100")]
    [InlineData("--draw-from (300) must lie in [2, 256] (--alphabet)", "--draw-from", "300")]
    [InlineData("--draw-from (1) must lie in [2, 256] (--alphabet)", "--draw-from", "1")]
    public void BadCopyDataOptionsAreOneLineErrors(string expected, params string[] options)
    {
        var r = RunCli(["copy-data", "--out", Path.Combine(_root, "bad"), .. options]);
        OneLineError(r, expected);
        Assert.False(Directory.Exists(Path.Combine(_root, "bad")));
    }

    [Fact]
    public void ProbeCopyOnAnotherDatasetBadBinsAndASparseCacheAreOneLineErrors()
    {
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "copy", "--distances", "48"),
            "--distances: 48 must lie in [1, 47]");
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "copy", "--distances", "8", "4"),
            "--distances: the copy probe's bin edges must increase (8 then 4)");
        OneLineError(RunCli("probe-compare", Model, "--probe", "copy", "--data", Data, "--distances", "0", "--out", Path.Combine(_root, "x.png")),
            "--distances: 0 must lie in [1, 47]");
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "copy", "--kv-cache", "h2o", "--kv-budget", "16"),
            "--kv-cache h2o is not supported");
        // the other probes refuse the copy dataset, and the copy probe refuses a recall dataset
        OneLineError(RunCli("eval", "--checkpoint", Model, "--data", Data, "--probe", "retrieval"), "is a copying-probe dataset", "--probe copy");
        string recall = Path.Combine(_root, "recall");
        Assert.Equal(0, RunCli("recall-data", "--out", recall, "--keys", "4", "--values", "16", "--max-distance", "20",
            "--reuse-distance", "30", "--train-tokens", "2000", "--val-tokens", "2000").Code);
        OneLineError(RunCli("probe-compare", Model, "--probe", "copy", "--data", recall, "--out", Path.Combine(_root, "y.png")),
            "--probe copy: --data", "corpus \"assoc-recall\"", "copy-data");
    }
}
