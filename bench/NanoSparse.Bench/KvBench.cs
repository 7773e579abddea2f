using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench kv</c>: decode speed and KV memory of the sparse KV caches against the dense one at long
/// context. A model of random weights (speed does not depend on what the weights learned) with block_size above the
/// longest context; per context, each cache is prefilled once with the same random prompt of that many tokens (not
/// timed), then rounds interleave the caches (order alternating), each round timing --decode greedy decode steps per
/// cache. The context grows by those steps (rounds · decode tokens, a fraction of a percent at 4k). Tokens/s are
/// medians over all rounds' steps; KV bytes are what the layers' caches hold at the context.
/// </summary>
public static class KvBench
{
    public static Command CreateCommand()
    {
        var contextsOpt = new Option<string>("--contexts") { Description = "context lengths (tokens already in the cache), comma-separated", DefaultValueFactory = _ => "4096,16384" };
        var cachesOpt = new Option<string>("--caches")
        {
            Description = "caches, comma-separated: dense, pruned:SPARSITY, h2o:BUDGET[:RECENT], quest:BUDGET[:PAGE]",
            DefaultValueFactory = _ => "dense,pruned:0.7,h2o:1024,quest:1024",
        };
        var layersOpt = new Option<int>("--layers") { Description = "n_layer of the random model", DefaultValueFactory = _ => 6 };
        var headsOpt = new Option<int>("--heads") { Description = "n_head", DefaultValueFactory = _ => 8 };
        var embdOpt = new Option<int>("--embd") { Description = "n_embd", DefaultValueFactory = _ => 256 };
        var vocabOpt = new Option<int>("--vocab") { Description = "vocab_size (85: Brown's characters)", DefaultValueFactory = _ => 85 };
        var decodeOpt = new Option<int>("--decode") { Description = "decode steps timed per cache per round", DefaultValueFactory = _ => 16 };
        var roundsOpt = new Option<int>("--rounds") { Description = "rounds (every cache once per round, order alternating)", DefaultValueFactory = _ => 3 };
        var threadsOpt = new Option<int>("--threads") { Description = "kernel threads", DefaultValueFactory = _ => 1 };
        var cpuOpt = new Option<bool>("--cpu-time") { Description = "time by the process's CPU time (steadier on a shared machine; meaningful at one thread)" };
        var plotOpt = new Option<string>("--plot") { Description = "PNG of tokens/s and KV bytes (none: no plot)", DefaultValueFactory = _ => "none" };
        var command = new Command("kv", "decode tokens/s and KV-cache bytes at long context: dense vs pruned (Mustafar), H2O and Quest caches");
        foreach (var o in new Option[] { contextsOpt, cachesOpt, layersOpt, headsOpt, embdOpt, vocabOpt, decodeOpt, roundsOpt, threadsOpt, cpuOpt, plotOpt })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            var contexts = r.GetValue(contextsOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(v => int.TryParse(v, out int n) && n >= 1 && n <= 1 << 20 ? n : throw new ArgumentException($"--contexts: '{v}' is not an integer in [1, {1 << 20}]")).ToArray();
            var caches = r.GetValue(cachesOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseCache).ToArray();
            if (caches.Length == 0 || contexts.Length == 0) throw new ArgumentException("--caches and --contexts need at least one entry each");
            int decode = r.GetValue(decodeOpt), rounds = r.GetValue(roundsOpt), threads = r.GetValue(threadsOpt);
            BenchUtil.CheckRepetitions("--decode", decode);
            BenchUtil.CheckRepetitions("--rounds", rounds);
            BenchUtil.CheckRepetitions("--threads", threads);
            int layers = r.GetValue(layersOpt), heads = r.GetValue(headsOpt), embd = r.GetValue(embdOpt), vocab = r.GetValue(vocabOpt);
            if (layers < 1 || heads < 1 || embd < 1 || embd % heads != 0 || vocab < 2)
                throw new ArgumentException($"--layers ({layers}), --heads ({heads}), --embd ({embd}) and --vocab ({vocab}) must be positive, with --embd a multiple of --heads and --vocab at least 2");
            int block = contexts.Max() + rounds * decode + 1;
            var config = new GptConfig { NLayer = layers, NHead = heads, NEmbd = embd, BlockSize = block, VocabSize = vocab, Bias = false };
            Run(config, contexts, caches, decode, rounds, threads, r.GetValue(cpuOpt), r.GetValue(plotOpt)!);
            return 0;
        });
        return command;
    }

    /// <summary>dense | pruned:S | h2o:B[:R] | quest:B[:P], checked by <see cref="KvCacheSpec.Validate"/>.</summary>
    public static KvCacheSpec ParseCache(string text)
    {
        var p = text.Split(':');
        double D(int i, string what) => p.Length > i && double.TryParse(p[i], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v
            : throw new ArgumentException($"--caches: '{text}' needs a number for {what}");
        int I(int i, string what) => p.Length > i && int.TryParse(p[i], out int v) ? v : throw new ArgumentException($"--caches: '{text}' needs an integer for {what}");
        var spec = p[0] switch
        {
            KvCacheSpec.Dense when p.Length == 1 => KvCacheSpec.Exact,
            KvCacheSpec.Pruned when p.Length == 2 => new KvCacheSpec { Kind = KvCacheSpec.Pruned, Sparsity = D(1, "the sparsity") },
            KvCacheSpec.H2O when p.Length is 2 or 3 => new KvCacheSpec { Kind = KvCacheSpec.H2O, Budget = I(1, "the budget"), Recent = p.Length == 3 ? I(2, "the recent window") : -1 },
            KvCacheSpec.Quest when p.Length is 2 or 3 => new KvCacheSpec { Kind = KvCacheSpec.Quest, Budget = I(1, "the budget"), PageSize = p.Length == 3 ? I(2, "the page size") : 16 },
            _ => throw new ArgumentException($"--caches: '{text}' is not dense, pruned:SPARSITY, h2o:BUDGET[:RECENT] or quest:BUDGET[:PAGE]"),
        };
        return spec.Validate();
    }

    sealed record Result(int Context, KvCacheSpec Cache, List<double> Seconds, long Bytes, double PrefillSeconds);

    static void Run(GptConfig config, int[] contexts, KvCacheSpec[] caches, int decode, int rounds, int threads, bool cpuTime, string plotPath)
    {
        int saved = KernelThreads.Max;
        KernelThreads.Max = threads;
        Console.WriteLine($"bench kv: random weights, {config.NLayer} layers, {config.NHead} heads of {config.HeadSize}, n_embd {config.NEmbd}, vocab {config.VocabSize}, " +
                          $"block {config.BlockSize}; {threads} thread(s), {(cpuTime ? "CPU time" : "wall clock")}, {rounds} round(s) of {decode} decode steps; {Environment.ProcessorCount} processors");
        var results = new List<Result>();
        try
        {
            var gpt = new Gpt(config, 1, 1);
            gpt.InitializeWeights(1337);
            gpt.PrepareForInference();
            foreach (int L in contexts)
            {
                var rng = new Random(L);
                var prompt = Enumerable.Range(0, L).Select(_ => rng.Next(config.VocabSize)).ToArray();
                var states = new List<(KvCache Cache, int Next, Result Result)>();
                foreach (var spec in caches)
                {
                    var cache = gpt.CreateKvCache(spec);
                    long t0 = Stopwatch.GetTimestamp();
                    var logits = gpt.ForwardCached(cache, prompt);
                    double prefill = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                    var result = new Result(L, spec, [], cache.Bytes, prefill);
                    Console.WriteLine($"  context {L}: {spec} prefilled in {prefill:F1} s, KV {cache.Bytes / 1048576.0:F1} MiB");
                    states.Add((cache, ArgMax(logits), result));
                    results.Add(result);
                }
                for (int round = 0; round < rounds; round++)
                {
                    var order = Enumerable.Range(0, states.Count).ToList();
                    if (round % 2 == 1) order.Reverse();
                    foreach (int i in order)
                    {
                        var (cache, next, result) = states[i];
                        var one = new int[1];
                        for (int s = 0; s < decode; s++)
                        {
                            one[0] = next;
                            double t0 = BenchUtil.Now(cpuTime);
                            var logits = gpt.ForwardCached(cache, one);
                            result.Seconds.Add(BenchUtil.Now(cpuTime) - t0);
                            next = ArgMax(logits);
                        }
                        states[i] = (cache, next, result);
                    }
                }
            }
        }
        finally { KernelThreads.Max = saved; }
        Render(results, plotPath);
    }

    static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    static void Render(List<Result> results, string plotPath)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
        var table = new Table().Border(TableBorder.Rounded)
            .Title("decode at long context (tokens/s: medians of single decode steps)")
            .AddColumn(new TableColumn("context").RightAligned()).AddColumn("KV cache")
            .AddColumn(new TableColumn("tokens/s").RightAligned()).AddColumn(new TableColumn("x dense").RightAligned())
            .AddColumn(new TableColumn("KV MiB").RightAligned()).AddColumn(new TableColumn("x dense bytes").RightAligned())
            .AddColumn(new TableColumn("prefill s").RightAligned()).AddColumn("");
        foreach (var g in results.GroupBy(r => r.Context))
        {
            var dense = g.FirstOrDefault(r => r.Cache.Kind == KvCacheSpec.Dense);
            foreach (var r in g)
            {
                double tps = 1 / BenchUtil.Median(r.Seconds);
                double? speed = dense is null ? null : tps * BenchUtil.Median(dense.Seconds);
                double? bytes = dense is null ? null : (double)r.Bytes / dense.Bytes;
                string verdict = r.Cache.Kind switch
                {
                    KvCacheSpec.Pruned when bytes is { } b && Math.Abs(r.Cache.Sparsity - 0.7) < 1e-9 => b <= 0.45 ? "[green]bytes ≤ 0.45x[/]" : "[red]bytes > 0.45x[/]",
                    KvCacheSpec.H2O or KvCacheSpec.Quest when speed is { } s && r.Context >= 16384 => s >= 2 ? "[green]≥ 2x dense[/]" : "[red]< 2x dense[/]",
                    _ => "",
                };
                table.AddRow(r.Context.ToString(CultureInfo.InvariantCulture), r.Cache.ToString(), tps.ToString("F1", CultureInfo.InvariantCulture),
                    speed?.ToString("F2", CultureInfo.InvariantCulture) ?? "-", (r.Bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture),
                    bytes?.ToString("F3", CultureInfo.InvariantCulture) ?? "-", r.PrefillSeconds.ToString("F1", CultureInfo.InvariantCulture), verdict);
            }
        }
        AnsiConsole.Write(table);
        Console.WriteLine("targets: 70% K/V pruning at most 0.45x the dense cache's bytes; at 16k context eviction (h2o) or page selection (quest) at least 2x dense tokens/s. " +
                          "Quest keeps every position (its bytes are dense plus page bounds); it saves reads, not memory.");
        if (plotPath == "none") return;
        var plot = new ScottPlot.Plot();
        var contexts = results.Select(r => r.Context).Distinct().ToList();
        var names = results.Select(r => r.Cache.ToString()).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        for (int c = 0; c < names.Count; c++)
        {
            var bars = new List<ScottPlot.Bar>();
            for (int i = 0; i < contexts.Count; i++)
                if (results.FirstOrDefault(r => r.Context == contexts[i] && r.Cache.ToString() == names[c]) is { } r)
                    bars.Add(new ScottPlot.Bar { Position = i * (names.Count + 1) + c, Value = 1 / BenchUtil.Median(r.Seconds), FillColor = palette.GetColor(c) });
            plot.Add.Bars(bars).LegendText = names[c];
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, contexts.Count).Select(i => i * (names.Count + 1) + (names.Count - 1) / 2.0).ToArray(),
            contexts.Select(c => $"context {c}").ToArray());
        plot.Title("decode tokens/s by KV cache (higher is faster)");
        plot.YLabel("tokens/s");
        plot.ShowLegend(ScottPlot.Alignment.UpperCenter);
        string full = Path.GetFullPath(plotPath);
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".kv-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, 1000, 600);
        File.Move(tmp, full, overwrite: true);
        Console.WriteLine($"wrote {plotPath}");
    }
}
