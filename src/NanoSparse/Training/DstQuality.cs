using System.Globalization;
using System.Text;
using NanoSparse.Data;
using NanoSparse.Sparsity;

namespace NanoSparse.Training;

/// <summary>
/// One finished training run as the dynamic-sparse-training quality comparison sees it: its method (dense, or the
/// `dst` of a sparse run), the stored values of its blocks' Linear weights against the dense count of that shape,
/// its final and best val loss, median ms/iter and, for a run whose positions moved, its final ITOP rate.
/// </summary>
public sealed record DstQualityRow(string Label, string Folder, string Method, int NLayer, int NEmbd, long Stored, long Cells,
    int FinalStep, double FinalValLoss, double BestValLoss, double? MedianMsPerIter, double? ItopRate, int Threads)
{
    /// <summary>The fraction of the blocks' Linear weights this run does not hold (0 for a dense run).</summary>
    public double Sparsity => 1.0 - (double)Stored / Cells;

    /// <summary>1 − stored / <paramref name="referenceCells"/>: where this run sits on a sparsity axis of the largest model.</summary>
    public double SparsityOf(long referenceCells) => 1.0 - (double)Stored / referenceCells;
}

/// <summary>
/// Gathers training runs (checkpoint folder + log.csv + dst.csv) into <see cref="DstQualityRow"/>s and writes them as
/// CSV; `nanosparse dst-quality` renders the table and the val-loss-against-sparsity PNG from them.
/// </summary>
public static class DstQuality
{
    public const string CsvHeader =
        "label,method,n_layer,n_embd,stored_block_weights,dense_block_weights,sparsity,final_step,final_val_loss,best_val_loss,median_ms_per_iter,itop_rate,threads";

    /// <summary>
    /// Reads the run in <paramref name="dir"/>: the checkpoint's config and Linear weights (stored counts), the last
    /// evaluation of log.csv (final val loss), the median ms/iter of its logged iterations after step 0 (step 0 holds
    /// the JIT warm-up), and the last itop_rate of dst.csv (a sparse static run: its density, which never changes).
    /// A missing file or field is an exception naming it.
    /// </summary>
    public static DstQualityRow Read(string dir, string? label = null)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"run folder {dir} does not exist");
        label ??= Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
        var gpt = Checkpoint.LoadModel(dir, 1, 1, out var state);
        var weights = SparseModelConfig.Describe(gpt);
        if (weights.Count == 0) throw new InvalidDataException($"checkpoint {dir} has no block Linear weights to count");
        long stored = weights.Sum(w => (long)w.Stored), cells = weights.Sum(w => (long)w.OutFeatures * w.InFeatures);
        var config = state.Config;
        string method = stored == cells ? "dense" : config.Sparsity > 0 ? config.Dst + (config.DstSplitQkv ? "-split" : "") : weights[0].Layout;

        string logPath = Path.Combine(dir, TrainingLog.FileName);
        var rows = TrainingLogFile.Read(logPath);
        var evals = rows.Where(r => r.IsEvaluation).ToList();
        if (evals.Count == 0) throw new InvalidDataException($"{logPath} has no evaluation row (val_loss is empty on every line)");
        var ms = rows.Where(r => !r.IsEvaluation && r.Step > 0 && r.MsPerIter is not null).Select(r => r.MsPerIter!.Value).ToArray();

        double? itop = null;
        string dstPath = Path.Combine(dir, "dst.csv");
        if (File.Exists(dstPath)) itop = LastItop(dstPath);
        else if (method == "static") itop = (double)stored / cells;

        return new DstQualityRow(label, dir, method, gpt.Config.NLayer, gpt.Config.NEmbd, stored, cells, evals[^1].Step,
            evals[^1].ValLoss!.Value, evals.Min(r => r.ValLoss!.Value), ms.Length == 0 ? null : Median(ms), itop, config.Threads);
    }

    /// <summary>
    /// The run's val loss at every evaluation of its log.csv after step 0, in step order (what `dst-quality --curves`
    /// plots, so runs can be compared at equal steps, an unfinished one included).
    /// </summary>
    public static IReadOnlyList<(int Step, double ValLoss)> ValCurve(string dir)
    {
        string logPath = Path.Combine(dir, TrainingLog.FileName);
        var points = TrainingLogFile.Read(logPath).Where(r => r.IsEvaluation && r.Step > 0).Select(r => (r.Step, r.ValLoss!.Value)).ToList();
        if (points.Count == 0) throw new InvalidDataException($"{logPath} has no evaluation row after step 0 (val_loss is empty on every later line)");
        return points;
    }

    /// <summary>The median of <paramref name="values"/> (the mean of the middle two for an even count).</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("the median of no values", nameof(values));
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    static double LastItop(string path)
    {
        string[] lines = File.ReadAllLines(path);
        if (lines.Length == 0) throw new InvalidDataException($"{path} is empty, expected a header with an itop_rate column");
        int column = Array.IndexOf(lines[0].Split(','), "itop_rate");
        if (column < 0) throw new InvalidDataException($"{path} line 1 has no itop_rate column");
        for (int i = lines.Length - 1; i >= 1; i--)
        {
            if (lines[i].Length == 0) continue;
            var f = lines[i].Split(',');
            if (f.Length <= column || !double.TryParse(f[column], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
                throw new InvalidDataException($"{path} line {i + 1}: itop_rate is '{(f.Length > column ? f[column] : "")}', expected a finite number");
            return v;
        }
        throw new InvalidDataException($"{path} has no update rows");
    }

    /// <summary>The rows as CSV (<see cref="CsvHeader"/>), written atomically.</summary>
    public static void WriteCsv(string path, IEnumerable<DstQualityRow> rows)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder().Append(CsvHeader).Append('\n');
        foreach (var r in rows)
            sb.Append(string.Join(',', Quote(r.Label), r.Method, r.NLayer.ToString(inv), r.NEmbd.ToString(inv), r.Stored.ToString(inv),
                r.Cells.ToString(inv), r.Sparsity.ToString("R", inv), r.FinalStep.ToString(inv), r.FinalValLoss.ToString("R", inv),
                r.BestValLoss.ToString("R", inv), r.MedianMsPerIter?.ToString("R", inv) ?? "", r.ItopRate?.ToString("R", inv) ?? "",
                r.Threads.ToString(inv))).Append('\n');
        byte[] bytes = Encoding.UTF8.GetBytes(sb.ToString());
        AtomicFile.Write(path, fs => fs.Write(bytes));
    }

    static string Quote(string s) => s.IndexOfAny([',', '"', '\n']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";
}
