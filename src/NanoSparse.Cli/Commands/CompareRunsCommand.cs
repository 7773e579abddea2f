using System.CommandLine;
using System.Globalization;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse compare-runs`: training runs side by side from their log.csv files: a table of each run's final and
/// best val loss, mean ms/iter and final sparsity, and one PNG with every run's val loss (and batch train loss) over
/// steps and, on the right axis, the sparsity of the runs that prune.
/// </summary>
public static class CompareRunsCommand
{
    public static Command Create(CliContext cli)
    {
        var runs = new Argument<string[]>("runs")
        {
            Description = "run folders (or their log.csv), each optionally LABEL=PATH to name it in the table and plot",
            Arity = ArgumentArity.OneOrMore,
        };
        var output = new Option<string>("--out") { Description = "PNG to write (its folder is created)", Required = true };
        var title = new Option<string>("--title") { Description = "plot title", DefaultValueFactory = _ => "val loss over training" };
        var from = new Option<int>("--from-step") { Description = "first step plotted (leave out the steep start to see the differences)", DefaultValueFactory = _ => 0 };
        var cmd = new Command("compare-runs", "training runs side by side from their log.csv: final and best val loss, ms/iter, sparsity; val loss and sparsity over steps as a PNG");
        cmd.Arguments.Add(runs);
        foreach (var o in new Option[] { output, title, from }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var named = parse.GetValue(runs)!.Select(Parse).ToList();
            if (named.Select(r => r.Label).Distinct().Count() != named.Count)
                throw new UsageException($"two runs have the same label ({string.Join(", ", named.Select(r => r.Label))}); name them with LABEL=PATH");
            string png = parse.GetValue(output)!;
            if (!png.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                throw new UsageException($"--out '{png}' must name a .png file");
            var loaded = named.Select(r => (r.Label, r.Log, Rows: TrainingLogFile.Read(r.Log))).ToList();
            foreach (var r in loaded)
                if (!r.Rows.Any(x => x.IsEvaluation))
                    throw new InvalidDataException($"{r.Log} has no evaluation row (val_loss is empty on every line): nothing to compare");
            Table(cli.Console, loaded);
            int first = parse.GetValue(from);
            if (first < 0) throw new UsageException($"--from-step ({first}) must be >= 0");
            foreach (var r in loaded)
                if (!r.Rows.Any(x => x.IsEvaluation && x.Step >= first))
                    throw new UsageException($"--from-step ({first}) is after the last evaluation of {r.Label} (step {r.Rows.Where(x => x.IsEvaluation).Max(x => x.Step)})");
            Plot(loaded.Select(r => (r.Label, r.Log, (IReadOnlyList<TrainingLogRow>)r.Rows.Where(x => x.Step >= first).ToList())).ToList(), png, parse.GetValue(title)!);
            cli.Console.MarkupLine($"wrote {Markup.Escape(png)}");
            return 0;
        });
        return cmd;
    }

    /// <summary>"LABEL=PATH" or "PATH" (label: the folder's name); PATH a run folder or its log.csv.</summary>
    static (string Label, string Log) Parse(string arg)
    {
        int eq = arg.IndexOf('=');
        string label = eq > 0 ? arg[..eq] : "", path = eq > 0 ? arg[(eq + 1)..] : arg;
        string log = Directory.Exists(path) ? Path.Combine(path, TrainingLog.FileName) : path;
        if (label.Length == 0)
        {
            string folder = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path)) ?? path;
            label = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)));
        }
        return (label, log);
    }

    static void Table(IAnsiConsole console, List<(string Label, string Log, IReadOnlyList<TrainingLogRow> Rows)> runs)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumn("run").AddColumn(new TableColumn("steps").RightAligned())
            .AddColumn(new TableColumn("final val loss").RightAligned()).AddColumn(new TableColumn("perplexity").RightAligned())
            .AddColumn(new TableColumn("best val loss").RightAligned()).AddColumn(new TableColumn("mean ms/iter").RightAligned())
            .AddColumn(new TableColumn("final sparsity").RightAligned()).AddColumn("log");
        foreach (var (label, log, rows) in runs)
        {
            var evals = rows.Where(r => r.IsEvaluation).ToList();
            var last = evals[^1];
            var timed = rows.Where(r => r.MsPerIter is not null).ToList();
            var sparsity = rows.LastOrDefault(r => r.Sparsity is not null)?.Sparsity;
            table.AddRow(Markup.Escape(label), $"{rows.Min(r => r.Step)} → {rows.Max(r => r.Step)}",
                last.ValLoss!.Value.ToString("F4", inv), Math.Exp(last.ValLoss.Value).ToString("F3", inv),
                evals.Min(r => r.ValLoss!.Value).ToString("F4", inv),
                timed.Count == 0 ? "-" : timed.Average(r => r.MsPerIter!.Value).ToString("F1", inv),
                sparsity is double s ? s.ToString("F4", inv) : "-", Markup.Escape(log));
        }
        console.Write(table);
    }

    static void Plot(List<(string Label, string Log, IReadOnlyList<TrainingLogRow> Rows)> runs, string png, string title)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        bool anySparsity = false;
        for (int i = 0; i < runs.Count; i++)
        {
            var (label, _, rows) = runs[i];
            var color = palette.GetColor(i);
            var batches = rows.Where(r => !r.IsEvaluation).ToList();
            if (batches.Count > 0)
            {
                var train = plot.Add.ScatterLine(batches.Select(r => (double)r.Step).ToArray(), batches.Select(r => r.TrainLoss).ToArray());
                train.Color = color.WithAlpha(0.3);
                train.LineWidth = 1;
                train.LegendText = $"{label}: train (batch)";
            }
            var evals = rows.Where(r => r.IsEvaluation).ToList();
            var val = plot.Add.Scatter(evals.Select(r => (double)r.Step).ToArray(), evals.Select(r => r.ValLoss!.Value).ToArray());
            val.Color = color;
            val.LineWidth = 2;
            val.MarkerSize = 6;
            val.LegendText = $"{label}: val";
            var pruned = rows.Where(r => r.Sparsity is not null).ToList();
            if (pruned.Count > 0 && pruned.Any(r => r.Sparsity > 0))
            {
                anySparsity = true;
                var sparsity = plot.Add.ScatterLine(pruned.Select(r => (double)r.Step).ToArray(), pruned.Select(r => r.Sparsity!.Value * 100).ToArray());
                sparsity.Color = color;
                sparsity.LineWidth = 2;
                sparsity.LinePattern = ScottPlot.LinePattern.Dashed;
                sparsity.LegendText = $"{label}: sparsity (right axis)";
                sparsity.Axes.YAxis = plot.Axes.Right;
            }
        }
        if (anySparsity)
        {
            plot.Axes.Right.Label.Text = "sparsity of the block Linear weights (%)";
            plot.Axes.SetLimitsY(0, 100, plot.Axes.Right);
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("cross-entropy loss");
        plot.ShowLegend(ScottPlot.Alignment.LowerLeft);
        string folder = Path.GetDirectoryName(Path.GetFullPath(png))!;
        Directory.CreateDirectory(folder);
        string tmp = Path.Combine(folder, $".compare-runs-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 1000, 600);
        File.Move(tmp, png, overwrite: true);
    }
}
