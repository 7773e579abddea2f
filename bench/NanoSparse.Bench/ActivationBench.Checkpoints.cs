using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Bench;

// `bench activation --checkpoint DIR --models M[@SPEC] ...`: decode rows for trained checkpoints beside the --checkpoint
// one (e.g. its ReLU-fied fine-tune, a gated fine-tune), each optionally with an activation-sparsity spec as eval and
// sample take it (predictor:FILE[:S[:HEADS]], teal:FILE, wina:FILE). Each is loaded at batch 1, held for inference,
// and timed in the same interleaved rounds as the dense --checkpoint row; "vs dense" is against that row.
public static partial class ActivationBench
{
    static Option<string[]> ModelsOption() => new("--models")
    {
        Description = "with --checkpoint: more decode rows, each a checkpoint directory, optionally @SPEC with SPEC as --act-sparsity takes it " +
                      "(predictor:FILE[:S[:HEADS]], teal:FILE, wina:FILE); e.g. relu-medium relu-medium@predictor:p.safetensors::6; a gated checkpoint decodes with its gates",
        DefaultValueFactory = _ => [],
        AllowMultipleArgumentsPerToken = true,
    };

    // One row per --models entry: (directory, spec or null).
    static (string Dir, string? Spec) SplitModel(string entry)
    {
        int at = entry.IndexOf('@');
        return at < 0 ? (entry, null) : (entry[..at], entry[(at + 1)..]);
    }

    static void CheckModels(Options options)
    {
        if (options.Models is not { Length: > 0 } models) return;
        if (options.Checkpoint is null) throw new ArgumentException("--models needs --checkpoint (the dense row the models are compared with)");
        var names = new HashSet<string>();
        foreach (var m in models)
        {
            var (dir, spec) = SplitModel(m);
            if (!Directory.Exists(dir)) throw new ArgumentException($"--models {m}: checkpoint directory {dir} does not exist");
            if (spec is not null && !(spec.StartsWith("predictor:", StringComparison.Ordinal) || spec.StartsWith("teal:", StringComparison.Ordinal)
                                      || spec.StartsWith("wina:", StringComparison.Ordinal)))
                throw new ArgumentException($"--models {m}: '{spec}' after '@' must be predictor:FILE[:S[:HEADS]], teal:FILE or wina:FILE");
            if (spec is not null && spec.StartsWith("predictor:", StringComparison.Ordinal)) PredictorSpec.Parse(spec["predictor:".Length..], $"--models {m}");
            if (!names.Add(ModelRowName(m))) throw new ArgumentException($"--models {m}: given twice");
        }
    }

    static string ModelRowName(string entry)
    {
        var (dir, spec) = SplitModel(entry);
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(dir));
        if (spec is null) return name;
        int colon = spec.IndexOf(':');
        string kind = spec[..colon], rest = spec[(colon + 1)..];
        if (kind != "predictor") return $"{name} + {kind} ({Path.GetFileName(rest)})";
        var p = PredictorSpec.Parse(rest);
        string mlp = !p.UseMlp ? "MLP dense" : p.Sparsity is { } s ? $"MLP {s * 100:0.#}%" : "MLP >0";
        string heads = !p.UseHeads ? "heads dense" : p.KeepHeads is { } k ? $"heads {k}" : "heads >0";
        return $"{name} + {Path.GetFileNameWithoutExtension(p.File)} ({mlp}, {heads})";
    }

    static IEnumerable<ActivationMode> CheckpointModelModes(Options options)
    {
        if (options.Checkpoint is null || options.Models is not { Length: > 0 } models) yield break;
        foreach (var entry in models)
        {
            var (dir, spec) = SplitModel(entry);
            yield return new ActivationMode(ModelRowName(entry), spec is null ? "checkpoint" : spec[..spec.IndexOf(':')], 0, (_, _) =>
            {
                long t0 = Stopwatch.GetTimestamp();
                var model = Checkpoint.LoadAnyModel(dir, 1, 1, out _);
                model.PrepareForInference();
                string note = $"{model.Config.Activation}" + (model.Config.Gate is { } g and not "none" ? $", gates {g}" : "");
                if (spec is not null && spec.StartsWith("predictor:", StringComparison.Ordinal))
                {
                    var (mlp, heads) = PredictorSpec.Parse(spec["predictor:".Length..]).Install(model);
                    note += $"; Deja Vu predictors: {mlp.Length} MLPs, {heads.Length} attention layers";
                }
                else if (spec is not null)
                {
                    int colon = spec.IndexOf(':');
                    var t = ActivationThresholds.Load(spec[(colon + 1)..]);
                    if (t.Method != spec[..colon]) throw new ArgumentException($"--models {entry}: the file holds {t.Method} thresholds, not {spec[..colon]}");
                    model = ActivationSparsity.Apply(model, t, decodeCopies: true, spec[(colon + 1)..]);
                    note += $"; {t.Method} {t.TargetSparsity:P0}";
                }
                return new PreparedMode(model, Stopwatch.GetElapsedTime(t0).TotalSeconds, note);
            });
        }
    }

    // The first `count` tokens of the val split of the dataset a checkpoint was trained on (null when its state names none
    // or the files are missing): with greedy decoding after it, the stream is text-like, so what activation sparsity a
    // trained model reaches while decoding (its gates, a positive-logit predictor) is what it reaches on text.
    static int[]? TextPrompt(string checkpoint, int count, int vocab)
    {
        if (!Checkpoint.Exists(checkpoint)) return null;
        string data = Checkpoint.ReadState(checkpoint).Dataset;
        string metaPath = Path.Combine(data, NanoSparse.Data.DatasetMeta.FileName);
        if (data.Length == 0 || !File.Exists(metaPath)) return null;
        var meta = NanoSparse.Data.DatasetMeta.Load(metaPath);
        using var val = NanoSparse.Data.TokenFile.OpenSplit(data, "val", meta);
        if (val.Length < count) return null;
        var tokens = new int[count];
        val.Read(0, tokens);
        if (tokens.Any(t => t < 0 || t >= vocab)) return null;
        AnsiConsole.MarkupLine(Markup.Escape($"prompt: the first {count} tokens of {data}'s val split, then greedy decoding"));
        return tokens;
    }

    // Bars: decode tokens/s of every row over the dense --checkpoint row, per thread count.
    static void PlotCheckpointRows(List<Row> rows, string prefix)
    {
        var decode = rows.Where(r => r.Part == "decode").ToList();
        if (decode.Count == 0) return;
        var modes = decode.Select(r => r.Mode).Distinct().ToList();
        var threads = decode.Select(r => r.Threads).Distinct().OrderBy(t => t).ToList();
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = new List<ScottPlot.Bar>();
        for (int m = 0; m < modes.Count; m++)
            for (int t = 0; t < threads.Count; t++)
                if (decode.FirstOrDefault(r => r.Mode == modes[m] && r.Threads == threads[t]) is { } r && Speedup(rows, r) is double sp)
                    bars.Add(new ScottPlot.Bar
                    {
                        Position = m * (threads.Count + 1) + t, Value = sp, FillColor = palette.GetColor(t),
                        Label = sp.ToString("F2", CultureInfo.InvariantCulture),
                    });
        var barPlot = plot.Add.Bars(bars);
        barPlot.ValueLabelStyle.FontSize = 11;
        plot.Axes.Bottom.SetTicks(modes.Select((_, m) => m * (threads.Count + 1) + (threads.Count - 1) / 2.0).ToArray(), modes.ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 30;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plot.Axes.Bottom.MinimumSize = 280;
        for (int t = 0; t < threads.Count; t++)
            plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = $"{threads[t]} thread(s)", FillColor = palette.GetColor(t) });
        var one = plot.Add.HorizontalLine(1);
        one.LinePattern = ScottPlot.LinePattern.Dashed;
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.Title($"decode tokens/s over dense: {decode[0].Shape}");
        plot.YLabel("speed-up (1 = dense)");
        string path = $"{prefix}_decode.png";
        plot.SavePng(path, 1200, 760);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}");
    }
}
