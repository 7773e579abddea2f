using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli;

/// <summary>
/// eval's KV-cache and probe options: --kv-cache (losses decoded token by token through that cache) and
/// --probe retrieval|recall|copy (accuracy against distance on a synthetic probe, table and optional PNG).
/// </summary>
public sealed class KvEvalOptions
{
    public KvCacheOptions Kv { get; } = new();
    public Option<string?> Probe { get; } = new("--probe")
    {
        Description = "instead of the losses, run a synthetic probe, accuracy against distance: retrieval (\"&KEY:VALUE\" written into the dataset's text) recall (associative recall on a dataset written by recall-data) or copy (copying probe on a dataset written by copy-data)",
    };
    public Option<int[]> Distances { get; } = new("--distances")
    {
        Description = "retrieval/recall: distances in tokens between a record and its query (default: 8 up to the largest the block allows, doubling); copy: lower edges of distance bins (default 1, 2, 4, ... below the block)",
        AllowMultipleArgumentsPerToken = true,
    };
    public Option<int> Samples { get; } = new("--probe-samples") { Description = "retrieval/recall: samples per distance; copy: windows of the val stream", DefaultValueFactory = _ => 64 };
    public Option<int> Distractors { get; } = new("--distractors") { Description = "retrieval: records with other keys per sample", DefaultValueFactory = _ => 4 };
    public Option<string?> Plot { get; } = new("--plot") { Description = "retrieval: write accuracy against distance to this PNG" };
    public Option<int> KeyLength { get; } = ProbeFormatOptions.KeyLength();
    public Option<int> ValueLength { get; } = ProbeFormatOptions.ValueLength();

    public void AddTo(Command cmd)
    {
        Kv.AddTo(cmd);
        Probe.AcceptOnlyFromAmong(ProbeFormatOptions.Retrieval, ProbeFormatOptions.Recall, ProbeFormatOptions.Copy);
        foreach (var o in new Option[] { Probe, Distances, Samples, Distractors, Plot, KeyLength, ValueLength }) cmd.Options.Add(o);
    }

    /// <summary>True when --kv-cache asks for something other than the dense cache.</summary>
    public bool SparseCache(ParseResult parse) => Kv.Resolve(parse).Kind != KvCacheSpec.Dense;

    /// <summary>Losses of both splits decoded through the chosen cache, with a progress line (tokens/s, ETA).</summary>
    public (double Train, double Val) CachedLosses(CliContext cli, ParseResult parse, Gpt gpt, TokenFile train, TokenFile val, int batches, ulong seed)
    {
        var spec = Kv.Resolve(parse);
        double trainLoss = 0, valLoss = 0;
        Progress(cli, $"loss through the {spec} KV cache", report =>
        {
            trainLoss = KvCachedLoss.MeanLoss(gpt, train, batches, gpt.BatchSize, gpt.SeqLen, Evaluator.SplitSeed(seed, "train"), spec,
                (d, t) => report(d, 2 * t));
            long half = (long)batches * gpt.BatchSize * gpt.SeqLen;
            valLoss = KvCachedLoss.MeanLoss(gpt, val, batches, gpt.BatchSize, gpt.SeqLen, Evaluator.SplitSeed(seed, "val"), spec,
                (d, t) => report(half + d, 2 * t));
        }, "tokens");
        return (trainLoss, valLoss);
    }

    /// <summary>--probe retrieval|recall: the table (and PNG) of accuracy against distance on the val split's text.</summary>
    public int RunProbe(CliContext cli, ParseResult parse, Gpt gpt, DatasetMeta meta, TokenFile val, string data, ulong seed)
    {
        var spec = Kv.Resolve(parse);
        int samples = parse.GetValue(Samples), distractors = parse.GetValue(Distractors);
        if (samples < 1) throw new UsageException($"--probe-samples ({samples}) must be at least 1");
        if (distractors < 0) throw new UsageException($"--distractors ({distractors}) must be >= 0");
        string kind = parse.GetValue(Probe)!;
        if (kind == ProbeFormatOptions.Copy) return RunCopyProbe(cli, parse, gpt, meta, val, data, samples, spec);
        var probe = ProbeFormatOptions.CreateTask(kind, parse, KeyLength, ValueLength, meta, data);
        int T = gpt.SeqLen, max = probe.MaxDistance(T);
        var distances = parse.GetValue(Distances) is { Length: > 0 } given ? given : DefaultDistances(max);
        foreach (int d in distances)
            if (d < 0 || d > max) throw new UsageException($"--distances: {d} must lie in [0, {max}] (block {T} minus the record, the query and the answer)");
        RetrievalPoint[] points = [];
        Progress(cli, $"{kind} probe, {(spec.Kind == KvCacheSpec.Dense ? "full forward" : spec + " KV cache")}", report =>
            points = RetrievalAccuracy.Measure(gpt, probe, val, distances, samples, distractors, seed,
                spec.Kind == KvCacheSpec.Dense ? null : spec, report), "samples");
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumn(new TableColumn("distance").RightAligned()).AddColumn(new TableColumn("accuracy").RightAligned())
            .AddColumn(new TableColumn($"{probe.AnswerTokenName} accuracy").RightAligned()).AddColumn(new TableColumn("samples").RightAligned());
        foreach (var p in points)
            table.AddRow(p.Distance.ToString(inv), p.Accuracy.ToString("P1", inv), p.DigitAccuracy.ToString("P1", inv), p.Samples.ToString(inv));
        string filler = probe is AssociativeRecall ? "the stream's own pairs as distractors" : $"{distractors} distractors";
        cli.Console.MarkupLine(Markup.Escape($"{kind} probe: window {T}, {filler}, KV cache {spec} (chance: {ProbeFormatOptions.Chance(probe)} exact, {ProbeFormatOptions.ChancePerToken(probe)} per {probe.AnswerTokenName})"));
        cli.Console.Write(table);
        if (parse.GetValue(Plot) is { } png) WritePlot(png, points, spec.ToString(), probe, kind);
        return 0;
    }

    /// <summary>--probe copy: copy accuracy per distance bin over --probe-samples windows of the val stream (full forward).</summary>
    int RunCopyProbe(CliContext cli, ParseResult parse, Gpt gpt, DatasetMeta meta, TokenFile val, string data, int windows, KvCacheSpec spec)
    {
        if (spec.Kind != KvCacheSpec.Dense)
            throw new UsageException($"--probe copy measures the full forward pass; --kv-cache {spec.Kind} is not supported with it");
        var task = ProbeFormatOptions.CreateCopy(meta, data);
        int T = gpt.SeqLen;
        var edges = CopyEdges(parse.GetValue(Distances), T);
        RetrievalPoint[] points = [];
        Progress(cli, "copy probe, full forward", report => points = CopyAccuracy.Measure(gpt, task, val, edges, windows, report), "windows");
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumn(new TableColumn("distance").RightAligned()).AddColumn(new TableColumn("accuracy").RightAligned())
            .AddColumn(new TableColumn("tokens").RightAligned());
        for (int k = 0; k < points.Length; k++)
            table.AddRow(CopyAccuracy.BinLabel(edges, k, T), Percent(points[k].Accuracy), points[k].Samples.ToString(inv));
        cli.Console.MarkupLine(Markup.Escape($"copy probe: {windows} windows of {T} tokens of {data}'s val stream, argmax of each copied token whose source lies in the window (chance: {(100.0 / task.Alphabet).ToString("0.##", inv)}%)"));
        cli.Console.Write(table);
        if (parse.GetValue(Plot) is { } png) CopyProbePlot.Save([("model", points)], edges, T, "copy probe", png, "copy");
        return 0;
    }

    /// <summary>Distance bin edges for the copy probe: --distances as given (validated), or 1, 2, 4, ... below the block.</summary>
    internal static int[] CopyEdges(int[]? given, int seqLen)
    {
        if (given is not { Length: > 0 }) return CopyAccuracy.DefaultEdges(seqLen);
        int max = CopyAccuracy.MaxDistance(seqLen);
        for (int k = 0; k < given.Length; k++)
        {
            if (given[k] < 1 || given[k] > max) throw new UsageException($"--distances: {given[k]} must lie in [1, {max}] for the copy probe at block {seqLen}");
            if (k > 0 && given[k] <= given[k - 1]) throw new UsageException($"--distances: the copy probe's bin edges must increase ({given[k - 1]} then {given[k]})");
        }
        return given;
    }

    internal static string Percent(double accuracy) =>
        double.IsNaN(accuracy) ? "-" : accuracy.ToString("P1", CultureInfo.InvariantCulture);

    static int[] DefaultDistances(int max)
    {
        var list = new List<int>();
        for (int d = 8; d < max; d *= 2) list.Add(d);
        list.Add(max);
        return [.. list];
    }

    static void WritePlot(string pngPath, RetrievalPoint[] points, string label, IRetrievalTask probe, string kind)
    {
        var plot = new ScottPlot.Plot();
        var s = plot.Add.Scatter(points.Select(p => (double)p.Distance).ToArray(), points.Select(p => 100 * p.Accuracy).ToArray());
        s.LegendText = $"exact ({probe.ValueLength} {probe.AnswerTokenName}{(probe.ValueLength == 1 ? "" : "s")}), KV {label}";
        if (probe.ValueLength > 1)
        {
            var t = plot.Add.Scatter(points.Select(p => (double)p.Distance).ToArray(), points.Select(p => 100 * p.DigitAccuracy).ToArray());
            t.LegendText = "per " + probe.AnswerTokenName;
        }
        plot.Axes.Bottom.Label.Text = "distance (tokens between record and query)";
        plot.Axes.Left.Label.Text = "accuracy (%)";
        plot.Axes.SetLimitsY(0, 100);
        plot.Title(kind + " probe");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        PngFile.SaveAtomic(plot, pngPath, "retrieval");
    }

    internal static void Progress(CliContext cli, string what, Action<Action<long, long>> work, string unit)
    {
        var inv = CultureInfo.InvariantCulture;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        cli.Console.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(what, maxValue: 1.0);
                work((done, total) =>
                {
                    double rate = done / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                    task.Description = string.Create(inv, $"{what}: {done}/{total} {unit}  {rate:F1} {unit}/s  ETA {(total - done) / Math.Max(rate, 1e-9):F0} s");
                    task.Value = (double)done / total;
                });
                task.Value = 1.0;
            });
    }
}
