using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

public static class InspectCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "checkpoint directory" };
        var preset = new Option<string?>("--preset") { Description = "named config in configs/" };
        var config = new Option<string?>("--config") { Description = "path of a JSON config" };
        var set = new Option<string[]>("--set") { Description = "override a config key (repeatable)", DefaultValueFactory = _ => [] };
        var cmd = new Command("inspect", "show a checkpoint's or config's settings and parameter table");
        foreach (var o in new Option[] { checkpoint, preset, config, set }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            var console = cli.Console;
            string? dir = parse.GetValue(checkpoint);
            TrainConfig? cfg;
            GptConfig model;
            Gpt gpt;
            if (dir is not null)
            {
                if (parse.GetValue(preset) is not null || parse.GetValue(config) is not null)
                    throw new UsageException("give --checkpoint or --preset/--config, not both");
                // Parameters and gradients must fit this machine before the model is built.
                var stored = Checkpoint.ReadAnyConfig(dir);
                GptSize.Check(GptSize.DimsOf(stored, 1, 1), GptUse.Evaluation, GptSize.ModelKeys(stored), $"checkpoint {dir}: ");
                gpt = Checkpoint.LoadAnyModel(dir, 1, 1, out var state);
                cfg = state?.Config;
                model = gpt.Config;
                console.MarkupLine(state is not null
                    ? $"checkpoint [bold]{Markup.Escape(dir)}[/]: step {state.IterNum}, best val loss {state.BestValLoss.ToString("F4", CultureInfo.InvariantCulture)}, dataset {Markup.Escape(state.Dataset)}"
                    : $"checkpoint [bold]{Markup.Escape(dir)}[/]: imported model (no training state)");
            }
            else
            {
                if (parse.GetValue(preset) is null && parse.GetValue(config) is null)
                    throw new UsageException("give --checkpoint DIR, --preset NAME or --config FILE");
                cfg = Presets.Resolve(parse.GetValue(preset), parse.GetValue(config), parse.GetValue(set));
                string metaPath = Path.Combine(cfg.Dataset, "meta.json");
                int vocab = File.Exists(metaPath) ? DatasetMeta.Load(metaPath).VocabSize : new GptConfig().VocabSize;
                model = new GptConfig
                {
                    NLayer = cfg.NLayer, NHead = cfg.NHead, NEmbd = cfg.NEmbd, BlockSize = cfg.BlockSize,
                    VocabSize = vocab, Bias = cfg.Bias, Dropout = cfg.Dropout,
                };
                model = cfg.ApplyMoe(cfg.ApplyAttention(model));
                try
                {
                    model.Validate();
                    GptSize.Check(GptSize.DimsOf(model, 1, 1), GptUse.Evaluation, GptSize.ModelKeys(model));
                }
                catch (ArgumentException e) { throw new UsageException("config: " + e.Message); }
                gpt = new Gpt(model, 1, 1);
                console.MarkupLine($"config: vocab_size {vocab} {(File.Exists(metaPath) ? "from " + Markup.Escape(metaPath) : "(default; dataset not prepared)")}");
            }

            var settings = new Table().Title("config").AddColumn("key").AddColumn("value");
            var m = ModelArgs.From(model);
            var entries = cfg is not null
                ? new[] { ("vocab_size", m.VocabSize.ToString(CultureInfo.InvariantCulture)) }.Concat(cfg.Entries())
                : new[]
                {
                    ("n_layer", m.NLayer.ToString(CultureInfo.InvariantCulture)), ("n_head", m.NHead.ToString(CultureInfo.InvariantCulture)),
                    ("n_embd", m.NEmbd.ToString(CultureInfo.InvariantCulture)), ("block_size", m.BlockSize.ToString(CultureInfo.InvariantCulture)),
                    ("vocab_size", m.VocabSize.ToString(CultureInfo.InvariantCulture)), ("bias", m.Bias ? "true" : "false"), ("activation", m.Activation),
                };
            // A structurally pruned model's per-layer widths (model_args) beside the run's uniform n_head.
            if (m.NHeadPerLayer is not null) entries = entries.Append(("n_head_per_layer", string.Join(", ", m.NHeadPerLayer)));
            if (m.MlpHiddenPerLayer is not null) entries = entries.Append(("mlp_hidden_per_layer", string.Join(", ", m.MlpHiddenPerLayer)));
            entries = entries.Append(("attention pattern", NanoSparse.Nn.Parts.AttentionPatterns.AttentionPatternRegistry.Pattern(model).Describe()));
            if (NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Enabled(model))
                entries = entries.Append(("mixture of experts", NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Describe(model)));
            foreach (var (k, v) in entries) settings.AddRow(k, Markup.Escape(v));
            console.Write(settings);

            var table = new Table().Title("parameters").AddColumn("name").AddColumn("shape").AddColumn(new TableColumn("count").RightAligned()).AddColumn("decay");
            long total = 0;
            foreach (var p in gpt.Parameters)
            {
                total += p.Length;
                table.AddRow(p.Name, "(" + string.Join(", ", p.Shape) + ")", p.Length.ToString("N0", CultureInfo.InvariantCulture), p.Decay ? "yes" : "no");
            }
            table.AddRow("[bold]total[/]", "", $"[bold]{gpt.ParameterCount.ToString("N0", CultureInfo.InvariantCulture)}[/]", "");
            if (NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Enabled(model))
            {
                var (active, all) = NanoSparse.Nn.Parts.FeedForwards.MoeLosses.ParameterCounts(gpt);
                table.AddRow("[bold]active per token[/]", "", $"[bold]{active.ToString("N0", CultureInfo.InvariantCulture)}[/]", "");
                console.MarkupLine($"mixture of experts: {NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Experts(model)} experts in blocks {NanoSparse.Nn.Parts.FeedForwards.MoeSettings.Layers(model)}; active parameters {active.ToString("N0", CultureInfo.InvariantCulture)} of {all.ToString("N0", CultureInfo.InvariantCulture)} total");
            }
            console.Write(table);

            // Per Linear weight: layout, density, bytes in the file and in memory (values + the index arrays held).
            var rows = new List<(SparsifiedWeight, long?)>();
            string? modelPath = dir is null ? null : Path.Combine(dir, Checkpoint.ModelFile);
            using (var file = modelPath is not null && File.Exists(modelPath) ? NanoSparse.IO.SafeTensorsFile.Open(modelPath) : null)
                foreach (var p in gpt.Parameters)
                    if (p.Layout is not null)
                        rows.Add((Sparsify.Describe(p.Name, p.Layout), file is null ? null : NanoSparse.IO.SparseWeightFiles.BytesOnDisk(file, p.Name)));
            WriteWeights(console, rows, "Linear weights");
            return 0;
        });
        return cmd;
    }

    /// <summary>The per-weight table (layout, density, bytes on disk and in memory) and its totals against dense.</summary>
    internal static void WriteWeights(IAnsiConsole console, IReadOnlyList<(SparsifiedWeight Weight, long? DiskBytes)> rows, string title)
    {
        var table = new Table().Title(Markup.Escape(title)).AddColumn("weight").AddColumn("layout")
            .AddColumn(new TableColumn("density").RightAligned()).AddColumn(new TableColumn("bytes on disk").RightAligned())
            .AddColumn(new TableColumn("bytes in memory").RightAligned()).AddColumn(new TableColumn("dense bytes").RightAligned());
        long disk = 0, memory = 0, dense = 0;
        foreach (var (w, d) in rows)
        {
            long onDisk = d ?? w.FileBytes;
            disk += onDisk;
            memory += w.MemoryBytes;
            dense += w.DenseBytes;
            table.AddRow(Markup.Escape(w.Name), w.Layout, w.Density.ToString("F4", CultureInfo.InvariantCulture),
                onDisk.ToString("N0", CultureInfo.InvariantCulture), w.MemoryBytes.ToString("N0", CultureInfo.InvariantCulture),
                w.DenseBytes.ToString("N0", CultureInfo.InvariantCulture));
        }
        string Ratio(long x) => dense == 0 ? "" : $" ({((double)x / dense).ToString("F3", CultureInfo.InvariantCulture)}x)";
        table.AddRow("[bold]total[/]", "", "", $"[bold]{disk.ToString("N0", CultureInfo.InvariantCulture)}{Ratio(disk)}[/]",
            $"[bold]{memory.ToString("N0", CultureInfo.InvariantCulture)}{Ratio(memory)}[/]", $"[bold]{dense.ToString("N0", CultureInfo.InvariantCulture)}[/]");
        console.Write(table);
    }
}
