using System.Globalization;
using NanoSparse.Training;

namespace NanoSparse.Cli;

/// <summary>The loss curve (train per logged step, eval train and val per evaluation) from log.csv, as a PNG (ScottPlot 5).</summary>
public static class LossPlot
{
    public static void FromCsv(string csvPath, string pngPath)
    {
        if (!File.Exists(csvPath)) return;
        var trainX = new List<double>(); var trainY = new List<double>();
        var evalX = new List<double>(); var evalTrain = new List<double>(); var evalVal = new List<double>();
        foreach (var line in File.ReadLines(csvPath).Skip(1))
        {
            var f = line.Split(',');
            if (f.Length < 3 || !int.TryParse(f[0], CultureInfo.InvariantCulture, out int step)) continue;
            if (!double.TryParse(f[1], CultureInfo.InvariantCulture, out double train)) continue;
            if (f[2].Length == 0) { trainX.Add(step); trainY.Add(train); }
            else if (double.TryParse(f[2], CultureInfo.InvariantCulture, out double val))
            {
                evalX.Add(step); evalTrain.Add(train); evalVal.Add(val);
            }
        }
        if (trainX.Count + evalX.Count == 0) return;

        var plot = new ScottPlot.Plot();
        if (trainX.Count > 0)
        {
            var s = plot.Add.ScatterLine(trainX.ToArray(), trainY.ToArray());
            s.LegendText = "train (batch)";
            s.LineWidth = 1;
            s.Color = ScottPlot.Colors.SteelBlue.WithAlpha(0.5);
        }
        if (evalX.Count > 0)
        {
            var t = plot.Add.Scatter(evalX.ToArray(), evalTrain.ToArray());
            t.LegendText = "train (eval)";
            t.Color = ScottPlot.Colors.Navy;
            t.LineWidth = 2;
            var v = plot.Add.Scatter(evalX.ToArray(), evalVal.ToArray());
            v.LegendText = "val";
            v.Color = ScottPlot.Colors.OrangeRed;
            v.LineWidth = 2;
        }
        plot.Title("NanoSparse training loss");
        plot.XLabel("step");
        plot.YLabel("cross-entropy loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(pngPath))!, $".loss-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 900, 550);
        File.Move(tmp, pngPath, overwrite: true);
    }
}
