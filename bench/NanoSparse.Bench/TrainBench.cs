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
/// NanoSparse beside PyTorch running nanoGPT's loop body (bench/peers/train_torch.py) in the same run, same shapes.
/// PyTorch has two thread pools (its own intra-op pool and OpenBLAS's, which runs the matmuls); the peer runs at every
/// pair (torch threads, BLAS threads) of the --threads counts and its best counts as "PyTorch best". With
/// <c>--nanogpt DIR</c>, nanoGPT's own train.py from that checkout runs at the same pairs too (<see cref="NanoGptTrainPy"/>).
/// Data loading is excluded from NanoSparse and the peer: random token batches are made before timing.
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
        var warmup = new Option<int?>("--warmup")
        {
            Description = $"untimed iterations first, every contender (default {DefaultWarmup}: a PyTorch step reaches its steady " +
                          "speed only after its first few page-fault their memory in; train.py's MFU skips 5 too)",
        };
        var threads = new Option<int[]>("--threads")
        {
            Description = "thread counts to measure: NanoSparse at each, PyTorch at each pair (torch threads, OpenBLAS threads) (default: 1 2)",
            DefaultValueFactory = _ => [1, 2],
            AllowMultipleArgumentsPerToken = true,
        };
        var vocab = new Option<int?>("--vocab") { Description = "vocabulary size (default: data/brown/meta.json, else the Brown char vocabulary)" };
        var gemmSize = new Option<int>("--gemm-size") { Description = "n of the n×n×n sgemm reference rate", DefaultValueFactory = _ => 1024 };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file" };
        var python = new Option<string>("--python") { Description = "Python with torch for the peer", DefaultValueFactory = _ => TorchPeer.DefaultPython };
        var noPeer = new Option<bool>("--no-peer") { Description = "measure NanoSparse only" };
        var nanoGpt = new Option<DirectoryInfo?>("--nanogpt")
        {
            Description = "a karpathy/nanoGPT checkout: also run its own train.py (cpu, float32, no compile) on a random dataset " +
                          "at every thread pair and print its ms/iter beside the peer's",
        };
        var rounds = new Option<int?>("--rounds")
        {
            Description = "measure every contender this many times in turn, each time --iters iterations; a figure is the " +
                          "median over all rounds, so a machine that slows down or speeds up meets every contender alike " +
                          "(default: baby 5, small 1)",
        };

        var command = new Command("train", "training step ms/iter: NanoSparse vs PyTorch (nanoGPT loop), same preset and threads");
        foreach (var o in new Option[] { preset, iters, warmup, threads, vocab, gemmSize, json, python, noPeer, nanoGpt, rounds }) command.Options.Add(o);
        command.SetAction(parseResult =>
        {
            var p = ModelPreset.Get(parseResult.GetValue(preset)!);
            var options = new Options(
                p,
                parseResult.GetValue(iters) ?? (p == ModelPreset.Small ? 3 : 20),
                parseResult.GetValue(warmup) ?? DefaultWarmup,
                parseResult.GetValue(threads) ?? [1, 2],
                parseResult.GetValue(vocab) ?? ModelPreset.DefaultVocab(),
                parseResult.GetValue(gemmSize),
                parseResult.GetValue(python)!,
                !parseResult.GetValue(noPeer),
                parseResult.GetValue(rounds) ?? (p == ModelPreset.Small ? 1 : 5),
                parseResult.GetValue(nanoGpt)?.ToString());
            var result = Run(options);
            var file = parseResult.GetValue(json);
            if (file != null) WriteJson(file.FullName, result);
            return 0;
        });
        return command;
    }

    /// <summary>Untimed iterations before the timed ones (run by the same loop that is timed, see train_torch.py). A fresh
    /// PyTorch process page-faults its memory in over its first 3-4 steps (issue 16, small widths at batch 32, train.py:
    /// 20.0, 15.5, 11.9, 11.1 CPU-s in iterations 1-4), so one warm-up iteration timed the start-up; nanoGPT's train.py
    /// also skips 5 before it reports MFU.</summary>
    public const int DefaultWarmup = 5;

    public sealed record Options(ModelPreset Preset, int Iters, int Warmup, int[] Threads, int Vocab, int GemmSize, string Python, bool RunPeer,
        int Rounds = 1, string? NanoGptDir = null)
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
            if (NanoGptDir != null)
            {
                NanoGptTrainPy.CheckDirectory(NanoGptDir);
                if (Vocab > 65536) throw new ArgumentException($"--vocab ({Vocab}) must be at most 65536 with --nanogpt (uint16 token files)");
            }
        }

        /// <summary>The (torch threads, BLAS threads) pairs PyTorch runs at: every pair of the --threads counts.</summary>
        public (int Torch, int Blas)[] ThreadPairs() =>
            Threads.Distinct().SelectMany(t => Threads.Distinct().Select(b => (t, b))).ToArray();
    }

    public const string NanoSparseName = "NanoSparse", PeerName = "PyTorch peer", NanoGptName = "nanoGPT train.py";

    /// <summary>One contender at one thread setting; <paramref name="BlasThreads"/> is OpenBLAS's pool for PyTorch
    /// (equal to <paramref name="Threads"/> for NanoSparse, which has one pool).</summary>
    public sealed record Measurement(string Contender, int Threads, int BlasThreads, double[] IterationsMs, double MedianMs, double TokensPerSecond,
        double Gflops, double AllocatedBytesPerIter)
    {
        public string Setting => Contender == NanoSparseName ? $"{Threads}" : $"torch {Threads} / BLAS {BlasThreads}";
    }

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
                               "random batches made before timing for NanoSparse and the peer (data loading excluded)");

        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(1337);
        double flopsPerToken = ModelPreset.FlopsPerToken(gpt.ParameterCount, config, T);
        double flopsPerIter = flopsPerToken * tokens;
        AnsiConsole.MarkupLine($"parameters {gpt.ParameterCount:N0}; {flopsPerIter / 1e9:F2} GFLOP per iteration ({flopsPerToken / 1e6:F2} MFLOP/token)");

        string? nanoGptDir = options.NanoGptDir == null ? null : NanoGptTrainPy.CheckDirectory(options.NanoGptDir);
        string? scratch = null;
        string? datasetDir = null;
        if (nanoGptDir != null)
        {
            scratch = Path.Combine(Path.GetTempPath(), $"nanosparse-nanogpt-{Environment.ProcessId}-{Guid.NewGuid():N}");
            datasetDir = NanoGptTrainPy.PrepareDataset(scratch, options.Vocab);
            AnsiConsole.MarkupLine($"nanoGPT train.py from [cyan]{Markup.Escape(nanoGptDir)}[/] on random tokens in {Markup.Escape(datasetDir)} " +
                                   "(its times include get_batch; iteration 0, with start-up and one eval batch, is never timed)");
        }

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
                }
                foreach (var (torchThreads, blasThreads) in options.ThreadPairs())
                {
                    // the peer and train.py at the same pair back to back, so that the machine's drift meets both alike
                    if (options.RunPeer) rounds.Add(MeasurePyTorch(options, torchThreads, blasThreads, flopsPerToken, round == 0));
                    if (nanoGptDir != null)
                        rounds.Add(MeasureNanoGpt(options, nanoGptDir, datasetDir!, Path.Combine(scratch!, "out"), torchThreads, blasThreads, flopsPerToken));
                }
            }
        }
        finally
        {
            KernelThreads.Max = savedMax;
            if (scratch != null) TryDelete(scratch);
        }
        var measurements = MergeRounds(rounds);

        Render(measurements, sgemm, options);
        return ToJson(options, config, gpt.ParameterCount, flopsPerIter, measurements, sgemm);
    }

    static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            AnsiConsole.MarkupLine($"[yellow]warning:[/] could not delete {Markup.Escape(dir)}: {Markup.Escape(e.Message)}");
        }
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
        return new Measurement(NanoSparseName, threads, threads, times, median, B * T / (median / 1e3), flopsPerIter / (median / 1e3) / 1e9, allocPerIter);
    }

    /// <summary>One row per (contender, threads, BLAS threads): the timed iterations of all its rounds and their median;
    /// rates scale with the median; allocation is the largest of any round.</summary>
    static List<Measurement> MergeRounds(List<Measurement> rounds) =>
        rounds.GroupBy(m => (m.Contender, m.Threads, m.BlasThreads)).Select(g =>
        {
            var first = g.First();
            var all = g.SelectMany(m => m.IterationsMs).ToArray();
            double median = Median(all);
            double speed = first.MedianMs / median;
            return new Measurement(first.Contender, first.Threads, first.BlasThreads, all, median, first.TokensPerSecond * speed, first.Gflops * speed,
                g.Max(m => m.AllocatedBytesPerIter));
        }).ToList();

    static Measurement MeasurePyTorch(Options options, int threads, int blasThreads, double flopsPerToken, bool describe)
    {
        var r = TorchPeer.Run(options.Python, "train_torch.py",
        [
            "--preset", options.Preset.Name, "--threads", threads.ToString(), "--iters", options.Iters.ToString(),
            "--warmup", options.Warmup.ToString(), "--vocab", options.Vocab.ToString(), "--gemm-size", (describe ? options.GemmSize : 0).ToString(),
        ], blasThreads: blasThreads, torchThreads: threads);
        string setting = $"torch {threads} / BLAS {blasThreads}";
        if (describe && r.TryGetProperty("sgemm_gflops", out var mm) && mm.ValueKind == JsonValueKind.Number)
            AnsiConsole.MarkupLine($"PyTorch torch.mm {options.GemmSize}³ at {setting} threads: {mm.GetDouble():F1} GFLOP/s");
        double peerFlops = r.GetProperty("flops_per_token").GetDouble();
        bool first = threads == options.Threads[0] && blasThreads == options.Threads[0];
        if (describe && first)
            AnsiConsole.MarkupLine($"PyTorch {Markup.Escape(r.GetProperty("torch_version").GetString() ?? "?")}: {r.GetProperty("params").GetInt64():N0} parameters");
        if (first && Math.Abs(peerFlops - flopsPerToken) > 1e-6 * flopsPerToken)
            AnsiConsole.MarkupLine($"[yellow]warning:[/] PyTorch counts {peerFlops:N0} FLOPs/token, NanoSparse {flopsPerToken:N0}: the models differ in size");
        var times = r.GetProperty("iters_ms").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        return PeerMeasurement(PeerName, options, threads, blasThreads, times, peerFlops);
    }

    static Measurement MeasureNanoGpt(Options options, string nanoGptDir, string datasetDir, string outDir, int threads, int blasThreads,
        double flopsPerToken)
    {
        var times = NanoGptTrainPy.Run(options.Python, nanoGptDir, options.Preset, datasetDir, outDir, options.Warmup, options.Iters, threads, blasThreads);
        return PeerMeasurement(NanoGptName, options, threads, blasThreads, times, flopsPerToken);
    }

    static Measurement PeerMeasurement(string contender, Options options, int threads, int blasThreads, double[] times, double flopsPerToken)
    {
        double median = Median(times);
        int tokens = options.Preset.BatchSize * options.Preset.BlockSize;
        return new Measurement(contender, threads, blasThreads, times, median, tokens / (median / 1e3), flopsPerToken * tokens / (median / 1e3) / 1e9, double.NaN);
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
                Markup.Escape(m.Contender), m.Setting, $"{m.MedianMs:F2}", $"{m.TokensPerSecond:N0}", $"{m.Gflops:F1}",
                $"{100 * m.Gflops / SgemmAt(sgemm, m):F0}%", double.IsNaN(m.AllocatedBytesPerIter) ? "-" : $"{m.AllocatedBytesPerIter:N0}");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("median of the timed iterations of all rounds; GFLOP/s counts nanoGPT's 6N + 12·L·H·Q·T FLOPs per token; " +
                               "'of sgemm' is that rate over NanoSparse's dense sgemm rate at the same (larger) thread count");
        foreach (var (threads, rate) in sgemm)
            AnsiConsole.MarkupLine($"NanoSparse sgemm {options.GemmSize}³ at {threads} thread(s): {rate:F1} GFLOP/s");

        var ns = ms.Where(m => m.Contender == NanoSparseName).ToList();
        var pt = ms.Where(m => m.Contender == PeerName).ToList();
        var ng = ms.Where(m => m.Contender == NanoGptName).ToList();
        if (pt.Count > 0 && ng.Count > 0)
        {
            var side = new Table().Border(TableBorder.Rounded).AddColumn("torch / BLAS threads")
                .AddColumn(new TableColumn("peer ms/iter").RightAligned()).AddColumn(new TableColumn("train.py ms/iter").RightAligned())
                .AddColumn(new TableColumn("peer / train.py").RightAligned());
            foreach (var p in pt)
            {
                var n = ng.FirstOrDefault(x => x.Threads == p.Threads && x.BlasThreads == p.BlasThreads);
                if (n != null) side.AddRow($"{p.Threads} / {p.BlasThreads}", $"{p.MedianMs:F2}", $"{n.MedianMs:F2}", $"{p.MedianMs / n.MedianMs:F3}");
            }
            AnsiConsole.Write(side);
        }
        foreach (int threads in options.Threads.Distinct())
        {
            var p = pt.FirstOrDefault(m => m.Threads == threads && m.BlasThreads == threads);
            if (p == null) continue;
            double r = ns.First(m => m.Threads == threads).MedianMs / p.MedianMs;
            AnsiConsole.MarkupLine($"ratio at {threads} thread(s): NanoSparse / PyTorch (torch {threads} / BLAS {threads}) ms/iter = {r:F3}");
        }
        double nsBest = ns.Min(m => m.MedianMs);
        if (pt.Count > 0)
        {
            var bestPeer = pt.MinBy(m => m.MedianMs)!;
            AnsiConsole.MarkupLine($"PyTorch best: peer at {bestPeer.Setting} threads, {bestPeer.MedianMs:F2} ms/iter");
            double best = nsBest / bestPeer.MedianMs;
            var color = best <= 0.5 ? "green" : "red";
            AnsiConsole.MarkupLine($"[bold]ratio NanoSparse best / PyTorch best ms/iter = [{color}]{best:F3}[/][/] (target ≤ 0.5)");
        }
        if (ng.Count > 0)
        {
            var bestNg = ng.MinBy(m => m.MedianMs)!;
            AnsiConsole.MarkupLine($"nanoGPT train.py best: {bestNg.Setting} threads, {bestNg.MedianMs:F2} ms/iter");
            AnsiConsole.MarkupLine($"[bold]ratio NanoSparse best / nanoGPT train.py best ms/iter = {nsBest / bestNg.MedianMs:F3}[/]");
            if (pt.Count > 0)
                AnsiConsole.MarkupLine($"ratio PyTorch peer best / nanoGPT train.py best ms/iter = {pt.Min(m => m.MedianMs) / bestNg.MedianMs:F3} " +
                                       "(1 when the peer times what train.py does)");
        }
    }

    /// <summary>NanoSparse's sgemm rate at a row's larger pool (PyTorch's GEMMs run on OpenBLAS's pool).</summary>
    static double SgemmAt(Dictionary<int, double> sgemm, Measurement m) => sgemm[Math.Max(m.Threads, m.BlasThreads)];

    static JsonObject ToJson(Options options, GptConfig config, long parameterCount, double flopsPerIter, List<Measurement> ms, Dictionary<int, double> sgemm)
    {
        var ns = ms.Where(m => m.Contender == NanoSparseName).ToList();
        var pt = ms.Where(m => m.Contender == PeerName).ToList();
        var ng = ms.Where(m => m.Contender == NanoGptName).ToList();
        var rows = new JsonArray();
        foreach (var m in ms)
        {
            rows.Add(new JsonObject
            {
                ["contender"] = m.Contender, ["threads"] = m.Threads,
                ["blas_threads"] = m.Contender == NanoSparseName ? null : m.BlasThreads, ["median_ms"] = m.MedianMs,
                ["iters_ms"] = new JsonArray(m.IterationsMs.Select(t => (JsonNode)t).ToArray()),
                ["tokens_per_s"] = m.TokensPerSecond, ["gflops"] = m.Gflops,
                ["fraction_of_sgemm"] = m.Gflops / SgemmAt(sgemm, m),
                ["allocated_bytes_per_iter"] = double.IsNaN(m.AllocatedBytesPerIter) ? null : m.AllocatedBytesPerIter,
            });
        }
        double nsBest = ns.Min(m => m.MedianMs);
        return new JsonObject
        {
            ["bench"] = "train", ["preset"] = options.Preset.Name, ["n_layer"] = config.NLayer, ["n_head"] = config.NHead,
            ["n_embd"] = config.NEmbd, ["block_size"] = config.BlockSize, ["batch_size"] = options.Preset.BatchSize,
            ["vocab_size"] = config.VocabSize, ["dropout"] = config.Dropout, ["parameters"] = parameterCount,
            ["flops_per_iter"] = flopsPerIter, ["iters"] = options.Iters, ["warmup"] = options.Warmup, ["rounds"] = options.Rounds,
            ["data_loading"] = "excluded for NanoSparse and the peer (random batches made before timing); train.py's times include its get_batch",
            ["nanogpt_dir"] = options.NanoGptDir == null ? null : Path.GetFullPath(options.NanoGptDir),
            ["sgemm_n"] = options.GemmSize,
            ["sgemm_gflops"] = new JsonObject(sgemm.Select(kv => KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)kv.Value))),
            ["results"] = rows,
            ["ratio_best_ms"] = pt.Count == 0 ? null : nsBest / pt.Min(m => m.MedianMs),
            ["ratio_best_vs_nanogpt_ms"] = ng.Count == 0 ? null : nsBest / ng.Min(m => m.MedianMs),
            ["ratio_peer_best_vs_nanogpt_best_ms"] = ng.Count == 0 || pt.Count == 0 ? null : pt.Min(m => m.MedianMs) / ng.Min(m => m.MedianMs),
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
