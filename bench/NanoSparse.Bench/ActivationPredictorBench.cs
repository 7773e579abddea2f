using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench activation-predictor` — the "predictor" mode of `bench activation` (issue 22, Deja Vu): decode
/// tokens/s of the GPT-2-shaped model (char vocabulary, batch 1, a P-token prompt then N new tokens through the KV cache)
/// dense against the same model whose every MLP runs through a Deja Vu predictor at 50/70/90% MLP neuron sparsity:
/// predictor (rank r: r·(C+H) multiply-adds per token and layer), top-k selection, neuron-sparse c_fc and c_proj
/// (<see cref="NanoSparse.Kernels.Sparse.NeuronSparseMlp"/>). Attention, embeddings and lm_head stay dense. The weights
/// are random (Gpt.InitializeWeights) and so are the predictors: this measures cost, not quality; every mode computes
/// exactly its share of neurons, so the time is what a trained predictor at that sparsity costs.
/// Contenders run interleaved in rounds (dense, then each sparsity) on the same warm process; wall and CPU time are both
/// reported (tokens per CPU-second is the steadier figure on a shared machine).
/// Extension point for `bench activation` (teal's ActivationBench.cs): <see cref="PreparePredicted"/> prepares a Gpt
/// for decode in this mode; its one line there is a mode named "predictor" calling it.
/// </summary>
public static class ActivationPredictorBench
{
    public sealed record Options(double[] Sparsities, int Rank, int[] Threads, int Rounds, int Reps, int Layers, int Vocab, int Prompt, int NewTokens,
        string JsonPath, string PlotPath);

    public sealed record Row(string Mode, double Sparsity, int Threads, double[] Wall, double[] Cpu)
    {
        public double WallMedian => BenchUtil.Median(Wall);
        public double CpuMedian => BenchUtil.Median(Cpu);
    }

    public static Command CreateCommand()
    {
        var sparsities = new Option<double[]>("--sparsities") { Description = "MLP neuron sparsities of the predictor mode", DefaultValueFactory = _ => [0.5, 0.7, 0.9], AllowMultipleArgumentsPerToken = true };
        var rank = new Option<int>("--rank") { Description = "predictor rank r", DefaultValueFactory = _ => 64 };
        var threads = new Option<int[]>("--thread-counts") { Description = "kernel threads", DefaultValueFactory = _ => [1, 2], AllowMultipleArgumentsPerToken = true };
        var rounds = new Option<int>("--rounds") { Description = "interleaved rounds (every contender once per round)", DefaultValueFactory = _ => 3 };
        var reps = new Option<int>("--reps") { Description = "timed generations per contender and round", DefaultValueFactory = _ => 1 };
        var layers = new Option<int>("--decode-layers") { Description = "n_layer (GPT-2's 12; fewer for a quick run)", DefaultValueFactory = _ => 12 };
        var vocab = new Option<int>("--decode-vocab") { Description = "vocabulary (85: the char vocabulary of Brown)", DefaultValueFactory = _ => 85 };
        var prompt = new Option<int>("--prompt") { Description = "prompt tokens", DefaultValueFactory = _ => 64 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens decoded one at a time", DefaultValueFactory = _ => 256 };
        var json = new Option<string>("--json") { Description = "JSON results", DefaultValueFactory = _ => "bench-results/activation-predictor.json" };
        var plot = new Option<string>("--plot") { Description = "PNG of the speed-ups (none: no plot)", DefaultValueFactory = _ => "bench-results/activation-predictor.png" };
        var command = new Command("activation-predictor", "decode tokens/s: dense vs Deja Vu predicted MLPs at 50/70/90% neuron sparsity (GPT-2 shape, char vocab)");
        foreach (var o in new Option[] { sparsities, rank, threads, rounds, reps, layers, vocab, prompt, newTokens, json, plot }) command.Options.Add(o);
        command.SetAction(r =>
        {
            var o = new Options(r.GetValue(sparsities)!, r.GetValue(rank), r.GetValue(threads)!, r.GetValue(rounds), r.GetValue(reps), r.GetValue(layers),
                r.GetValue(vocab), r.GetValue(prompt), r.GetValue(newTokens), r.GetValue(json)!, r.GetValue(plot)!);
            Run(o);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Prepares <paramref name="gpt"/> (held for inference) for decode with random rank-<paramref name="rank"/> predictors
    /// choosing the top (1 − sparsity)·H neurons of every MLP per token. Returns the predictor's share of the MLP's dense
    /// multiply-adds.
    /// </summary>
    public static double PreparePredicted(Gpt gpt, double sparsity, int rank, ulong seed)
    {
        var config = gpt.Config;
        var rng = new NanoSparse.Numerics.Rng(seed);
        var layers = new List<DejaVuPredictor.Layer>();
        for (int l = 0; l < config.NLayer; l++)
        {
            var p = new DejaVuPredictor.Layer(config.NEmbd, config.MlpHidden(l), rank);
            for (int i = 0; i < p.W1.Length; i++) p.W1[i] = (float)(rng.NextGaussian() / Math.Sqrt(p.Channels));
            for (int i = 0; i < p.W2.Length; i++) p.W2[i] = (float)(rng.NextGaussian() / Math.Sqrt(rank));
            layers.Add(p);
        }
        PredictedMlp.Install(gpt, new DejaVuPredictor(layers, "active"), sparsity, $"random rank-{rank} predictor");
        return (double)layers[0].MacsPerToken / (2.0 * config.NEmbd * config.MlpHidden(0));
    }

    public static JsonObject Run(Options o)
    {
        if (o.Sparsities.Any(s => !(s >= 0 && s < 1))) throw new ArgumentException($"--sparsities ({string.Join(" ", o.Sparsities)}) must lie in [0, 1)");
        BenchUtil.CheckRange("--rank", o.Rank, 1, 1 << 16, "the predictor's rank");
        BenchUtil.CheckRepetitions("--rounds", o.Rounds);
        BenchUtil.CheckRepetitions("--reps", o.Reps);
        BenchUtil.CheckRange("--decode-layers", o.Layers, 1, 1000, "layers of the decode model");
        if (o.Threads.Length == 0 || o.Threads.Any(t => t < 1)) throw new ArgumentException("--thread-counts must be counts >= 1");
        var config = ModelPreset.Gpt2Small.ToConfig(o.Vocab) with { NLayer = o.Layers };
        BenchUtil.CheckRange("--prompt", o.Prompt, 1, config.BlockSize - 1, "the prompt and one new token fit block_size");
        BenchUtil.CheckRange("--new-tokens", o.NewTokens, 1, config.BlockSize - o.Prompt, "the prompt and the new tokens fit block_size");
        var inv = CultureInfo.InvariantCulture;

        var modes = new List<(string Mode, double Sparsity, Gpt Gpt, KvCache Cache)>();
        double cost = 0;
        foreach (double s in new[] { -1.0 }.Concat(o.Sparsities))
        {
            var gpt = new Gpt(config, 1, 1);
            gpt.InitializeWeights(1337);
            gpt.PrepareForInference();
            if (s >= 0) cost = PreparePredicted(gpt, s, o.Rank, 7);
            modes.Add((s < 0 ? "dense" : "predictor", Math.Max(s, 0), gpt, gpt.CreateKvCache()));
        }
        AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
            $"bench activation-predictor: gpt2 shape L={o.Layers} V={o.Vocab}, batch 1, {o.NewTokens} new tokens after a {o.Prompt}-token prompt; " +
            $"predictor rank {o.Rank} = {cost:P1} of a dense MLP's multiply-adds; random weights and predictors (cost, not quality); rounds interleaved")));
        var prompt = Enumerable.Range(0, o.Prompt).Select(i => (i * 7 + 3) % o.Vocab).ToArray();
        var one = new int[1];
        var wall = new Dictionary<(int, int), List<double>>();
        var cpu = new Dictionary<(int, int), List<double>>();
        for (int round = 0; round < o.Rounds; round++)
            foreach (int threads in o.Threads)
            {
                KernelThreads.Max = threads;
                for (int m = 0; m < modes.Count; m++)
                {
                    var (_, _, gpt, cache) = modes[m];
                    (double Wall, double Cpu) Generate()
                    {
                        cache.Reset();
                        var logits = gpt.ForwardCached(cache, prompt);
                        double c0 = SparseModelBench.ProcessCpuSeconds();
                        long t0 = Stopwatch.GetTimestamp();
                        for (int i = 0; i < o.NewTokens; i++)
                        {
                            one[0] = SparseModelBench.NextToken(logits, i, o.Vocab);
                            logits = gpt.ForwardCached(cache, one);
                        }
                        return (Stopwatch.GetElapsedTime(t0).TotalSeconds, SparseModelBench.ProcessCpuSeconds() - c0);
                    }
                    if (round == 0) Generate();   // JIT and caches
                    for (int rep = 0; rep < o.Reps; rep++)
                    {
                        var (w, c) = Generate();
                        (CollectionsMarshalGet(wall, (m, threads))).Add(o.NewTokens / w);
                        (CollectionsMarshalGet(cpu, (m, threads))).Add(o.NewTokens / c);
                    }
                    AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
                        $"  round {round + 1}/{o.Rounds} {Label(modes[m].Mode, modes[m].Sparsity)} {threads} thread(s): {wall[(m, threads)][^1]:F1} tokens/s ({cpu[(m, threads)][^1]:F1} per CPU-second)")));
                }
            }

        var rows = new List<Row>();
        foreach (int threads in o.Threads)
            for (int m = 0; m < modes.Count; m++)
                rows.Add(new Row(modes[m].Mode, modes[m].Sparsity, threads, wall[(m, threads)].ToArray(), cpu[(m, threads)].ToArray()));
        var table = new Table().AddColumn("mode").AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("tokens/s").RightAligned()).AddColumn(new TableColumn("x dense").RightAligned())
            .AddColumn(new TableColumn("tokens/CPU-s").RightAligned()).AddColumn(new TableColumn("x dense (CPU)").RightAligned());
        var json = new JsonArray();
        foreach (var r in rows)
        {
            var dense = rows.First(d => d.Mode == "dense" && d.Threads == r.Threads);
            double x = r.WallMedian / dense.WallMedian, xc = r.CpuMedian / dense.CpuMedian;
            table.AddRow(Label(r.Mode, r.Sparsity), r.Threads.ToString(inv), r.WallMedian.ToString("F1", inv), x.ToString("F2", inv) + "x",
                r.CpuMedian.ToString("F1", inv), xc.ToString("F2", inv) + "x");
            json.Add(new JsonObject
            {
                ["mode"] = r.Mode, ["mlp_sparsity"] = r.Sparsity, ["threads"] = r.Threads, ["tokens_per_s"] = r.WallMedian, ["speedup"] = x,
                ["tokens_per_cpu_s"] = r.CpuMedian, ["speedup_cpu"] = xc,
                ["samples"] = new JsonArray(r.Wall.Select(v => (JsonNode)v).ToArray()), ["cpu_samples"] = new JsonArray(r.Cpu.Select(v => (JsonNode)v).ToArray()),
            });
        }
        AnsiConsole.Write(table);
        foreach (int threads in o.Threads)
            if (rows.FirstOrDefault(r => r.Mode == "predictor" && Math.Abs(r.Sparsity - 0.9) < 1e-9 && r.Threads == threads) is { } r90)
            {
                var dense = rows.First(d => d.Mode == "dense" && d.Threads == threads);
                double x = r90.WallMedian / dense.WallMedian, xc = r90.CpuMedian / dense.CpuMedian;
                AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
                    $"target >= 2.1x at 90% MLP sparsity with a predictor, {threads} thread(s): {x:F2}x wall, {xc:F2}x CPU — {(x >= 2.1 ? "met" : "missed")} (wall)")));
            }
        var result = new JsonObject
        {
            ["bench"] = "activation-predictor", ["layers"] = o.Layers, ["vocab"] = o.Vocab, ["rank"] = o.Rank, ["predictor_cost_of_mlp"] = cost,
            ["prompt"] = o.Prompt, ["new_tokens"] = o.NewTokens, ["rounds"] = o.Rounds, ["rows"] = json,
        };
        if (Path.GetDirectoryName(Path.GetFullPath(o.JsonPath)) is { } jd) Directory.CreateDirectory(jd);
        File.WriteAllText(o.JsonPath, result.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        Plot(rows, o);
        return result;
    }

    static List<double> CollectionsMarshalGet(Dictionary<(int, int), List<double>> d, (int, int) key)
    {
        if (!d.TryGetValue(key, out var list)) d[key] = list = [];
        return list;
    }

    static string Label(string mode, double sparsity) => mode == "dense" ? "dense" : string.Create(CultureInfo.InvariantCulture, $"predictor {sparsity:P0}");

    static void Plot(List<Row> rows, Options o)
    {
        if (o.PlotPath == "none") { AnsiConsole.MarkupLine($"wrote {Markup.Escape(o.JsonPath)}"); return; }
        var plot = new ScottPlot.Plot();
        foreach (var g in rows.GroupBy(r => r.Threads))
        {
            var dense = g.First(r => r.Mode == "dense");
            var line = g.Where(r => r.Mode == "predictor").OrderBy(r => r.Sparsity).ToArray();
            var s = plot.Add.Scatter(line.Select(r => r.Sparsity).ToArray(), line.Select(r => r.WallMedian / dense.WallMedian).ToArray());
            s.LegendText = $"wall, {g.Key} thread(s)";
            var c = plot.Add.Scatter(line.Select(r => r.Sparsity).ToArray(), line.Select(r => r.CpuMedian / dense.CpuMedian).ToArray());
            c.LegendText = $"CPU time, {g.Key} thread(s)";
            c.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        var target = plot.Add.HorizontalLine(2.1);
        target.LinePattern = ScottPlot.LinePattern.Dotted;
        plot.Title($"Deja Vu predicted MLPs: decode speed-up over dense (gpt2 shape, L={o.Layers}, V={o.Vocab}, rank {o.Rank})");
        plot.XLabel("MLP neuron sparsity");
        plot.YLabel("decode tokens/s ÷ dense");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        if (Path.GetDirectoryName(Path.GetFullPath(o.PlotPath)) is { } dir) Directory.CreateDirectory(dir);
        plot.SavePng(o.PlotPath, 900, 560);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(o.PlotPath)} and {Markup.Escape(o.JsonPath)}");
    }
}
