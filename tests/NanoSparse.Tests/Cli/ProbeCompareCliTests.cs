using System.Globalization;
using System.Text;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Training;

using static NanoSparse.Tests.Cli.CliRun;

namespace NanoSparse.Tests.Cli;

/// <summary>probe-compare: several checkpoints on one retrieval probe agree with eval --probe for each, and bad input.</summary>
[Collection("KernelThreads")]
public sealed class ProbeCompareCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-probecmp-" + Guid.NewGuid().ToString("N"));
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public ProbeCompareCliTests()
    {
        Directory.CreateDirectory(_root);
        PrepareDataset(_root, ProbeText(5), Data);
        // two models: dense and a window of 16 (a different pattern, so their accuracies can differ)
        foreach (var (dir, extra) in new[] { (Dense, ""), (Window, "window") })
        {
            var config = new TrainConfig
            {
                OutDir = dir, Dataset = Data, NLayer = 1, NHead = 1, NEmbd = 16, BlockSize = 64, BatchSize = 2,
                MaxIters = 3, EvalInterval = 3, EvalIters = 1, LogInterval = 1, WarmupIters = 1, LrDecayIters = 3, Seed = 1, Threads = 1,
            };
            Train(_root, config, extra.Length == 0 ? [] : ["--set", "attention=window", "--set", "attn_window=16"]);
        }
    }

    string Data => Path.Combine(_root, "data");
    string Dense => Path.Combine(_root, "dense");
    string Window => Path.Combine(_root, "window");

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    /// <summary>eval --probe's table: distance → (exact, per digit), parsed from its "P1" percentages.</summary>
    static Dictionary<int, (double Exact, double Digit)> EvalTable(string output)
    {
        var rows = new Dictionary<int, (double, double)>();
        foreach (var line in output.Split('\n'))
        {
            var cells = line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (cells.Length == 4 && int.TryParse(cells[0], CultureInfo.InvariantCulture, out int d))
                rows[d] = (Percent(cells[1]), Percent(cells[2]));
        }
        return rows;
    }

    static double Percent(string cell) => double.Parse(cell.TrimEnd('%').Trim(), CultureInfo.InvariantCulture) / 100;

    [Fact]
    public void EachCheckpointsPointsEqualEvalProbeOnTheSameSeedAndTheCsvAndPlotAreWritten()
    {
        string png = Path.Combine(_root, "figs", "probe.png"), csv = Path.Combine(_root, "probe.csv");
        var r = RunCli("probe-compare", "d=" + Dense, "w=" + Window, "--data", Data, "--distances", "4", "20", "45",
            "--probe-samples", "6", "--batch-size", "2", "--seed", "1", "--out", png, "--csv", csv);
        Assert.True(r.Code == 0, r.Err);
        Assert.True(new FileInfo(png).Length > 1000);
        var lines = File.ReadAllLines(csv);
        Assert.Equal("label,distance,samples,accuracy,digit_accuracy", lines[0]);
        Assert.Equal(1 + 2 * 3, lines.Length);
        foreach (var (label, dir) in new[] { ("d", Dense), ("w", Window) })
        {
            // eval --probe (the run's seed is 1, its batch 2) measures the same windows and records
            var e = RunCli("eval", "--checkpoint", dir, "--data", Data, "--probe", "retrieval", "--distances", "4", "20", "45", "--probe-samples", "6");
            Assert.True(e.Code == 0, e.Err);
            var table = EvalTable(e.Out);
            Assert.Equal(3, table.Count);
            foreach (var line in lines.Skip(1).Where(l => l.StartsWith(label + ",", StringComparison.Ordinal)))
            {
                var f = line.Split(',');
                int d = int.Parse(f[1], CultureInfo.InvariantCulture);
                Assert.Equal(6, int.Parse(f[2], CultureInfo.InvariantCulture));
                Assert.Equal(table[d].Exact, double.Parse(f[3], CultureInfo.InvariantCulture), 3);
                Assert.Equal(table[d].Digit, double.Parse(f[4], CultureInfo.InvariantCulture), 3);
            }
        }
        Assert.Contains("│       45 │", r.Out);
    }

    [Theory]
    [InlineData("--distances: 60 must lie in [0, 47]", "--distances", "60")]
    [InlineData("--probe-samples (0) must be at least 1", "--probe-samples", "0")]
    [InlineData("--distractors (-1) must be >= 0", "--distractors", "-1")]
    [InlineData("--batch-size (0) must be at least 1", "--batch-size", "0")]
    [InlineData("--csv 'x.txt' must name a .csv file", "--csv", "x.txt")]
    public void BadOptionsAreOneLineErrors(string expected, params string[] options)
    {
        var r = RunCli(["probe-compare", Dense, "--data", Data, "--out", Path.Combine(_root, "p.png"), .. options]);
        Assert.NotEqual(0, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
    }

    [Fact]
    public void TwoCheckpointsWithOneLabelAreRefused()
    {
        var r = RunCli("probe-compare", "a=" + Dense, "a=" + Window, "--data", Data, "--out", Path.Combine(_root, "p.png"));
        Assert.NotEqual(0, r.Code);
        Assert.Contains("two checkpoints have the same label", r.Err);
    }
}
