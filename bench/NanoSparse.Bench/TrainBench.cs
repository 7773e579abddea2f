using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Optim;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench train</c>: the training step of a preset (forward + backward + gradient clipping + AdamW step),
/// NanoSparse beside PyTorch running nanoGPT's loop body (bench/peers/train_torch.py) in the same run, same shapes,
/// same thread counts. Data loading is excluded on both sides: random token batches are made before timing.
/// Prints ms/iter, tokens/s and achieved GFLOP/s (nanoGPT's 6N + 12·L·H·Q·T FLOPs per token), the ratio
/// NanoSparse / PyTorch of the best ms/iter (target ≤ 0.5), and the step's rate as a fraction of dense sgemm
/// measured in the same run.
/// </summary>
public static class TrainBench
{
    public static Command CreateCommand()
    {
        var preset = new Option<string>("--preset") { Description = "model and batch shape: " + string.Join(", ", ModelPreset.Names), DefaultValueFactory = _ => "baby" };
        preset.AcceptOnlyFromAmong(ModelPreset.Names);
        var iters = new Option<int?>("--iters") { Description = "timed iterations per contender (default: baby 20, small 3)" };
        var warmup = new Option<int?>("--warmup") { Description = "untimed iterations first (default: baby 2, small 1)" };
        var threads = new Option<int[]>("--threads")
        {
            Description = "thread counts to measure, each for both contenders (default: 1 2)",
            DefaultValueFactory = _ => [1, 2],
            AllowMultipleArgumentsPerToken = true,
        };
        var vocab = new Option<int?>("--vocab") { Description = "vocabulary size (default: data/brown/meta.json, else the Brown char vocabulary)" };
        var gemmSize = new Option<int>("--gemm-size") { Description = "n of the n×n×n sgemm reference rate", DefaultValueFactory = _ => 1024 };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file" };
        var python = new Option<string>("--python") { Description = "Python with torch for the peer", DefaultValueFactory = _ => TorchPeer.DefaultPython };
        var noPeer = new Option<bool>("--no-peer") { Description = "measure NanoSparse only" };
        var rounds = new Option<int?>("--rounds")
        {
            Description = "measure every contender this many times in turn, each time --iters iterations; a figure is the " +
                          "median over all rounds, so a machine that slows down or speeds up meets every contender alike " +
                          "(default: baby 5, small 1)",
        };

        var command = new Command("train", "training step ms/iter: NanoSparse vs PyTorch (nanoGPT loop), same preset and threads");
        foreach (var o in new Option[] { preset, iters, warmup, threads, vocab, gemmSize, json, python, noPeer, rounds }) command.Options.Add(o);
        command.SetAction(parseResult =>
        {
            var p = ModelPreset.Get(parseResult.GetValue(preset)!);
            var options = new Options(
                p,
                parseResult.GetValue(iters) ?? (p == ModelPreset.Small ? 3 : 20),
                parseResult.GetValue(warmup) ?? (p == ModelPreset.Small ? 1 : 2),
                parseResult.GetValue(threads) ?? [1, 2],
                parseResult.GetValue(vocab) ?? ModelPreset.DefaultVocab(),
                parseResult.GetValue(gemmSize),
                parseResult.GetValue(python)!,
                !parseResult.GetValue(noPeer),
                parseResult.GetValue(rounds) ?? (p == ModelPreset.Small ? 1 : 5));
            var result = Run(options);
            var file = parseResult.GetValue(json);
            if (file != null) WriteJson(file.FullName, result);
            return 0;
        });
        return command;
    }

    public sealed record Options(ModelPreset Preset, int Iters, int Warmup, int[] Threads, int Vocab, int GemmSize, string Python, bool RunPeer,
        int Rounds = 1)
    {
        public void Validate()
        {
            if (Rounds < 1) throw new ArgumentException($"--rounds ({Rounds}) must be at least 1");
            if (Iters < 1) throw new ArgumentException($"--iters ({Iters}) must be at least 1");
            if (Warmup < 0) throw new ArgumentException($"--warmup ({Warmup}) must be at least 0");
            BenchUtil.CheckRepetitions("--rounds", Rounds);
            BenchUtil.CheckRepetitions("--iters", Iters);
            BenchUtil.CheckRepetitions("--warmup", Warmup, min: 0);
            if (Threads.Length == 0 || Threads.Any(t => t < 1)) throw new ArgumentException($"--threads ({string.Join(" ", Threads)}) must be one or more counts >= 1");
            if (Vocab < 2) throw new ArgumentException($"--vocab ({Vocab}) must be at least 2");
            if (GemmSize < 1) throw new ArgumentException($"--gemm-size ({GemmSize}) must be at least 1");
            BenchUtil.CheckRange("--gemm-size", GemmSize, 1, BenchUtil.MaxSquareSide, "an n×n matrix must fit one array");
            BenchUtil.CheckVocab("--vocab", Preset.ToConfig(Vocab), Preset.BatchSize, Preset.BlockSize, NanoSparse.Nn.GptUse.Training);
        }
    }

    public sealed record Measurement(string Contender, int Threads, double[] IterationsMs, double MedianMs, double TokensPerSecond, double Gflops, double AllocatedBytesPerIter);

    public static JsonObject Run(Options options)
    {
        options.Validate();
        var p = options.Preset;
        var config = p.ToConfig(options.Vocab);
        config.Validate();
        int B = p.BatchSize, T = p.BlockSize;
        int tokens = B * T;
        AnsiConsole.MarkupLine($"[bold]bench train[/] preset [cyan]{p.Name}[/]: n_layer {p.NLayer}, n_head {p.NHead}, n_embd {p.NEmbd}, " +
                               $"block {T}, batch {B}, vocab {options.Vocab}, dropout {p.Dropout}; {options.Iters} iters after {options.Warmup} warm-up, " +
                               $"{options.Rounds} round(s) of every contender in turn; " +
                               "random batches made before timing (data loading excluded on both sides)");

        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(1337);
        double flopsPerToken = ModelPreset.FlopsPerToken(gpt.ParameterCount, config, T);
        double flopsPerIter = flopsPerToken * tokens;
        AnsiConsole.MarkupLine($"parameters {gpt.ParameterCount:N0}; {flopsPerIter / 1e9:F2} GFLOP per iteration ({flopsPerToken / 1e6:F2} MFLOP/token)");

        var rounds = new List<Measurement>();
        var sgemm = new Dictionary<int, double>();
        int savedMax = KernelThreads.Max;
        try
        {
            for (int round = 0; round < options.Rounds; round++)
            {
                if (options.Rounds > 1) AnsiConsole.MarkupLine($"[grey]round {round + 1} of {options.Rounds}[/]");
                foreach (int threads in options.Threads)
                {
                    KernelThreads.Max = threads;
                    if (round == 0) sgemm[threads] = SgemmGflops(options.GemmSize);
                    rounds.Add(MeasureNanoSparse(gpt, options, threads, flopsPerIter));
                    if (options.RunPeer) rounds.Add(MeasurePyTorch(options, threads, flopsPerToken, threads, round == 0));
                }
                // PyTorch's default on Debian with torch.set_num_threads(1): its own ops on one thread, OpenBLAS's GEMMs on
                // every core. Often its fastest setting for small models, so it is measured too and counts as a peer.
                if (options.RunPeer && options.Threads.Max() > 1)
                    rounds.Add(MeasurePyTorch(options, 1, flopsPerToken, options.Threads.Max(), round == 0));
            }
        }
        finally { KernelThreads.Max = savedMax; }
        var measurements = MergeRounds(rounds);

        Render(measurements, sgemm, options);
        return ToJson(options, config, gpt.ParameterCount, flopsPerIter, measurements, sgemm);
    }

    /// <summary>
    /// One training step of a preset on a given batch, as nanoGPT's loop body (forward, backward, clip, AdamW step);
    /// gradients are zeroed before the backward that accumulates. Used where a real step is needed (bench data).
    /// </summary>
    public static Action<int[], int[]> CreatePresetStep(ModelPreset preset, int vocab, ulong seed = 1337)
    {
        var gpt = new Gpt(preset.ToConfig(vocab), preset.BatchSize, preset.BlockSize);
        gpt.InitializeWeights(seed);
        var segments = gpt.Parameters.Select(q => AdamW.SegmentOf(gpt.ParameterData, q.Value.Span, q.Decay));
        var optimizer = new AdamW(gpt.ParameterData.Length, segments, ModelPreset.Beta1, ModelPreset.Beta2, 1e-8f, ModelPreset.WeightDecay);
        return (x, y) =>
        {
            gpt.ZeroGrad();
            gpt.Forward(x, y, training: true);
            gpt.Backward();
            GradientClipping.ClipByGlobalNorm(gpt.GradientData, ModelPreset.GradClip);
            optimizer.Step(gpt.ParameterData, gpt.GradientData, ModelPreset.LearningRate);
        };
    }

    static Measurement MeasureNanoSparse(Gpt gpt, Options options, int threads, double flopsPerIter)
    {
        var p = options.Preset;
        int B = p.BatchSize, T = p.BlockSize;
        var rng = new Numerics.Rng(42);
        const int batches = 4;
        var xs = new int[batches][];
        var ys = new int[batches][];
        for (int b = 0; b < batches; b++)
        {
            xs[b] = new int[B * T];
            ys[b] = new int[B * T];
            for (int i = 0; i < B * T; i++) { xs[b][i] = rng.NextInt(options.Vocab); ys[b][i] = rng.NextInt(options.Vocab); }
        }
        var segments = gpt.Parameters.Select(q => AdamW.SegmentOf(gpt.ParameterData, q.Value.Span, q.Decay));
        var optimizer = new AdamW(gpt.ParameterData.Length, segments, ModelPreset.Beta1, ModelPreset.Beta2, 1e-8f, ModelPreset.WeightDecay);

        // nanoGPT's loop body: forward, backward, clip, step, zero_grad (here zeroed before the backward that accumulates).
        void Step(int i)
        {
            gpt.ZeroGrad();
            gpt.Forward(xs[i % batches], ys[i % batches], training: true);
            gpt.Backward();
            GradientClipping.ClipByGlobalNorm(gpt.GradientData, ModelPreset.GradClip);
            optimizer.Step(gpt.ParameterData, gpt.GradientData, ModelPreset.LearningRate);
        }

        for (int i = 0; i < options.Warmup; i++) Step(i);
        var times = new double[options.Iters];
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < options.Iters; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            Step(i);
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        double allocPerIter = (GC.GetAllocatedBytesForCurrentThread() - allocated) / (double)options.Iters;
        double median = Median(times);
        return new Measurement("NanoSparse", threads, times, median, B * T / (median / 1e3), flopsPerIter / (median / 1e3) / 1e9, allocPerIter);
    }

    /// <summary>One row per (contender, threads): the timed iterations of all its rounds and their median; rates
    /// scale with the median; allocation is the largest of any round.</summary>
    static List<Measurement> MergeRounds(List<Measurement> rounds) =>
        rounds.GroupBy(m => (m.Contender, m.Threads)).Select(g =>
        {
            var first = g.First();
            var all = g.SelectMany(m => m.IterationsMs).ToArray();
            double median = Median(all);
            double speed = first.MedianMs / median;
            return new Measurement(first.Contender, first.Threads, all, median, first.TokensPerSecond * speed, first.Gflops * speed,
                g.Max(m => m.AllocatedBytesPerIter));
        }).ToList();

    static Measurement MeasurePyTorch(Options options, int threads, double flopsPerToken, int blasThreads, bool describe = true)
    {
        var r = TorchPeer.Run(options.Python, "train_torch.py",
        [
            "--preset", options.Preset.Name, "--threads", threads.ToString(), "--iters", options.Iters.ToString(),
            "--warmup", options.Warmup.ToString(), "--vocab", options.Vocab.ToString(), "--gemm-size", (describe ? options.GemmSize : 0).ToString(),
        ], blasThreads: blasThreads);
        string contender = blasThreads == threads ? "PyTorch" : $"PyTorch (OpenBLAS {blasThreads} threads)";
        if (describe && r.TryGetProperty("sgemm_gflops", out var mm) && mm.ValueKind == JsonValueKind.Number)
            AnsiConsole.MarkupLine($"{Markup.Escape(contender)} torch.mm {options.GemmSize}³ at {threads} thread(s): {mm.GetDouble():F1} GFLOP/s");
        double peerFlops = r.GetProperty("flops_per_token").GetDouble();
        if (describe && threads == options.Threads[0])
            AnsiConsole.MarkupLine($"PyTorch {Markup.Escape(r.GetProperty("torch_version").GetString() ?? "?")}: {r.GetProperty("params").GetInt64():N0} parameters");
        if (threads == options.Threads[0] && Math.Abs(peerFlops - flopsPerToken) > 1e-6 * flopsPerToken)
            AnsiConsole.MarkupLine($"[yellow]warning:[/] PyTorch counts {peerFlops:N0} FLOPs/token, NanoSparse {flopsPerToken:N0}: the models differ in size");
        var times = r.GetProperty("iters_ms").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        double median = Median(times);
        int tokens = options.Preset.BatchSize * options.Preset.BlockSize;
        return new Measurement(contender, threads, times, median,
            tokens / (median / 1e3), peerFlops * tokens / (median / 1e3) / 1e9, double.NaN);
    }

    /// <summary>Dense sgemm rate (GFLOP/s) of an n×n×n <see cref="Gemm.Multiply"/>, median of repetitions.</summary>
    public static double SgemmGflops(int n)
    {
        var a = new float[n * n];
        var b = new float[n * n];
        var c = new float[n * n];
        var rng = new Numerics.Rng(7);
        for (int i = 0; i < a.Length; i++) { a[i] = rng.NextFloat() - 0.5f; b[i] = rng.NextFloat() - 0.5f; }
        Gemm.Multiply(false, false, n, n, n, 1f, a, n, b, n, 0f, c, n); // warm-up
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < 3 || (total.Elapsed.TotalSeconds < 0.5 && times.Count < 50))
        {
            long t0 = Stopwatch.GetTimestamp();
            Gemm.Multiply(false, false, n, n, n, 1f, a, n, b, n, 0f, c, n);
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            if (total.Elapsed.TotalSeconds > 20) break; // a slow placeholder GEMM: one or two samples are enough
        }
        return 2.0 * n * n * n / Median(times.ToArray()) / 1e9;
    }

    static void Render(List<Measurement> ms, Dictionary<int, double> sgemm, Options options)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("contender").AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("ms/iter").RightAligned()).AddColumn(new TableColumn("tokens/s").RightAligned())
            .AddColumn(new TableColumn("GFLOP/s").RightAligned()).AddColumn(new TableColumn("of sgemm").RightAligned())
            .AddColumn(new TableColumn("alloc B/iter").RightAligned());
        foreach (var m in ms)
        {
            table.AddRow(
                Markup.Escape(m.Contender), m.Threads.ToString(), $"{m.MedianMs:F2}", $"{m.TokensPerSecond:N0}", $"{m.Gflops:F1}",
                $"{100 * m.Gflops / sgemm[m.Threads]:F0}%", double.IsNaN(m.AllocatedBytesPerIter) ? "-" : $"{m.AllocatedBytesPerIter:N0}");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("median of the timed iterations of all rounds; GFLOP/s counts nanoGPT's 6N + 12·L·H·Q·T FLOPs per token; " +
                               "'of sgemm' is that rate over NanoSparse's dense sgemm rate at the same threads");
        foreach (var (threads, rate) in sgemm)
            AnsiConsole.MarkupLine($"NanoSparse sgemm {options.GemmSize}³ at {threads} thread(s): {rate:F1} GFLOP/s");

        var ns = ms.Where(m => m.Contender == "NanoSparse").ToList();
        var pt = ms.Where(m => m.Contender != "NanoSparse").ToList();
        if (pt.Count == 0) return;
        foreach (int threads in options.Threads)
        {
            double r = ns.First(m => m.Threads == threads).MedianMs / pt.First(m => m.Threads == threads && m.Contender == "PyTorch").MedianMs;
            AnsiConsole.MarkupLine($"ratio at {threads} thread(s): NanoSparse / PyTorch ms/iter = {r:F3}");
        }
        var bestPeer = pt.MinBy(m => m.MedianMs)!;
        AnsiConsole.MarkupLine($"fastest peer: {Markup.Escape(bestPeer.Contender)} at {bestPeer.Threads} thread(s), {bestPeer.MedianMs:F2} ms/iter");
        double best = ns.Min(m => m.MedianMs) / bestPeer.MedianMs;
        var color = best <= 0.5 ? "green" : "red";
        AnsiConsole.MarkupLine($"[bold]ratio NanoSparse best / PyTorch best ms/iter = [{color}]{best:F3}[/][/] (target ≤ 0.5)");
    }

    static JsonObject ToJson(Options options, GptConfig config, long parameterCount, double flopsPerIter, List<Measurement> ms, Dictionary<int, double> sgemm)
    {
        var ns = ms.Where(m => m.Contender == "NanoSparse").ToList();
        var pt = ms.Where(m => m.Contender != "NanoSparse").ToList();
        var rows = new JsonArray();
        foreach (var m in ms)
        {
            rows.Add(new JsonObject
            {
                ["contender"] = m.Contender, ["threads"] = m.Threads, ["median_ms"] = m.MedianMs,
                ["iters_ms"] = new JsonArray(m.IterationsMs.Select(t => (JsonNode)t).ToArray()),
                ["tokens_per_s"] = m.TokensPerSecond, ["gflops"] = m.Gflops,
                ["fraction_of_sgemm"] = m.Gflops / sgemm[m.Threads],
                ["allocated_bytes_per_iter"] = double.IsNaN(m.AllocatedBytesPerIter) ? null : m.AllocatedBytesPerIter,
            });
        }
        return new JsonObject
        {
            ["bench"] = "train", ["preset"] = options.Preset.Name, ["n_layer"] = config.NLayer, ["n_head"] = config.NHead,
            ["n_embd"] = config.NEmbd, ["block_size"] = config.BlockSize, ["batch_size"] = options.Preset.BatchSize,
            ["vocab_size"] = config.VocabSize, ["dropout"] = config.Dropout, ["parameters"] = parameterCount,
            ["flops_per_iter"] = flopsPerIter, ["iters"] = options.Iters, ["warmup"] = options.Warmup, ["rounds"] = options.Rounds,
            ["data_loading"] = "excluded (random batches made before timing, both sides)",
            ["sgemm_n"] = options.GemmSize,
            ["sgemm_gflops"] = new JsonObject(sgemm.Select(kv => KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)kv.Value))),
            ["results"] = rows,
            ["ratio_best_ms"] = pt.Count == 0 ? null : ns.Min(m => m.MedianMs) / pt.Min(m => m.MedianMs),
            ["machine"] = $"{Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
        };
    }

    internal static void WriteJson(string path, JsonObject result)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true })) result.WriteTo(writer);
            stream.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}");
    }

    internal static double Median(double[] values)
    {
        var s = values.OrderBy(v => v).ToArray();
        int n = s.Length;
        return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    }
}
