using System.CommandLine;
using System.Globalization;
using NanoSparse.Sparsity.Pruning.Structured;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse prune-structured`: removes whole attention heads and MLP neurons (Training.StructuredPruning), then
/// prints per layer what is kept, val loss and perplexity before and after, parameters and size on disk, and the
/// smaller model's decode / prefill tokens/s and training-step time against the original's (interleaved rounds).
/// </summary>
public static class PruneStructuredCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory to prune (read only)", Required = true };
        var output = new Option<string>("--out") { Description = "checkpoint directory to write the smaller model to (replaced as a whole)", Required = true };
        var heads = new Option<double>("--heads") { Description = "fraction of attention heads to remove, in [0, 1) (each layer keeps at least one)", DefaultValueFactory = _ => 0 };
        var neurons = new Option<double>("--neurons") { Description = "fraction of MLP neurons to remove, in [0, 1) (each layer keeps at least one)", DefaultValueFactory = _ => 0 };
        var score = new Option<string>("--score")
        {
            Description = "importance: norm (weights: head ‖q,k,v rows, c_proj columns‖, neuron ‖c_fc row‖·‖c_proj column‖) or activation (calibration: head mean ‖its c_proj output‖, neuron mean |GELU output|·‖c_proj column‖)",
            DefaultValueFactory = _ => "norm",
        };
        score.AcceptOnlyFromAmong("norm", "activation");
        var scope = new Option<string>("--scope") { Description = "layer (the same fraction in every layer) or global (lowest scores across all layers)", DefaultValueFactory = _ => "layer" };
        scope.AcceptOnlyFromAmong("layer", "global");
        var calibration = new Option<string?>("--calibration") { Description = "dataset whose train split gives the calibration windows (default: the checkpoint's dataset)" };
        var windows = new Option<int>("--calibration-windows") { Description = "calibration windows of block_size tokens", DefaultValueFactory = _ => 128 };
        var calibrationSeed = new Option<ulong>("--calibration-seed") { Description = "seed of the calibration windows", DefaultValueFactory = _ => 0UL };
        var data = new Option<string?>("--data") { Description = "dataset whose val split measures the loss before and after (default: the checkpoint's, else --calibration)" };
        var evalIters = new Option<int?>("--eval-iters") { Description = "val batches (default: the run's eval_iters, 20 for an imported model; 0 skips)" };
        var rounds = new Option<int>("--speed-rounds") { Description = "interleaved rounds of the speed comparison (0 skips it)", DefaultValueFactory = _ => 5 };
        var prompt = new Option<int>("--prompt") { Description = "prompt tokens (prefilled) of the speed comparison", DefaultValueFactory = _ => 64 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens decoded one at a time after the prompt", DefaultValueFactory = _ => 128 };
        var png = new Option<string?>("--png") { Description = "PNG of heads and MLP width kept per layer (default: OUT/structured_pruning.png)" };
        var cmd = new Command("prune-structured", "remove whole attention heads and MLP neurons: a smaller dense model (per-layer n_head and MLP width)");
        foreach (var o in new Option[] { checkpoint, output, heads, neurons, score, scope, calibration, windows, calibrationSeed, data, evalIters, rounds, prompt, newTokens, png })
            cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            var console = cli.Console;
            int speedRounds = parse.GetValue(rounds);
            if (speedRounds < 0) throw new UsageException($"--speed-rounds ({speedRounds}) must be >= 0");
            var settings = new StructuredPruneSettings
            {
                Checkpoint = parse.GetValue(checkpoint)!,
                OutDir = parse.GetValue(output)!,
                Heads = parse.GetValue(heads),
                Neurons = parse.GetValue(neurons),
                Score = parse.GetValue(score) == "activation" ? StructuredScore.Activation : StructuredScore.Norm,
                Scope = parse.GetValue(scope) == "global" ? StructuredScope.Global : StructuredScope.Layer,
                Calibration = parse.GetValue(calibration),
                CalibrationWindows = parse.GetValue(windows),
                CalibrationSeed = parse.GetValue(calibrationSeed),
                EvalData = parse.GetValue(data),
                EvalIters = parse.GetValue(evalIters),
            };
            // Bad fractions and counts are usage errors, found before the checkpoint is read.
            try
            {
                StructuredPruner.CheckFraction(settings.Heads, "--heads");
                StructuredPruner.CheckFraction(settings.Neurons, "--neurons");
                if (settings.CalibrationWindows <= 0) throw new ArgumentException($"--calibration-windows ({settings.CalibrationWindows}) must be positive");
                if (settings.EvalIters is < 0) throw new ArgumentException($"--eval-iters ({settings.EvalIters}) must be >= 0 (0 skips the evaluation)");
                if (parse.GetValue(prompt) <= 0 || parse.GetValue(newTokens) <= 0)
                    throw new ArgumentException($"--prompt ({parse.GetValue(prompt)}) and --new-tokens ({parse.GetValue(newTokens)}) must be positive");
            }
            catch (ArgumentException e) { throw new UsageException(e.Message); }

            StructuredPruneResult result = null!;
            NanoSparse.Nn.Gpt pruned = null!, original = null!;
            WithProgress(cli, (report) => result = StructuredPruning.Run(settings, report, out pruned, out original));

            var layers = new Table().Title("kept per layer").AddColumn(new TableColumn("layer").RightAligned())
                .AddColumn(new TableColumn("heads").RightAligned()).AddColumn(new TableColumn("MLP width").RightAligned());
            foreach (var r in result.Layers)
                layers.AddRow(r.Layer.ToString(CultureInfo.InvariantCulture), $"{r.HeadsKept} / {r.HeadsBefore}", $"{r.NeuronsKept} / {r.NeuronsBefore}");
            layers.AddRow("[bold]all[/]", $"[bold]{result.Layers.Sum(r => r.HeadsKept)} / {result.Layers.Sum(r => r.HeadsBefore)}[/]",
                $"[bold]{result.Layers.Sum(r => r.NeuronsKept)} / {result.Layers.Sum(r => r.NeuronsBefore)}[/]");
            console.Write(layers);

            var table = new Table().Title($"{(settings.Score == StructuredScore.Norm ? "norm" : "activation")} score, {(settings.Scope == StructuredScope.Layer ? "layer" : "global")} scope")
                .AddColumn("").AddColumn(new TableColumn("original").RightAligned()).AddColumn(new TableColumn("pruned").RightAligned()).AddColumn(new TableColumn("pruned / original").RightAligned());
            string F(double x, string format) => double.IsNaN(x) ? "-" : x.ToString(format, CultureInfo.InvariantCulture);
            string Ratio(double a, double b) => double.IsNaN(a) || double.IsNaN(b) || a == 0 ? "-" : (b / a).ToString("F3", CultureInfo.InvariantCulture);
            if (result.EvalDataset is not null)
            {
                table.AddRow("val loss", F(result.ValLossBefore, "F4"), F(result.ValLossAfter, "F4"), Ratio(result.ValLossBefore, result.ValLossAfter));
                double pb = StructuredPruning.Perplexity(result.ValLossBefore), pa = StructuredPruning.Perplexity(result.ValLossAfter);
                table.AddRow("val perplexity", F(pb, "F4"), F(pa, "F4"), Ratio(pb, pa));
            }
            table.AddRow("parameters", result.ParametersBefore.ToString("N0", CultureInfo.InvariantCulture), result.ParametersAfter.ToString("N0", CultureInfo.InvariantCulture),
                Ratio(result.ParametersBefore, result.ParametersAfter));
            table.AddRow("model.safetensors bytes", result.BytesOnDiskBefore.ToString("N0", CultureInfo.InvariantCulture), result.BytesOnDiskAfter.ToString("N0", CultureInfo.InvariantCulture),
                Ratio(result.BytesOnDiskBefore, result.BytesOnDiskAfter));

            if (speedRounds > 0)
            {
                int p = parse.GetValue(prompt), n = parse.GetValue(newTokens);
                int block = result.PrunedConfig.BlockSize;
                if (p + n > block) { n = Math.Max(1, block - p); p = Math.Min(p, block - n); }
                ModelSpeed[] speeds = null!;
                WithProgress(cli, report => speeds = InferenceSpeed.Measure([original, pruned], p, n, speedRounds, trainStep: true,
                    (done, total) => report("speed", done, total)));
                // speed-up = pruned / original for rates, original / pruned for times
                table.AddRow($"decode tokens/s ({n} after a {p}-token prompt)", F(speeds[0].DecodeTokensPerSecond, "F1"), F(speeds[1].DecodeTokensPerSecond, "F1"),
                    Ratio(speeds[0].DecodeTokensPerSecond, speeds[1].DecodeTokensPerSecond));
                table.AddRow($"prefill tokens/s ({p}-token prompt)", F(speeds[0].PrefillTokensPerSecond, "F1"), F(speeds[1].PrefillTokensPerSecond, "F1"),
                    Ratio(speeds[0].PrefillTokensPerSecond, speeds[1].PrefillTokensPerSecond));
                table.AddRow($"train step ms (batch {result.EvalBatch} × {result.EvalSeqLen})", F(speeds[0].TrainStepMs, "F1"), F(speeds[1].TrainStepMs, "F1"),
                    Ratio(speeds[0].TrainStepMs, speeds[1].TrainStepMs));
            }
            console.Write(table);
            string note = result.EvalDataset is null ? "no val data (give --data DATASET)" : $"val: {result.EvalIters} batches of {result.EvalBatch} × {result.EvalSeqLen} from {result.EvalDataset}";
            if (result.CalibrationTokens > 0) note += $"; calibration: {result.CalibrationTokens:N0} tokens";
            if (speedRounds > 0) note += $"; speeds: medians of {speedRounds} interleaved rounds (wall clock)";
            console.MarkupLine(Markup.Escape(note));

            string plotPath = parse.GetValue(png) ?? Path.Combine(settings.OutDir, "structured_pruning.png");
            try
            {
                Plot(result, plotPath);
                console.MarkupLine($"pruned model written to {Markup.Escape(settings.OutDir)}; plot {Markup.Escape(plotPath)}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                cli.Err.WriteLine($"warning: could not write the plot {plotPath}: {e.Message}");
                console.MarkupLine($"pruned model written to {Markup.Escape(settings.OutDir)}");
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Runs work with a progress bar (rate and remaining time) per stage it reports; plain when not interactive.</summary>
    static void WithProgress(CliContext cli, Action<Action<string, int, int>> work)
    {
        if (!cli.Interactive)
        {
            string? last = null;
            work((stage, done, total) =>
            {
                if (done == total && stage != last) { cli.Out.WriteLine($"{stage}: {total}/{total} done"); last = stage; }
            });
            return;
        }
        cli.Console.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new TransferSpeedColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                var started = new Dictionary<string, long>();
                work((stage, done, total) =>
                {
                    if (!tasks.TryGetValue(stage, out var task))
                    {
                        task = tasks[stage] = ctx.AddTask(stage, maxValue: total);
                        started[stage] = System.Diagnostics.Stopwatch.GetTimestamp();
                    }
                    double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started[stage]).TotalSeconds;
                    task.Description = string.Create(CultureInfo.InvariantCulture, $"{stage} {done}/{total}  {done / Math.Max(seconds, 1e-9):F2} batches/s");
                    task.Value = done;
                });
            });
    }

    /// <summary>Heads and MLP width kept per layer, as fractions of the original, grouped bars.</summary>
    static void Plot(StructuredPruneResult result, string pngPath)
    {
        var plot = new ScottPlot.Plot();
        var bars = new List<ScottPlot.Bar>();
        foreach (var r in result.Layers)
        {
            bars.Add(new ScottPlot.Bar { Position = r.Layer * 3, Value = (double)r.HeadsKept / r.HeadsBefore, FillColor = ScottPlot.Colors.SteelBlue });
            bars.Add(new ScottPlot.Bar { Position = r.Layer * 3 + 1, Value = (double)r.NeuronsKept / r.NeuronsBefore, FillColor = ScottPlot.Colors.OrangeRed });
        }
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks(result.Layers.Select(r => r.Layer * 3 + 0.5).ToArray(), result.Layers.Select(r => $"h.{r.Layer}").ToArray());
        plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = "heads kept", FillColor = ScottPlot.Colors.SteelBlue });
        plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = "MLP neurons kept", FillColor = ScottPlot.Colors.OrangeRed });
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        plot.Axes.SetLimitsY(0, 1.05);
        string ppl = double.IsNaN(result.ValLossAfter) ? "" : string.Create(CultureInfo.InvariantCulture,
            $": val perplexity {StructuredPruning.Perplexity(result.ValLossBefore):F3} → {StructuredPruning.Perplexity(result.ValLossAfter):F3}");
        plot.Title($"structured pruning, fraction kept per layer{ppl}");
        plot.YLabel("fraction kept");
        string dir = Path.GetDirectoryName(Path.GetFullPath(pngPath))!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".structured-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 900, 500);
        File.Move(tmp, pngPath, overwrite: true);
    }
}
