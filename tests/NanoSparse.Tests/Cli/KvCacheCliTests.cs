using System.Globalization;
using System.Text;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Training;

using static NanoSparse.Tests.Cli.CliRun;

namespace NanoSparse.Tests.Cli;

/// <summary>--kv-cache on sample and eval, eval --probe retrieval and probe-data through the CLI, and their bad input.</summary>
[Collection("KernelThreads")]
public sealed class KvCacheCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-kv-" + Guid.NewGuid().ToString("N"));
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public KvCacheCliTests()
    {
        Directory.CreateDirectory(_root);
        PrepareDataset(_root, ProbeText(3), Data);
        Train(_root, new TrainConfig
        {
            OutDir = Run, Dataset = Data, NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 48, BatchSize = 2,
            MaxIters = 2, EvalInterval = 2, EvalIters = 1, LogInterval = 1, WarmupIters = 1, LrDecayIters = 2, Seed = 1, Threads = 1,
        });
    }

    string Data => Path.Combine(_root, "data");
    string Run => Path.Combine(_root, "run");

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    static double ValLoss(string output)
    {
        var line = output.Split('\n').First(l => l.Contains("val"));
        return double.Parse(line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[1], CultureInfo.InvariantCulture);
    }

    [Fact]
    public void EvalThroughAKvCacheThatEvictsNothingMatchesTheFullForwardLoss()
    {
        var full = RunCli("eval", "--checkpoint", Run, "--iters", "2");
        Assert.True(full.Code == 0, full.Err);
        var h2o = RunCli("eval", "--checkpoint", Run, "--iters", "2", "--kv-cache", "h2o", "--kv-budget", "48", "--kv-recent", "4");
        Assert.True(h2o.Code == 0, h2o.Err);
        Assert.Contains("KV cache: h2o 48 (recent 4)", h2o.Out);
        Assert.Equal(ValLoss(full.Out), ValLoss(h2o.Out), 3e-4);
        var small = RunCli("eval", "--checkpoint", Run, "--iters", "2", "--kv-cache", "pruned", "--kv-sparsity", "0.75");
        Assert.True(small.Code == 0, small.Err);
        Assert.NotEqual(ValLoss(full.Out), ValLoss(small.Out));
    }

    [Fact]
    public void EvalProbeRetrievalReportsAccuracyPerDistanceAndWritesThePlot()
    {
        string png = Path.Combine(_root, "retrieval.png");
        var r = RunCli("eval", "--checkpoint", Run, "--probe", "retrieval", "--distances", "4", "20", "--probe-samples", "3", "--plot", png);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("retrieval probe: window 48", r.Out);
        Assert.Contains("│        4 │", r.Out);
        Assert.Contains("│       20 │", r.Out);
        Assert.True(new FileInfo(png).Length > 1000);
        var q = RunCli("eval", "--checkpoint", Run, "--probe", "retrieval", "--distances", "10", "--probe-samples", "2", "--kv-cache", "quest", "--kv-budget", "16", "--kv-page", "4");
        Assert.True(q.Code == 0, q.Err);
        Assert.Contains("KV cache quest 16 (pages of 4)", q.Out);
    }

    [Theory]
    [InlineData("pruned")]
    [InlineData("h2o")]
    [InlineData("quest")]
    public void SampleRunsWithEachSparseCache(string kind)
    {
        var r = RunCli("sample", "--checkpoint", Run, "--tokens", "60", "--kv-cache", kind, "--kv-budget", "16", "--kv-page", "4", "--seed", "2");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(r.Out.Length > 30);
    }

    [Theory]
    [InlineData("--kv-budget (0) must be at least 1", "--kv-cache", "h2o", "--kv-budget", "0")]
    [InlineData("--kv-budget (0) must be at least 1", "--kv-cache", "quest", "--kv-budget", "0")]
    [InlineData("--kv-sparsity (1) must lie in [0, 1)", "--kv-cache", "pruned", "--kv-sparsity", "1")]
    [InlineData("--kv-sparsity (-0.5) must lie in [0, 1)", "--kv-cache", "pruned", "--kv-sparsity", "-0.5")]
    [InlineData("--kv-cache 'snapkv' is not a KV cache: expected one of dense, pruned, h2o, quest", "--kv-cache", "snapkv")]
    [InlineData("--kv-recent (8) must lie in [0, --kv-budget (8))", "--kv-cache", "h2o", "--kv-budget", "8", "--kv-recent", "8")]
    [InlineData("--kv-page (0) must lie in [1, --kv-budget (8)]", "--kv-cache", "quest", "--kv-budget", "8", "--kv-page", "0")]
    public void BadKvOptionsAreOneLineErrors(string expected, params string[] options)
    {
        foreach (var command in new[] { new[] { "sample", "--checkpoint", Run, "--tokens", "3" }, ["eval", "--checkpoint", Run, "--iters", "1"] })
        {
            var r = RunCli([.. command, .. options]);
            Assert.NotEqual(0, r.Code);
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            Assert.StartsWith("error: ", lines[0]);
            Assert.Contains(expected, lines[0]);
        }
        var probe = RunCli("eval", "--checkpoint", Run, "--probe", "retrieval", "--distances", "40");
        Assert.NotEqual(0, probe.Code);
        Assert.Contains("--distances: 40 must lie in [0, 31]", probe.Err);
    }

    [Fact]
    public void ProbeDataWritesAMixedDatasetAndLeavesTheInputAlone()
    {
        var before = Directory.GetFiles(Data).ToDictionary(f => f, File.ReadAllBytes);
        string output = Path.Combine(_root, "mixed");
        var r = RunCli("probe-data", "--data", Data, "--out", output, "--every", "100", "--min-distance", "5", "--max-distance", "40");
        Assert.True(r.Code == 0, r.Err);
        foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f));
        Assert.Equal(new FileInfo(Path.Combine(Data, "train.bin")).Length, new FileInfo(Path.Combine(output, "train.bin")).Length);
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(Data, "train.bin")), File.ReadAllBytes(Path.Combine(output, "train.bin")));
        Assert.Contains("record/query pairs", r.Out);
        var same = RunCli("probe-data", "--data", Data, "--out", Data);
        Assert.NotEqual(0, same.Code);
        Assert.Contains("must differ from --data", same.Err);
    }
}
