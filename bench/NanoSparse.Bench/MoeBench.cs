using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts.FeedForwards;
using NanoSparse.Numerics;
using NanoSparse.Optim;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench moe</c> (issue 21): a mixture-of-experts model (every block MoE, E experts of width expert_hidden,
/// top-k) against two dense models in one run, on the `wide` preset's shape (n_embd 768, 12 heads, block 256, batch 8;
/// --layers and --batch-size shrink it):
///   dense-active  the MLP as wide as the experts a token uses: hidden = top_k · expert_hidden (same active parameters)
///   dense-total   the MLP as wide as all experts together: hidden = E · expert_hidden (same total parameters)
/// Training step (forward, backward, clip, AdamW) median ms per thread count; decode tokens/s (batch 1, KV cache,
/// --new-tokens after a 64-token prompt). Rounds interleave the three models. Random weights and tokens (speed does not
/// depend on the values; the router of a random model spreads tokens about evenly). Targets: MoE step ≤ 1.3x the
/// dense-active step; MoE decode time per token ≤ 1.3x dense-active's.
/// </summary>
public static class MoeBench
{
    public static Command CreateCommand()
    {
        var threads = new Option<int[]>("--threads") { Description = "thread counts, each for every model", DefaultValueFactory = _ => [1, 2], AllowMultipleArgumentsPerToken = true };
        var rounds = new Option<int>("--rounds") { Description = "times every model is measured in turn", DefaultValueFactory = _ => 3 };
        var iters = new Option<int>("--iters") { Description = "timed training steps per model, thread count and round", DefaultValueFactory = _ => 2 };
        var warmup = new Option<int>("--warmup") { Description = "untimed training steps per model first", DefaultValueFactory = _ => 1 };
        var layers = new Option<int>("--layers") { Description = "n_layer (wide: 4)", DefaultValueFactory = _ => ModelPreset.Wide.NLayer };
        var batch = new Option<int>("--batch-size") { Description = "sequences per training step (wide: 8)", DefaultValueFactory = _ => ModelPreset.Wide.BatchSize };
        var experts = new Option<int>("--experts") { Description = "n_experts", DefaultValueFactory = _ => 8 };
        var topK = new Option<int>("--top-k") { Description = "experts per token", DefaultValueFactory = _ => 2 };
        var hidden = new Option<int>("--expert-hidden") { Description = "each expert's hidden width (default n_embd: dense-active's MLP is then top_k·n_embd wide)", DefaultValueFactory = _ => ModelPreset.Wide.NEmbd };
        var capacity = new Option<double?>("--capacity-factor") { Description = "MoE capacity factor (default: dropless)" };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens decoded one at a time after a 64-token prompt (0: no decode)", DefaultValueFactory = _ => 64 };
        var cpuTime = new Option<bool>("--cpu-time") { Description = "time with the process's CPU time (all threads) instead of wall time" };
        var vocab = new Option<int?>("--vocab") { Description = "vocabulary (default: data/brown/meta.json, else the Brown char vocabulary)" };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file", DefaultValueFactory = _ => new FileInfo(Path.Combine("bench-results", "moe-bench.json")) };
        var plot = new Option<string>("--plot") { Description = "path of the PNG (none: no plot); its folder is created", DefaultValueFactory = _ => Path.Combine("bench-results", "moe-bench.png") };
        var command = new Command("moe", "mixture of experts (8 experts, top-2) training step and decode vs dense models of equal active and equal total parameters");
        foreach (var o in new Option[] { threads, rounds, iters, warmup, layers, batch, experts, topK, hidden, capacity, newTokens, cpuTime, vocab, json, plot })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            var o = new Options(r.GetValue(threads)!, r.GetValue(rounds), r.GetValue(iters), r.GetValue(warmup), r.GetValue(layers), r.GetValue(batch),
                r.GetValue(experts), r.GetValue(topK), r.GetValue(hidden), r.GetValue(capacity), r.GetValue(newTokens), r.GetValue(cpuTime),
                r.GetValue(vocab) ?? ModelPreset.DefaultVocab(), r.GetValue(plot)!);
            var result = Run(o);
            if (r.GetValue(json) is { } file)
            {
                if (file.Directory is { } d) d.Create();
                TrainBench.WriteJson(file.FullName, result);
            }
            return 0;
        });
        return command;
    }

    public sealed record Options(int[] Threads, int Rounds, int Iters, int Warmup, int Layers, int BatchSize, int Experts, int TopK, int ExpertHidden,
        double? CapacityFactor, int NewTokens, bool CpuTime, int Vocab, string PlotPath)
    {
        public void Validate()
        {
            if (Threads.Length == 0 || Threads.Any(t => t < 1)) throw new ArgumentException($"--threads ({string.Join(" ", Threads)}) must be one or more counts >= 1");
            BenchUtil.CheckRepetitions("--rounds", Rounds);
            BenchUtil.CheckRepetitions("--iters", Iters);
            BenchUtil.CheckRepetitions("--warmup", Warmup, min: 0);
            BenchUtil.CheckRange("--layers", Layers, 1, 1000, "layers");
            BenchUtil.CheckRange("--batch-size", BatchSize, 1, 4096, "sequences per step");
            BenchUtil.CheckRange("--experts", Experts, 1, 1024, "experts");
            BenchUtil.CheckRange("--top-k", TopK, 1, Experts, "experts per token, at most --experts");
            BenchUtil.CheckRange("--expert-hidden", ExpertHidden, 1, 1 << 20, "expert width");
            if (CapacityFactor is double cf && !(double.IsFinite(cf) && cf > 0)) throw new ArgumentException($"--capacity-factor ({cf.ToString(CultureInfo.InvariantCulture)}) must be > 0");
            BenchUtil.CheckRange("--new-tokens", NewTokens, 0, ModelPreset.Wide.BlockSize - 64, "64 prompt tokens and the new ones fit block_size");
            if (Vocab < 2) throw new ArgumentException($"--vocab ({Vocab}) must be at least 2");
        }
    }

    sealed class Contender
    {
        public required string Label;
        public required Gpt Model;
        public required AdamW Optimizer;
        public double ActiveParameters;
        public long TotalParameters;
        public int StepCount;
        public readonly Dictionary<int, List<double>> Step = [], Decode = [];
    }

    public static JsonObject Run(Options options)
    {
        options.Validate();
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
        var wide = ModelPreset.Wide.ToConfig(options.Vocab) with { NLayer = options.Layers };
        int B = options.BatchSize, T = wide.BlockSize, H = options.ExpertHidden;
        var moe = wide with { NExperts = options.Experts, TopK = options.TopK, ExpertHidden = H, CapacityFactor = options.CapacityFactor };
        var active = wide with { MlpHiddenPerLayer = Enumerable.Repeat(options.TopK * H, wide.NLayer).ToArray() };
        var total = wide with { MlpHiddenPerLayer = Enumerable.Repeat(options.Experts * H, wide.NLayer).ToArray() };
        AnsiConsole.MarkupLine($"[bold]bench moe[/]: wide shape (n_layer {wide.NLayer}, n_embd {wide.NEmbd}, heads {wide.NHead}, block {T}, batch {B}, vocab {wide.VocabSize}); " +
                               $"MoE {options.Experts} experts x {H} wide, top-{options.TopK}, {(options.CapacityFactor is double cf ? $"capacity factor {cf}" : "dropless")} in every block; " +
                               $"dense-active MLP {options.TopK * H}, dense-total MLP {options.Experts * H}; {(options.CpuTime ? "CPU time" : "wall time")}; [yellow]random weights and tokens[/]");
        var rng = new Rng(42);
        var xs = new int[2][]; var ys = new int[2][];
        for (int b = 0; b < 2; b++)
        {
            xs[b] = new int[B * T]; ys[b] = new int[B * T];
            for (int i = 0; i < B * T; i++) { xs[b][i] = rng.NextInt(wide.VocabSize); ys[b][i] = rng.NextInt(wide.VocabSize); }
        }
        int saved = KernelThreads.Max;
        var contenders = new[] { Build("moe", moe, B, T), Build("dense-active", active, B, T), Build("dense-total", total, B, T) };
        try
        {
            for (int round = 0; round < options.Rounds; round++)
            {
                if (options.Rounds > 1) AnsiConsole.MarkupLine($"[grey]round {round + 1} of {options.Rounds}[/]");
                foreach (int threads in options.Threads)
                {
                    KernelThreads.Max = threads;
                    foreach (var c in contenders) MeasureStep(c, threads, options, xs, ys, warm: round == 0);
                    if (options.NewTokens > 0)
                        foreach (var c in contenders) MeasureDecode(c, threads, options);
                }
            }
        }
        finally { KernelThreads.Max = saved; }
        return Render(contenders, options, moe);
    }

    static Contender Build(string label, GptConfig config, int B, int T)
    {
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(1337);
        var optimizer = new AdamW(gpt.ParameterData.Length, gpt.Parameters.Select(q => AdamW.SegmentOf(gpt.ParameterData, q.Value.Span, q.Decay)),
            ModelPreset.Beta1, ModelPreset.Beta2, 1e-8f, ModelPreset.WeightDecay);
        var (activeCount, totalCount) = MoeLosses.ParameterCounts(gpt);
        return new Contender { Label = label, Model = gpt, Optimizer = optimizer, ActiveParameters = activeCount, TotalParameters = totalCount };
    }

    static void MeasureStep(Contender c, int threads, Options options, int[][] xs, int[][] ys, bool warm)
    {
        void OneStep()
        {
            int step = ++c.StepCount;
            var gpt = c.Model;
            gpt.ZeroGrad();
            gpt.Forward(xs[step % 2], ys[step % 2], training: true);
            gpt.Backward();
            GradientClipping.ClipByGlobalNorm(gpt.GradientData, ModelPreset.GradClip);
            c.Optimizer.Step(gpt.ParameterData, gpt.GradientData, ModelPreset.LearningRate);
        }
        if (warm) for (int i = 0; i < options.Warmup; i++) OneStep();
        var steps = new double[options.Iters];
        for (int i = 0; i < steps.Length; i++)
        {
            double t0 = BenchUtil.Now(options.CpuTime);
            OneStep();
            steps[i] = (BenchUtil.Now(options.CpuTime) - t0) * 1e3;
        }
        (c.Step.TryGetValue(threads, out var s) ? s : c.Step[threads] = []).AddRange(steps);
        AnsiConsole.MarkupLine($"[grey]  {c.Label} {threads} thread(s): step {BenchUtil.Median(steps):F0} ms[/]");
    }

    static void MeasureDecode(Contender c, int threads, Options options)
    {
        const int prompt = 64;
        var gpt = c.Model;
        var promptTokens = Enumerable.Range(0, prompt).Select(i => (i * 7 + 3) % gpt.Config.VocabSize).ToArray();
        var one = new int[1];
        var cache = gpt.CreateKvCache();
        double Generate()
        {
            cache.Reset();
            var logits = gpt.ForwardCached(cache, promptTokens);
            double t0 = BenchUtil.Now(options.CpuTime);
            for (int i = 0; i < options.NewTokens; i++)
            {
                one[0] = SparseModelBench.NextToken(logits, i, gpt.Config.VocabSize);
                logits = gpt.ForwardCached(cache, one);
            }
            return options.NewTokens / (BenchUtil.Now(options.CpuTime) - t0);
        }
        Generate();   // warm: the cache's pages and the code paths
        double tps = Generate();
        (c.Decode.TryGetValue(threads, out var d) ? d : c.Decode[threads] = []).Add(tps);
        AnsiConsole.MarkupLine($"[grey]  {c.Label} {threads} thread(s): decode {tps:F1} tokens/s[/]");
    }

    static JsonObject Render(Contender[] contenders, Options options, GptConfig moeConfig)
    {
        var inv = CultureInfo.InvariantCulture;
        var moe = contenders[0];
        var activeDense = contenders[1];
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model").AddColumn(new TableColumn("active params").RightAligned())
            .AddColumn(new TableColumn("total params").RightAligned()).AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("step ms").RightAligned()).AddColumn(new TableColumn("step vs dense-active").RightAligned())
            .AddColumn(new TableColumn("decode tok/s").RightAligned()).AddColumn(new TableColumn("decode time vs dense-active").RightAligned())
            .AddColumn("targets (MoE)");
        var rows = new JsonArray();
        var bars = new List<(string Label, int Threads, double StepRatio, double DecodeRatio)>();
        foreach (int threads in options.Threads)
        {
            double refStep = BenchUtil.Median(activeDense.Step[threads]);
            double refDecode = options.NewTokens > 0 ? BenchUtil.Median(activeDense.Decode[threads]) : double.NaN;
            foreach (var c in contenders)
            {
                double step = BenchUtil.Median(c.Step[threads]);
                double decode = options.NewTokens > 0 ? BenchUtil.Median(c.Decode[threads]) : double.NaN;
                double stepRatio = step / refStep, decodeRatio = refDecode / decode;   // time per token ratio
                string targets = c == moe
                    ? $"step ≤ 1.3x: {(stepRatio <= 1.3 ? "met" : "missed")}" + (options.NewTokens > 0 ? $"; decode ≤ 1.3x: {(decodeRatio <= 1.3 ? "met" : "missed")}" : "")
                    : "";
                table.AddRow(c.Label, c.ActiveParameters.ToString("N0", inv), c.TotalParameters.ToString("N0", inv), threads.ToString(inv),
                    step.ToString("F0", inv), $"{stepRatio:F2}x", double.IsNaN(decode) ? "-" : decode.ToString("F1", inv),
                    double.IsNaN(decode) ? "-" : $"{decodeRatio:F2}x", targets);
                bars.Add((c.Label, threads, stepRatio, decodeRatio));
                rows.Add(new JsonObject
                {
                    ["model"] = c.Label, ["threads"] = threads, ["active_parameters"] = c.ActiveParameters, ["total_parameters"] = c.TotalParameters,
                    ["step_ms"] = step, ["step_vs_dense_active"] = stepRatio,
                    ["decode_tokens_per_s"] = double.IsNaN(decode) ? null : decode, ["decode_time_vs_dense_active"] = double.IsNaN(decode) ? null : decodeRatio,
                    ["step_samples"] = new JsonArray(c.Step[threads].Select(x => (JsonNode)x).ToArray()),
                    ["decode_samples"] = new JsonArray((c.Decode.TryGetValue(threads, out var d) ? d : []).Select(x => (JsonNode)x).ToArray()),
                });
            }
        }
        AnsiConsole.Write(table);
        Plot(bars, options);
        return new JsonObject
        {
            ["bench"] = "moe", ["preset"] = "wide", ["n_layer"] = options.Layers, ["batch_size"] = options.BatchSize, ["experts"] = options.Experts,
            ["top_k"] = options.TopK, ["expert_hidden"] = options.ExpertHidden, ["capacity_factor"] = options.CapacityFactor,
            ["moe"] = MoeSettings.Describe(moeConfig), ["cpu_time"] = options.CpuTime, ["rounds"] = options.Rounds, ["new_tokens"] = options.NewTokens,
            ["rows"] = rows,
        };
    }

    static void Plot(List<(string Label, int Threads, double StepRatio, double DecodeRatio)> bars, Options options)
    {
        if (options.PlotPath == "none") return;
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var list = new List<ScottPlot.Bar>();
        var ticks = new List<ScottPlot.Tick>();
        string[] labels = ["moe", "dense-active", "dense-total"];
        double x = 0;
        foreach (int threads in options.Threads)
            foreach (bool decode in options.NewTokens > 0 ? new[] { false, true } : new[] { false })
            {
                ticks.Add(new ScottPlot.Tick(x + 1, $"{(decode ? "decode time/token" : "training step")}, {threads} thr"));
                for (int i = 0; i < labels.Length; i++)
                {
                    var b = bars.Single(q => q.Label == labels[i] && q.Threads == threads);
                    list.Add(new ScottPlot.Bar { Position = x + i, Value = decode ? b.DecodeRatio : b.StepRatio, FillColor = palette.GetColor(i) });
                }
                x += labels.Length + 1;
            }
        plot.Add.Bars(list);
        for (int i = 0; i < labels.Length; i++)
        {
            var item = new ScottPlot.LegendItem { LabelText = labels[i], FillColor = palette.GetColor(i) };
            plot.Legend.ManualItems.Add(item);
        }
        var target = plot.Add.HorizontalLine(1.3);
        target.LinePattern = ScottPlot.LinePattern.Dashed;
        target.Color = ScottPlot.Colors.Red;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title($"bench moe: time relative to dense-active (dashed: the 1.3x target); {options.Experts} experts, top-{options.TopK}");
        plot.YLabel("time / dense-active time");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        if (Path.GetDirectoryName(Path.GetFullPath(options.PlotPath)) is { } dir) Directory.CreateDirectory(dir);
        plot.SavePng(options.PlotPath, 1000, 560);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(options.PlotPath)}");
    }
}
