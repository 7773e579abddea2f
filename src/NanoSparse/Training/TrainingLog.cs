using System.Globalization;

namespace NanoSparse.Training;

/// <summary>
/// log.csv in the run folder: one row per logged iteration (val_loss empty) and one per evaluation (train_loss is
/// the eval estimate, ms/iter and tokens/s empty). Columns: step,train_loss,val_loss,lr,ms_per_iter,tokens_per_s,sparsity
/// (sparsity: the exact-zero fraction of the blocks' Linear weights, written when the run prunes or has an L1
/// penalty; empty otherwise), act_sparsity (the exact-zero fraction of the MLP hidden activations in that iteration's
/// batch, mean over layers, written when the activation makes zeros (relu, relu2, fatrelu) or act_l1 is set).
/// </summary>
public sealed class TrainingLog : IDisposable
{
    public const string FileName = "log.csv";
    public const string Header = "step,train_loss,val_loss,lr,ms_per_iter,tokens_per_s,sparsity,act_sparsity";
    /// <summary>The header before act_sparsity existed (readers still accept such logs).</summary>
    public const string HeaderWithoutActivationSparsity = "step,train_loss,val_loss,lr,ms_per_iter,tokens_per_s,sparsity";
    readonly StreamWriter _writer;

    /// <summary>Starts a new log, or appends when resuming (dropping rows after <paramref name="resumeStep"/>, which a crashed run may have left).</summary>
    public TrainingLog(string outDir, int? resumeStep)
    {
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, FileName);
        if (resumeStep is int from && File.Exists(path))
        {
            var kept = File.ReadAllLines(path).Where((line, i) => i == 0 || RowStep(line) is int s && s < from || RowStep(line) == from && IsEval(line)).ToList();
            if (kept.Count > 0 && kept[0] == HeaderWithoutActivationSparsity)   // an older run's log: act_sparsity empty in its rows
                kept = kept.Select((line, i) => i == 0 ? Header : line + ",").ToList();
            if (kept.Count == 0 || kept[0] != Header) kept.Insert(0, Header);
            File.WriteAllLines(path, kept);
            _writer = new StreamWriter(path, append: true);
        }
        else
        {
            _writer = new StreamWriter(path, append: false);
            _writer.WriteLine(Header);
        }
        _writer.Flush();
    }

    static int? RowStep(string line) => int.TryParse(line.AsSpan(0, Math.Max(0, line.IndexOf(','))), out int s) ? s : null;
    static bool IsEval(string line) => line.Split(',') is { Length: >= 6 } f && f[2].Length > 0;

    static string F(double v) => v.ToString("G9", CultureInfo.InvariantCulture);

    public void Iteration(int step, float loss, double lr, double msPerIter, double tokensPerSecond, double sparsity = double.NaN,
        double activationSparsity = double.NaN)
    {
        string zeros = double.IsNaN(sparsity) ? "" : sparsity.ToString("F6", CultureInfo.InvariantCulture);
        string actZeros = double.IsNaN(activationSparsity) ? "" : activationSparsity.ToString("F6", CultureInfo.InvariantCulture);
        _writer.WriteLine($"{step},{F(loss)},,{F(lr)},{msPerIter.ToString("F2", CultureInfo.InvariantCulture)},{tokensPerSecond.ToString("F1", CultureInfo.InvariantCulture)},{zeros},{actZeros}");
        _writer.Flush();
    }

    public void Evaluation(int step, float trainLoss, float valLoss, double lr)
    {
        _writer.WriteLine($"{step},{F(trainLoss)},{F(valLoss)},{F(lr)},,,,");
        _writer.Flush();
    }

    public void Dispose() => _writer.Dispose();
}
