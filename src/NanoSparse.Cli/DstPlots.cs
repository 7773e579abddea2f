using System.Globalization;
using NanoSparse.Sparsity.Dst;
using Spectre.Console;

namespace NanoSparse.Cli;

/// <summary>
/// Dynamic sparse training's run-folder PNGs: dst-density.png (each weight's density and the share of its positions
/// ever active) and dst-changes.png (fraction of stored weights changed at each update, from dst.csv so a resumed run
/// shows its whole history), plus a table of the same per weight.
/// </summary>
public static class DstPlots
{
    public static void Write(CliContext cli, IAnsiConsole console, DynamicSparseTraining dst, string outDir)
    {
        var states = dst.LayerStates();
        var table = new Table().AddColumn("weight").AddColumn(new TableColumn("density").RightAligned()).AddColumn(new TableColumn("ever active").RightAligned());
        foreach (var (name, density, ever) in states)
            table.AddRow(Markup.Escape(name), density.ToString("F4", CultureInfo.InvariantCulture), ever.ToString("P2", CultureInfo.InvariantCulture));
        console.Write(table);
        Try(cli, Path.Combine(outDir, "dst-density.png"), png => Density(states, png));
        Try(cli, Path.Combine(outDir, "dst-changes.png"), png => Changes(Path.Combine(outDir, "dst.csv"), png));
    }

    static void Try(CliContext cli, string png, Action<string> draw)
    {
        try { draw(png); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            cli.Err.WriteLine($"warning: could not draw {png}: {e.Message.Split('\n')[0]}");
        }
    }

    public static void Density(IReadOnlyList<(string Name, double Density, double EverActive)> states, string png)
    {
        var plot = new ScottPlot.Plot();
        var ever = plot.Add.Bars(states.Select(s => s.EverActive).ToArray());
        ever.LegendText = "ever active";
        ever.Color = ScottPlot.Colors.LightSteelBlue;
        var density = plot.Add.Bars(states.Select(s => s.Density).ToArray());
        density.LegendText = "density";
        density.Color = ScottPlot.Colors.SteelBlue;
        var ticks = states.Select((s, i) => new ScottPlot.Tick(i, Short(s.Name))).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Axes.Bottom.TickLabelStyle.Rotation = 60;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plot.Axes.Bottom.MinimumSize = 140;   // room for the rotated weight names
        plot.Axes.Margins(bottom: 0);
        plot.Title("Dynamic sparse training: density and positions ever active per weight");
        plot.YLabel("fraction of the weight's positions");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Save(plot, png, 1000, 600);
    }

    public static void Changes(string csv, string png)
    {
        if (!File.Exists(csv)) return;
        var steps = new List<double>(); var changed = new List<double>(); var itop = new List<double>();
        foreach (var line in File.ReadLines(csv).Skip(1))
        {
            var f = line.Split(',');
            if (f.Length < 4 || !double.TryParse(f[0], CultureInfo.InvariantCulture, out double s)) continue;
            steps.Add(s);
            changed.Add(double.Parse(f[2], CultureInfo.InvariantCulture));
            itop.Add(double.Parse(f[3], CultureInfo.InvariantCulture));
        }
        if (steps.Count == 0) return;
        var plot = new ScottPlot.Plot();
        var c = plot.Add.Scatter(steps.ToArray(), changed.ToArray());
        c.LegendText = "fraction of stored weights changed";
        var t = plot.Add.Scatter(steps.ToArray(), itop.ToArray());
        t.LegendText = "ITOP rate (share of positions ever active)";
        plot.Title("Dynamic sparse training: topology updates");
        plot.XLabel("step");
        plot.YLabel("fraction");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Save(plot, png, 900, 550);
    }

    static string Short(string name) => name.Replace("transformer.h.", "h").Replace(".weight", "");

    static void Save(ScottPlot.Plot plot, string png, int width, int height)
    {
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(png))!, $".dst-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, width, height);
        File.Move(tmp, png, overwrite: true);
    }
}
