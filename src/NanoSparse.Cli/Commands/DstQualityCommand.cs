using System.CommandLine;
using System.Globalization;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse dst-quality`: finished training runs (dense, static, SET, RigL, SRigL at any sparsity, and smaller dense
/// models) gathered into one table — method, stored block weights, sparsity, final and best val loss, median ms/iter,
/// ITOP rate — and a PNG of final val loss against sparsity, one line per method. A dense run narrower than the widest
/// run sits at the sparsity its weight count would be in the widest model, so a small dense model lands beside the
/// sparse runs of the same nonzero count.
/// </summary>
public static class DstQualityCommand
{
    static readonly string[] MethodOrder = ["static", "set", "rigl", "srigl", "rigl-split", "srigl-split"];

    public static Command Create(CliContext cli)
    {
        var runs = new Argument<string[]>("runs")
        {
            Description = "finished run folders (checkpoint, log.csv, dst.csv if any), each optionally LABEL=DIR",
            Arity = ArgumentArity.OneOrMore,
        };
        var output = new Option<string>("--out") { Description = "PNG to write (its folder is created)", Required = true };
        var csv = new Option<string?>("--csv") { Description = "also write the table as CSV here" };
        var curves = new Option<string?>("--curves") { Description = "also write a PNG of each run's val loss against step (evaluations after step 0)" };
        var title = new Option<string>("--title") { Description = "plot title", DefaultValueFactory = _ => "val loss against sparsity" };
        var cmd = new Command("dst-quality", "dense and dynamic-sparse training runs in one table, and a PNG of val loss against sparsity per method");
        cmd.Arguments.Add(runs);
        foreach (var o in new Option[] { output, csv, curves, title }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string png = parse.GetValue(output)!;
            if (!png.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                throw new UsageException($"--out '{png}' must name a .png file");
            string? csvPath = parse.GetValue(csv);
            if (csvPath is not null && !csvPath.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
                throw new UsageException($"--csv '{csvPath}' must name a .csv file");
            string? curvesPath = parse.GetValue(curves);
            if (curvesPath is not null && !curvesPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                throw new UsageException($"--curves '{curvesPath}' must name a .png file");
            var rows = new List<DstQualityRow>();
            foreach (string arg in parse.GetValue(runs)!)
            {
                int eq = arg.IndexOf('=');
                string? label = eq > 0 ? arg[..eq] : null;
                rows.Add(DstQuality.Read(eq > 0 ? arg[(eq + 1)..] : arg, label));
            }
            var dup = rows.GroupBy(r => r.Label).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null) throw new UsageException($"two runs have the label '{dup.Key}'; name them with LABEL=DIR");
            long reference = rows.Max(r => r.Cells);
            Table(cli.Console, rows, reference);
            if (csvPath is not null)
            {
                DstQuality.WriteCsv(csvPath, rows);
                cli.Console.MarkupLine($"wrote {Markup.Escape(csvPath)}");
            }
            Plot(rows, reference, png, parse.GetValue(title)!);
            cli.Console.MarkupLine($"wrote {Markup.Escape(png)}");
            if (curvesPath is not null)
            {
                PlotCurves(rows, curvesPath);
                cli.Console.MarkupLine($"wrote {Markup.Escape(curvesPath)}");
            }
            return 0;
        });
        return cmd;
    }

    static void Table(IAnsiConsole console, List<DstQualityRow> rows, long reference)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumn("run").AddColumn("method").AddColumn(new TableColumn("n_embd").RightAligned())
            .AddColumn(new TableColumn("block weights held").RightAligned()).AddColumn(new TableColumn("sparsity").RightAligned())
            .AddColumn(new TableColumn("vs widest").RightAligned()).AddColumn(new TableColumn("steps").RightAligned())
            .AddColumn(new TableColumn("final val loss").RightAligned()).AddColumn(new TableColumn("best val loss").RightAligned())
            .AddColumn(new TableColumn("median ms/iter").RightAligned()).AddColumn(new TableColumn("ITOP").RightAligned())
            .AddColumn(new TableColumn("threads").RightAligned());
        foreach (var r in Ordered(rows))
            table.AddRow(Markup.Escape(r.Label), r.Method, r.NEmbd.ToString(inv), r.Stored.ToString("N0", inv),
                r.Sparsity.ToString("P1", inv), r.SparsityOf(reference).ToString("P1", inv), r.FinalStep.ToString(inv),
                r.FinalValLoss.ToString("F4", inv), r.BestValLoss.ToString("F4", inv),
                r.MedianMsPerIter?.ToString("F1", inv) ?? "-", r.ItopRate?.ToString("P1", inv) ?? "-",
                r.Threads == 0 ? "all" : r.Threads.ToString(inv));
        console.Write(table);
        console.MarkupLine("[grey]vs widest: 1 − held / the widest run's dense block-weight count (where the run sits on the plot's x axis)[/]");
    }

    static IEnumerable<DstQualityRow> Ordered(List<DstQualityRow> rows) =>
        rows.OrderBy(r => r.Method == "dense" ? -1 : Array.IndexOf(MethodOrder, r.Method) is int i and >= 0 ? i : MethodOrder.Length)
            .ThenBy(r => r.Sparsity).ThenByDescending(r => r.Cells);

    // Val loss against step, one line per run (method colours repeat per sparsity: the label tells them apart).
    static void PlotCurves(List<DstQualityRow> rows, string png)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (var r in Ordered(rows))
        {
            var points = DstQuality.ValCurve(r.Folder);
            var s = plot.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => p.ValLoss).ToArray());
            s.Color = palette.GetColor(colour++);
            s.LineWidth = 2;
            s.MarkerSize = 6;
            s.LegendText = $"{r.Label} ({r.Method}, {r.Sparsity.ToString("P0", CultureInfo.InvariantCulture)}): {r.FinalValLoss.ToString("F4", CultureInfo.InvariantCulture)} at {r.FinalStep}";
        }
        plot.Title("val loss against step");
        plot.XLabel("step");
        plot.YLabel("val loss");
        plot.ShowLegend(ScottPlot.Alignment.LowerLeft);   // the curves fall from the upper left to the lower right
        Save(plot, png);
    }

    static void Save(ScottPlot.Plot plot, string png)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(png))!;
        Directory.CreateDirectory(folder);
        string tmp = Path.Combine(folder, $".dst-quality-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 1000, 620);
        File.Move(tmp, png, overwrite: true);
    }

    static void Plot(List<DstQualityRow> rows, long reference, string png, string title)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        var dense = rows.Where(r => r.Method == "dense").OrderByDescending(r => r.Cells).ToList();
        foreach (var d in dense.Where(d => d.Cells == reference))
        {
            var line = plot.Add.HorizontalLine(d.FinalValLoss);
            line.Color = ScottPlot.Colors.Black;
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            line.LineWidth = 1;
            line.LegendText = $"{(d.Label == "dense" ? "" : d.Label + ": ")}dense, n_embd {d.NEmbd} ({d.FinalValLoss.ToString("F4", CultureInfo.InvariantCulture)})";
        }
        foreach (var group in rows.Where(r => r.Method != "dense").GroupBy(r => r.Method)
                     .OrderBy(g => Array.IndexOf(MethodOrder, g.Key) is int i and >= 0 ? i : MethodOrder.Length))
        {
            var pts = group.OrderBy(r => r.SparsityOf(reference)).ToList();
            var s = plot.Add.Scatter(pts.Select(r => r.SparsityOf(reference) * 100).ToArray(), pts.Select(r => r.FinalValLoss).ToArray());
            s.Color = palette.GetColor(colour++);
            s.LineWidth = 2;
            s.MarkerSize = 8;
            s.LegendText = group.Key;
        }
        foreach (var d in dense.Where(d => d.Cells < reference))
        {
            var m = plot.Add.Marker(d.SparsityOf(reference) * 100, d.FinalValLoss);
            m.Color = palette.GetColor(colour++);
            m.Size = 12;
            m.Shape = ScottPlot.MarkerShape.FilledDiamond;
            m.LegendText = $"{d.Label}: smaller dense, n_embd {d.NEmbd} ({d.Stored.ToString("N0", CultureInfo.InvariantCulture)} weights)";
        }
        // A few points close together would otherwise fill the axis: show at least 10 points of sparsity around them.
        var xs = rows.Where(r => r.Method != "dense" || r.Cells < reference).Select(r => r.SparsityOf(reference) * 100).ToList();
        if (xs.Count > 0)
        {
            double lo = xs.Min(), hi = xs.Max(), pad = Math.Max(1.0, (10 - (hi - lo)) / 2);
            plot.Axes.SetLimitsX(Math.Max(0, lo - pad), Math.Min(100, hi + pad));
        }
        plot.Title(title);
        plot.XLabel("sparsity of the blocks' Linear weights (%; a smaller dense model: 1 − its weights / the widest model's)");
        plot.YLabel("final val loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        Save(plot, png);
    }
}
