using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using Spectre.Console;

namespace NanoSparse.Cli;

/// <summary>
/// `eval --activation-stats`: the MLP hidden activation's sparsity per layer on validation batches (the same batches
/// as the val loss): the fraction of exact zeros and of |a| &lt; ε, a table, and a PNG of both per layer.
/// </summary>
public sealed class ActivationStatsOutput
{
    public Option<bool> Enabled { get; } = new("--activation-stats")
    {
        Description = "also report the MLP hidden activation's sparsity per layer on the val batches (exact zeros, |a| < epsilon) and draw a PNG",
    };
    public Option<float> Epsilon { get; } = new("--activation-epsilon")
    {
        Description = "near-zero bound for --activation-stats: counts |a| < epsilon (GELU makes few exact zeros)",
        DefaultValueFactory = _ => 0.01f,
    };
    public Option<string> Png { get; } = new("--activation-png")
    {
        Description = "PNG of --activation-stats (per-layer sparsity)",
        DefaultValueFactory = _ => "activation-sparsity.png",
    };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(Enabled);
        cmd.Options.Add(Epsilon);
        cmd.Options.Add(Png);
    }

    /// <summary>Checks the options before any work: a bad epsilon is a one-line error naming the option.</summary>
    public bool Resolve(ParseResult parse, out float epsilon, out string png)
    {
        epsilon = parse.GetValue(Epsilon);
        png = parse.GetValue(Png) ?? "activation-sparsity.png";
        bool on = parse.GetValue(Enabled);
        if (!on) return false;
        if (!(epsilon > 0 && float.IsFinite(epsilon)))
            throw new UsageException($"--activation-epsilon ({epsilon.ToString(CultureInfo.InvariantCulture)}) must be a finite number > 0");
        string? folder = Path.GetDirectoryName(Path.GetFullPath(png));
        if (folder is not null && !Directory.Exists(folder))
            throw new UsageException($"--activation-png ({png}): folder {folder} does not exist");
        return true;
    }

    /// <summary>Measures on <paramref name="batches"/> val batches of <paramref name="seed"/>, prints the table, writes the PNG.</summary>
    public static ActivationSparsityReport Run(CliContext cli, Gpt gpt, TokenFile val, int batches, ulong seed, float epsilon, string png, string title)
    {
        var report = ActivationStats.Measure(gpt, val, batches, seed, epsilon);
        var table = new Table().AddColumn("layer").AddColumn(new TableColumn("zeros").RightAligned())
            .AddColumn(new TableColumn($"|a| < {epsilon.ToString("G3", CultureInfo.InvariantCulture)}").RightAligned());
        for (int l = 0; l < report.Zeros.Count; l++)
            table.AddRow(l.ToString(CultureInfo.InvariantCulture), report.Zeros[l].ToString("P2", CultureInfo.InvariantCulture),
                report.NearZeros[l].ToString("P2", CultureInfo.InvariantCulture));
        table.AddRow("mean", report.MeanZeros.ToString("P2", CultureInfo.InvariantCulture), report.MeanNearZeros.ToString("P2", CultureInfo.InvariantCulture));
        cli.Console.MarkupLine(Markup.Escape(
            $"MLP activation sparsity ({gpt.Config.Activation}) over {report.Positions:N0} val positions ({batches} batches):"));
        cli.Console.Write(table);
        try
        {
            Draw(report, gpt.Config.Activation, png, title);
            cli.Console.MarkupLine($"plot: {Markup.Escape(png)}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            cli.Err.WriteLine($"warning: could not write {png}: {e.Message.Split('\n')[0]}");
        }
        return report;
    }

    /// <summary>Bars per layer: exact zeros and |a| &lt; ε, with the means in the legend. Written atomically.</summary>
    public static void Draw(ActivationSparsityReport report, string activation, string png, string title)
    {
        var plot = new ScottPlot.Plot();
        int layers = report.Zeros.Count;
        var near = plot.Add.Bars(report.NearZeros.ToArray());
        near.LegendText = string.Create(CultureInfo.InvariantCulture, $"|a| < {report.Epsilon:G3} (mean {report.MeanNearZeros:P1})");
        near.Color = ScottPlot.Colors.LightSteelBlue;
        var zeros = plot.Add.Bars(report.Zeros.ToArray());
        zeros.LegendText = string.Create(CultureInfo.InvariantCulture, $"exact zeros (mean {report.MeanZeros:P1})");
        zeros.Color = ScottPlot.Colors.SteelBlue;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, layers).Select(l => new ScottPlot.Tick(l, $"h.{l}")).ToArray());
        plot.Axes.SetLimitsY(0, 1.08);
        plot.Title($"MLP activation sparsity per layer ({activation}) — {title}");
        plot.XLabel("layer");
        plot.YLabel("fraction of hidden activations");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(png))!, $".actstats-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 900, 550);
        File.Move(tmp, png, overwrite: true);
    }
}
