using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench activation</c> (issue 22): decode with activation sparsity against the same model dense.
///   kernel   the sparse-input product (<see cref="SparseInputGemv"/>: gather the kept inputs, read only their rows of
///            Wᵀ) against our dense <see cref="Gemv"/> at the gpt2-124m Linear shapes, per input sparsity and thread
///            count, with both thread splits (outputs / kept rows), checked against a double-precision reference;
///   decode   tokens/s of the gpt2-124m shape with the char vocabulary, batch 1, N new tokens after a P-token prompt
///            through the KV cache (<see cref="SparseModelBench"/>'s decode loop), one row per mode and thread count.
/// Weights are random (nanoGPT init); TEAL/WINA thresholds are calibrated on the model's own activations for uniformly
/// random tokens (the calibration cost is its own column; the per-token gather and thresholding are in the decode
/// time). With --checkpoint the model is a trained checkpoint instead and the modes are dense plus one per
/// --thresholds file. Figures are medians over every round's samples, rounds interleaving all modes.
///
/// Extension point, for other row kinds (e.g. "predictor": MLP sparsity from a Deja Vu predictor; "controller": a
/// per-input gate): write a static method <c>IEnumerable&lt;ActivationMode&gt; YourModes(Options options)</c> in your own
/// file (a partial of this class or any static class), each mode a function that turns the dense decode model into the
/// model to time (its cost measured), and add it to <see cref="ModeProviders"/> with one line. Each mode's Prepare
/// receives the dense model (batch 1, <see cref="ModeContext.CalibrationLength"/> positions, held for inference) and
/// must not change it; it returns the model to decode and may set a note (e.g. a recall) for the table.
/// </summary>
public static partial class ActivationBench
{
    /// <summary>A row kind of the decode table: Name labels the row, Kind groups rows in the plot.</summary>
    public sealed record ActivationMode(string Name, string Kind, double Sparsity, Func<Gpt, ModeContext, PreparedMode> Prepare);

    /// <summary>What a mode made: the model to decode, seconds its preparation took (calibration, training a predictor), a note.</summary>
    public sealed record PreparedMode(Gpt Model, double PrepareSeconds, string Note = "");

    /// <summary>What a mode may use: the options, and random calibration tokens (windows × CalibrationLength) for the dense model.</summary>
    public sealed record ModeContext(Options Options, int[] CalibrationTokens, int CalibrationLength);

    /// <summary>The providers of decode rows, in table order (the dense row always comes first). Add yours here.</summary>
    static readonly Func<Options, IEnumerable<ActivationMode>>[] ModeProviders =
    [
        TealModes,
        CheckpointThresholdModes,
        CheckpointModelModes,
        PredictorModes,
        ControllerModes,
    ];

    public sealed record Options(string[] Parts, double[] Sparsities, string[] Methods, int[] Threads, int Rounds, int Reps, int Vocab,
        int Layers, int Prompt, int NewTokens, int CalibrationWindows, int CalibrationLength, string? Checkpoint, string[] ThresholdFiles,
        string PlotPrefix, int KernelReps, bool CpuTime = false, string[]? Models = null)
    {
        public void Validate()
        {
            foreach (double s in Sparsities) ActivationThresholds.CheckSparsity(s, "--sparsities: " + s.ToString(CultureInfo.InvariantCulture));
            foreach (var m in Methods)
                if (m is not (PredictorMethod or ControllerMethod)) ActivationThresholds.CheckMethod(m, "--methods");
            if (Threads.Length == 0 || Threads.Any(t => t < 1)) throw new ArgumentException($"--threads ({string.Join(" ", Threads)}) must be one or more counts >= 1");
            BenchUtil.CheckRepetitions("--rounds", Rounds);
            BenchUtil.CheckRepetitions("--reps", Reps);
            BenchUtil.CheckRepetitions("--kernel-reps", KernelReps);
            BenchUtil.CheckRange("--layers", Layers, 1, 1000, "layers of the decode model");
            BenchUtil.CheckRange("--calibration-windows", CalibrationWindows, 1, 4096, "calibration windows");
            if (Checkpoint is null)
            {
                BenchUtil.CheckRange("--calibration-length", CalibrationLength, 1, ModelPreset.Gpt2Small.BlockSize, "positions of a calibration window");
                BenchUtil.CheckRange("--prompt", Prompt, 1, ModelPreset.Gpt2Small.BlockSize - 1, "the prompt and at least one new token fit block_size");
                BenchUtil.CheckRange("--new-tokens", NewTokens, 1, ModelPreset.Gpt2Small.BlockSize - Prompt, "the prompt and the new tokens fit block_size");
                if (Vocab < 2) throw new ArgumentException($"--vocab ({Vocab}) must be at least 2");
            }
            if (ThresholdFiles.Length > 0 && Checkpoint is null) throw new ArgumentException("--thresholds needs --checkpoint (the model the thresholds were calibrated for)");
            CheckModels(this);
        }

        public GptConfig DecodeConfig() => ModelPreset.Gpt2Small.ToConfig(Vocab) with { NLayer = Layers };
    }

    public static Command CreateCommand()
    {
        var parts = new Option<string[]>("--parts") { Description = "what to measure: kernel decode", DefaultValueFactory = _ => ["kernel", "decode"], AllowMultipleArgumentsPerToken = true };
        parts.AcceptOnlyFromAmong("kernel", "decode");
        var sparsities = new Option<double[]>("--sparsities") { Description = "input sparsities (TEAL/WINA targets), each in [0, 1)", DefaultValueFactory = _ => [0.5, 0.7, 0.9], AllowMultipleArgumentsPerToken = true };
        var methods = new Option<string[]>("--methods") { Description = "row kinds of the decode table: teal wina (input thresholds), predictor (Deja Vu MLP neurons, random rank-64 predictors), controller (per-input gates over heads and MLP groups, kept = 1 - sparsity)", DefaultValueFactory = _ => ["teal", PredictorMethod], AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int[]>("--threads") { Description = "thread counts, each for every mode", DefaultValueFactory = _ => [1, 2], AllowMultipleArgumentsPerToken = true };
        var rounds = new Option<int>("--rounds") { Description = "times every mode is measured in turn (figures are medians over all rounds)", DefaultValueFactory = _ => 3 };
        var reps = new Option<int>("--reps") { Description = "timed generations per mode, thread count and round", DefaultValueFactory = _ => 1 };
        var kernelReps = new Option<int>("--kernel-reps") { Description = "timed samples per kernel cell (each ≥ 20 ms of calls)", DefaultValueFactory = _ => 5 };
        var vocab = new Option<int>("--vocab") { Description = "vocabulary of the decode model (the Brown char vocabulary by default)", DefaultValueFactory = _ => ModelPreset.BrownCharVocab };
        var layers = new Option<int>("--layers") { Description = "n_layer of the decode model (gpt2-124m's 12; fewer for a quick run)", DefaultValueFactory = _ => ModelPreset.Gpt2Small.NLayer };
        var prompt = new Option<int>("--prompt") { Description = "prompt tokens before decoding", DefaultValueFactory = _ => 64 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens decoded one at a time", DefaultValueFactory = _ => 256 };
        var calWindows = new Option<int>("--calibration-windows") { Description = "random-token windows the thresholds are calibrated on", DefaultValueFactory = _ => 2 };
        var calLength = new Option<int?>("--calibration-length") { Description = "positions per calibration window (default: prompt + new tokens, the positions decoding visits: a random model's attention output shrinks with the position)" };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "decode this trained checkpoint instead of the random gpt2-shaped model (modes: dense and --thresholds)" };
        var thresholdFiles = new Option<string[]>("--thresholds") { Description = "with --checkpoint: threshold files (teal calibrate) to decode with, one row each", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var json = new Option<FileInfo?>("--json") { Description = "results JSON (default: bench-results/activation.json)" };
        var cpuTime = new Option<bool>("--cpu-time") { Description = "kernel part: time calls by the process's CPU time instead of the wall clock (steadier on a shared machine; meaningful at one thread)" };
        var plot = new Option<string?>("--plot") { Description = "PNG path prefix (default: the --json path without .json; a trailing .png is dropped): PREFIX_decode.png, PREFIX_kernel.png" };
        var command = new Command("activation", "activation sparsity (TEAL/WINA input thresholds, sparse-input kernel) vs dense: kernel and decode tokens/s");
        var models = ModelsOption();
        foreach (var o in new Option[] { parts, sparsities, methods, threads, rounds, reps, kernelReps, vocab, layers, prompt, newTokens, calWindows, calLength, checkpoint, thresholdFiles, json, plot, cpuTime, models })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            string jsonPath = r.GetValue(json)?.FullName ?? Path.Combine("bench-results", "activation.json");
            var options = new Options(r.GetValue(parts)!, r.GetValue(sparsities)!, r.GetValue(methods)!, r.GetValue(threads)!, r.GetValue(rounds),
                r.GetValue(reps), r.GetValue(vocab), r.GetValue(layers), r.GetValue(prompt), r.GetValue(newTokens), r.GetValue(calWindows),
                r.GetValue(calLength) ?? r.GetValue(prompt) + r.GetValue(newTokens), r.GetValue(checkpoint), r.GetValue(thresholdFiles)!, SparseModelBench.PlotPrefix(r.GetValue(plot), new FileInfo(jsonPath)),
                r.GetValue(kernelReps), r.GetValue(cpuTime), r.GetValue(models));
            var result = Run(options);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!);
            TrainBench.WriteJson(jsonPath, result);
            return 0;
        });
        return command;
    }

    public sealed record Row(string Part, string Shape, string Mode, string Kind, double Sparsity, int Threads, double[] Samples, double Median,
        string Unit, double[]? CpuSamples = null, double? MeasuredSparsity = null, double PrepareSeconds = 0, string Note = "")
    {
        public double? CpuMedian => CpuSamples is { Length: > 0 } c ? BenchUtil.Median(c) : null;
    }

    public static JsonObject Run(Options options)
    {
        options.Validate();
        int saved = KernelThreads.Max;
        var rows = new List<Row>();
        try
        {
            if (options.Parts.Contains("kernel")) rows.AddRange(Kernel(options));
            if (options.Parts.Contains("decode")) rows.AddRange(Decode(options));
        }
        finally { KernelThreads.Max = saved; }
        Render(rows, options);
        Plot(options.Checkpoint is null ? rows : rows.Where(r => r.Part != "decode").ToList(), options.PlotPrefix);
        if (options.Checkpoint is not null) PlotCheckpointRows(rows, options.PlotPrefix);
        return new JsonObject
        {
            ["bench"] = "activation",
            ["options"] = JsonSerializer.SerializeToNode(options),
            ["rows"] = new JsonArray(rows.Select(r => (JsonNode)new JsonObject
            {
                ["part"] = r.Part, ["shape"] = r.Shape, ["mode"] = r.Mode, ["kind"] = r.Kind, ["sparsity"] = r.Sparsity, ["threads"] = r.Threads,
                ["unit"] = r.Unit, ["median"] = r.Median, ["samples"] = new JsonArray(r.Samples.Select(s => (JsonNode)s).ToArray()),
                ["cpu_median"] = r.CpuMedian, ["measured_sparsity"] = r.MeasuredSparsity, ["prepare_seconds"] = r.PrepareSeconds,
                ["speedup_vs_dense"] = Speedup(rows, r), ["note"] = r.Note,
            }).ToArray()),
        };
    }

    // ---- kernel ----

    /// <summary>The Linear shapes (In, Out) of a gpt2-124m block: c_attn, attn.c_proj, c_fc, mlp.c_proj.</summary>
    public static readonly (string Name, int In, int Out)[] KernelShapes =
        [("c_attn 768x2304", 768, 2304), ("a.c_proj 768x768", 768, 768), ("c_fc 768x3072", 768, 3072), ("m.c_proj 3072x768", 3072, 768)];

    static IEnumerable<Row> Kernel(Options options)
    {
        AnsiConsole.MarkupLine("[bold]kernel[/]: y = x·Wᵀ at one row; dense Gemv reads all of W, the sparse-input product gathers the inputs with " +
                               "|x_i| ≥ τ and reads only their rows of Wᵀ (gather included in its time); ms per call, medians");
        var rng = new Rng(7);
        foreach (var (name, I, O) in KernelShapes)
        {
            // Copies of W (and Wᵀ) rotated call by call, together past any cache: a decode step reads each matrix once
            // with the other layers' weights in between, so a repeated call on one cached W would flatter both kernels.
            int copies = (int)Math.Max(2, KernelWorkingSetBytes / (4L * I * O));
            var w = new float[copies][];
            var wt = new float[copies][];
            for (int c = 0; c < copies; c++)
            {
                w[c] = new float[I * O];
                for (int i = 0; i < w[c].Length; i++) w[c][i] = (float)(rng.NextGaussian() * 0.02);
                wt[c] = new float[w[c].Length];
                Transpose.Run(w[c], I, O, wt[c]);
            }
            var x = new float[I];
            for (int i = 0; i < I; i++) x[i] = (float)rng.NextGaussian();
            var y = new float[O];
            var indices = new int[I];
            var values = new float[I];
            var partials = new float[SparseInputGemv.PartialFloats(O)];
            int next = 0;
            foreach (int threads in options.Threads)
            {
                KernelThreads.Max = threads;
                var dense = BenchUtil.TimePerCall(() =>
                {
                    Gemv.Forward(y, x, w[next], default, 1, I, O);
                    next = (next + 1) % copies;
                }, 2, options.KernelReps, cpuTime: options.CpuTime);
                yield return new Row("kernel", name, "dense Gemv", "dense", 0, threads, dense, BenchUtil.Median(dense) * 1e3, "ms/call");
                foreach (double s in options.Sparsities)
                {
                    // τ at the s-quantile of |x|: exactly ⌊s·In⌋ inputs dropped (Gaussian x: no ties)
                    var sorted = x.Select(MathF.Abs).Order().ToArray();
                    float tau = s == 0 ? 0 : sorted[(int)Math.Floor(s * I)];
                    var thresholds = Enumerable.Repeat(tau, I).ToArray();
                    int kept = SparseInputGemv.Gather(x, thresholds, indices, values);
                    double err = MaxRelativeError(y, wt[0], x, thresholds, I, O, indices, values, kept, partials);
                    foreach (var split in new[] { SparseInputSplit.Outputs, SparseInputSplit.Inputs })
                    {
                        if (threads == 1 && split == SparseInputSplit.Inputs) continue;   // the same work at one thread
                        var t = BenchUtil.TimePerCall(() =>
                        {
                            int k = SparseInputGemv.Gather(x, thresholds, indices, values);
                            SparseInputGemv.Forward(y, wt[next], I, O, indices, values, k, default, default, partials, split);
                            next = (next + 1) % copies;
                        }, 2, options.KernelReps, cpuTime: options.CpuTime);
                        string mode = threads == 1 ? "sparse" : $"sparse/{(split == SparseInputSplit.Outputs ? "out" : "in")}";
                        yield return new Row("kernel", name, mode, split == SparseInputSplit.Outputs ? "outputs" : "inputs", 1.0 - (double)kept / I, threads, t,
                            BenchUtil.Median(t) * 1e3, "ms/call", Note: err.ToString("E1", CultureInfo.InvariantCulture));
                    }
                }
                AnsiConsole.MarkupLine($"[grey]  {Markup.Escape(name)} {threads} thr: dense {BenchUtil.Median(dense) * 1e3:F3} ms ({copies} copies of W rotated)[/]");
            }
        }
    }

    /// <summary>Bytes of weight copies the kernel part rotates through per shape (past the last-level cache).</summary>
    const long KernelWorkingSetBytes = 128L << 20;

    // Runs the product once and compares it with a double-precision sum over the kept inputs (relative to max |y_ref|).
    static double MaxRelativeError(float[] y, float[] wt, float[] x, float[] thresholds, int I, int O, int[] indices, float[] values, int kept, float[] partials)
    {
        double worst = 0;
        foreach (var split in new[] { SparseInputSplit.Outputs, SparseInputSplit.Inputs })
        {
            SparseInputGemv.Forward(y, wt, I, O, indices, values, kept, default, default, partials, split);
            var reference = new double[O];
            for (int i = 0; i < I; i++)
                if (MathF.Abs(x[i]) >= thresholds[i])
                    for (int o = 0; o < O; o++) reference[o] += (double)x[i] * wt[(long)i * O + o];
            double scale = Math.Max(1e-30, reference.Max(Math.Abs));
            for (int o = 0; o < O; o++) worst = Math.Max(worst, Math.Abs(y[o] - reference[o]) / scale);
        }
        if (worst > 1e-4) throw new InvalidOperationException($"sparse-input product differs from the double reference by {worst:E2} (relative)");
        return worst;
    }

    // ---- decode ----

    static IEnumerable<ActivationMode> TealModes(Options options)
    {
        if (options.Checkpoint is not null) yield break;
        foreach (var method in options.Methods.Where(m => m is not (PredictorMethod or ControllerMethod)))
            foreach (double s in options.Sparsities)
                yield return new ActivationMode($"{method} {s * 100:0.#}%", method, s, (dense, ctx) =>
                {
                    long t0 = Stopwatch.GetTimestamp();
                    // scored at the positions decoding visits (after the prompt): a random model's attention output shrinks with the position
                    int first = Math.Min(ctx.Options.Prompt, ctx.CalibrationLength - 1);
                    var thresholds = TealCalibration.Calibrate(dense, ctx.CalibrationTokens, method, s, maxSamples: 1 << 18, firstPosition: first);
                    var model = ActivationSparsity.Apply(dense, thresholds, decodeCopies: true);
                    return new PreparedMode(model, Stopwatch.GetElapsedTime(t0).TotalSeconds, "thresholds from the model's own activations on random tokens");
                });
    }

    static IEnumerable<ActivationMode> CheckpointThresholdModes(Options options)
    {
        foreach (var file in options.ThresholdFiles)
        {
            var t = ActivationThresholds.Load(file);
            yield return new ActivationMode($"{t.Method} {t.TargetSparsity * 100:0.#}% ({Path.GetFileName(file)})", t.Method, t.TargetSparsity, (dense, _) =>
            {
                long t0 = Stopwatch.GetTimestamp();
                var model = ActivationSparsity.Apply(dense, t, decodeCopies: true, file);
                return new PreparedMode(model, Stopwatch.GetElapsedTime(t0).TotalSeconds, $"calibrated on {t.CalibrationWindows} windows of {t.CalibrationData}");
            });
        }
    }

    static IEnumerable<Row> Decode(Options options)
    {
        Gpt dense;
        string model;
        if (options.Checkpoint is { } dir)
        {
            dense = Checkpoint.LoadAnyModel(dir, 1, 1, out _);
            model = $"{dir} (L={dense.Config.NLayer}, C={dense.Config.NEmbd}, V={dense.Config.VocabSize})";
        }
        else
        {
            dense = new Gpt(options.DecodeConfig(), 1, options.CalibrationLength);
            dense.InitializeWeights(1337);
            model = $"gpt2{(options.Layers != ModelPreset.Gpt2Small.NLayer ? $" L={options.Layers}" : "")} V={options.Vocab}";
        }
        dense.PrepareForInference();
        var config = dense.Config;
        int prompt = Math.Min(options.Prompt, config.BlockSize - 1), newTokens = Math.Min(options.NewTokens, config.BlockSize - prompt);
        var rng = new Rng(99);
        var calibration = new int[options.CalibrationWindows * dense.SeqLen];
        for (int i = 0; i < calibration.Length; i++) calibration[i] = (int)(rng.NextUInt64() % (ulong)config.VocabSize);
        var ctx = new ModeContext(options, calibration, dense.SeqLen);
        var modes = ModeProviders.SelectMany(p => p(options)).ToList();
        AnsiConsole.MarkupLine($"[bold]decode[/] {Markup.Escape(model)}: batch 1, {newTokens} new tokens after a {prompt}-token prompt, {options.Rounds} round(s) " +
                               $"interleaving dense and {modes.Count} mode(s); [yellow]random weights, thresholds calibrated on the model's own activations for random tokens at positions {Math.Min(prompt, dense.SeqLen - 1)}..{dense.SeqLen - 1}[/]" +
                               (options.Checkpoint is null ? "" : " (checkpoint: thresholds from the given files)"));

        // Every mode prepared once (its cost recorded), then timed in turn each round.
        var prepared = new List<(ActivationMode Mode, PreparedMode Prepared)> { (new ActivationMode("dense", "dense", 0, (d, _) => new PreparedMode(d, 0)), new PreparedMode(dense, 0)) };
        foreach (var mode in modes)
        {
            var p = mode.Prepare(dense, ctx);
            AnsiConsole.MarkupLine($"[grey]  prepared {Markup.Escape(mode.Name)} in {p.PrepareSeconds:F2} s[/]");
            prepared.Add((mode, p));
        }
        // a checkpoint decodes text: the first tokens of its dataset's val split, then its greedy choices (TextPrompt)
        var textPrompt = options.Checkpoint is { } ckpt ? TextPrompt(ckpt, prompt, config.VocabSize) : null;
        var promptTokens = textPrompt ?? Enumerable.Range(0, prompt).Select(i => (i * 7 + 3) % config.VocabSize).ToArray();
        var one = new int[1];
        var samples = new Dictionary<(string, int), (List<double> Wall, List<double> Cpu, List<double> Sparsity)>();
        for (int round = 0; round < options.Rounds; round++)
            foreach (var (mode, p) in prepared)
            {
                var gpt = p.Model;
                var cache = gpt.CreateKvCache();
                foreach (int threads in options.Threads)
                {
                    KernelThreads.Max = threads;
                    (double Wall, double Cpu) Generate()
                    {
                        cache.Reset();
                        var logits = gpt.ForwardCached(cache, promptTokens);
                        ResetModeCounts(gpt);
                        double c0 = SparseModelBench.ProcessCpuSeconds();
                        long t0 = Stopwatch.GetTimestamp();
                        for (int i = 0; i < newTokens; i++)
                        {
                            one[0] = textPrompt is null ? SparseModelBench.NextToken(logits, i, config.VocabSize) : System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);
                            logits = gpt.ForwardCached(cache, one);
                        }
                        return (Stopwatch.GetElapsedTime(t0).TotalSeconds, SparseModelBench.ProcessCpuSeconds() - c0);
                    }
                    if (round == 0) Generate();   // JIT and caches
                    if (!samples.TryGetValue((mode.Name, threads), out var list)) samples[(mode.Name, threads)] = list = ([], [], []);
                    for (int rep = 0; rep < options.Reps; rep++)
                    {
                        var (wall, cpu) = Generate();
                        list.Wall.Add(newTokens / wall);
                        list.Cpu.Add(newTokens / cpu);
                        list.Sparsity.Add(ModeSparsity(gpt));
                    }
                    AnsiConsole.MarkupLine($"[grey]  round {round + 1} {Markup.Escape(mode.Name)} {threads} thr: {list.Wall[^1]:F1} tokens/s[/]");
                }
            }
        foreach (var (mode, p) in prepared)
            foreach (int threads in options.Threads)
            {
                var (wall, cpu, sp) = samples[(mode.Name, threads)];
                yield return new Row("decode", model, mode.Name, mode.Kind, mode.Sparsity, threads, wall.ToArray(), BenchUtil.Median(wall.ToArray()), "tokens/s",
                    cpu.ToArray(), mode.Kind == "dense" || sp.Any(double.IsNaN) ? null : BenchUtil.Median(sp.ToArray()), p.PrepareSeconds, p.Note);
            }
    }

    // ---- output ----

    static double? Speedup(List<Row> rows, Row r)
    {
        var dense = rows.FirstOrDefault(x => x.Part == r.Part && x.Shape == r.Shape && x.Threads == r.Threads && x.Kind == "dense");
        if (dense is null) return null;
        return r.Part == "kernel" ? dense.Median / r.Median : r.Median / dense.Median;
    }

    static void Render(List<Row> rows, Options options)
    {
        var inv = CultureInfo.InvariantCulture;
        foreach (var part in new[] { "kernel", "decode" })
        {
            var partRows = rows.Where(r => r.Part == part).ToList();
            if (partRows.Count == 0) continue;
            var table = new Table().Title(part == "kernel" ? "sparse-input product vs dense Gemv (one row)" : "decode, batch 1");
            table.AddColumn(part == "kernel" ? "In x Out" : "model").AddColumn("mode").AddColumn(new TableColumn("sparsity").RightAligned())
                .AddColumn(new TableColumn("thr").RightAligned()).AddColumn(new TableColumn(part == "kernel" ? "ms/call" : "tokens/s").RightAligned())
                .AddColumn(new TableColumn("vs dense").RightAligned());
            if (part == "decode") table.AddColumn(new TableColumn("tok/CPU-s").RightAligned()).AddColumn(new TableColumn("prepare s").RightAligned());
            else table.AddColumn(new TableColumn("rel. err").RightAligned());
            foreach (var r in partRows)
            {
                var cells = new List<string>
                {
                    Markup.Escape(r.Shape), Markup.Escape(r.Mode),
                    r.Kind == "dense" ? "-" : (r.MeasuredSparsity ?? r.Sparsity).ToString("P1", inv), r.Threads.ToString(inv),
                    r.Median.ToString(part == "kernel" ? "F4" : "F1", inv), Speedup(rows, r) is double sp ? sp.ToString("F2", inv) + "x" : "-",
                };
                if (part == "decode") cells.AddRange([r.CpuMedian?.ToString("F1", inv) ?? "-", r.PrepareSeconds.ToString("F2", inv)]);
                else cells.Add(Markup.Escape(r.Note));
                table.AddRow(cells.ToArray());
            }
            AnsiConsole.Write(table);
            if (part == "decode")
                foreach (var note in partRows.Where(r => r.Note.Length > 0).GroupBy(r => r.Note))
                    AnsiConsole.MarkupLine(Markup.Escape($"{string.Join(", ", note.Select(r => r.Mode).Distinct())}: {note.Key}"));
        }
        // Issue 22's target: ≥ 1.4x decode at 50% (TEAL on all matrices).
        foreach (var r in rows.Where(r => r.Part == "decode" && r.Kind == ActivationMethods.Teal && Math.Abs(r.Sparsity - 0.5) < 1e-9))
            if (Speedup(rows, r) is double sp)
                AnsiConsole.MarkupLine($"target decode ≥ 1.4x at 50% (TEAL, all matrices), {r.Threads} thr: {sp:F2}x — {(sp >= 1.4 ? "[green]met[/]" : "[red]missed[/]")}");
    }

    static void Plot(List<Row> rows, string prefix)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(prefix));
        if (folder is not null) Directory.CreateDirectory(folder);
        foreach (var part in new[] { "decode", "kernel" })
        {
            var partRows = rows.Where(r => r.Part == part && r.Kind != "dense").ToList();
            if (partRows.Count == 0) continue;
            var plot = new ScottPlot.Plot();
            foreach (var g in partRows.GroupBy(r => (r.Kind, r.Threads, Shape: part == "kernel" ? r.Shape : "")))
            {
                var line = g.OrderBy(r => r.Sparsity).ToList();
                var scatter = plot.Add.Scatter(line.Select(r => (r.MeasuredSparsity ?? r.Sparsity) * 100).ToArray(), line.Select(r => Speedup(rows, r) ?? double.NaN).ToArray());
                scatter.LegendText = part == "kernel" ? $"{g.Key.Shape}, {g.Key.Kind} split, {g.Key.Threads} thr" : $"{g.Key.Kind}, {g.Key.Threads} thr";
            }
            var one = plot.Add.HorizontalLine(1);
            one.LinePattern = ScottPlot.LinePattern.Dashed;
            if (part == "decode")
            {
                var target = plot.Add.HorizontalLine(1.4);
                target.LinePattern = ScottPlot.LinePattern.Dotted;
                target.LegendText = "target at 50%";
            }
            plot.Title(part == "decode" ? $"decode tokens/s over dense: {rows.First(r => r.Part == "decode").Shape}" : "sparse-input product over dense Gemv (one row)");
            plot.XLabel("input sparsity (%)");
            plot.YLabel("speed-up (1 = dense)");
            plot.ShowLegend();
            string path = $"{prefix}_{part}.png";
            plot.SavePng(path, 900, 560);
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}");
        }
    }
}
