using System.Globalization;
using System.Text;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts.FeedForwards;

namespace NanoSparse.Training;

/// <summary>
/// moe_load.csv in a run folder: one row per MoE layer per training step, from that step's last forward pass
/// (the last micro-batch): step, layer, dropped fraction (topk: assignments over capacity / all assignments;
/// expert_choice: tokens no expert picked / tokens), the unweighted balance and z losses, then each expert's share of
/// the tokens processed. A resumed run keeps the rows before its first step.
/// </summary>
public sealed class MoeLoadLog : IDisposable
{
    public const string FileName = "moe_load.csv";
    readonly StreamWriter _writer;
    readonly long[] _processed, _assigned;
    readonly StringBuilder _line = new();

    public MoeLoadLog(string outDir, Gpt model, int resumeStep)
    {
        int experts = MoeSettings.Experts(model.Config);
        _processed = new long[experts];
        _assigned = new long[experts];
        Directory.CreateDirectory(outDir);
        Path = System.IO.Path.Combine(outDir, FileName);
        string header = "step,layer,dropped_fraction,balance_loss,z_loss," + string.Join(",", Enumerable.Range(0, experts).Select(e => $"share_{e}"));
        var kept = new List<string>();
        if (resumeStep > 0 && File.Exists(Path))
            foreach (var line in File.ReadLines(Path).Skip(1))
            {
                int comma = line.IndexOf(',');
                if (comma > 0 && int.TryParse(line.AsSpan(0, comma), NumberStyles.Integer, CultureInfo.InvariantCulture, out int s) && s < resumeStep)
                    kept.Add(line);
            }
        _writer = new StreamWriter(Path, append: false, new UTF8Encoding(false));
        _writer.WriteLine(header);
        foreach (var line in kept) _writer.WriteLine(line);
        _writer.Flush();
    }

    public string Path { get; }

    /// <summary>Appends the rows of <paramref name="step"/> from the model's last forward pass.</summary>
    public void Record(int step, Gpt model)
    {
        int layer = 0;
        foreach (var block in model.Blocks)
        {
            if (block.FeedForward is MoeFeedForward moe)
            {
                Array.Clear(_processed);
                Array.Clear(_assigned);
                long dropped = moe.AddLoad(_processed, _assigned, out long outOf);
                long total = _processed.Sum();
                var inv = CultureInfo.InvariantCulture;
                _line.Clear();
                _line.Append(step.ToString(inv)).Append(',').Append(layer.ToString(inv)).Append(',')
                    .Append(((double)dropped / outOf).ToString("G6", inv)).Append(',')
                    .Append(moe.AuxLoss.ToString("G6", inv)).Append(',').Append(moe.ZLoss.ToString("G6", inv));
                foreach (long p in _processed) _line.Append(',').Append((total == 0 ? 0 : (double)p / total).ToString("G6", inv));
                _writer.WriteLine(_line);
            }
            layer++;
        }
        _writer.Flush();
    }

    public void Dispose() => _writer.Dispose();

    /// <summary>The rows of a moe_load.csv: (step, layer, dropped fraction, shares per expert).</summary>
    public static List<(int Step, int Layer, double Dropped, double[] Shares)> Read(string path)
    {
        var rows = new List<(int, int, double, double[])>();
        if (!File.Exists(path)) return rows;
        foreach (var line in File.ReadLines(path).Skip(1))
        {
            var f = line.Split(',');
            if (f.Length < 6) continue;
            var inv = CultureInfo.InvariantCulture;
            rows.Add((int.Parse(f[0], inv), int.Parse(f[1], inv), double.Parse(f[2], inv), f.Skip(5).Select(v => double.Parse(v, inv)).ToArray()));
        }
        return rows;
    }
}
