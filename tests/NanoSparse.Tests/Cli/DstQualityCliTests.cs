using System.Globalization;
using NanoSparse.Cli;
using NanoSparse.Kernels;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// `nanosparse dst-quality` and <see cref="DstQuality"/>: each run's figures against the same figures read by brute
/// force from its files (log.csv, dst.csv) and counted from its shape, the CSV and PNG written, and bad input refused
/// with one line naming the folder, file or option.
/// </summary>
[Collection("KernelThreads")]
public sealed class DstQualityCliTests : IDisposable
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    string Train(string run, float sparsity = 0, string dst = "static", int nEmbd = 16)
    {
        var c = _data.Config(run, maxIters: 12);
        c.NEmbd = nEmbd;
        c.Sparsity = sparsity;
        c.Dst = dst;
        c.DstInterval = 2;
        c.DstStop = 10;
        c.AlwaysSaveCheckpoint = true;
        using var t = new Trainer(c);
        t.Run();
        return c.OutDir;
    }

    /// <summary>The last evaluation's val loss, every val loss, and the ms/iter of the iteration rows after step 0, split by hand.</summary>
    static (double Final, double Best, int Step, List<double> Ms) FromLog(string dir)
    {
        double final = double.NaN, best = double.PositiveInfinity;
        int step = -1;
        var ms = new List<double>();
        foreach (string line in File.ReadAllLines(Path.Combine(dir, "log.csv")).Skip(1))
        {
            var f = line.Split(',');
            if (f[2].Length > 0)
            {
                final = double.Parse(f[2], Inv);
                best = Math.Min(best, final);
                step = int.Parse(f[0], Inv);
            }
            else if (int.Parse(f[0], Inv) > 0 && f[4].Length > 0) ms.Add(double.Parse(f[4], Inv));
        }
        return (final, best, step, ms);
    }

    [Fact]
    public void ARunsRowHoldsWhatItsFilesAndShapeSay()
    {
        string dense = Train("dense"), rigl = Train("rigl", 0.5f, "rigl"), stat = Train("static", 0.75f, "static");
        // One block of n_embd 16: c_attn 48x16, attn c_proj 16x16, c_fc 64x16, mlp c_proj 16x64 = 12 · 16².
        const long cells = 12L * 16 * 16;

        var d = DstQuality.Read(dense);
        Assert.Equal("dense", d.Method);
        Assert.Equal(cells, d.Cells);
        Assert.Equal(cells, d.Stored);
        Assert.Equal(0.0, d.Sparsity);
        Assert.Null(d.ItopRate);

        var r = DstQuality.Read(rigl, "RigL 50%");
        Assert.Equal("RigL 50%", r.Label);
        Assert.Equal("rigl", r.Method);
        Assert.Equal(cells, r.Cells);
        Assert.Equal(48 * 16 / 2 + 16 * 16 / 2 + 64 * 16 / 2 + 16 * 64 / 2, r.Stored);   // uniform: half of each weight
        Assert.Equal(0.5, r.Sparsity, 12);
        var (final, best, step, ms) = FromLog(rigl);
        Assert.Equal(12, step);
        Assert.Equal(final, r.FinalValLoss);
        Assert.Equal(best, r.BestValLoss);
        Assert.Equal(12, r.FinalStep);
        var sorted = ms.Order().ToList();
        double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
        Assert.Equal(median, r.MedianMsPerIter!.Value, 9);
        var dstLines = File.ReadAllLines(Path.Combine(rigl, "dst.csv"));
        int col = Array.IndexOf(dstLines[0].Split(','), "itop_rate");
        Assert.Equal(double.Parse(dstLines[^1].Split(',')[col], Inv), r.ItopRate!.Value);
        Assert.True(r.ItopRate > 0.5, $"ITOP {r.ItopRate} should exceed the density after updates");

        var s = DstQuality.Read(stat);
        Assert.Equal("static", s.Method);
        Assert.Equal(0.75, s.Sparsity, 2);
        Assert.Equal((double)s.Stored / cells, s.ItopRate!.Value, 12);   // no updates: the positions ever held are the layout's
    }

    [Fact]
    public void AValCurveIsEveryEvaluationAfterStepZeroOfTheLog()
    {
        string rigl = Train("curve", 0.5f, "rigl");
        var expected = new List<(int, double)>();
        foreach (string line in File.ReadAllLines(Path.Combine(rigl, "log.csv")).Skip(1))
        {
            var f = line.Split(',');
            if (f[2].Length > 0 && int.Parse(f[0], Inv) > 0) expected.Add((int.Parse(f[0], Inv), double.Parse(f[2], Inv)));
        }
        Assert.Equal([4, 8, 12], expected.Select(p => p.Item1));   // eval_interval 4 over 12 iterations
        Assert.Equal(expected, DstQuality.ValCurve(rigl));
    }

    [Fact]
    public void TheCurvesOptionWritesAPngAndRefusesAnotherExtension()
    {
        string a = Train("ca", 0.5f, "set"), b = Train("cb", 0.5f, "rigl");
        string png = Path.Combine(_data.Root, "figs", "q.png"), curves = Path.Combine(_data.Root, "figs", "curves.png");
        var (code, stdout, err) = Run("dst-quality", a, b, "--out", png, "--curves", curves);
        Assert.True(code == 0, err);
        Assert.Contains("curves.png", stdout);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(curves)[..4]);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(curves)!, "*.tmp*"));
        var (bad, _, badErr) = Run("dst-quality", a, "--out", png, "--curves", Path.Combine(_data.Root, "c.svg"));
        Assert.NotEqual(0, bad);
        Assert.StartsWith("error: ", badErr);
        Assert.Contains("--curves", badErr);
        Assert.Contains("c.svg", badErr);
    }

    [Fact]
    public void TheMedianIsTheMiddleOfTheSortedValues()
    {
        Assert.Equal(3.0, DstQuality.Median([5.0, 1.0, 3.0]));
        Assert.Equal(2.5, DstQuality.Median([4.0, 1.0, 2.0, 3.0]));
        Assert.Equal(7.0, DstQuality.Median([7.0]));
        Assert.Throws<ArgumentException>(() => DstQuality.Median([]));
    }

    [Fact]
    public void TheCommandPrintsTheTableAndWritesCsvAndPng()
    {
        string wide = Train("wide", nEmbd: 16), narrow = Train("narrow", nEmbd: 8), set = Train("set", 0.5f, "set");
        string png = Path.Combine(_data.Root, "figures", "q.png"), csv = Path.Combine(_data.Root, "figures", "q.csv");
        var (code, stdout, err) = Run("dst-quality", wide, $"small={narrow}", $"SET={set}", "--out", png, "--csv", csv);
        Assert.True(code == 0, err);
        Assert.Contains("small", stdout);
        Assert.Contains("SET", stdout);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(png)!, "*.tmp*"));

        var lines = File.ReadAllLines(csv);
        Assert.Equal(DstQuality.CsvHeader, lines[0]);
        Assert.Equal(4, lines.Length);
        var small = lines.Single(l => l.StartsWith("small,", StringComparison.Ordinal)).Split(',');
        Assert.Equal("dense", small[1]);
        Assert.Equal((12L * 8 * 8).ToString(Inv), small[4]);            // stored = dense count of the narrow model
        Assert.Equal(FromLog(narrow).Final, double.Parse(small[8], Inv));
        var setRow = lines.Single(l => l.StartsWith("SET,", StringComparison.Ordinal)).Split(',');
        Assert.Equal("set", setRow[1]);
        Assert.Equal(0.5, double.Parse(setRow[6], Inv), 12);
        // The narrow model holds a quarter of the wide one's block weights: 75% on the table's "vs widest" axis.
        Assert.Contains("75.0 %", stdout);
    }

    [Fact]
    public void BadInputIsOneLineNamingWhatIsWrong()
    {
        string run = Train("run");
        string png = Path.Combine(_data.Root, "out.png");
        void Refused(string[] args, params string[] fragments)
        {
            var (code, _, err) = Run(args);
            Assert.NotEqual(0, code);
            Assert.StartsWith("error: ", err);
            Assert.Single(err.TrimEnd().Split('\n'));
            foreach (var f in fragments) Assert.Contains(f, err);
        }
        string missing = Path.Combine(_data.Root, "nope");
        Refused(["dst-quality", missing, "--out", png], missing, "does not exist");
        Refused(["dst-quality", run, "--out", Path.Combine(_data.Root, "out.jpg")], "--out", "out.jpg", ".png");
        Refused(["dst-quality", run, "--out", png, "--csv", Path.Combine(_data.Root, "t.txt")], "--csv", "t.txt", ".csv");
        Refused(["dst-quality", $"a={run}", $"a={run}", "--out", png], "label 'a'");
        string noLog = Train("nolog");
        File.Delete(Path.Combine(noLog, "log.csv"));
        Refused(["dst-quality", noLog, "--out", png], Path.Combine(noLog, "log.csv"), "does not exist");
        string badDst = Train("baddst", 0.5f, "set");
        File.WriteAllText(Path.Combine(badDst, "dst.csv"), "step,itop_rate\n2,abc\n");
        Refused(["dst-quality", badDst, "--out", png], "dst.csv", "line 2", "itop_rate", "'abc'");
        Assert.False(File.Exists(png));
    }
}
