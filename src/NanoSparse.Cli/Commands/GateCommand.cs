using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse gate`: adds a per-input controller (gates over attention heads and MLP neuron groups) to a trained
/// checkpoint, fine-tunes it (Sparsity.Activation.ControllerTraining), and reports val loss, the fraction of units kept
/// and batch-1 decode tokens/s against the dense model (interleaved rounds, CPU time). A checkpoint that already has a
/// controller is only measured (--dense gives the baseline then).
/// </summary>
public static class GateCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "trained checkpoint to read (never modified)", Required = true };
        var data = new Option<string>("--data") { Description = "dataset directory (train.bin, val.bin, meta.json)", Required = true };
        var output = new Option<string?>("--out") { Description = "checkpoint directory to write the gated model to (replaced as a whole)" };
        var dense = new Option<string?>("--dense") { Description = "dense baseline checkpoint when --checkpoint already has a controller" };
        var set = new Option<string[]>("--set") { Description = "controller key: --set key=value (repeatable): " + string.Join(", ", ControllerConfig.Keys), DefaultValueFactory = _ => [] };
        var prompt = new Option<int>("--prompt") { Description = "decode timing: prompt tokens (from val.bin)", DefaultValueFactory = _ => 64 };
        var tokens = new Option<int>("--decode-tokens") { Description = "decode timing: tokens decoded one at a time per round (0: no timing)", DefaultValueFactory = _ => 128 };
        var rounds = new Option<int>("--rounds") { Description = "decode timing: interleaved rounds (median)", DefaultValueFactory = _ => 5 };
        var cmd = new Command("gate", "per-input controller: gate attention heads and MLP neuron groups per token, fine-tune, measure val loss and decode speed");
        foreach (var o in new Option[] { checkpoint, data, output, dense, set, prompt, tokens, rounds }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            var c = new ControllerConfig();
            foreach (var kv in parse.GetValue(set)!)
            {
                int eq = kv.IndexOf('=');
                if (eq <= 0) throw new UsageException($"--set \"{kv}\" must be key=value");
                try { c.Set(kv[..eq].Trim(), kv[(eq + 1)..].Trim()); }
                catch (ArgumentException e) { throw new UsageException("--set " + e.Message); }
            }
            try { c.Validate(); }
            catch (ArgumentException e) { throw new UsageException("--set " + e.Message); }
            return Run(cli, c, parse.GetValue(checkpoint)!, parse.GetValue(data)!, parse.GetValue(output), parse.GetValue(dense),
                parse.GetValue(prompt), parse.GetValue(tokens), parse.GetValue(rounds));
        });
        return cmd;
    }

    static int Run(CliContext cli, ControllerConfig c, string checkpointDir, string dataDir, string? outDir, string? denseDir,
        int prompt, int decodeTokens, int rounds)
    {
        var inv = CultureInfo.InvariantCulture;
        var console = cli.Console;
        if (outDir is not null && Path.GetFullPath(outDir).TrimEnd('/') == Path.GetFullPath(checkpointDir).TrimEnd('/'))
            throw new UsageException($"--out ({outDir}) must differ from --checkpoint: the input checkpoint is never modified");
        if (decodeTokens < 0 || rounds <= 0 || prompt <= 0)
            throw new UsageException($"--decode-tokens ({decodeTokens}) must be >= 0, --rounds ({rounds}) and --prompt ({prompt}) positive");
        var config = Checkpoint.ReadAnyConfig(checkpointDir);
        if (config.Gate is null or "none")   // the controller's keys against the model's shape, before anything is read
        {
            try { ControllerTraining.GatedConfig(config, c).Validate(); }
            catch (ArgumentException e) { throw new UsageException("--set " + e.Message); }
        }
        string metaPath = Path.Combine(dataDir, DatasetMeta.FileName);
        var meta = DatasetMeta.Load(metaPath);
        int T = c.BlockSize == 0 ? config.BlockSize : c.BlockSize;
        if (T > config.BlockSize) throw new UsageException($"--set block_size ({T}) exceeds the checkpoint's block_size ({config.BlockSize})");
        if (config.VocabSize != meta.VocabSize)
            throw new UsageException($"checkpoint {checkpointDir} has vocab_size {config.VocabSize} but {metaPath} has {meta.VocabSize}");
        using var train = TokenFile.OpenSplit(dataDir, "train", meta);
        using var val = TokenFile.OpenSplit(dataDir, "val", meta);

        bool alreadyGated = config.Gate is not (null or "none");
        if (!alreadyGated && outDir is null) throw new UsageException("--out is required: the fine-tuned gated model is written there");
        Gpt? denseModel = null;
        Gpt gated;
        List<ControllerStep> steps = [];
        if (alreadyGated)
        {
            gated = Checkpoint.LoadAnyModel(checkpointDir, c.BatchSize, T, out _);
            if (denseDir is not null) denseModel = Checkpoint.LoadAnyModel(denseDir, c.BatchSize, T, out _);
            ControllerTraining.SetState(gated, c.GateTemperatureMin, true, 0, 1);
        }
        else
        {
            denseModel = Checkpoint.LoadAnyModel(checkpointDir, c.BatchSize, T, out _);
            if (denseModel.Config.Gate is not (null or "none")) throw new UsageException("unreachable");
            try { gated = ControllerTraining.AddController(denseModel, c, c.BatchSize, T); }
            catch (ArgumentException e) { throw new UsageException("--set " + e.Message); }
            console.MarkupLine(Markup.Escape(string.Create(inv,
                $"controller: gate {c.Gate}, group {c.GateGroup}, budget {c.GateBudget}{(c.GateBudgetWarmup > 0 ? $" (from 1 over {c.GateBudgetWarmup} iterations)" : "")}, l1 {c.GateL1}, {c.MaxIters} iterations (soft for {c.ResolvedAnnealIters}, then hard), batch {c.BatchSize}x{T}, model {(c.Freeze ? "frozen" : "fine-tuned")}")));
            steps = ControllerTraining.Train(gated, train, c, s =>
            {
                if ((s.Iter + 1) % c.LogInterval != 0 && s.Iter + 1 != s.MaxIters) return;
                double eta = s.SecondsPerIter * (s.MaxIters - s.Iter - 1);
                console.MarkupLine(Markup.Escape(string.Create(inv,
                    $"iter {s.Iter + 1}/{s.MaxIters}  loss {s.Loss:F4}  kept {s.KeptSoft:F3} soft / {s.KeptHard:F3} hard  tau {s.Temperature:F3}{(s.Hard ? " (hard)" : "")}  lr {s.LearningRate:E2}  {s.SecondsPerIter:F2} s/iter  ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}")));
            });
        }

        console.MarkupLine("evaluating on val ...");
        var (gatedLoss, kept) = ControllerTraining.Evaluate(gated, val, c.EvalIters, c.Seed);
        float? denseLoss = denseModel is null ? null : ControllerTraining.Evaluate(denseModel, val, c.EvalIters, c.Seed).Loss;

        DecodeSpeed[]? speeds = null;
        if (decodeTokens > 0)
        {
            // the gated model with every gate forced open is the control: the same decode path, nothing skipped
            var open = CloneOpen(gated);
            var models = denseModel is null ? new[] { open, gated } : new[] { denseModel, open, gated };
            speeds = ControllerDecodeSpeed.Measure(models, val, prompt, decodeTokens, rounds, c.Seed,
                (r, n) => console.MarkupLine($"decode timing: round {r}/{n}"));
        }

        var table = new Table().AddColumn("model").AddColumn(new TableColumn("val loss").RightAligned())
            .AddColumn(new TableColumn("kept heads / mlp / all").RightAligned())
            .AddColumn(new TableColumn("decode tok/s (CPU)").RightAligned()).AddColumn(new TableColumn("decode tok/s (wall)").RightAligned())
            .AddColumn(new TableColumn("kept at decode").RightAligned());
        if (denseModel is not null)
            table.AddRow("dense", denseLoss!.Value.ToString("F4", inv), "1 / 1 / 1", speeds is null ? "-" : speeds[0].CpuTokensPerSecond.ToString("F1", inv),
                speeds is null ? "-" : speeds[0].WallTokensPerSecond.ToString("F1", inv), "1");
        var gs = speeds?[^1];
        if (speeds is not null)
        {
            var os = speeds[^2];
            table.AddRow("gates forced open (control)", "-", "1 / 1 / 1",
                os.CpuTokensPerSecond.ToString("F1", inv) + (denseModel is null ? "" : string.Create(inv, $" ({os.CpuTokensPerSecond / speeds[0].CpuTokensPerSecond:F2}x)")),
                os.WallTokensPerSecond.ToString("F1", inv), "1");
        }
        table.AddRow(Markup.Escape($"gate {gated.Config.Gate}"), gatedLoss.ToString("F4", inv), string.Create(inv, $"{kept.Heads:F3} / {kept.Mlp:F3} / {kept.Overall:F3}"),
            gs is null ? "-" : gs.CpuTokensPerSecond.ToString("F1", inv) + (speeds!.Length > 1 ? string.Create(inv, $" ({gs.CpuTokensPerSecond / speeds[0].CpuTokensPerSecond:F2}x)") : ""),
            gs is null ? "-" : gs.WallTokensPerSecond.ToString("F1", inv), gs is null ? "-" : string.Create(inv, $"{gs.Kept.Heads:F3} / {gs.Kept.Mlp:F3} / {gs.Kept.Overall:F3}"));
        console.Write(table);

        if (!alreadyGated)
        {
            var report = new Dictionary<string, object?>
            {
                ["controller"] = c,
                ["source_checkpoint"] = Path.GetFullPath(checkpointDir),
                ["val_loss_dense"] = denseLoss,
                ["val_loss_gated"] = gatedLoss,
                ["kept_heads"] = kept.Heads, ["kept_mlp"] = kept.Mlp, ["kept_overall"] = kept.Overall,
                ["decode_cpu_tokens_per_second_dense"] = speeds?[0].CpuTokensPerSecond,
                ["decode_cpu_tokens_per_second_gated"] = gs?.CpuTokensPerSecond,
                ["decode_cpu_tokens_per_second_gates_open"] = speeds?[^2].CpuTokensPerSecond,
                ["decode_kept_overall"] = gs?.Kept.Overall,
            };
            var csv = new StringBuilder("iter,loss,kept_soft,kept_hard,temperature,hard,lr\n");
            foreach (var s in steps)
                csv.Append(string.Create(inv, $"{s.Iter},{s.Loss},{s.KeptSoft},{s.KeptHard},{s.Temperature},{(s.Hard ? 1 : 0)},{s.LearningRate}\n"));
            var extras = new Dictionary<string, byte[]>
            {
                ["controller.json"] = JsonSerializer.SerializeToUtf8Bytes(report, new JsonSerializerOptions { WriteIndented = true }),
                ["controller.csv"] = Encoding.UTF8.GetBytes(csv.ToString()),
            };
            var png = ControllerPlot(steps, c);
            if (png is not null) extras["controller.png"] = png;
            Checkpoint.SaveModel(outDir!, gated, metaPath, extras);
            console.MarkupLine(Markup.Escape($"gated model written to {outDir} (controller.json, controller.csv{(png is null ? "" : ", controller.png")})"));
        }
        return 0;
    }

    // A batch-1 copy of the gated model whose gates keep every unit at decode.
    static Gpt CloneOpen(Gpt gated)
    {
        var copy = new Gpt(gated.Config, 1, 1);
        gated.ParameterData.CopyTo(copy.ParameterData);
        foreach (var (_, _, g) in ControllerTraining.Gates(copy)) g.State.AllOpen = true;
        return copy;
    }

    // Fraction kept (soft and hard) and the budget over the fine-tune, the LM loss on the right axis.
    static byte[]? ControllerPlot(List<ControllerStep> steps, ControllerConfig c)
    {
        if (steps.Count == 0) return null;
        var plot = new ScottPlot.Plot();
        double[] x = steps.Select(s => (double)s.Iter).ToArray();
        var soft = plot.Add.ScatterLine(x, steps.Select(s => s.KeptSoft).ToArray());
        soft.LegendText = "kept (soft, sigmoid(z/τ))";
        var hard = plot.Add.ScatterLine(x, steps.Select(s => s.KeptHard).ToArray());
        hard.LegendText = "kept (hard, z > 0)";
        var budget = plot.Add.HorizontalLine(c.GateBudget);
        budget.LegendText = "gate_budget";
        budget.LinePattern = ScottPlot.LinePattern.Dashed;
        var loss = plot.Add.ScatterLine(x, steps.Select(s => (double)s.Loss).ToArray());
        loss.LegendText = "train loss (right axis)";
        loss.Axes.YAxis = plot.Axes.Right;
        loss.Color = ScottPlot.Colors.Gray.WithAlpha(0.6);
        var anneal = plot.Add.VerticalLine(c.ResolvedAnnealIters);
        anneal.LegendText = "hard gates from here";
        anneal.LinePattern = ScottPlot.LinePattern.Dotted;
        plot.Title("per-input controller: fraction of units kept");
        plot.XLabel("iteration");
        plot.YLabel("fraction of heads / MLP groups kept");
        plot.Axes.Right.Label.Text = "cross-entropy loss";
        plot.ShowLegend(ScottPlot.Alignment.LowerLeft);
        return plot.GetImageBytes(900, 550, ScottPlot.ImageFormat.Png);
    }
}
