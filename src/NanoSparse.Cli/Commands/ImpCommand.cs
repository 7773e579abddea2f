using System.CommandLine;
using System.Globalization;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse imp`: iterative magnitude pruning with weight rewinding (Training.IterativeMagnitudePruning): a table
/// and a PNG of each round's sparsity and val loss, each round's checkpoint in OUT/round-N.
/// </summary>
public static class ImpCommand
{
    public static Command Create(CliContext cli)
    {
        var preset = new Option<string?>("--preset") { Description = "named config in configs/ (baby, small, medium)" };
        var config = new Option<string?>("--config") { Description = "path of a JSON training config (nanoGPT train.py keys)" };
        var set = new Option<string[]>("--set") { Description = "override a config key: --set key=value (repeatable)", DefaultValueFactory = _ => [] };
        var rounds = new Option<int>("--rounds") { Description = "pruning rounds after the dense round 0", DefaultValueFactory = _ => 3 };
        var rate = new Option<double>("--rate") { Description = "fraction of the remaining weights pruned per round (round r: 1 - (1 - rate)^r)", DefaultValueFactory = _ => 0.2 };
        var rewind = new Option<int>("--rewind-step") { Description = "step k whose weights every round rewinds to (0: the initialisation)", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "folder: round-N checkpoints, imp.csv, imp.png", Required = true };
        var cmd = new Command("imp", "iterative magnitude pruning with weight rewinding (lottery ticket): train, prune, rewind to step k, retrain");
        foreach (var o in new Option[] { preset, config, set, rounds, rate, rewind, output }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            int threads = cli.ApplyThreads(parse);
            var cfg = Presets.Resolve(parse.GetValue(preset), parse.GetValue(config), parse.GetValue(set));
            if (threads > 0) cfg.Threads = threads;
            int r = parse.GetValue(rounds), k = parse.GetValue(rewind);
            double p = parse.GetValue(rate);
            if (r < 1) throw new UsageException($"--rounds ({r}) must be at least 1");
            if (!(p > 0 && p < 1)) throw new UsageException($"--rate ({p.ToString(CultureInfo.InvariantCulture)}) must be in (0, 1): the fraction of the remaining weights pruned per round");
            if (k < 0 || k >= cfg.MaxIters) throw new UsageException($"--rewind-step ({k}) must be in [0, max_iters = {cfg.MaxIters})");
            return Run(cli, cfg, r, p, k, parse.GetValue(output)!);
        });
        return cmd;
    }

    static int Run(CliContext cli, TrainConfig cfg, int rounds, double rate, int rewindStep, string outDir)
    {
        var console = cli.Console;
        console.MarkupLine($"[bold]imp[/]: {rounds} rounds pruning {rate.ToString("P0", CultureInfo.InvariantCulture)} of the remaining weights each, rewinding to step {rewindStep}, into {Markup.Escape(outDir)}");
        Directory.CreateDirectory(outDir);
        IReadOnlyList<ImpRound> results = [];
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            int stepsPerRetrain = cfg.MaxIters - rewindStep;
            long totalSteps = cfg.MaxIters + (long)rounds * stepsPerRetrain;
            console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("round 0", maxValue: totalSteps);
                    double smoothMs = 0;
                    results = IterativeMagnitudePruning.Run(cfg, rounds, rate, rewindStep, outDir,
                        progress: pr =>
                        {
                            smoothMs = smoothMs == 0 ? pr.Step.MsPerIter : 0.9 * smoothMs + 0.1 * pr.Step.MsPerIter;
                            long done = pr.Round == 0 ? pr.Step.Step + 1 : cfg.MaxIters + (long)(pr.Round - 1) * stepsPerRetrain + (pr.Step.Step + 1 - rewindStep);
                            task.Description = string.Create(CultureInfo.InvariantCulture,
                                $"round {pr.Round}/{pr.Rounds}  step {pr.Step.Step + 1}/{pr.Step.MaxIters}  loss {pr.Step.Loss:F4}  {smoothMs:F0} ms/iter");
                            task.Value = done;
                        },
                        roundDone: r => console.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                            $"round {r.Round}: sparsity {r.Sparsity:P1}, val loss {r.ValLoss:F4} ({Markup.Escape(r.Dir)})")),
                        cancellation: cancel.Token);
                });
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumn("round").AddColumn(new TableColumn("sparsity").RightAligned())
            .AddColumn(new TableColumn("val loss").RightAligned()).AddColumn(new TableColumn("best val loss").RightAligned())
            .AddColumn(new TableColumn("ms/iter").RightAligned()).AddColumn("layout").AddColumn("checkpoint");
        foreach (var r in results)
            table.AddRow(r.Round.ToString(inv), r.Sparsity.ToString("P2", inv), r.ValLoss.ToString("F4", inv), r.BestValLoss.ToString("F4", inv),
                r.MeanMsPerIter.ToString("F1", inv), r.Sparse ? "csr" : "dense", Markup.Escape(r.Dir));
        console.Write(table);

        string csv = Path.Combine(outDir, "imp.csv");
        var lines = new List<string> { "round,sparsity,val_loss,best_val_loss,ms_per_iter,layout,checkpoint" };
        lines.AddRange(results.Select(r => string.Create(inv, $"{r.Round},{r.Sparsity:G9},{r.ValLoss:G9},{r.BestValLoss:G9},{r.MeanMsPerIter:F2},{(r.Sparse ? "csr" : "dense")},{r.Dir}")));
        Checkpoint.WriteAtomic(csv, System.Text.Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n"));
        string png = Path.Combine(outDir, "imp.png");
        try
        {
            Plot(results, png);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            cli.Err.WriteLine($"warning: could not draw {png}: {e.Message.Split('\n')[0]}");
        }
        console.MarkupLine($"table {Markup.Escape(csv)}, plot {Markup.Escape(png)}");
        return 0;
    }

    /// <summary>Val loss against sparsity, one point per round (labelled with its round).</summary>
    static void Plot(IReadOnlyList<ImpRound> results, string png)
    {
        var plot = new ScottPlot.Plot();
        double[] xs = results.Select(r => r.Sparsity * 100).ToArray();
        double[] ys = results.Select(r => (double)r.ValLoss).ToArray();
        var line = plot.Add.Scatter(xs, ys);
        line.LegendText = "val loss after the round's training";
        line.LineWidth = 2;
        line.MarkerSize = 8;
        for (int i = 0; i < results.Count; i++)
            plot.Add.Text($"round {results[i].Round}", xs[i], ys[i]);
        plot.Title("Iterative magnitude pruning with rewinding");
        plot.XLabel("sparsity of the block Linear weights (%)");
        plot.YLabel("val loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(png))!, $".imp-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 900, 550);
        File.Move(tmp, png, overwrite: true);
    }
}
