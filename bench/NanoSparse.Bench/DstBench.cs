using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Optim;
using NanoSparse.Sparsity;
using NanoSparse.Sparsity.Dst;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench dst</c> (issue 19): the `wide` preset's training step, dense and with RigL at each density, in one
/// run, rounds interleaving the contenders:
///   step     median ms of an ordinary step (forward, backward, clip, AdamW) on the current sparse layout;
///   update   median ms of an update step: the same step with every layer also forming its dense gradient dyᵀ·x, then
///            RigL's topology update of every layer (drop, regrow, layout rebuilt, values and moments moved);
///   amortised  step + (update − step) / ΔT: the ms/iter of a run with an update every ΔT steps;
///   memory   bytes the model, AdamW and the DST state hold (managed heap after a full collection), and the same plus
///            what an update step allocates (the dense gradients: an upper bound of the update's transient peak),
///            against dense.
/// and the decode tokens/s (batch 1, KV cache) of the gpt2-124m shape with constant fan-in layouts (SRigL's) against
/// unstructured CSR at the same density, both held for inference with and without the SELL copy. Random weights: speed
/// does not depend on the values.
/// </summary>
public static class DstBench
{
    public static Command CreateCommand() => CreateCommand(Run);

    /// <summary>The `bench dst` command with <paramref name="run"/> in place of <see cref="Run"/> (tests read the parsed options).</summary>
    public static Command CreateCommand(Func<Options, JsonObject> run)
    {
        var densities = new Option<double[]>("--densities") { Description = "densities of the block Linear weights for RigL (1 - sparsity)", DefaultValueFactory = _ => [0.5, 0.2, 0.1, 0.05], AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int[]>("--threads") { Description = "thread counts, each for every contender", DefaultValueFactory = _ => [2], AllowMultipleArgumentsPerToken = true };
        var rounds = new Option<int>("--rounds") { Description = "times every contender is measured in turn", DefaultValueFactory = _ => 2 };
        var iters = new Option<int>("--iters") { Description = "timed ordinary steps per contender and round", DefaultValueFactory = _ => 3 };
        var updates = new Option<int>("--updates") { Description = "timed update steps per contender and round", DefaultValueFactory = _ => 1 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first (one of them an update step)", DefaultValueFactory = _ => 1 };
        var interval = new Option<int>("--interval") { Description = "ΔT: steps per update the update step is amortised over", DefaultValueFactory = _ => 100 };
        var drop = new Option<double>("--drop-fraction") { Description = "fraction dropped and regrown per update", DefaultValueFactory = _ => 0.3 };
        var cpuTime = new Option<bool>("--cpu-time") { Description = "time with the process's CPU time (all threads) instead of wall time" };
        var decodeDensities = new Option<double[]>("--decode-densities")
        {
            Description = "densities of the SRigL decode comparison (the option with no value: none)", DefaultValueFactory = _ => [0.1],
            AllowMultipleArgumentsPerToken = true, Arity = ArgumentArity.ZeroOrMore,
        };
        var decodeLayers = new Option<int>("--decode-layers") { Description = "n_layer of the decode model (gpt2-124m: 12)", DefaultValueFactory = _ => 12 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens decoded one at a time after a 64-token prompt", DefaultValueFactory = _ => 128 };
        var vocab = new Option<int?>("--vocab") { Description = "vocabulary (default: data/brown/meta.json, else the Brown char vocabulary)" };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file" };
        var plot = new Option<string>("--plot") { Description = "path of the PNG (speed-up and memory against density; none: no plot); its folder is created", DefaultValueFactory = _ => Path.Combine("bench-results", "dst-bench.png") };
        var command = new Command("dst", "dynamic sparse training (RigL) step time, update cost and memory on `wide` vs dense; SRigL decode vs unstructured");
        foreach (var o in new Option[] { densities, threads, rounds, iters, updates, warmup, interval, drop, cpuTime, decodeDensities, decodeLayers, newTokens, vocab, json, plot })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            var o = new Options(r.GetValue(densities)!, r.GetValue(threads)!, r.GetValue(rounds), r.GetValue(iters), r.GetValue(updates), r.GetValue(warmup),
                r.GetValue(interval), r.GetValue(drop), r.GetValue(cpuTime),
                // Given with no value: none (the parser would hand back the default).
                r.GetResult(decodeDensities) is { Implicit: false, Tokens.Count: 0 } ? [] : r.GetValue(decodeDensities)!, r.GetValue(decodeLayers), r.GetValue(newTokens),
                r.GetValue(vocab) ?? ModelPreset.DefaultVocab(), r.GetValue(plot)!);
            var result = run(o);
            if (r.GetValue(json) is { } file) TrainBench.WriteJson(file.FullName, result);
            return 0;
        });
        return command;
    }

    public sealed record Options(double[] Densities, int[] Threads, int Rounds, int Iters, int Updates, int Warmup, int Interval, double DropFraction,
        bool CpuTime, double[] DecodeDensities, int DecodeLayers, int NewTokens, int Vocab, string PlotPath)
    {
        public void Validate()
        {
            foreach (double d in Densities.Concat(DecodeDensities))
                if (!(d > 0 && d < 1)) throw new ArgumentException($"--densities / --decode-densities: {d.ToString(CultureInfo.InvariantCulture)} is not a density in (0, 1)");
            if (Threads.Length == 0 || Threads.Any(t => t < 1)) throw new ArgumentException($"--threads ({string.Join(" ", Threads)}) must be one or more counts >= 1");
            BenchUtil.CheckRepetitions("--rounds", Rounds);
            BenchUtil.CheckRepetitions("--iters", Iters);
            BenchUtil.CheckRepetitions("--updates", Updates);
            BenchUtil.CheckRepetitions("--warmup", Warmup, min: 0);
            BenchUtil.CheckRange("--interval", Interval, 1, 1_000_000, "steps between updates");
            if (!(DropFraction > 0 && DropFraction <= 1)) throw new ArgumentException($"--drop-fraction ({DropFraction.ToString(CultureInfo.InvariantCulture)}) must be in (0, 1]");
            BenchUtil.CheckRange("--decode-layers", DecodeLayers, 1, 1000, "layers of the decode model");
            BenchUtil.CheckRange("--new-tokens", NewTokens, 1, ModelPreset.Gpt2Small.BlockSize - 64, "64 prompt tokens and the new ones fit block_size");
            if (Vocab < 2) throw new ArgumentException($"--vocab ({Vocab}) must be at least 2");
        }
    }

    sealed class Contender
    {
        public required string Label;
        public required double Density;
        public required Gpt Model;
        public required AdamW Optimizer;
        public DynamicSparseTraining? Dst;
        public long HeldBytes, UpdateAllocatedBytes;
        public int StepCount;
        public readonly Dictionary<int, List<double>> Step = [], Update = [];
        /// <summary>Per thread count, each round's timed ordinary and update steps (the dense model's updates are its steps).</summary>
        public readonly Dictionary<int, List<(double[] Steps, double[] Updates)>> Rounds = [];
    }

    /// <summary>
    /// ms/iter with the update step amortised over <paramref name="interval"/> steps: the median ordinary step plus
    /// (median update step − median ordinary step) / interval.
    /// </summary>
    public static double Amortised(IReadOnlyList<double> steps, IReadOnlyList<double> updates, int interval)
    {
        double step = BenchUtil.Median(steps);
        return step + (BenchUtil.Median(updates) - step) / interval;
    }

    /// <summary>
    /// The speed-up over dense within each round (the dense model's median step that round over the contender's
    /// amortised ms/iter that round): on a shared host whose speed drifts between rounds, the spread of these says how
    /// far the all-rounds median can be trusted.
    /// </summary>
    public static double[] RoundSpeedups(IReadOnlyList<double[]> denseSteps, IReadOnlyList<(double[] Steps, double[] Updates)> rounds, int interval)
    {
        if (denseSteps.Count != rounds.Count) throw new ArgumentException($"{denseSteps.Count} dense rounds against {rounds.Count} of the contender");
        return rounds.Select((r, i) => BenchUtil.Median(denseSteps[i]) / Amortised(r.Steps, r.Updates, interval)).ToArray();
    }

    public static JsonObject Run(Options options)
    {
        options.Validate();
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 180);
        var config = ModelPreset.Wide.ToConfig(options.Vocab);
        int B = ModelPreset.Wide.BatchSize, T = config.BlockSize;
        AnsiConsole.MarkupLine($"[bold]bench dst[/]: wide (n_layer {config.NLayer}, n_embd {config.NEmbd}, block {T}, batch {B}, vocab {config.VocabSize}); RigL at densities " +
                               $"{string.Join(", ", options.Densities.Select(d => d.ToString("0.###", CultureInfo.InvariantCulture)))} (uniform, csr); update every ΔT = {options.Interval} steps, drop fraction {options.DropFraction}; " +
                               $"{(options.CpuTime ? "CPU time" : "wall time")}; [yellow]random weights and tokens[/]");
        var rng = new Rng(42);
        var xs = new int[2][]; var ys = new int[2][];
        for (int b = 0; b < 2; b++)
        {
            xs[b] = new int[B * T]; ys[b] = new int[B * T];
            for (int i = 0; i < B * T; i++) { xs[b][i] = rng.NextInt(config.VocabSize); ys[b][i] = rng.NextInt(config.VocabSize); }
        }

        int saved = KernelThreads.Max;
        var contenders = new List<Contender>();
        var decodeRows = new List<(string Layout, double Density, string Format, int Threads, double TokensPerSecond)>();
        try
        {
            foreach (double d in new[] { 1.0 }.Concat(options.Densities.Distinct().OrderByDescending(d => d)))
                contenders.Add(Build(config, B, T, d, options));
            for (int round = 0; round < options.Rounds; round++)
            {
                if (options.Rounds > 1) AnsiConsole.MarkupLine($"[grey]round {round + 1} of {options.Rounds}[/]");
                foreach (var c in contenders)
                    foreach (int threads in options.Threads)
                    {
                        KernelThreads.Max = threads;
                        Measure(c, threads, options, xs, ys, warm: round == 0);
                    }
            }
            foreach (double d in options.DecodeDensities)
                decodeRows.AddRange(Decode(d, options));
        }
        finally { KernelThreads.Max = saved; }
        return Render(contenders, decodeRows, options);
    }

    static Contender Build(GptConfig dense, int B, int T, double density, Options options)
    {
        GC.Collect();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var config = density >= 1 ? dense : SparseModelConfig.Apply(dense, 1 - density, SparseModelConfig.Uniform, seed: 1337);
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(1337);
        var optimizer = new AdamW(gpt.ParameterData.Length, gpt.Parameters.Select(q => AdamW.SegmentOf(gpt.ParameterData, q.Value.Span, q.Decay)),
            ModelPreset.Beta1, ModelPreset.Beta2, 1e-8f, ModelPreset.WeightDecay);
        // Every step an update step as far as the schedule goes; the bench decides which steps update.
        var dst = density >= 1 ? null : new DynamicSparseTraining(gpt, DstMethod.RigL, new DstSchedule(1, options.DropFraction, int.MaxValue), 0.3, 1337);
        long held = GC.GetTotalMemory(forceFullCollection: true) - before;
        return new Contender
        {
            Label = density >= 1 ? "dense" : $"rigl {density.ToString("0.###", CultureInfo.InvariantCulture)}",
            Density = density, Model = gpt, Optimizer = optimizer, Dst = dst, HeldBytes = held,
        };
    }

    static void Measure(Contender c, int threads, Options options, int[][] xs, int[][] ys, bool warm)
    {
        void OneStep(bool update)
        {
            int step = ++c.StepCount;
            var gpt = c.Model;
            if (update) c.Dst?.BeforeIteration(step);
            gpt.ZeroGrad();
            gpt.Forward(xs[step % 2], ys[step % 2], training: true);
            gpt.Backward();
            GradientClipping.ClipByGlobalNorm(gpt.GradientData, ModelPreset.GradClip);
            c.Optimizer.Step(gpt.ParameterData, gpt.GradientData, ModelPreset.LearningRate);
            if (update) c.Dst?.AfterIteration(gpt, c.Optimizer, step);
        }
        double Timed(bool update)
        {
            double t0 = BenchUtil.Now(options.CpuTime);
            OneStep(update);
            return (BenchUtil.Now(options.CpuTime) - t0) * 1e3;
        }
        if (warm)
            for (int i = 0; i < options.Warmup; i++) OneStep(update: i == 0);
        var steps = Enumerable.Range(0, options.Iters).Select(_ => Timed(false)).ToArray();
        var updates = new double[options.Updates];
        for (int i = 0; i < options.Updates; i++)
        {
            long a0 = GC.GetTotalAllocatedBytes(precise: true);
            updates[i] = Timed(true);
            c.UpdateAllocatedBytes = Math.Max(c.UpdateAllocatedBytes, GC.GetTotalAllocatedBytes(precise: true) - a0);
        }
        if (c.Dst is null) updates = steps.ToArray();   // dense: no update step
        (c.Step.TryGetValue(threads, out var s) ? s : c.Step[threads] = []).AddRange(steps);
        (c.Update.TryGetValue(threads, out var u) ? u : c.Update[threads] = []).AddRange(updates);
        (c.Rounds.TryGetValue(threads, out var r) ? r : c.Rounds[threads] = []).Add((steps, updates));
        AnsiConsole.MarkupLine($"[grey]  {Markup.Escape(c.Label)} {threads} thread(s): step {BenchUtil.Median(steps):F0} ms, update step {BenchUtil.Median(updates):F0} ms" +
                               (c.Dst?.Updates.LastOrDefault() is { } last ? $" (topology {last.Milliseconds:F0} ms, changed {last.ChangedFraction:P1})" : "") + "[/]");
    }

    static IEnumerable<(string Layout, double Density, string Format, int Threads, double TokensPerSecond)> Decode(double density, Options options)
    {
        var dense = ModelPreset.Gpt2Small.ToConfig(options.Vocab) with { NLayer = options.DecodeLayers };
        var config = SparseModelConfig.Apply(dense, 1 - density, SparseModelConfig.Uniform, seed: 1337);
        const int prompt = 64;
        var promptTokens = Enumerable.Range(0, prompt).Select(i => (i * 7 + 3) % dense.VocabSize).ToArray();
        var one = new int[1];
        var models = new List<(string Layout, bool Sell, Gpt Model)>();
        foreach (var (layout, layouts) in new[] { ("unstructured", (Dictionary<string, ILinearWeight>?)null), ("constant fan-in", DynamicSparseTraining.InitialLayouts(DstMethod.SRigL, config)) })
            foreach (bool sell in new[] { false, true })
            {
                var gpt = new Gpt(config, 1, 1, layouts);
                gpt.InitializeWeights(1337);
                gpt.PrepareForInference(keepSellCopy: sell);
                models.Add((layout, sell, gpt));
            }
        AnsiConsole.MarkupLine($"[bold]decode[/] gpt2-124m shape (n_layer {dense.NLayer}, vocab {dense.VocabSize}) at density {density.ToString("0.###", CultureInfo.InvariantCulture)}: " +
                               $"{options.NewTokens} tokens after a {prompt}-token prompt; unstructured CSR vs SRigL's constant fan-in (same stored count within half an input per row)");
        var samples = models.ToDictionary(m => (m.Layout, m.Sell), _ => new List<double>());
        foreach (int threads in options.Threads)
        {
            KernelThreads.Max = threads;
            for (int round = 0; round < options.Rounds; round++)
                foreach (var (layout, sell, gpt) in models)
                {
                    var cache = gpt.CreateKvCache();
                    double Generate()
                    {
                        cache.Reset();
                        var logits = gpt.ForwardCached(cache, promptTokens);
                        double t0 = BenchUtil.Now(options.CpuTime);
                        for (int i = 0; i < options.NewTokens; i++)
                        {
                            one[0] = SparseModelBench.NextToken(logits, i, dense.VocabSize);
                            logits = gpt.ForwardCached(cache, one);
                        }
                        return options.NewTokens / (BenchUtil.Now(options.CpuTime) - t0);
                    }
                    if (round == 0) Generate();
                    double tps = Generate();
                    samples[(layout, sell)].Add(tps);
                    AnsiConsole.MarkupLine($"[grey]  decode {layout}{(sell ? " + sell" : "")} {threads} thread(s): {tps:F1} tokens/s[/]");
                }
            foreach (var (layout, sell, _) in models)
            {
                var list = samples[(layout, sell)];
                yield return (layout, density, sell ? "csr16 + sell" : "csr16", threads, BenchUtil.Median(list));
                list.Clear();
            }
        }
    }

    static JsonObject Render(List<Contender> contenders, List<(string Layout, double Density, string Format, int Threads, double TokensPerSecond)> decode, Options options)
    {
        var inv = CultureInfo.InvariantCulture;
        var dense = contenders.Single(c => c.Dst is null);
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model").AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("step ms").RightAligned()).AddColumn(new TableColumn("update step ms").RightAligned())
            .AddColumn(new TableColumn($"amortised ms/iter (ΔT {options.Interval})").RightAligned()).AddColumn(new TableColumn("speed-up vs dense").RightAligned())
            .AddColumn(new TableColumn("target").RightAligned())
            .AddColumn(new TableColumn("per round: median (min–max, rounds)").RightAligned())
            .AddColumn(new TableColumn("held MB (vs dense)").RightAligned()).AddColumn(new TableColumn("+ update allocations MB (vs dense)").RightAligned());
        var rows = new JsonArray();
        var points = new List<(double Density, int Threads, double Speedup, double Memory)>();
        foreach (int threads in options.Threads)
        {
            double denseMs = BenchUtil.Median(dense.Step[threads]);
            var denseRounds = dense.Rounds[threads].Select(r => r.Steps).ToList();
            foreach (var c in contenders)
            {
                double step = BenchUtil.Median(c.Step[threads]), update = BenchUtil.Median(c.Update[threads]);
                double amortised = Amortised(c.Step[threads], c.Update[threads], options.Interval);
                double speedup = denseMs / amortised;
                var perRound = c.Dst is null ? null : RoundSpeedups(denseRounds, c.Rounds[threads], options.Interval);
                string spread = perRound is null ? "" : $"{BenchUtil.Median(perRound):F2}x ({perRound.Min():F2}–{perRound.Max():F2}, {perRound.Length})";
                double peak = c.HeldBytes + c.UpdateAllocatedBytes;
                string target = c.Density switch { 0.1 => speedup >= 3 ? "≥ 3x: met" : "≥ 3x: missed", 0.2 => speedup >= 2 ? "≥ 2x: met" : "≥ 2x: missed", _ => "" };
                table.AddRow(Markup.Escape(c.Label), threads.ToString(inv), step.ToString("F0", inv), c.Dst is null ? "-" : update.ToString("F0", inv),
                    amortised.ToString("F1", inv), $"{speedup:F2}x", target, spread,
                    $"{c.HeldBytes / 1e6:F0} ({(double)c.HeldBytes / dense.HeldBytes:F2}x)", $"{peak / 1e6:F0} ({peak / dense.HeldBytes:F2}x)");
                points.Add((c.Density, threads, speedup, peak / dense.HeldBytes));
                rows.Add(new JsonObject
                {
                    ["model"] = c.Label, ["density"] = c.Density, ["threads"] = threads, ["step_ms"] = step, ["update_step_ms"] = c.Dst is null ? null : update,
                    ["amortised_ms"] = amortised, ["speedup_vs_dense"] = speedup,
                    ["per_round_speedups"] = perRound is null ? null : new JsonArray(perRound.Select(v => (JsonNode)v).ToArray()),
                    ["held_bytes"] = c.HeldBytes,
                    ["update_allocated_bytes"] = c.UpdateAllocatedBytes, ["peak_vs_dense"] = peak / dense.HeldBytes,
                    ["step_samples"] = new JsonArray(c.Step[threads].Select(x => (JsonNode)x).ToArray()),
                    ["update_samples"] = new JsonArray(c.Update[threads].Select(x => (JsonNode)x).ToArray()),
                });
            }
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("speed-up = our dense step's median over all rounds / the amortised ms/iter from the contender's medians; per round = the same " +
                               "within each round (contenders minutes apart at most): its median and range");
        var decodeJson = new JsonArray();
        if (decode.Count > 0)
        {
            var dt = new Table().Border(TableBorder.Rounded).AddColumn("density").AddColumn("decode format").AddColumn(new TableColumn("threads").RightAligned())
                .AddColumn(new TableColumn("unstructured tokens/s").RightAligned()).AddColumn(new TableColumn("constant fan-in tokens/s").RightAligned())
                .AddColumn(new TableColumn("ratio").RightAligned());
            foreach (var g in decode.GroupBy(r => (r.Density, r.Format, r.Threads)))
            {
                double u = g.Single(r => r.Layout == "unstructured").TokensPerSecond, f = g.Single(r => r.Layout == "constant fan-in").TokensPerSecond;
                dt.AddRow(g.Key.Density.ToString("0.###", inv), g.Key.Format, g.Key.Threads.ToString(inv), u.ToString("F1", inv), f.ToString("F1", inv), $"{f / u:F2}x");
                decodeJson.Add(new JsonObject { ["density"] = g.Key.Density, ["format"] = g.Key.Format, ["threads"] = g.Key.Threads, ["unstructured_tokens_per_s"] = u, ["constant_fan_in_tokens_per_s"] = f });
            }
            AnsiConsole.Write(dt);
        }
        Plot(points, options);
        return new JsonObject
        {
            ["bench"] = "dst", ["preset"] = "wide", ["interval"] = options.Interval, ["drop_fraction"] = options.DropFraction,
            ["cpu_time"] = options.CpuTime, ["train"] = rows, ["decode"] = decodeJson,
        };
    }

    static void Plot(List<(double Density, int Threads, double Speedup, double Memory)> points, Options options)
    {
        if (options.PlotPath == "none") return;
        var plot = new ScottPlot.Plot();
        foreach (var g in points.GroupBy(p => p.Threads))
        {
            var line = g.OrderBy(p => p.Density).ToArray();
            var s = plot.Add.Scatter(line.Select(p => 1 - p.Density).ToArray(), line.Select(p => p.Speedup).ToArray());
            s.LegendText = $"RigL speed-up over dense, {g.Key} thr (update amortised over ΔT = {options.Interval})";
            var m = plot.Add.Scatter(line.Select(p => 1 - p.Density).ToArray(), line.Select(p => p.Memory).ToArray());
            m.LegendText = $"memory vs dense (with the update step's allocations), {g.Key} thr";
            m.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        var one = plot.Add.HorizontalLine(1);
        one.LinePattern = ScottPlot.LinePattern.Dotted;
        plot.Title("bench dst: RigL training step on wide against dense");
        plot.XLabel("sparsity of the block Linear weights");
        plot.YLabel("ratio to dense");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        if (Path.GetDirectoryName(Path.GetFullPath(options.PlotPath)) is { } dir) Directory.CreateDirectory(dir);
        plot.SavePng(options.PlotPath, 900, 560);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(options.PlotPath)}");
    }
}
