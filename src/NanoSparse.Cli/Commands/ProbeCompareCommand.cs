using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse probe-compare`: several checkpoints on the same retrieval probe (<see cref="RetrievalAccuracy"/>): the
/// same windows of the same val text, the same records and distances for every model, full forward pass; one table
/// (a row per distance, exact and per-digit accuracy per model), a PNG of exact accuracy against distance with a line
/// per model, and optionally a CSV. This is how attention patterns are compared on long-range recall.
/// </summary>
public static class ProbeCompareCommand
{
    const string DefaultTitle = "retrieval probe: exact accuracy against distance";

    public static Command Create(CliContext cli)
    {
        var checkpoints = new Argument<string[]>("checkpoints")
        {
            Description = "checkpoint folders, each optionally LABEL=DIR to name it in the table and plot",
            Arity = ArgumentArity.OneOrMore,
        };
        var data = new Option<string>("--data") { Description = "char-level dataset whose val split's text fills the windows (e.g. data/brown)", Required = true };
        var distances = new Option<int[]>("--distances")
        {
            Description = "distances in tokens between a record and its query (default: 8 up to the largest the block allows, doubling); --probe copy: lower edges of distance bins (default 1, 2, 4, ... below the block)",
            AllowMultipleArgumentsPerToken = true,
        };
        var samples = new Option<int>("--probe-samples") { Description = "samples per distance (--probe copy: windows of the val stream)", DefaultValueFactory = _ => 64 };
        var distractors = new Option<int>("--distractors") { Description = "records with other keys per sample", DefaultValueFactory = _ => 4 };
        var batchSize = new Option<int>("--batch-size") { Description = "windows per forward pass", DefaultValueFactory = _ => 8 };
        var blockSize = new Option<int?>("--block-size") { Description = "tokens per window (default: each model's block_size; a model trained on shorter sequences than its block, e.g. the first stage of a curriculum, is measured at the length it was trained on)" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the windows and records", DefaultValueFactory = _ => 1337UL };
        var output = new Option<string>("--out") { Description = "PNG to write (its folder is created)", Required = true };
        var csv = new Option<string?>("--csv") { Description = "also write the points as CSV (label, distance, samples, accuracy, digit_accuracy)" };
        var keyLength = ProbeFormatOptions.KeyLength();
        var valueLength = ProbeFormatOptions.ValueLength();
        var probeKind = new Option<string>("--probe")
        {
            Description = "retrieval (\"&KEY:VALUE\" written into --data's text, the default) recall (associative recall; --data is a dataset written by recall-data) or copy (copying probe; --data written by copy-data, --distances are bin edges, --probe-samples windows of its val stream)",
            DefaultValueFactory = _ => ProbeFormatOptions.Retrieval,
        };
        probeKind.AcceptOnlyFromAmong(ProbeFormatOptions.Retrieval, ProbeFormatOptions.Recall, ProbeFormatOptions.Copy);
        var title = new Option<string>("--title") { Description = "plot title", DefaultValueFactory = _ => DefaultTitle };
        var cmd = new Command("probe-compare", "several checkpoints on the same key-value retrieval or associative-recall probe: accuracy against distance, a table, a PNG (and CSV)");
        cmd.Arguments.Add(checkpoints);
        foreach (var o in new Option[] { data, distances, samples, distractors, batchSize, blockSize, seed, output, csv, title, keyLength, valueLength, probeKind }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            var named = parse.GetValue(checkpoints)!.Select(ParseLabel).ToList();
            if (named.Select(r => r.Label).Distinct().Count() != named.Count)
                throw new UsageException($"two checkpoints have the same label ({string.Join(", ", named.Select(r => r.Label))}); name them with LABEL=DIR");
            string png = parse.GetValue(output)!, dataDir = parse.GetValue(data)!;
            if (!png.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) throw new UsageException($"--out '{png}' must name a .png file");
            if (parse.GetValue(csv) is { } c && !c.EndsWith(".csv", StringComparison.OrdinalIgnoreCase)) throw new UsageException($"--csv '{c}' must name a .csv file");
            int n = parse.GetValue(samples), k = parse.GetValue(distractors), b = parse.GetValue(batchSize);
            if (n < 1) throw new UsageException($"--probe-samples ({n}) must be at least 1");
            if (k < 0) throw new UsageException($"--distractors ({k}) must be >= 0");
            if (b < 1) throw new UsageException($"--batch-size ({b}) must be at least 1");
            int? window = parse.GetValue(blockSize);
            if (window is < 1) throw new UsageException($"--block-size ({window}) must be at least 1");
            foreach (var (label, dir) in named)
                if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} ({label}) does not exist");
            var meta = DatasetMeta.Load(Path.Combine(dataDir, DatasetMeta.FileName));
            string kind = parse.GetValue(probeKind)!;
            bool copy = kind == ProbeFormatOptions.Copy;
            var copyTask = copy ? ProbeFormatOptions.CreateCopy(meta, dataDir) : null;
            var probe = copy ? null : ProbeFormatOptions.CreateTask(kind, parse, keyLength, valueLength, meta, dataDir);
            using var val = TokenFile.OpenSplit(dataDir, "val", meta, fullScan: true);

            var results = new List<(string Label, RetrievalPoint[] Points)>();
            int[]? shared = null;
            int seqLen = 0;
            foreach (var (label, dir) in named)
            {
                var gpt = Checkpoint.LoadAnyModel(dir, b, window ?? int.MaxValue, out _);
                if (window is { } w && w > gpt.SeqLen)
                    throw new UsageException($"--block-size ({w}) exceeds the block_size of {label} ({gpt.SeqLen})");
                gpt.PrepareForInference();
                if (gpt.Config.VocabSize != meta.VocabSize)
                    throw new InvalidDataException($"dataset {dataDir} has vocab_size {meta.VocabSize} but checkpoint {dir} has {gpt.Config.VocabSize}");
                if (val.Length <= gpt.SeqLen)
                    throw new UsageException($"dataset {dataDir}: the val split holds only {val.Length} tokens, too few for block {gpt.SeqLen}");
                int max = copy ? CopyAccuracy.MaxDistance(gpt.SeqLen) : probe!.MaxDistance(gpt.SeqLen);
                var ds = copy ? KvEvalOptions.CopyEdges(parse.GetValue(distances), gpt.SeqLen)
                    : parse.GetValue(distances) is { Length: > 0 } given ? given : DefaultDistances(max);
                foreach (int d in ds)
                    if (d < 0 || d > max) throw new UsageException($"--distances: {d} must lie in [0, {max}] for {label} (block {gpt.SeqLen} minus the record, the query and the answer)");
                if (copy && shared is not null && seqLen != gpt.SeqLen)
                    throw new UsageException($"{label} has block {gpt.SeqLen} and the first checkpoint {seqLen}: the copy probe measures every model on the same windows; give --block-size");
                seqLen = gpt.SeqLen;
                // one table: every model on the same distances
                if (shared is not null && !shared.SequenceEqual(ds))
                    throw new UsageException($"{label} has block {gpt.SeqLen}, so its default distances differ from the first checkpoint's; give --distances");
                shared = ds;
                RetrievalPoint[] points = [];
                if (copy)
                    KvEvalOptions.Progress(cli, $"{label}: copy probe", report =>
                        points = CopyAccuracy.Measure(gpt, copyTask!, val, ds, n, report), "windows");
                else
                    KvEvalOptions.Progress(cli, $"{label}: {kind} probe", report =>
                        points = RetrievalAccuracy.Measure(gpt, probe!, val, ds, n, k, parse.GetValue(seed), null, report), "samples");
                results.Add((label, points));
            }

            var inv = CultureInfo.InvariantCulture;
            if (copy)
            {
                WriteCopyResults(cli, results, shared!, seqLen, n, dataDir, copyTask!, png, parse.GetValue(title)!, parse.GetValue(csv));
                return 0;
            }
            var task = probe!;   // every probe but copy has a task (made above)
            var table = new Table().AddColumn(new TableColumn("distance").RightAligned());
            foreach (var (label, _) in results) table.AddColumn(new TableColumn(Markup.Escape(label)).RightAligned());
            for (int i = 0; i < shared!.Length; i++)
                table.AddRow([shared[i].ToString(inv), .. results.Select(r => $"{r.Points[i].Accuracy.ToString("P1", inv)} ({r.Points[i].DigitAccuracy.ToString("P0", inv)})")]);
            string filler = task is AssociativeRecall ? $"the val stream of {dataDir} (its own pairs are the distractors)" : $"{k} distractors, text of {dataDir}";
            cli.Console.MarkupLine(Markup.Escape($"{kind} probe: {n} samples per distance, {filler}; exact accuracy (per {task.AnswerTokenName}) (chance: {ProbeFormatOptions.Chance(task)} exact, {ProbeFormatOptions.ChancePerToken(task)} per {task.AnswerTokenName})"));
            cli.Console.Write(table);
            WritePlot(png, results, parse.GetValue(title)!, task);
            cli.Console.MarkupLine($"wrote {Markup.Escape(png)}");
            if (parse.GetValue(csv) is { } csvPath)
            {
                RetrievalAccuracy.WriteCsv(csvPath, results);
                cli.Console.MarkupLine($"wrote {Markup.Escape(csvPath)}");
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The copy probe's table (a row per distance bin, accuracy and tokens per model), PNG and CSV.</summary>
    static void WriteCopyResults(CliContext cli, List<(string Label, RetrievalPoint[] Points)> results, int[] edges, int seqLen, int windows,
        string dataDir, CopyProbe task, string png, string title, string? csvPath)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumn(new TableColumn("distance").RightAligned());
        foreach (var (label, _) in results) table.AddColumn(new TableColumn(Markup.Escape(label)).RightAligned());
        table.AddColumn(new TableColumn("tokens").RightAligned());
        for (int i = 0; i < edges.Length; i++)
            table.AddRow([CopyAccuracy.BinLabel(edges, i, seqLen), .. results.Select(r => KvEvalOptions.Percent(r.Points[i].Accuracy)), results[0].Points[i].Samples.ToString(inv)]);
        cli.Console.MarkupLine(Markup.Escape($"copy probe: {windows} windows of {dataDir}'s val stream, argmax of each copied token whose source lies in the window (chance: {(100.0 / task.Alphabet).ToString("0.##", inv)}%)"));
        cli.Console.Write(table);
        CopyProbePlot.Save(results, edges, seqLen, title == DefaultTitle ? "copy probe: accuracy against distance" : title, png, "probe-compare");
        cli.Console.MarkupLine($"wrote {Markup.Escape(png)}");
        if (csvPath is not null)
        {
            RetrievalAccuracy.WriteCsv(csvPath, results);
            cli.Console.MarkupLine($"wrote {Markup.Escape(csvPath)}");
        }
    }

    /// <summary>"LABEL=DIR" or "DIR" (label: the folder's name).</summary>
    static (string Label, string Dir) ParseLabel(string arg)
    {
        int eq = arg.IndexOf('=');
        if (eq > 0) return (arg[..eq], arg[(eq + 1)..]);
        return (Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(arg))), arg);
    }

    static int[] DefaultDistances(int max)
    {
        var list = new List<int>();
        for (int d = 8; d < max; d *= 2) list.Add(d);
        list.Add(max);
        return [.. list];
    }

    static void WritePlot(string pngPath, List<(string Label, RetrievalPoint[] Points)> results, string title, IRetrievalTask probe)
    {
        var plot = new ScottPlot.Plot();
        foreach (var (label, points) in results)
        {
            var s = plot.Add.Scatter(points.Select(p => Math.Log2(p.Distance + 1)).ToArray(), points.Select(p => 100 * p.Accuracy).ToArray());
            s.LegendText = label;
            s.LineWidth = 2;
            s.MarkerSize = 7;
        }
        // log-2 axis of distance + 1 (distance 0 has a place), labelled in tokens
        var ticks = results[0].Points.Select(p => new ScottPlot.Tick(Math.Log2(p.Distance + 1), p.Distance.ToString(CultureInfo.InvariantCulture))).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Axes.Bottom.Label.Text = "distance (tokens between record and query)";
        plot.Axes.Left.Label.Text = probe.ValueLength == 1 ? $"exact accuracy, the {probe.AnswerTokenName} (%)" : $"exact accuracy, all {probe.ValueLength} {probe.AnswerTokenName}s (%)";
        plot.Axes.SetLimitsY(-2, 102);
        plot.Title(title);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        PngFile.SaveAtomic(plot, pngPath, "probe-compare");
    }
}
