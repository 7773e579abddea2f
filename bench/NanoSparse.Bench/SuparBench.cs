using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench supar</c>: the learning-rate sweep that shows what SμPar is for. A small model is trained from
/// scratch at every (density, learning rate) of a grid, once with the standard parameterisation and once with SμPar
/// (base width = the model's n_embd, base density 1: the dense model is the base, so its runs are the same in both
/// and run once). Static sparse training (CSR, uniform density, the same seed everywhere). Per run: the val loss at the
/// end. With SμPar the best rate should stay at the same grid point across densities; without it, it drifts. Writes a
/// table, a CSV and a PNG (val loss against rate, a line per density; one panel per parameterisation).
/// </summary>
public static class SuparBench
{
    public static Command CreateCommand()
    {
        var dataOpt = new Option<string>("--data") { Description = "prepared dataset directory (train.bin, val.bin, meta.json)", Required = true };
        var outOpt = new Option<string>("--out") { Description = "folder for supar-sweep.csv and supar-sweep.png (runs train in a temporary folder inside it)", DefaultValueFactory = _ => "supar-sweep" };
        var ratesOpt = new Option<string>("--rates") { Description = "learning rates, comma-separated (log-spaced)", DefaultValueFactory = _ => "1e-3,2e-3,4e-3,8e-3,1.6e-2,3.2e-2" };
        var densOpt = new Option<string>("--densities") { Description = "densities of the blocks' Linear weights, comma-separated, in (0, 1]", DefaultValueFactory = _ => "1,0.5,0.25,0.1" };
        var itersOpt = new Option<int>("--iters") { Description = "training iterations per run (warm-up a tenth, cosine decay to a tenth of the rate)", DefaultValueFactory = _ => 400 };
        var layerOpt = new Option<int>("--n-layer") { DefaultValueFactory = _ => 2 };
        var headOpt = new Option<int>("--n-head") { DefaultValueFactory = _ => 4 };
        var embdOpt = new Option<int>("--n-embd") { DefaultValueFactory = _ => 128 };
        var blockOpt = new Option<int>("--block-size") { DefaultValueFactory = _ => 64 };
        var batchOpt = new Option<int>("--batch-size") { DefaultValueFactory = _ => 8 };
        var evalOpt = new Option<int>("--eval-iters") { Description = "val batches for each run's final loss", DefaultValueFactory = _ => 20 };
        var seedOpt = new Option<ulong>("--seed") { DefaultValueFactory = _ => 1337UL };
        var threadsOpt = new Option<int>("--threads") { Description = "kernel threads (0 = all cores)", DefaultValueFactory = _ => 0 };
        var command = new Command("supar", "SμPar learning-rate sweep: val loss against learning rate at several densities, standard vs SμPar (table, CSV, PNG)");
        foreach (var o in new Option[] { dataOpt, outOpt, ratesOpt, densOpt, itersOpt, layerOpt, headOpt, embdOpt, blockOpt, batchOpt, evalOpt, seedOpt, threadsOpt })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            var rates = Numbers(r.GetValue(ratesOpt)!, "--rates", v => v > 0 && double.IsFinite(v), "a positive number");
            var densities = Numbers(r.GetValue(densOpt)!, "--densities", v => v > 0 && v <= 1, "a density in (0, 1]");
            int iters = r.GetValue(itersOpt);
            if (iters < 10) throw new ArgumentException($"--iters must be at least 10, got {iters}");
            var template = new TrainConfig
            {
                Dataset = r.GetValue(dataOpt)!,
                NLayer = r.GetValue(layerOpt), NHead = r.GetValue(headOpt), NEmbd = r.GetValue(embdOpt),
                BlockSize = r.GetValue(blockOpt), BatchSize = r.GetValue(batchOpt),
                MaxIters = iters, EvalInterval = iters, EvalIters = r.GetValue(evalOpt), LogInterval = iters,
                WarmupIters = iters / 10, LrDecayIters = iters, AlwaysSaveCheckpoint = false,
                Seed = r.GetValue(seedOpt), Threads = r.GetValue(threadsOpt), Beta2 = 0.99f,
            };
            template.Validate("bench supar");
            if (!Directory.Exists(template.Dataset)) throw new DirectoryNotFoundException($"--data: dataset directory {template.Dataset} does not exist (run `nanosparse prepare` first)");
            Run(template, rates, densities, r.GetValue(outOpt)!);
            return 0;
        });
        return command;
    }

    static double[] Numbers(string list, string option, Func<double, bool> ok, string what) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
            double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && ok(x) ? x
                : throw new ArgumentException($"{option}: '{v}' is not {what}")).ToArray() is { Length: > 0 } a ? a
            : throw new ArgumentException($"{option} is empty; expected a comma-separated list");

    /// <summary>One run's outcome: the final val loss, or NaN when it diverged.</summary>
    public sealed record Result(bool Supar, double Density, double Rate, double ValLoss, double Seconds);

    static void Run(TrainConfig template, double[] rates, double[] densities, string outDir)
    {
        Directory.CreateDirectory(outDir);
        string runsDir = Path.Combine(outDir, ".runs-" + Environment.ProcessId);
        var jobs = new List<(bool Supar, double Density, double Rate)>();
        foreach (bool supar in new[] { false, true })
            foreach (double d in densities)
                foreach (double lr in rates)
                    if (!(supar && d == 1)) jobs.Add((supar, d, lr));   // at density 1 SμPar's factors are all 1
        Console.WriteLine($"bench supar: {template.NLayer} layers, n_embd {template.NEmbd}, n_head {template.NHead}, block {template.BlockSize}, batch {template.BatchSize}, " +
                          $"{template.MaxIters} iterations per run, {jobs.Count} runs on {template.Dataset}");
        var results = new List<Result>();
        var clock = Stopwatch.StartNew();
        try
        {
            for (int j = 0; j < jobs.Count; j++)
            {
                var (supar, density, rate) = jobs[j];
                var c = template.Clone();
                c.OutDir = Path.Combine(runsDir, $"run{j}");
                c.LearningRate = (float)rate;
                c.MinLr = (float)(rate / 10);
                c.Sparsity = (float)(1 - density);
                c.Supar = supar;
                var t0 = Stopwatch.GetTimestamp();
                double val;
                try
                {
                    using var trainer = new Trainer(c);
                    var summary = trainer.Run();
                    val = summary.LastEval?.ValLoss ?? double.NaN;
                }
                catch (TrainingDivergedException) { val = double.NaN; }
                double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                results.Add(new Result(supar, density, rate, val, seconds));
                if (supar == false && density == 1) results.Add(new Result(true, density, rate, val, seconds));
                double eta = clock.Elapsed.TotalSeconds / (j + 1) * (jobs.Count - j - 1);
                Console.WriteLine($"run {j + 1}/{jobs.Count}: {(supar ? "SμPar   " : "standard")} density {density:0.###} lr {rate:0.#####} → val loss {(double.IsNaN(val) ? "diverged" : val.ToString("F4", CultureInfo.InvariantCulture))}" +
                                  $"  ({seconds:F1} s; {(j + 1) / clock.Elapsed.TotalMinutes:F2} runs/min, ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss})");
            }
        }
        finally
        {
            try { Directory.Delete(runsDir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        Render(results, rates, densities, outDir);
    }

    /// <summary>The grid index of the lowest val loss of one (parameterisation, density) line; -1 when all diverged.</summary>
    public static int BestRate(IEnumerable<Result> line, double[] rates)
    {
        var finite = line.Where(r => !double.IsNaN(r.ValLoss)).ToList();
        if (finite.Count == 0) return -1;
        return Array.IndexOf(rates, finite.MinBy(r => r.ValLoss)!.Rate);
    }

    static void Render(List<Result> results, double[] rates, double[] densities, string outDir)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().Border(TableBorder.Rounded).Title("val loss at the end of training (lowest of each row in bold; – diverged)")
            .AddColumn("parameterisation").AddColumn(new TableColumn("density").RightAligned());
        foreach (double lr in rates) table.AddColumn(new TableColumn($"lr {lr.ToString("0.#####", inv)}").RightAligned());
        table.AddColumn(new TableColumn("best lr").RightAligned());
        var csv = new StringBuilder("parameterisation,density,learning_rate,val_loss,seconds\n");
        var best = new Dictionary<bool, List<int>>();
        foreach (bool supar in new[] { false, true })
        {
            best[supar] = [];
            foreach (double d in densities)
            {
                var line = results.Where(r => r.Supar == supar && r.Density == d).ToList();
                int b = BestRate(line, rates);
                best[supar].Add(b);
                var cells = new List<string> { supar ? "SμPar" : "standard", d.ToString("0.###", inv) };
                foreach (double lr in rates)
                {
                    var r = line.Single(x => x.Rate == lr);
                    string v = double.IsNaN(r.ValLoss) ? "–" : r.ValLoss.ToString("F4", inv);
                    cells.Add(b >= 0 && rates[b] == lr ? $"[bold]{v}[/]" : v);
                    csv.Append(inv, $"{(supar ? "supar" : "standard")},{d},{lr},{(double.IsNaN(r.ValLoss) ? "nan" : r.ValLoss.ToString("R", inv))},{r.Seconds:F1}\n");
                }
                cells.Add(b >= 0 ? rates[b].ToString("0.#####", inv) : "–");
                table.AddRow(cells.ToArray());
            }
        }
        AnsiConsole.Write(table);
        foreach (bool supar in new[] { false, true })
        {
            var idx = best[supar];
            Console.WriteLine($"{(supar ? "SμPar" : "standard")}: best rate at grid point {string.Join(", ", idx.Select(i => i.ToString(inv)))} for densities {string.Join(", ", densities.Select(d => d.ToString("0.###", inv)))}" +
                              (idx.Distinct().Count() == 1 ? " (the same at every density)" : $" (spread over {idx.Max() - idx.Min() + 1} grid points)"));
        }
        string csvPath = Path.Combine(outDir, "supar-sweep.csv");
        Checkpoint.WriteAtomic(csvPath, Encoding.UTF8.GetBytes(csv.ToString()));

        // Two panels side by side on one x axis: log10(rate) for the standard runs, shifted right for SμPar's.
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var logRates = rates.Select(Math.Log10).ToArray();
        double span = logRates.Max() - logRates.Min(), shift = span * 1.35 + 0.3;
        var finiteLosses = results.Where(r => !double.IsNaN(r.ValLoss)).Select(r => r.ValLoss).DefaultIfEmpty(1).ToList();
        double yMin = finiteLosses.Min(), yMax = finiteLosses.Max(), pad = 0.05 * Math.Max(yMax - yMin, 1e-3);
        var ticks = new List<(double X, string Label)>();
        foreach (bool supar in new[] { false, true })
        {
            double offset = supar ? shift : 0;
            for (int k = 0; k < densities.Length; k++)
            {
                var line = results.Where(r => r.Supar == supar && r.Density == densities[k] && !double.IsNaN(r.ValLoss)).OrderBy(r => r.Rate).ToList();
                if (line.Count == 0) continue;
                var scatter = plot.Add.Scatter(line.Select(r => Math.Log10(r.Rate) + offset).ToArray(), line.Select(r => r.ValLoss).ToArray(), palette.GetColor(k));
                scatter.LegendText = supar ? "" : $"density {densities[k].ToString("0.###", inv)}";
                var bestPoint = line.MinBy(r => r.ValLoss)!;
                plot.Add.Marker(Math.Log10(bestPoint.Rate) + offset, bestPoint.ValLoss, ScottPlot.MarkerShape.OpenCircle, 16, palette.GetColor(k));
            }
            foreach (double lr in rates) ticks.Add((Math.Log10(lr) + offset, lr.ToString("0.#####", inv)));
            var title = plot.Add.Text(supar ? "SμPar (base: the dense model)" : "standard parameterisation", logRates.Min() + offset, yMax + pad * 0.8);
            title.LabelFontSize = 16;
            title.LabelBold = true;
        }
        var divider = plot.Add.VerticalLine(logRates.Max() + (shift - span) / 2);
        divider.Color = ScottPlot.Colors.Gray;
        plot.Axes.Bottom.SetTicks(ticks.Select(t => t.X).ToArray(), ticks.Select(t => t.Label).ToArray());
        plot.Axes.SetLimits(logRates.Min() - 0.15, logRates.Max() + shift + 0.15, yMin - pad, yMax + 2 * pad);
        plot.Title("learning-rate sweep: val loss against rate, a line per density (circle: best rate)");
        plot.XLabel("learning rate (log scale); left: standard, right: SμPar");
        plot.YLabel("val loss at the end");
        plot.ShowLegend();
        plot.Legend.Alignment = ScottPlot.Alignment.UpperCenter;
        string pngPath = Path.Combine(outDir, "supar-sweep.png");
        Checkpoint.WriteAtomic(pngPath, plot.GetImageBytes(1400, 600, ScottPlot.ImageFormat.Png));
        Console.WriteLine($"wrote {csvPath} and {pngPath}");
    }
}
