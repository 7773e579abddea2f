using NanoSparse.Training;

namespace NanoSparse.Cli;

/// <summary>The copy probe's PNG (eval --probe copy --plot, probe-compare --probe copy): accuracy against the distance bins, a line per model.</summary>
internal static class CopyProbePlot
{
    /// <summary>One line per (label, points) over the bins of <paramref name="edges"/> at block <paramref name="seqLen"/>; a legend when there are several.</summary>
    public static void Save(IReadOnlyList<(string Label, RetrievalPoint[] Points)> series, int[] edges, int seqLen, string title, string png, string tag)
    {
        var plot = new ScottPlot.Plot();
        foreach (var (label, points) in series)
        {
            var s = plot.Add.Scatter(points.Select(p => Math.Log2(p.Distance)).ToArray(), points.Select(p => 100 * p.Accuracy).ToArray());
            if (series.Count > 1) s.LegendText = label;
            s.LineWidth = 2;
            s.MarkerSize = 7;
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            edges.Select((d, k) => new ScottPlot.Tick(Math.Log2(d), CopyAccuracy.BinLabel(edges, k, seqLen))).ToArray());
        plot.Axes.Bottom.Label.Text = "copy distance (tokens back to the source)";
        plot.Axes.Left.Label.Text = "copy accuracy, argmax (%)";
        plot.Axes.SetLimitsY(-2, 102);
        plot.Title(title);
        if (series.Count > 1) plot.ShowLegend(ScottPlot.Alignment.LowerLeft);
        PngFile.SaveAtomic(plot, png, tag);
    }
}
