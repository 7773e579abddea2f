using System.Globalization;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli;

/// <summary>
/// A mixture-of-experts run's PNGs, drawn from moe_load.csv so a resumed run shows its whole history:
/// moe-load.png (each expert's share of the processed tokens over training, a moving mean over 20 steps, one panel
/// line per expert of every MoE layer), moe-dropped.png (dropped fraction per layer over training) and
/// moe-load-hist.png (each expert's share over the whole run, per layer), plus the histogram as a table.
/// </summary>
public static class MoePlots
{
    const int Smooth = 20;

    public static void Write(CliContext cli, IAnsiConsole? console, string outDir)
    {
        var rows = MoeLoadLog.Read(Path.Combine(outDir, MoeLoadLog.FileName));
        if (rows.Count == 0) return;
        var layers = rows.Select(r => r.Layer).Distinct().Order().ToArray();
        int experts = rows[0].Shares.Length;
        if (console is not null)
        {
            var table = new Table().Title("expert load over the run (share of processed tokens) and dropped fraction");
            table.AddColumn("layer");
            for (int e = 0; e < experts; e++) table.AddColumn(new TableColumn($"e{e}").RightAligned());
            table.AddColumn(new TableColumn("dropped").RightAligned());
            foreach (int l in layers)
            {
                var mine = rows.Where(r => r.Layer == l).ToList();
                var cells = new List<string> { l.ToString(CultureInfo.InvariantCulture) };
                for (int e = 0; e < experts; e++) cells.Add(mine.Average(r => r.Shares[e]).ToString("P1", CultureInfo.InvariantCulture));
                cells.Add(mine.Average(r => r.Dropped).ToString("P2", CultureInfo.InvariantCulture));
                table.AddRow(cells.ToArray());
            }
            console.Write(table);
        }
        Try(cli, Path.Combine(outDir, "moe-load.png"), png => Load(rows, layers, experts, png));
        Try(cli, Path.Combine(outDir, "moe-dropped.png"), png => Dropped(rows, layers, png));
        Try(cli, Path.Combine(outDir, "moe-load-hist.png"), png => Histogram(rows, layers, experts, png));
    }

    static void Load(List<(int Step, int Layer, double Dropped, double[] Shares)> rows, int[] layers, int experts, string png)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        foreach (int l in layers)
        {
            var mine = rows.Where(r => r.Layer == l).ToList();
            var steps = mine.Select(r => (double)r.Step).ToArray();
            for (int e = 0; e < experts; e++)
            {
                var line = plot.Add.Scatter(steps, MovingMean(mine.Select(r => r.Shares[e]).ToArray()));
                line.MarkerSize = 0;
                line.Color = palette.GetColor(e);
                if (l == layers[0]) line.LegendText = $"expert {e}";
                if (layers.Length > 1) line.LinePattern = l == layers[0] ? ScottPlot.LinePattern.Solid : ScottPlot.LinePattern.Dotted;
            }
        }
        var even = plot.Add.HorizontalLine(1.0 / experts);
        even.LinePattern = ScottPlot.LinePattern.Dashed;
        even.Color = ScottPlot.Colors.Gray;
        plot.Title($"Expert load over training (moving mean of {Smooth} steps; layers {string.Join(", ", layers)}{(layers.Length > 1 ? ", first solid" : "")})");
        plot.XLabel("step");
        plot.YLabel("share of processed tokens");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Save(plot, png, 1000, 600);
    }

    static void Dropped(List<(int Step, int Layer, double Dropped, double[] Shares)> rows, int[] layers, string png)
    {
        var plot = new ScottPlot.Plot();
        foreach (int l in layers)
        {
            var mine = rows.Where(r => r.Layer == l).ToList();
            var line = plot.Add.Scatter(mine.Select(r => (double)r.Step).ToArray(), MovingMean(mine.Select(r => r.Dropped).ToArray()));
            line.MarkerSize = 0;
            line.LegendText = $"layer {l}";
        }
        plot.Title($"Dropped fraction over training (moving mean of {Smooth} steps)");
        plot.XLabel("step");
        plot.YLabel("dropped fraction");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Save(plot, png, 900, 550);
    }

    static void Histogram(List<(int Step, int Layer, double Dropped, double[] Shares)> rows, int[] layers, int experts, string png)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = new List<ScottPlot.Bar>();
        var ticks = new List<ScottPlot.Tick>();
        for (int li = 0; li < layers.Length; li++)
        {
            var mine = rows.Where(r => r.Layer == layers[li]).ToList();
            for (int e = 0; e < experts; e++)
            {
                double x = li * (experts + 1) + e;
                bars.Add(new ScottPlot.Bar { Position = x, Value = mine.Average(r => r.Shares[e]), FillColor = palette.GetColor(e) });
                ticks.Add(new ScottPlot.Tick(x, $"L{layers[li]} e{e}"));
            }
        }
        plot.Add.Bars(bars);
        var even = plot.Add.HorizontalLine(1.0 / experts);
        even.LinePattern = ScottPlot.LinePattern.Dashed;
        even.Color = ScottPlot.Colors.Gray;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 60;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plot.Axes.Bottom.MinimumSize = 60;
        plot.Axes.Margins(bottom: 0);
        plot.Title("Expert load over the run (share of processed tokens; dashed: even)");
        plot.YLabel("share");
        Save(plot, png, Math.Max(700, 40 * bars.Count + 200), 550);
    }

    static double[] MovingMean(double[] v)
    {
        var m = new double[v.Length];
        double sum = 0;
        for (int i = 0; i < v.Length; i++)
        {
            sum += v[i];
            if (i >= Smooth) sum -= v[i - Smooth];
            m[i] = sum / Math.Min(i + 1, Smooth);
        }
        return m;
    }

    static void Try(CliContext cli, string png, Action<string> draw)
    {
        try { draw(png); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            cli.Err.WriteLine($"warning: could not draw {png}: {e.Message.Split('\n')[0]}");
        }
    }

    static void Save(ScottPlot.Plot plot, string png, int width, int height)
    {
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(png))!, $".moe-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, width, height);
        File.Move(tmp, png, overwrite: true);
    }
}
