using NanoSparse.Cli;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// `nanosparse compare-runs` and the log.csv reader behind it: rows read back as <see cref="TrainingLog"/> wrote them,
/// the table's figures computed from the rows, a PNG written, and bad logs refused with one line naming file, line and field.
/// </summary>
public sealed class CompareRunsCliTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), "nanosparse-compare-" + Guid.NewGuid().ToString("N"));

    public CompareRunsCliTests() => Directory.CreateDirectory(_root);
    public void Dispose() { try { Directory.Delete(_root, recursive: true); } catch (IOException) { } }

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>A run folder whose log.csv TrainingLog writes: iterations every 10 steps, evaluations every 50.</summary>
    string WriteRun(string name, double lossScale, bool prunes)
    {
        string dir = Path.Combine(_root, name);
        using var log = new TrainingLog(dir, resumeStep: null);
        for (int step = 0; step <= 100; step += 10)
        {
            if (step % 50 == 0) log.Evaluation(step, (float)(lossScale * 3 / (1 + step / 50.0)), (float)(lossScale * 3.1 / (1 + step / 50.0)), 1e-3);
            if (step < 100) log.Iteration(step, (float)(lossScale * (3 - step / 100.0)), 1e-3, 100 + step, 1000, prunes ? step / 200.0 : double.NaN);
        }
        return dir;
    }

    [Fact]
    public void TheReaderGivesBackWhatTrainingLogWrote()
    {
        var rows = TrainingLogFile.Read(Path.Combine(WriteRun("a", 1.0, prunes: true), TrainingLog.FileName));
        Assert.Equal(10 + 3, rows.Count);
        var evals = rows.Where(r => r.IsEvaluation).ToList();
        Assert.Equal([0, 50, 100], evals.Select(r => r.Step));
        Assert.Equal((float)(3.1 / 2), (float)evals[1].ValLoss!.Value);
        Assert.All(evals, r => Assert.Null(r.MsPerIter));
        var it = rows.Single(r => !r.IsEvaluation && r.Step == 30);
        Assert.Equal((float)2.7, (float)it.TrainLoss);
        Assert.Equal(130, it.MsPerIter);
        Assert.Equal(0.15, it.Sparsity!.Value, 6);
        var dense = TrainingLogFile.Read(Path.Combine(WriteRun("b", 1.0, prunes: false), TrainingLog.FileName));
        Assert.All(dense, r => Assert.Null(r.Sparsity));
    }

    [Fact]
    public void CompareRunsPrintsEachRunsFiguresAndWritesAPng()
    {
        string a = WriteRun("dense", 1.0, prunes: false), b = WriteRun("gmp", 1.2, prunes: true);
        string png = Path.Combine(_root, "figures", "cmp.png");
        var (code, stdout, err) = Run("compare-runs", a, $"pruned={b}", "--out", png, "--from-step", "10");
        Assert.True(code == 0, err);
        Assert.Contains("dense", stdout);
        Assert.Contains("pruned", stdout);
        Assert.Contains((3.1 / 3).ToString("F4", System.Globalization.CultureInfo.InvariantCulture), stdout);        // dense final val loss
        Assert.Contains((1.2 * 3.1 / 3).ToString("F4", System.Globalization.CultureInfo.InvariantCulture), stdout);  // pruned final val loss
        Assert.Contains(Math.Exp(3.1 / 3).ToString("F3", System.Globalization.CultureInfo.InvariantCulture), stdout);
        Assert.Contains("0.4500", stdout);   // the pruned run's last logged sparsity (step 90)
        Assert.Contains("145.0", stdout);    // mean ms/iter, (100 + ... + 190) / 10
        var bytes = File.ReadAllBytes(png);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(png)!, "*.tmp.png"));
    }

    [Fact]
    public void BadLogsAndArgumentsAreOneLineErrors()
    {
        string good = WriteRun("good", 1.0, prunes: false);
        string png = Path.Combine(_root, "out.png");
        void Refused(string[] args, params string[] fragments)
        {
            var (code, _, err) = Run(["compare-runs", .. args]);
            Assert.NotEqual(0, code);
            var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            Assert.StartsWith("error: ", lines[0]);
            foreach (var f in fragments) Assert.Contains(f, lines[0]);
            Assert.False(File.Exists(png));
        }
        string Log(string name, params string[] lines)
        {
            string dir = Path.Combine(_root, name);
            Directory.CreateDirectory(dir);
            File.WriteAllLines(Path.Combine(dir, TrainingLog.FileName), lines);
            return dir;
        }
        Refused([Path.Combine(_root, "missing"), "--out", png], "missing", "does not exist");
        Refused([Log("header", "step,loss", "0,1"), "--out", png], "line 1", "expected the header");
        Refused([Log("nan", TrainingLog.HeaderWithoutActivationSparsity, "0,3.0,NaN,0.001,,,"), "--out", png], "line 2", "val_loss is 'NaN'", "finite number");
        Refused([Log("fields", TrainingLog.HeaderWithoutActivationSparsity, "0,3.0,2.9,0.001"), "--out", png], "line 2 has 4 fields", "expected 7");
        Refused([Log("fields8", TrainingLog.Header, "0,3.0,2.9,0.001,,,"), "--out", png], "line 2 has 7 fields", "expected 8");
        Refused([Log("step", TrainingLog.HeaderWithoutActivationSparsity, "x,3.0,2.9,0.001,,,"), "--out", png], "step is 'x'");
        Refused([Log("noeval", TrainingLog.HeaderWithoutActivationSparsity, "0,3.0,,0.001,100,1000,"), "--out", png], "no evaluation row");
        Refused([good, good, "--out", png], "same label");
        Refused([good, "--out", Path.Combine(_root, "out.jpg")], "must name a .png");
        Refused([good, "--out", png, "--from-step", "500"], "--from-step (500)", "last evaluation of good (step 100)");
    }
}
