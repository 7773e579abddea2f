using System.CommandLine;
using System.Globalization;
using NanoSparse.Sparsity.Pruning;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse prune`: prunes a checkpoint's block Linear weights (magnitude, random, Wanda, ... with OWL and mask
/// refiners), stores them sparse, and prints per weight the sparsity reached and for the model the val loss and
/// perplexity, size on disk and decode tokens/s before and after (Training.PruneRun); writes prune-recipe.json and
/// prune-sparsity.png beside the pruned checkpoint.
/// </summary>
public static class PruneCommand
{
    public const string PlotFile = "prune-sparsity.png";

    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "checkpoint directory to prune (never modified)" };
        var output = new Option<string>("--out") { Description = "checkpoint directory to write (replaced as a whole)", Required = true };
        var method = new Option<string?>("--method") { Description = $"pruning criterion: {string.Join(", ", PruningMethods.PrunerNames)} (and any other registered method)" };
        var sparsity = new Option<double?>("--sparsity") { Description = "fraction of each pruned weight removed, in [0, 1) (implied by an N:M --pattern)" };
        var pattern = new Option<string>("--pattern") { Description = "unstructured, or N:M (e.g. 2:4, 4:8: N kept in every M consecutive inputs of a row; 'nm' alone is 2:4)", DefaultValueFactory = _ => PruneOptions.Unstructured };
        var scope = new Option<string>("--scope") { Description = "layer (each weight to the sparsity) or global (one threshold over all pruned weights; magnitude and random)", DefaultValueFactory = _ => PruneOptions.LayerScope };
        var profile = new Option<string>("--profile") { Description = "uniform, or owl (per-block sparsity from the blocks' outlier ratios of Wanda scores on the calibration data)", DefaultValueFactory = _ => PruneOptions.UniformProfile };
        var owlThreshold = new Option<double>("--owl-threshold") { Description = "OWL's M: a score is an outlier above M times its block's mean", DefaultValueFactory = _ => 5 };
        var owlLambda = new Option<double>("--owl-lambda") { Description = "OWL's lambda: block sparsities spread over 2·lambda around the target", DefaultValueFactory = _ => 0.08 };
        var dsnot = new Option<bool>("--dsnot") { Description = "refine every mask with DSnoT's training-free prune-and-grow (refiner 'dsnot')" };
        var targets = new Option<string?>("--targets") { Description = "comma-separated weights to prune: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj (every block), h.<layer>.<weight> or h.<layer>; default all" };
        var ignore = new Option<string?>("--ignore") { Description = "comma-separated weights to leave dense (same forms as --targets)" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the random method's choices", DefaultValueFactory = _ => 0UL };
        var calibration = new Option<string?>("--calibration") { Description = "dataset directory: calibration windows from train.bin, evaluation windows from val.bin (default: the checkpoint's dataset)" };
        var windows = new Option<int>("--calibration-windows") { Description = "calibration windows of block_size tokens", DefaultValueFactory = _ => 128 };
        var calibrationSeed = new Option<ulong>("--calibration-seed") { Description = "seed of the calibration windows' offsets", DefaultValueFactory = _ => 0UL };
        var format = new Option<string>("--format") { Description = "storage of the pruned weights: auto (fewest bytes per weight), csr, nm:N:M, bsr:RxC", DefaultValueFactory = _ => "auto" };
        var evalWindows = new Option<int>("--eval-windows") { Description = "val windows of block_size tokens for the loss before and after (0: skip)", DefaultValueFactory = _ => 64 };
        var evalSeed = new Option<ulong>("--eval-seed") { Description = "seed of the val windows", DefaultValueFactory = _ => 1337UL };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "tokens decoded after a 16-token prompt to time dense and sparse decoding (0: skip)", DefaultValueFactory = _ => 64 };
        var recipe = new Option<string?>("--recipe") { Description = "re-run a prune-recipe.json exactly (every pruning option from the file; --checkpoint may point elsewhere)" };
        var cmd = new Command("prune", "prune a checkpoint's weights, store them sparse, and compare quality, size and decode speed");
        Option[] shaping = [method, sparsity, pattern, scope, profile, owlThreshold, owlLambda, dsnot, targets, ignore, seed, calibration, windows, calibrationSeed, format, evalWindows, evalSeed, decodeTokens];
        foreach (var o in shaping) cmd.Options.Add(o);
        cmd.Options.Add(checkpoint);
        cmd.Options.Add(output);
        cmd.Options.Add(recipe);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            PruneRunOptions options;
            if (parse.GetValue(recipe) is string recipePath)
            {
                var given = shaping.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false });
                if (given is not null) throw new UsageException($"--recipe takes every pruning option from {recipePath}; {given.Name} cannot be given with it");
                options = PruneRunOptions.Load(recipePath);
                if (parse.GetValue(checkpoint) is string c) options = options with { Checkpoint = c };
            }
            else
            {
                string dir = parse.GetValue(checkpoint) ?? throw new UsageException("give --checkpoint DIR (or --recipe FILE)");
                string m = parse.GetValue(method) ?? throw new UsageException($"give --method: one of {string.Join(", ", PruningMethods.PrunerNames)}");
                string p = parse.GetValue(pattern)!;
                double? s = parse.GetValue(sparsity);
                if (s is null && p == PruneOptions.Unstructured) throw new UsageException("give --sparsity S (a fraction in [0, 1)) or an N:M --pattern");
                options = new PruneRunOptions
                {
                    Checkpoint = dir,
                    Prune = new PruneOptions
                    {
                        Method = m, Sparsity = s ?? 0, Pattern = p, Scope = parse.GetValue(scope)!, Profile = parse.GetValue(profile)!,
                        OwlThreshold = parse.GetValue(owlThreshold), OwlLambda = parse.GetValue(owlLambda),
                        Refiner = parse.GetValue(dsnot) ? "dsnot" : null,
                        Targets = List("--targets", parse.GetValue(targets)), Ignore = List("--ignore", parse.GetValue(ignore)),
                        Seed = parse.GetValue(seed), CalibrationWindows = parse.GetValue(windows), CalibrationSeed = parse.GetValue(calibrationSeed),
                    },
                    Calibration = parse.GetValue(calibration),
                    StorageFormat = parse.GetValue(format)!,
                    EvalWindows = parse.GetValue(evalWindows), EvalSeed = parse.GetValue(evalSeed), DecodeTokens = parse.GetValue(decodeTokens),
                };
            }
            try { options.Validate(); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            return Prune(cli, options, parse.GetValue(output)!);
        });
        return cmd;
    }

    // A given option that lists nothing ("--targets ,") is refused rather than read as "every weight".
    static string[] List(string option, string? text)
    {
        if (text is null) return [];
        var entries = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return entries.Length > 0 ? entries : throw new UsageException($"{option} '{text}' lists no weight; expected comma-separated names such as mlp.c_fc, h.3.attn.c_attn or h.3");
    }

    static int Prune(CliContext cli, PruneRunOptions options, string outDir)
    {
        var console = cli.Console;
        var o = options.Prune;
        var inv = CultureInfo.InvariantCulture;
        console.MarkupLine(Markup.Escape($"pruning {options.Checkpoint} with {o.Method}{(o.Refiner is null ? "" : " + " + o.Refiner)}, " +
            (o.Pattern == PruneOptions.Unstructured ? $"sparsity {o.Sparsity.ToString(inv)}" : $"pattern {o.Pattern}") +
            $", scope {o.Scope}, profile {o.Profile} → {outDir}"));
        PruneRunResult? result = null;
        console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("loading", maxValue: 1.0);
                var progress = new Reporter(p =>
                {
                    string what = p.Unit == "windows"
                        ? string.Create(inv, $"{p.Stage} block {p.Block + 1}/{p.Blocks}: {p.Done}/{p.Total} windows  {p.PerSecond:F1} windows/s  ETA {p.Remaining?.TotalSeconds ?? 0:F0} s")
                        : string.Create(inv, $"pruned {p.Done}/{p.Total} {p.Unit}");
                    task.Description = what;
                    task.Value = p.OverallFraction;
                });
                result = PruneRun.Run(options, outDir, progress);
                task.Description = "pruned, stored and measured";
                task.Value = 1.0;
            });
        var r = result!;
        if (r.Note is not null) cli.Err.WriteLine("warning: " + r.Note);

        bool owl = r.Report.BlockSparsities is not null;
        var table = new Table().AddColumn("weight").AddColumn("shape")
            .AddColumn(new TableColumn("target").RightAligned()).AddColumn(new TableColumn("sparsity").RightAligned())
            .AddColumn("layout").AddColumn(new TableColumn("bytes on disk").RightAligned());
        if (owl) table.AddColumn(new TableColumn("block outlier ratio").RightAligned());
        foreach (var w in r.Weights)
        {
            var row = new List<string>
            {
                Markup.Escape(w.Pruned.Name), $"{w.Pruned.OutFeatures}x{w.Pruned.InFeatures}", w.Pruned.TargetSparsity.ToString("F4", inv),
                w.Pruned.Sparsity.ToString("F4", inv), Markup.Escape(w.Stored.Layout), w.Stored.FileBytes.ToString("N0", inv),
            };
            if (owl) row.Add(r.Report.OutlierRatios![w.Pruned.Layer].ToString("P2", inv));
            table.AddRow(row.ToArray());
        }
        console.Write(table);

        var summary = new Table().AddColumn("").AddColumn(new TableColumn("dense").RightAligned()).AddColumn(new TableColumn("pruned").RightAligned());
        summary.AddRow("sparsity of the pruned weights", "0", r.Report.OverallSparsity.ToString("F4", inv));
        summary.AddRow($"val loss ({options.EvalWindows} windows)", Loss(r.ValLossBefore), Loss(r.ValLossAfter));
        summary.AddRow("val perplexity", Ppl(r.ValLossBefore), Ppl(r.ValLossAfter));
        summary.AddRow("model.safetensors bytes", r.BytesBefore.ToString("N0", inv), r.BytesAfter.ToString("N0", inv));
        summary.AddRow($"decode tokens/s ({options.DecodeTokens} tokens, best of 3)", Speed(r.DecodeTokensPerSecondDense), Speed(r.DecodeTokensPerSecondSparse));
        summary.AddRow("pruning time", "", r.Report.Elapsed.TotalSeconds.ToString("F1", inv) + " s");
        console.Write(summary);

        string png = Path.Combine(outDir, PlotFile);
        try { SparsityPlot(r, png); }
        catch (Exception e) when (e is not OutOfMemoryException) { cli.Err.WriteLine($"warning: could not draw {png}: {e.Message.Split('\n')[0]}"); png = "-"; }
        console.MarkupLine(Markup.Escape($"wrote {outDir} (recipe {r.RecipePath}, plot {png})"));
        return 0;

        string Loss(float? v) => v is null ? "-" : v.Value.ToString("F4", inv);
        string Ppl(float? v) => v is null ? "-" : PruneRunResult.Perplexity(v.Value).ToString("F3", inv);
        string Speed(double? v) => v is null ? "-" : v.Value.ToString("F1", inv);
    }

    /// <summary>Per pruned weight the sparsity reached (bars) and its target (dots), as a PNG (ScottPlot 5).</summary>
    public static void SparsityPlot(PruneRunResult r, string pngPath)
    {
        var plot = new ScottPlot.Plot();
        int n = r.Weights.Count;
        var positions = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        var reached = r.Weights.Select(w => w.Pruned.Sparsity).ToArray();
        var bars = plot.Add.Bars(positions, reached);
        bars.LegendText = "sparsity reached";
        var dots = plot.Add.ScatterPoints(positions, r.Weights.Select(w => w.Pruned.TargetSparsity).ToArray());
        dots.LegendText = "target";
        dots.Color = ScottPlot.Colors.OrangeRed;
        dots.MarkerSize = 8;
        plot.Axes.Bottom.SetTicks(positions, r.Weights.Select(w => w.Pruned.Name).ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 60;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plot.Axes.Bottom.MinimumSize = 120;
        plot.Axes.SetLimitsY(0, 1);
        plot.Title($"{r.Report.Weights.Count} pruned weights, overall sparsity {r.Report.OverallSparsity:P1}");
        plot.YLabel("sparsity (fraction of zeros)");
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(pngPath))!, $".prune-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, Math.Max(700, 40 * n + 200), 550);
        File.Move(tmp, pngPath, overwrite: true);
    }

    /// <summary>Reports synchronously on the pruning thread (System.Progress would post to a thread pool).</summary>
    sealed class Reporter(Action<PruneProgress> report) : IProgress<PruneProgress>
    {
        public void Report(PruneProgress value) => report(value);
    }
}
