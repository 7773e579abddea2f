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
        var cmd = new Command("train", "train a GPT on a prepared dataset\n\n" + PruningHelp + "\n\n" + DstHelp + "\n\n" + SrSteSuparHelp + "\n\n" + ActivationHelp);
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

    /// <summary>The pruning-while-training keys, for train --help.</summary>
    public const string PruningHelp =
        "Pruning while training (--set key=value; the blocks' Linear weights; embeddings and LayerNorms are never pruned):\n" +
        "  prune_schedule=none|gmp         gmp: gradual magnitude pruning, Zhu & Gupta's cubic schedule\n" +
        "                                  s_t = s_f + (s_i - s_f)(1 - (t - start)/(end - start))^3\n" +
        "  prune_initial_sparsity=0        s_i, reached at prune_start\n" +
        "  prune_final_sparsity=0.9        s_f, reached at prune_end\n" +
        "  prune_start=0  prune_end=-1     steps (-1: three quarters of max_iters)\n" +
        "  prune_frequency=100             steps between pruning steps\n" +
        "  prune_scope=layer|global        each weight to s_t, or one magnitude threshold over all\n" +
        "  prune_switch_sparsity=0.7       from this sparsity the weights move to CSR and train on the sparse kernels (1: never)\n" +
        "  l1=0  l2=0                      L1 / elastic-net penalty by its proximal step after AdamW:\n" +
        "                                  w <- sign(w) max(|w| - lr l1, 0) / (1 + lr l2)\n" +
        "log.csv's sparsity column is the exact-zero fraction of those weights.";

    /// <summary>The dynamic-sparse-training keys, for train --help.</summary>
    public const string DstHelp =
        "Dynamic sparse training (--set key=value; with sparsity > 0 and sparse_format csr; sparsity_distribution uniform|er|erk\n" +
        "sets each weight's density, which every update keeps exactly):\n" +
        "  dst=static|set|rigl|srigl       static: the random layout drawn at the start; set: drop smallest |w|, regrow at random;\n" +
        "                                  rigl: regrow where |dL/dW| is largest among all positions not kept, just-dropped\n" +
        "                                  ones included (they keep value and moments); dense gradient on update steps only;\n" +
        "                                  srigl: rigl with constant fan-in per output neuron and neuron ablation\n" +
        "  dst_interval=100                steps between topology updates (ΔT)\n" +
        "  dst_drop_fraction=0.3           fraction dropped and regrown, cosine-annealed: f(t) = α/2 (1 + cos(π t / dst_stop))\n" +
        "  dst_stop=-1                     no updates from this step (-1: three quarters of max_iters)\n" +
        "  dst_ablation=0.3                srigl: ablate a neuron with fewer than this × fan-in salient weights (0: never)\n" +
        "  dst_split_qkv=false             true: c_attn's Q, K and V row slices are three layers (as separate q/k/v projections):\n" +
        "                                  each gets its own er/erk density and exact stored count, dropped and regrown on its own\n" +
        "The run folder gets dst.csv (one row per update: changed fraction, in-time over-parameterisation rate), dst-density.png\n" +
        "(per-weight density and share of positions ever active) and dst-changes.png (fraction changed at each update).";
    /// <summary>The activation and activation-sparsity keys (ReLU-fication), for train --help.</summary>
    public const string ActivationHelp =
        "MLP activation and activation sparsity (ReLU-fication, ProSparse-style L1):\n" +
        "  activation=                     gelu|gelu_tanh|relu|relu2|fatrelu; empty: gelu from scratch, else the checkpoint's\n" +
        "                                  (set it with init_from=DIR to swap a trained model's activation: shapes and weights stay)\n" +
        "  fatrelu_threshold=0             fatrelu: a = x if x > t else 0\n" +
        "  init_from=scratch|resume|DIR    DIR: a checkpoint folder; a new run (step 0, fresh AdamW moments) from its weights\n" +
        "  act_l1=0                        lambda of the penalty lambda * sum over layers of mean |a| (MLP hidden activations)\n" +
        "  act_l1_warmup=0                 steps over which lambda ramps linearly from the run's first step (0: full at once)\n" +
        "log.csv's act_sparsity column is the exact-zero fraction of the MLP hidden activations in the logged batch.";

    /// <summary>The SR-STE and SμPar keys, for train --help.</summary>
    public const string SrSteSuparHelp =
        "N:M training from scratch with SR-STE (Zhou et al. 2021):\n" +
        "  srste=false|true  nm=2:4        dense weights W are trained; every forward pass runs on their N:M projection\n" +
        "                                  (the N largest |w| of each M consecutive inputs, recomputed every step)\n" +
        "  srste_lambda=2e-4               sparse-refined term: grad = dL/dW~ + lambda (pruned mask * W)\n" +
        "                                  checkpoints hold the N:M model (eval/sample/prune run it on the N:M kernels)\n" +
        "SmuPar, sparse maximal update parameterisation (hidden = the blocks' Linear weights):\n" +
        "  supar=false|true                hidden init variance and AdamW rate x 1/(m_d m_rho); logits x 1/m_d\n" +
        "  supar_base_width=0              m_d = n_embd / supar_base_width (0: this n_embd, m_d = 1)\n" +
        "  supar_base_density=1            m_rho = weight density / supar_base_density (density: sparsity, nm or srste's N/M)";

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

        // mixture of experts: per-step expert load and dropped tokens (moe_load.csv), drawn as PNGs at each eval and at the end
        using var moeLog = NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Enabled(trainer.Model.Config) && !cfg.EvalOnly
            ? new MoeLoadLog(cfg.OutDir, trainer.Model, start) : null;
        if (moeLog is not null) console.MarkupLine($"mixture of experts: {Markup.Escape(NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Describe(trainer.Model.Config))}");
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        TrainSummary summary;
        try
        {
            if (trainer.Dst is { } dynamic)
                dynamic.Updated = u => console.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {u.Step}: dst {cfg.Dst} update, drop fraction {u.DropFraction:F3}, changed {u.ChangedFraction:P2}, ITOP rate {u.ItopRate:P2} ({u.Milliseconds:F0} ms)"));
            trainer.Evaluated = e =>
            {
                console.MarkupLine($"step {e.Step}: train loss {e.TrainLoss:F4}, val loss {e.ValLoss:F4}" + (e.Saved ? $" [green](saved checkpoint)[/]" : ""));
                TryPlot(cli, csv, png);
                if (moeLog is not null) MoePlots.Write(cli, null, cfg.OutDir);
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
                            moeLog?.Record(r.Step, trainer.Model);
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
        if (!double.IsNaN(trainer.LastActivationSparsity))
            table.AddRow("MLP activation sparsity", trainer.LastActivationSparsity.ToString("P2", CultureInfo.InvariantCulture) + " exact zeros (last logged batch)");
        table.AddRow("parameters", summary.ParameterCount.ToString("N0", CultureInfo.InvariantCulture));
        table.AddRow("time", TimeSpan.FromSeconds(summary.Seconds).ToString(@"hh\:mm\:ss"));
        table.AddRow("mean ms/iter", summary.MeanMsPerIter.ToString("F1", CultureInfo.InvariantCulture));
        table.AddRow("median ms/iter", summary.MedianMsPerIter.ToString("F1", CultureInfo.InvariantCulture));
        table.AddRow("tokens/s", summary.TokensPerSecond.ToString("F0", CultureInfo.InvariantCulture));
        if (summary.SwitchStep is int switchStep) table.AddRow("switch to sparse layout", $"step {switchStep}");
        if (summary.DenseMsPerIter is double denseMs) table.AddRow("ms/iter dense (masked)", denseMs.ToString("F1", CultureInfo.InvariantCulture));
        if (summary.SparseMsPerIter is double sparseMs) table.AddRow("ms/iter sparse (csr)", sparseMs.ToString("F1", CultureInfo.InvariantCulture));
        if (summary.DenseCpuMsPerIter is double denseCpu) table.AddRow("CPU ms/iter dense (masked)", denseCpu.ToString("F1", CultureInfo.InvariantCulture));
        if (summary.SparseCpuMsPerIter is double sparseCpu) table.AddRow("CPU ms/iter sparse (csr)", sparseCpu.ToString("F1", CultureInfo.InvariantCulture));
        if (summary.DstItopRate is double itop)
            table.AddRow($"dst {Markup.Escape(cfg.Dst)}: updates / mean ms / ITOP rate", string.Create(CultureInfo.InvariantCulture,
                $"{summary.DstUpdates} / {summary.DstUpdateMs ?? 0:F1} / {itop:P2}"));
        table.AddRow("out_dir", Markup.Escape(summary.OutDir));
        table.AddRow("log / plot", Markup.Escape($"{csv} / {png}"));
        console.Write(table);
        if (summary.WeightZeros is { Count: > 0 } zeros) WriteZerosTable(console, zeros);
        if (trainer.Dst is { } dst) DstPlots.Write(cli, console, dst, cfg.OutDir);
        if (moeLog is not null) MoePlots.Write(cli, console, cfg.OutDir);
        return 0;
    }

    /// <summary>Pruning or L1: the exact-zero fraction each block Linear weight reached.</summary>
    static void WriteZerosTable(IAnsiConsole console, IReadOnlyList<(string Name, double ZeroFraction)> zeros)
    {
        var table = new Table().AddColumn("weight").AddColumn(new TableColumn("exact zeros").RightAligned());
        foreach (var (name, fraction) in zeros) table.AddRow(Markup.Escape(name), fraction.ToString("P2", CultureInfo.InvariantCulture));
        console.Write(table);
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
