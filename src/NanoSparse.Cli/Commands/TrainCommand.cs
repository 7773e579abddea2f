using System.CommandLine;
using System.Globalization;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

public static class TrainCommand
{
    public static Command Create(CliContext cli)
    {
        var preset = new Option<string?>("--preset") { Description = "named config in configs/ (baby, small)" };
        var config = new Option<string?>("--config") { Description = "path of a JSON config (nanoGPT train.py keys)" };
        var set = new Option<string[]>("--set") { Description = "override a config key: --set key=value (repeatable)", DefaultValueFactory = _ => [] };
        var outDir = new Option<string?>("--out") { Description = "run folder (out_dir): checkpoint, log.csv, loss.png" };
        var cmd = new Command("train", "train a GPT on a prepared dataset");
        cmd.Options.Add(preset);
        cmd.Options.Add(config);
        cmd.Options.Add(set);
        cmd.Options.Add(outDir);
        cmd.SetAction(parse =>
        {
            int threads = cli.ApplyThreads(parse);
            var cfg = Presets.Resolve(parse.GetValue(preset), parse.GetValue(config), parse.GetValue(set));
            if (parse.GetValue(outDir) is string o) cfg.OutDir = o;
            if (threads > 0) cfg.Threads = threads;
            cfg.Validate();
            return Train(cli, cfg);
        });
        return cmd;
    }

    /// <summary>The blocks' Linear weights: shape, layout, density and stored values, with the totals over them.</summary>
    static void WriteLayoutTable(IAnsiConsole console, NanoSparse.Nn.Gpt model)
    {
        var rows = NanoSparse.Sparsity.SparseModelConfig.Describe(model);
        var table = new Table().AddColumn("weight").AddColumn("shape").AddColumn("layout")
            .AddColumn(new TableColumn("density").RightAligned()).AddColumn(new TableColumn("stored values").RightAligned());
        var inv = CultureInfo.InvariantCulture;
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Name), $"{r.OutFeatures}x{r.InFeatures}", Markup.Escape(r.Layout),
                r.Density.ToString("F4", inv), r.Stored.ToString("N0", inv));
        long stored = rows.Sum(r => r.Stored), cells = rows.Sum(r => (long)r.OutFeatures * r.InFeatures);
        table.AddRow("[bold]all block weights[/]", "", "", ((double)stored / cells).ToString("F4", inv), stored.ToString("N0", inv));
        console.Write(table);
    }

    static int Train(CliContext cli, TrainConfig cfg)
    {
        var console = cli.Console;
        using var trainer = new Trainer(cfg);
        int start = trainer.Step;
        console.MarkupLine($"[bold]training[/] {trainer.Model.ParameterCount:N0} parameters on {Markup.Escape(cfg.Dataset)} " +
                           $"(vocab {trainer.Meta.VocabSize}), {trainer.TokensPerIteration:N0} tokens/iter, out_dir {Markup.Escape(cfg.OutDir)}" +
                           (start > 0 ? $", resuming at step {start}" : ""));
        if (!trainer.Model.Config.AllWeightsDense) WriteLayoutTable(console, trainer.Model);
        string csv = Path.Combine(cfg.OutDir, TrainingLog.FileName);
        string png = Path.Combine(cfg.OutDir, "loss.png");

        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        TrainSummary summary;
        try
        {
            trainer.Evaluated = e =>
            {
                console.MarkupLine($"step {e.Step}: train loss {e.TrainLoss:F4}, val loss {e.ValLoss:F4}" + (e.Saved ? $" [green](saved checkpoint)[/]" : ""));
                TryPlot(cli, csv, png);
            };
            if (cfg.EvalOnly || cfg.MaxIters <= start)
            {
                summary = trainer.Run(cancel.Token);
            }
            else
            {
                TrainSummary? result = null;
                console.Progress()
                    .AutoClear(false)
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask($"step {start}/{cfg.MaxIters}", maxValue: cfg.MaxIters - start);
                        double smoothMs = 0;
                        trainer.StepCompleted = r =>
                        {
                            smoothMs = smoothMs == 0 ? r.MsPerIter : 0.9 * smoothMs + 0.1 * r.MsPerIter;
                            double tps = trainer.TokensPerIteration / (smoothMs / 1e3);
                            task.Description = string.Create(CultureInfo.InvariantCulture,
                                $"step {r.Step + 1}/{r.MaxIters}  loss {r.Loss:F4}  {smoothMs:F0} ms/iter  {tps:F0} tok/s");
                            task.Value = r.Step + 1 - start;
                        };
                        result = trainer.Run(cancel.Token);
                    });
                summary = result!;
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        TryPlot(cli, csv, png);

        var table = new Table().AddColumn("run").AddColumn(new TableColumn("value").RightAligned());
        table.AddRow("steps", $"{summary.StartStep} → {summary.FinalStep}");
        table.AddRow("final train loss", float.IsNaN(summary.LastLoss) ? "-" : summary.LastLoss.ToString("F4", CultureInfo.InvariantCulture));
        if (summary.LastEval is { } ev)
        {
            table.AddRow("last eval (train / val)", string.Create(CultureInfo.InvariantCulture, $"{ev.TrainLoss:F4} / {ev.ValLoss:F4}"));
        }
        table.AddRow("best val loss", summary.BestValLoss >= 1e9f ? "-" : summary.BestValLoss.ToString("F4", CultureInfo.InvariantCulture));
        table.AddRow("parameters", summary.ParameterCount.ToString("N0", CultureInfo.InvariantCulture));
        table.AddRow("time", TimeSpan.FromSeconds(summary.Seconds).ToString(@"hh\:mm\:ss"));
        table.AddRow("mean ms/iter", summary.MeanMsPerIter.ToString("F1", CultureInfo.InvariantCulture));
        table.AddRow("tokens/s", summary.TokensPerSecond.ToString("F0", CultureInfo.InvariantCulture));
        table.AddRow("out_dir", Markup.Escape(summary.OutDir));
        table.AddRow("log / plot", Markup.Escape($"{csv} / {png}"));
        console.Write(table);
        return 0;
    }

    static void TryPlot(CliContext cli, string csv, string png)
    {
        try
        {
            LossPlot.FromCsv(csv, png);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The plot is a convenience; training goes on without it.
            cli.Err.WriteLine($"warning: could not draw {png}: {e.Message.Split('\n')[0]}");
        }
    }
}
