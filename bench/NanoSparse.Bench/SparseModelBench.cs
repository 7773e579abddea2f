using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Optim;
using NanoSparse.Sparse;
using NanoSparse.Sparsity;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench sparse-model</c> (issue 17): a GPT whose four block Linear weights are stored sparse, end to end,
/// beside the same GPT dense, in one run:
///   train    ms/iter of the `wide` preset's step (forward, backward, clip, AdamW) at each density, uniform and ERK,
///            and 2:4; PyTorch dense and PyTorch with masked weights (torch.nn.utils.prune) as peers;
///   decode   tokens/s of the gpt2-124m shape, batch 1, N new tokens after a P-token prompt through the KV cache;
///            ONNX Runtime in this process (NuGet Microsoft.ML.OnnxRuntime) and PyTorch's KV-cache loop as peers, both on
///            the dense model's own weights exported by bench/peers/export_onnx.py (<see cref="DecodePeers"/>);
///   prefill  tokens/s of one P-token prompt through the KV cache;
///   memory   bytes of the weights (values and index structures) plus AdamW's state and the gradients.
/// Weights are random at the wanted density (nanoGPT init on the stored positions): speed does not depend on the
/// values. Embeddings and the tied lm_head stay dense. Figures are medians over every round's samples, rounds
/// interleaving all contenders so a machine whose load drifts meets each alike.
/// </summary>
public static class SparseModelBench
{
    public const int Gpt2Vocab = 50257;

    /// <summary>
    /// Where the speed-up plots go (PREFIX_train.png, PREFIX_prefill.png, PREFIX_decode.png): --plot when given (a
    /// trailing .png dropped, so `--plot out/x.png` writes out/x_decode.png rather than out/x.png_decode.png), else
    /// beside the --json file (its path without .json), else bench-results/sparse-model (the benches' results folder).
    /// </summary>
    public static string PlotPrefix(string? plot, FileInfo? json) =>
        plot is not null ? (plot.EndsWith(".png", StringComparison.OrdinalIgnoreCase) ? plot[..^4] : plot)
        : json is null ? Path.Combine("bench-results", "sparse-model") : Path.ChangeExtension(json.FullName, null);

    public static Command CreateCommand()
    {
        var parts = new Option<string[]>("--parts") { Description = "what to measure: train decode prefill memory", DefaultValueFactory = _ => ["train", "decode", "prefill", "memory"], AllowMultipleArgumentsPerToken = true };
        parts.AcceptOnlyFromAmong("train", "decode", "prefill", "memory");
        var densities = new Option<double[]>("--densities") { Description = "densities of the block Linear weights (1 = dense, always measured)", DefaultValueFactory = _ => [0.5, 0.3, 0.2, 0.1, 0.05], AllowMultipleArgumentsPerToken = true };
        var distributions = new Option<string[]>("--distributions") { Description = "how a density is spread over the weights: uniform erk", DefaultValueFactory = _ => ["uniform", "erk"], AllowMultipleArgumentsPerToken = true };
        distributions.AcceptOnlyFromAmong("uniform", "erk");
        var nm = new Option<string[]>("--nm") { Description = "N:M patterns along the reduction dimension (none: skip)", DefaultValueFactory = _ => ["2:4"], AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int[]>("--threads") { Description = "thread counts, each for every contender", DefaultValueFactory = _ => [1, 2], AllowMultipleArgumentsPerToken = true };
        var rounds = new Option<int>("--rounds") { Description = "times every contender is measured in turn (figures are medians over all rounds)", DefaultValueFactory = _ => 3 };
        var iters = new Option<int>("--iters") { Description = "timed training steps per contender and round", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed training steps first", DefaultValueFactory = _ => 1 };
        var reps = new Option<int>("--reps") { Description = "timed generations (decode) and prompts (prefill) per contender and round", DefaultValueFactory = _ => 2 };
        var batch = new Option<int?>("--batch") { Description = "training batch size (default: the wide preset's 8)" };
        var trainVocab = new Option<int?>("--vocab") { Description = "training vocabulary (default: data/brown/meta.json, else the Brown char vocabulary)" };
        var decodeVocabs = new Option<int[]?>("--decode-vocab") { Description = "vocabularies of the decode model (default: the char vocabulary and GPT-2's 50257)", AllowMultipleArgumentsPerToken = true };
        var decodeLayers = new Option<int?>("--decode-layers") { Description = "n_layer of the decode model (default: gpt2-124m's 12; fewer for a quick run)" };
        var prompt = new Option<int>("--prompt") { Description = "prompt tokens before decoding", DefaultValueFactory = _ => 64 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens decoded one at a time", DefaultValueFactory = _ => 256 };
        var prefill = new Option<int>("--prefill") { Description = "prompt tokens of the prefill measurement", DefaultValueFactory = _ => 512 };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file" };
        var plot = new Option<string?>("--plot") { Description = "PNG path prefix of the speed-up plots, PREFIX_train.png etc.; a trailing .png is dropped (default: the --json path without .json, else bench-results/sparse-model)" };
        var python = new Option<string>("--python") { Description = "Python with torch (training peer) and onnx + scipy (the ONNX export of the decode peers)", DefaultValueFactory = _ => TorchPeer.DefaultPython };
        var noPeer = new Option<bool>("--no-peer") { Description = "measure NanoSparse only (no PyTorch, no ONNX Runtime)" };
        var keepSell = new Option<bool>("--keep-sell") { Description = "decode/prefill: CSR layouts keep a decode copy for rows = 1 (SELL or SELL-256, see --decode-copy: faster SpMV, 3-7 more bytes per stored value)" };
        var decodeCopy = new Option<DecodeCopyFormat>("--decode-copy") { Description = "with --keep-sell: the copy's format, auto (per weight, the least estimated time), sell (32-column blocks), sell128, sell256 (128-, 256-column blocks), bitmap, or sell128packed / sell64packed (SELL-128-σ / SELL-64-σ without padding)", DefaultValueFactory = _ => DecodeCopyFormat.Auto };

        var command = new Command("sparse-model", "a GPT with sparse weights vs the same GPT dense (and PyTorch): training step, decode, prefill, memory");
        foreach (var o in new Option[] { parts, densities, distributions, nm, threads, rounds, iters, warmup, reps, batch, trainVocab, decodeVocabs, decodeLayers, prompt, newTokens, prefill, json, plot, python, noPeer, keepSell, decodeCopy })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            int vocab = r.GetValue(trainVocab) ?? ModelPreset.DefaultVocab();
            var file = r.GetValue(json);
            var options = new Options(
                r.GetValue(parts)!, r.GetValue(densities)!, r.GetValue(distributions)!, r.GetValue(nm)!, r.GetValue(threads)!,
                r.GetValue(rounds), r.GetValue(iters), r.GetValue(warmup), r.GetValue(reps), r.GetValue(batch) ?? ModelPreset.Wide.BatchSize,
                vocab, r.GetValue(decodeVocabs) is { Length: > 0 } dv ? dv : [vocab, Gpt2Vocab], r.GetValue(decodeLayers) ?? ModelPreset.Gpt2Small.NLayer,
                r.GetValue(prompt), r.GetValue(newTokens), r.GetValue(prefill),
                PlotPrefix(r.GetValue(plot), file),
                r.GetValue(python)!, !r.GetValue(noPeer), r.GetValue(keepSell), r.GetValue(decodeCopy));
            var result = Run(options);
            if (file != null) TrainBench.WriteJson(file.FullName, result);
            return 0;
        });
        return command;
    }

    public sealed record Options(string[] Parts, double[] Densities, string[] Distributions, string[] Nm, int[] Threads, int Rounds, int Iters,
        int Warmup, int Reps, int Batch, int Vocab, int[] DecodeVocabs, int DecodeLayers, int Prompt, int NewTokens, int Prefill,
        string PlotPrefix, string Python, bool RunPeer, bool KeepSell = false, DecodeCopyFormat DecodeCopy = DecodeCopyFormat.Auto)
    {
        public void Validate()
        {
            foreach (double d in Densities)
                if (!(d > 0 && d <= 1)) throw new ArgumentException($"--densities: {d.ToString(CultureInfo.InvariantCulture)} is not a density in (0, 1]");
            foreach (var p in Nm.Where(p => p != "none")) ParseNm(p);
            if (Threads.Length == 0 || Threads.Any(t => t < 1)) throw new ArgumentException($"--threads ({string.Join(" ", Threads)}) must be one or more counts >= 1");
            BenchUtil.CheckRepetitions("--rounds", Rounds);
            BenchUtil.CheckRepetitions("--iters", Iters);
            BenchUtil.CheckRepetitions("--warmup", Warmup, min: 0);
            BenchUtil.CheckRepetitions("--reps", Reps);
            BenchUtil.CheckRange("--batch", Batch, 1, 4096, "a training batch of sequences");
            BenchUtil.CheckRange("--decode-layers", DecodeLayers, 1, 1000, "layers of the decode model");
            var decode = DecodeConfig(2);
            BenchUtil.CheckRange("--prompt", Prompt, 1, decode.BlockSize - 1, "the prompt and at least one new token fit block_size");
            BenchUtil.CheckRange("--new-tokens", NewTokens, 1, decode.BlockSize - Prompt, $"the prompt and the new tokens fit block_size {decode.BlockSize}");
            BenchUtil.CheckRange("--prefill", Prefill, 1, decode.BlockSize, $"a prompt fits block_size {decode.BlockSize}");
            if (Vocab < 2) throw new ArgumentException($"--vocab ({Vocab}) must be at least 2");
            if (DecodeVocabs.Any(v => v < 2)) throw new ArgumentException($"--decode-vocab ({string.Join(" ", DecodeVocabs)}) must be counts >= 2");
            BenchUtil.CheckVocab("--vocab", ModelPreset.Wide.ToConfig(Vocab), Batch, ModelPreset.Wide.BlockSize, GptUse.Training);
            foreach (int v in DecodeVocabs) BenchUtil.CheckVocab("--decode-vocab", DecodeConfig(v), 1, 1, GptUse.Decoding);
        }

        public GptConfig DecodeConfig(int vocab) => ModelPreset.Gpt2Small.ToConfig(vocab) with { NLayer = DecodeLayers };
    }

    /// <summary>One model variant: dense, a density spread uniformly or by ERK over the block weights (CSR), or N:M.</summary>
    public sealed record Variant(string Label, string Kind, double Density, int N = 0, int M = 0)
    {
        public static readonly Variant Dense = new("dense", "dense", 1.0);
    }

    /// <summary>A contender's samples; decode rows also carry tokens per second of this process's (or the peer
    /// process's) CPU time, which a machine loaded by others disturbs far less than wall time.</summary>
    public sealed record Row(string Part, string Model, string Variant, string Kind, double Density, string Contender, int Threads,
        double[] Samples, double Median, string Unit, double[]? CpuSamples = null, int Round = 0)
    {
        /// <summary>Speed-ups over our dense in each round (the round's median against dense's in the same round): the
        /// machine's state drifts between rounds, and a ratio taken within one round pairs contenders that ran minutes
        /// apart at most. Null for dense and the peers, and before rounds are merged.</summary>
        public double[]? RoundSpeedups { get; init; }
        public double? CpuMedian => CpuSamples is { Length: > 0 } c ? BenchUtil.Median(c) : null;
    }

    /// <summary>CPU seconds this process has used, all its threads together.</summary>
    public static double ProcessCpuSeconds()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime.TotalSeconds;
    }

    public static JsonObject Run(Options options)
    {
        options.Validate();
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 180);
        var variants = Variants(options);
        var train = ModelPreset.Wide.ToConfig(options.Vocab);
        AnsiConsole.MarkupLine($"[bold]bench sparse-model[/]: variants {string.Join(", ", variants.Select(v => v.Label))}; threads {string.Join(" ", options.Threads)}; " +
                               $"{options.Rounds} round(s), every contender in turn; [yellow]random weights at the wanted density[/] (speed does not depend on the values); " +
                               $"embeddings and the tied lm_head stay dense; {(HugePages.Enabled ? "2 MB pages advised for weights, decode copies and KV caches (NANOSPARSE_HUGE_PAGES=0: off)" : "huge pages off")}");
        var rows = new List<Row>();
        var memory = new JsonArray();
        int savedMax = KernelThreads.Max;
        using var peers = options.RunPeer && options.Parts.Contains("decode") ? new DecodePeers(options.Python) : null;
        try
        {
            if (options.Parts.Contains("memory"))
            {
                memory = Memory(variants, train, options);
            }
            for (int round = 0; round < options.Rounds; round++)
            {
                if (options.Rounds > 1) AnsiConsole.MarkupLine($"[grey]round {round + 1} of {options.Rounds}[/]");
                int r = round;
                if (options.Parts.Contains("train")) rows.AddRange(Train(variants, train, options, round).Select(x => x with { Round = r }));
                if (options.Parts.Contains("decode") || options.Parts.Contains("prefill"))
                    foreach (int vocab in options.DecodeVocabs)
                        rows.AddRange(Decode(variants, options.DecodeConfig(vocab), options, round, peers).Select(x => x with { Round = r }));
            }
        }
        finally { KernelThreads.Max = savedMax; }

        var merged = rows.GroupBy(r => (r.Part, r.Model, r.Variant, r.Contender, r.Threads))
            .Select(g => g.First() with
            {
                Samples = g.SelectMany(r => r.Samples).ToArray(), Median = BenchUtil.Median(g.SelectMany(r => r.Samples).ToArray()),
                CpuSamples = g.All(r => r.CpuSamples != null) ? g.SelectMany(r => r.CpuSamples!).ToArray() : null,
                RoundSpeedups = RoundSpeedups(rows, g.Key),
            })
            .ToList();
        var targets = Render(merged, options);
        Plot(merged, options.PlotPrefix);
        return ToJson(options, train, merged, memory, targets, peers);
    }

    static List<Variant> Variants(Options options)
    {
        var list = new List<Variant> { Variant.Dense };
        foreach (var dist in options.Distributions)
            foreach (double d in options.Densities.Where(d => d < 1).Distinct().OrderByDescending(d => d))
                list.Add(new Variant($"{dist} {d.ToString("0.###", CultureInfo.InvariantCulture)}", dist, d));
        foreach (var p in options.Nm.Where(p => p != "none").Distinct())
        {
            var (n, m) = ParseNm(p);
            list.Add(new Variant($"{n}:{m}", "nm", (double)n / m, n, m));
        }
        return list;
    }

    static (int N, int M) ParseNm(string text)
    {
        var p = text.Split(':');
        if (p.Length == 2 && int.TryParse(p[0], out int n) && int.TryParse(p[1], out int m) && n >= 1 && n < m && m <= 64) return (n, m);
        throw new ArgumentException($"--nm: '{text}' is not N:M with 1 <= N < M <= 64 (e.g. 2:4), or none");
    }

    // ---- building the models ----

    /// <summary>The config of <paramref name="variant"/>, made by the library's helper (Sparsity.SparseModelConfig):
    /// CSR layouts at the variant's density spread uniformly or by ERK, or N:M; positions drawn from a fixed seed.</summary>
    public static GptConfig ConfigFor(GptConfig dense, Variant variant) => variant.Kind switch
    {
        "dense" => dense with { WeightLayouts = null },
        "nm" => SparseModelConfig.Apply(dense, 0, nm: $"{variant.N}:{variant.M}", seed: 1337),
        _ => SparseModelConfig.Apply(dense, 1 - variant.Density, variant.Kind == "erk" ? SparseModelConfig.ErdosRenyiKernel : SparseModelConfig.Uniform, seed: 1337),
    };

    // The spec Block builds a weight of layer 0 from (density and seed from the config).
    static LinearWeightSpec SpecOf(GptConfig c, string name, int outFeatures, int inFeatures) =>
        c.WeightLayout(0, name) == LinearWeightLayouts.Dense
            ? LinearWeightSpec.Full(outFeatures, inFeatures)
            : LinearWeightSpec.Random(outFeatures, inFeatures, c.WeightDensity(0, name), new Rng(c.WeightSeed(0, name)));

    /// <summary>The block's Linear weights (name, Out, In), the same in every layer.</summary>
    public static (string Name, int Out, int In)[] BlockWeightShapes(int C) =>
        [("attn.c_attn", 3 * C, C), ("attn.c_proj", C, C), ("mlp.c_fc", 4 * C, C), ("mlp.c_proj", C, 4 * C)];

    static double BlockDensity(Gpt gpt)
    {
        long stored = 0, logical = 0;
        foreach (var p in gpt.Parameters.Where(p => p.Layout != null)) { stored += p.Length; logical += p.LogicalLength; }
        return (double)stored / logical;
    }

    // ---- training ----

    static IEnumerable<Row> Train(List<Variant> variants, GptConfig dense, Options options, int round)
    {
        int B = options.Batch, T = dense.BlockSize;
        if (round == 0)
            AnsiConsole.MarkupLine($"[bold]train[/] wide: n_layer {dense.NLayer}, n_head {dense.NHead}, n_embd {dense.NEmbd}, block {T}, batch {B}, vocab {dense.VocabSize}; " +
                                   $"{options.Iters} timed steps after {options.Warmup} per contender and round; random token batches made before timing");
        var rng = new Rng(42);
        var xs = new int[2][];
        var ys = new int[2][];
        for (int b = 0; b < 2; b++)
        {
            xs[b] = new int[B * T];
            ys[b] = new int[B * T];
            for (int i = 0; i < B * T; i++) { xs[b][i] = rng.NextInt(dense.VocabSize); ys[b][i] = rng.NextInt(dense.VocabSize); }
        }
        foreach (var variant in variants)
        {
            var gpt = new Gpt(ConfigFor(dense, variant), B, T);
            gpt.InitializeWeights(1337);
            var segments = gpt.Parameters.Select(q => AdamW.SegmentOf(gpt.ParameterData, q.Value.Span, q.Decay));
            var optimizer = new AdamW(gpt.ParameterData.Length, segments, ModelPreset.Beta1, ModelPreset.Beta2, 1e-8f, ModelPreset.WeightDecay);
            void Step(int i)
            {
                gpt.ZeroGrad();
                gpt.Forward(xs[i % 2], ys[i % 2], training: true);
                gpt.Backward();
                GradientClipping.ClipByGlobalNorm(gpt.GradientData, ModelPreset.GradClip);
                optimizer.Step(gpt.ParameterData, gpt.GradientData, ModelPreset.LearningRate);
            }
            foreach (int threads in options.Threads)
            {
                KernelThreads.Max = threads;
                for (int i = 0; i < options.Warmup; i++) Step(i);
                var ms = new double[options.Iters];
                for (int i = 0; i < options.Iters; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    Step(i);
                    ms[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                }
                AnsiConsole.MarkupLine($"[grey]  train {Markup.Escape(variant.Label)} (stored {BlockDensity(gpt):P1} of block weights) {threads} thread(s): {BenchUtil.Median(ms):F0} ms/iter[/]");
                yield return new Row("train", "wide", variant.Label, variant.Kind, variant.Density, "NanoSparse", threads, ms, BenchUtil.Median(ms), "ms/iter");
            }
        }
        if (!options.RunPeer) yield break;
        // PyTorch dense, and masked as its users prune today (the mask's density does not change its speed: one
        // masked density, the lowest measured, stands for all).
        double maskDensity = variants.Where(v => v.Kind != "dense").Select(v => v.Density).DefaultIfEmpty(0.1).Min();
        foreach (var (contender, mask) in new[] { ("PyTorch", 1.0), ($"PyTorch masked ({maskDensity:0.###})", maskDensity) })
            foreach (int threads in options.Threads)
            {
                var r = TorchPeer.Run(options.Python, "train_torch.py",
                [
                    "--preset", "wide", "--threads", threads.ToString(), "--iters", options.Iters.ToString(), "--warmup", options.Warmup.ToString(),
                    "--vocab", dense.VocabSize.ToString(), "--batch-size", B.ToString(), "--gemm-size", "0",
                    "--mask-density", mask.ToString("R", CultureInfo.InvariantCulture),
                ], blasThreads: threads);
                var ms = r.GetProperty("iters_ms").EnumerateArray().Select(e => e.GetDouble()).ToArray();
                AnsiConsole.MarkupLine($"[grey]  train {Markup.Escape(contender)} {threads} thread(s): {BenchUtil.Median(ms):F0} ms/iter[/]");
                yield return new Row("train", "wide", mask < 1 ? "masked" : "dense", mask < 1 ? "masked" : "dense", mask, contender, threads, ms, BenchUtil.Median(ms), "ms/iter");
            }
    }

    // ---- decode and prefill ----

    static IEnumerable<Row> Decode(List<Variant> variants, GptConfig dense, Options options, int round, DecodePeers? peers)
    {
        string model = $"gpt2{(dense.NLayer != ModelPreset.Gpt2Small.NLayer ? $" L={dense.NLayer}" : "")} V={dense.VocabSize}";
        if (round == 0)
        {
            long block = 12L * dense.NEmbd * dense.NEmbd * dense.NLayer, embeddings = (long)(dense.VocabSize + dense.BlockSize) * dense.NEmbd;
            AnsiConsole.MarkupLine($"[bold]decode/prefill[/] {Markup.Escape(model)}: batch 1; decode {options.NewTokens} tokens after a {options.Prompt}-token prompt, " +
                                   $"prefill a {options.Prefill}-token prompt; block Linear weights {block:N0} of {block + embeddings:N0} weights " +
                                   $"({(double)block / (block + embeddings):P0}): the dense rest (embeddings, tied lm_head) caps the end-to-end gain");
        }
        bool doDecode = options.Parts.Contains("decode"), doPrefill = options.Parts.Contains("prefill");
        var promptTokens = Enumerable.Range(0, Math.Max(options.Prompt, options.Prefill)).Select(i => (i * 7 + 3) % dense.VocabSize).ToArray();
        var one = new int[1];
        foreach (var variant in variants)
        {
            var gpt = new Gpt(ConfigFor(dense, variant), 1, 1);
            gpt.InitializeWeights(1337);
            // Held for inference, as `sample` holds a model: the layouts drop their training structures (CSR keeps its
            // 16-bit structure, N:M its packed indices) and decode from what is left.
            gpt.PrepareForInference(keepSellCopy: options.KeepSell, options.DecodeCopy);
            var cache = gpt.CreateKvCache();
            (double Wall, double Cpu) Generate()
            {
                cache.Reset();
                var logits = gpt.ForwardCached(cache, promptTokens.AsSpan(0, options.Prompt));
                double c0 = ProcessCpuSeconds();
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < options.NewTokens; i++)
                {
                    one[0] = NextToken(logits, i, dense.VocabSize);
                    logits = gpt.ForwardCached(cache, one);
                }
                return (Stopwatch.GetElapsedTime(t0).TotalSeconds, ProcessCpuSeconds() - c0);
            }
            double Prefill()
            {
                cache.Reset();
                long t0 = Stopwatch.GetTimestamp();
                gpt.ForwardCached(cache, promptTokens.AsSpan(0, options.Prefill));
                return Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            foreach (int threads in options.Threads)
            {
                KernelThreads.Max = threads;
                if (doDecode)
                {
                    if (round == 0) Generate();   // JIT and caches
                    var runs = Enumerable.Range(0, options.Reps).Select(_ => Generate()).ToArray();
                    var s = runs.Select(r => options.NewTokens / r.Wall).ToArray();
                    var cpu = runs.Select(r => options.NewTokens / r.Cpu).ToArray();
                    AnsiConsole.MarkupLine($"[grey]  decode {Markup.Escape(variant.Label)} vocab {dense.VocabSize} {threads} thread(s): {BenchUtil.Median(s):F1} tokens/s " +
                                           $"({BenchUtil.Median(cpu):F1} per CPU-second)[/]");
                    yield return new Row("decode", model, variant.Label, variant.Kind, variant.Density, "NanoSparse", threads, s, BenchUtil.Median(s), "tokens/s", cpu);
                }
                if (doPrefill)
                {
                    if (round == 0) Prefill();
                    var s = Enumerable.Range(0, options.Reps).Select(_ => options.Prefill / Prefill()).ToArray();
                    AnsiConsole.MarkupLine($"[grey]  prefill {Markup.Escape(variant.Label)} vocab {dense.VocabSize} {threads} thread(s): {BenchUtil.Median(s):F1} tokens/s[/]");
                    yield return new Row("prefill", model, variant.Label, variant.Kind, variant.Density, "NanoSparse", threads, s, BenchUtil.Median(s), "tokens/s");
                }
            }
            // The peers decode the dense model's own weights, right after our dense rows of the round.
            if (doDecode && variant.Kind == "dense" && peers != null)
                foreach (var row in peers.Rows(gpt, model, promptTokens, options, round)) yield return row;
        }
    }

    /// <summary>
    /// The token a timed decode feeds back after step <paramref name="step"/>: picked from the bits of one logit, so
    /// every contender does a sampled decode's work without timing a sampler (bench/peers/export_onnx.py does the same).
    /// </summary>
    public static int NextToken(ReadOnlySpan<float> logits, int step, int vocab) =>
        (int)((uint)BitConverter.SingleToInt32Bits(logits[step % logits.Length]) % (uint)vocab);

    // ---- memory ----

    /// <summary>
    /// Bytes per variant: values of the block Linear weights (4 per stored value), their layouts' index structures
    /// (measured: the managed heap the layout objects of one block hold, times n_layer; for CSR that includes Wᵀ's
    /// structure for the backward), the same layouts once released for inference (Gpt.PrepareForInference: measured
    /// the same way, and the bytes their formats predict, IInferenceLayout.HeldBytes), the dense rest (embeddings,
    /// LayerNorms), gradients (4 per stored value) and AdamW's two moments (8 per stored value).
    /// </summary>
    static JsonArray Memory(List<Variant> variants, GptConfig train, Options options)
    {
        var result = new JsonArray();
        var models = new List<(string Name, GptConfig Config)> { ("wide", train) };
        foreach (int v in options.DecodeVocabs) models.Add(($"gpt2 V={v}", options.DecodeConfig(v)));
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model").AddColumn("variant")
            .AddColumn(new TableColumn("values MB").RightAligned()).AddColumn(new TableColumn("index MB").RightAligned())
            .AddColumn(new TableColumn("decode index MB").RightAligned()).AddColumn("decode format").AddColumn(new TableColumn("block train").RightAligned())
            .AddColumn(new TableColumn("block decode").RightAligned()).AddColumn(new TableColumn("model train").RightAligned())
            .AddColumn(new TableColumn("model decode").RightAligned());
        foreach (var (name, config) in models)
        {
            double denseBlockTrain = 0, denseBlockDecode = 0, denseModelTrain = 0, denseModelDecode = 0;
            long restFloats = (long)(config.VocabSize + config.BlockSize) * config.NEmbd + (2L * config.NLayer + 1) * config.NEmbd * (config.Bias ? 2 : 1);
            foreach (var variant in variants)
            {
                var c = ConfigFor(config, variant);
                var shapes = BlockWeightShapes(config.NEmbd);
                long before = GC.GetTotalMemory(forceFullCollection: true);
                var layouts = shapes.Select(s => LinearWeightLayouts.Create(c.WeightLayout(0, s.Name), SpecOf(c, s.Name, s.Out, s.In))).ToArray();
                long index = Math.Max(0, GC.GetTotalMemory(forceFullCollection: true) - before) * config.NLayer;
                long stored = layouts.Sum(w => (long)w.StoredCount) * config.NLayer;
                // Held for decoding (Gpt.PrepareForInference): the same layouts with their training structures dropped.
                foreach (var w in layouts.OfType<IInferenceLayout>()) w.ReleaseTrainingStructures();
                // With --keep-sell the decode also holds the CSR layouts' decode copies (their size depends on the pattern only).
                if (options.KeepSell)
                    foreach (var w in layouts.OfType<CsrLinearWeight>()) w.PrepareForInference(new float[w.StoredCount], options.DecodeCopy);
                long decodeIndex = Math.Max(0, GC.GetTotalMemory(forceFullCollection: true) - before) * config.NLayer;
                long predicted = layouts.OfType<IInferenceLayout>().Sum(w => w.HeldBytes) * config.NLayer;
                string formats = string.Join(", ", layouts.Select(w => w is IInferenceLayout l ? l.DecodeFormat : w.Layout).Distinct());
                GC.KeepAlive(layouts);
                double mb = 1e6;
                double blockValues = 4.0 * stored, blockTrain = blockValues + index + 3 * blockValues;   // values + index + grad + m + v
                double blockDecode = blockValues + decodeIndex;
                double modelTrain = blockTrain + 16.0 * restFloats, modelDecode = blockDecode + 4.0 * restFloats;
                if (variant.Kind == "dense") (denseBlockTrain, denseBlockDecode, denseModelTrain, denseModelDecode) = (blockTrain, blockDecode, modelTrain, modelDecode);
                table.AddRow(Markup.Escape(name), Markup.Escape(variant.Label), $"{blockValues / mb:F1}", $"{index / mb:F1}",
                    $"{decodeIndex / mb:F1} ({predicted / mb:F1})", Markup.Escape(formats),
                    $"{blockTrain / mb:F0} MB {blockTrain / denseBlockTrain:F2}x", $"{blockDecode / mb:F0} MB {blockDecode / denseBlockDecode:F2}x",
                    $"{modelTrain / mb:F0} MB {modelTrain / denseModelTrain:F2}x", $"{modelDecode / mb:F0} MB {modelDecode / denseModelDecode:F2}x");
                result.Add(new JsonObject
                {
                    ["model"] = name, ["variant"] = variant.Label, ["kind"] = variant.Kind, ["density"] = variant.Density,
                    ["block_stored_values"] = stored, ["block_value_bytes"] = blockValues, ["block_index_bytes"] = index,
                    ["decode_index_bytes"] = decodeIndex, ["decode_index_bytes_predicted"] = predicted, ["decode_formats"] = formats,
                    ["block_decode_bytes"] = blockDecode, ["block_decode_vs_dense"] = blockDecode / denseBlockDecode,
                    ["block_train_bytes"] = blockTrain, ["block_train_vs_dense"] = blockTrain / denseBlockTrain,
                    ["model_train_bytes"] = modelTrain, ["model_train_vs_dense"] = modelTrain / denseModelTrain,
                    ["model_decode_bytes"] = modelDecode, ["model_decode_vs_dense"] = modelDecode / denseModelDecode,
                });
            }
        }
        AnsiConsole.MarkupLine("[bold]memory[/] (MB = 10⁶ bytes; x = against the same model dense): block = the four Linear weights of every block; " +
                               "train = values + index + gradients + AdamW m and v; model = with embeddings and LayerNorms; decode = values + the index " +
                               "the layouts keep once released for inference (Gpt.PrepareForInference; in brackets: the bytes their formats predict; " +
                               (options.KeepSell ? "with --keep-sell including the CSR layouts' decode copies); " : "without decode copies: add --keep-sell to count them); ") +
                               "index = the heap the layout objects hold (measured); gpt2 = gpt2-124m shape");
        AnsiConsole.Write(table);
        return result;
    }

    // ---- report ----

    public sealed record Target(string Part, string Variant, double Wanted, double? Stretch, int Threads, double? Measured, double[]? PerRound = null)
    {
        public bool Met => Measured >= Wanted;
    }

    static List<Target> Render(List<Row> rows, Options options)
    {
        var targets = new List<Target>();
        foreach (var part in new[] { "train", "prefill", "decode" })
        {
            var partRows = rows.Where(r => r.Part == part).ToList();
            if (partRows.Count == 0) continue;
            bool time = part == "train";
            bool vsOrt = partRows.Any(r => r.Contender == DecodePeers.OrtContender);
            var table = new Table().Border(TableBorder.Rounded)
                .Title($"{part} ({partRows[0].Unit}; speed-up over our dense at the same threads{(vsOrt ? "; ÷ ORT: tokens/s over ONNX Runtime's on the dense weights" : "")})")
                .AddColumn("model").AddColumn("variant").AddColumn("contender");
            foreach (int t in options.Threads)
            {
                table.AddColumn(new TableColumn($"{t} thr").RightAligned()).AddColumn(new TableColumn($"× dense {t}").RightAligned());
                if (vsOrt) table.AddColumn(new TableColumn($"÷ ORT {t}").RightAligned());
            }
            foreach (var g in partRows.GroupBy(r => (r.Model, r.Variant, r.Contender)))
            {
                var cells = new List<string> { Markup.Escape(g.Key.Model), Markup.Escape(g.Key.Variant), Markup.Escape(g.Key.Contender) };
                foreach (int t in options.Threads)
                {
                    var r = g.FirstOrDefault(x => x.Threads == t);
                    double? s = r is null ? null : Speedup(rows, r);
                    cells.Add(r is null ? "-" : time ? $"{r.Median:F0}" : $"{r.Median:F1}");
                    cells.Add(s is double v ? $"{v:F2}x" : "-");
                    if (vsOrt) cells.Add(r is not null && VersusOrt(rows, r) is double o ? $"{o:F2}x" : "-");
                }
                table.AddRow(cells.ToArray());
            }
            AnsiConsole.Write(table);
        }
        // Is ONNX Runtime the strong peer? Its tokens/s against PyTorch's own KV-cache loop on the same weights.
        foreach (var torch in rows.Where(r => r.Part == "decode" && r.Contender == DecodePeers.TorchContender))
            if (rows.FirstOrDefault(r => r.Part == "decode" && r.Model == torch.Model && r.Threads == torch.Threads && r.Contender == DecodePeers.OrtContender) is { } ort)
                AnsiConsole.MarkupLine($"decode {Markup.Escape(torch.Model)} dense, {torch.Threads} thr: {DecodePeers.OrtContender} {ort.Median:F1} tokens/s = " +
                                       $"{ort.Median / torch.Median:F2}x {Markup.Escape(DecodePeers.TorchContender)} {torch.Median:F1} tokens/s (same weights, same decode)" +
                                       (ort.CpuMedian is double oc && torch.CpuMedian is double tc ? $"; per CPU-second {oc:F1} vs {tc:F1} = {oc / tc:F2}x" : ""));
        // Per CPU-second (all threads of the contender's process): less disturbed by other load than wall time.
        foreach (var g in rows.Where(r => r.Part == "decode" && r.CpuMedian != null).GroupBy(r => (r.Model, r.Threads)))
        {
            var ort = g.FirstOrDefault(r => r.Contender == DecodePeers.OrtContender);
            AnsiConsole.MarkupLine($"decode {Markup.Escape(g.Key.Model)}, {g.Key.Threads} thr, tokens per CPU-second" + (ort is null ? "" : " (÷ ORT)") + ": " +
                string.Join(", ", g.Select(r => $"{Markup.Escape(r.Contender == "NanoSparse" ? r.Variant : r.Contender)} {r.CpuMedian:F1}" +
                                                (ort?.CpuMedian is double oc ? $" ({r.CpuMedian / oc:F2}x)" : ""))));
        }

        // The issue's targets, at every thread count (uniform densities; 2:4 as measured).
        string charModel = rows.FirstOrDefault(r => r.Part == "decode" && r.Model.EndsWith($"V={options.DecodeVocabs[0]}"))?.Model ?? "";
        foreach (int t in options.Threads)
        {
            void Add(string part, string model, string variant, double wanted, double? stretch)
            {
                var r = rows.FirstOrDefault(x => x.Part == part && x.Model == model && x.Variant == variant && x.Contender == "NanoSparse" && x.Threads == t);
                targets.Add(new Target(part, variant, wanted, stretch, t, r is null ? null : Speedup(rows, r), r?.RoundSpeedups));
            }
            Add("train", "wide", "uniform 0.1", 3, 4);
            Add("train", "wide", "uniform 0.2", 2, null);
            Add("train", "wide", "2:4", 1.2, null);
            Add("decode", charModel, "uniform 0.1", 5, 6);
            Add("decode", charModel, "uniform 0.3", 2.2, null);
            Add("decode", charModel, "uniform 0.5", 1.3, null);
            Add("decode", charModel, "2:4", 1.5, null);
        }
        var tt = new Table().Border(TableBorder.Rounded).Title("issue 17 targets (speed-up over our dense, same threads)")
            .AddColumn("part").AddColumn("variant").AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("target").RightAligned()).AddColumn(new TableColumn("measured").RightAligned()).AddColumn("")
            .AddColumn(new TableColumn("per round: median (min–max, rounds)").RightAligned());
        foreach (var x in targets.Where(x => x.Measured is not null))
            tt.AddRow(x.Part, x.Variant, x.Threads.ToString(), $"≥ {x.Wanted}x{(x.Stretch is double s ? $" (stretch {s}x)" : "")}",
                $"{x.Measured:F2}x", x.Met ? "[green]met[/]" : "[red]missed[/]",
                Spread(x.PerRound));
        if (tt.Rows.Count > 0) AnsiConsole.Write(tt);
        AnsiConsole.MarkupLine("[yellow]random weights at the wanted density[/]; measured = median over all rounds' samples against dense's; per round = " +
                               "the ratio within each round (contenders minutes apart at most), its median and range; memory target: block train vs dense at uniform 0.1 ≤ 0.2 (memory table)");
        if (options.RunPeer && rows.Any(r => r.Part == "train" && r.Contender.StartsWith("PyTorch")))
        {
            var bestTorch = rows.Where(r => r.Part == "train" && r.Contender == "PyTorch").MinBy(r => r.Median)!;
            var bestMasked = rows.Where(r => r.Part == "train" && r.Contender.StartsWith("PyTorch masked")).MinBy(r => r.Median)!;
            foreach (var r in rows.Where(r => r.Part == "train" && r.Contender == "NanoSparse").GroupBy(r => r.Variant).Select(g => g.MinBy(r => r.Median)!))
                AnsiConsole.MarkupLine($"train {Markup.Escape(r.Variant)} best ({r.Threads} thr) {r.Median:F0} ms: {bestTorch.Median / r.Median:F2}x PyTorch dense best " +
                                       $"({bestTorch.Threads} thr), {bestMasked.Median / r.Median:F2}x PyTorch masked best ({bestMasked.Threads} thr)");
        }
        return targets;
    }

    /// <summary>Per round, the speed-up of our contender (part, model, variant, threads) over our dense in that round
    /// (each side the median of its samples there); null for dense, the peers, or a round without both.</summary>
    public static double[]? RoundSpeedups(List<Row> perRound, (string Part, string Model, string Variant, string Contender, int Threads) key)
    {
        if (key.Contender != "NanoSparse") return null;
        var mine = perRound.Where(x => x.Part == key.Part && x.Model == key.Model && x.Variant == key.Variant && x.Contender == "NanoSparse" && x.Threads == key.Threads).ToList();
        if (mine.Count == 0 || mine[0].Kind == "dense") return null;
        var ratios = new List<double>();
        foreach (var m in mine)
        {
            var dense = perRound.FirstOrDefault(x => x.Part == key.Part && x.Model == key.Model && x.Contender == "NanoSparse" && x.Kind == "dense" &&
                                                     x.Threads == key.Threads && x.Round == m.Round);
            if (dense is null) return null;
            double a = BenchUtil.Median(m.Samples), d = BenchUtil.Median(dense.Samples);
            ratios.Add(key.Part == "train" ? d / a : a / d);
        }
        return ratios.ToArray();
    }

    /// <summary>"median (min–max, n)" of per-round speed-ups, or "-".</summary>
    static string Spread(double[]? perRound) => perRound is { Length: > 0 } q
        ? $"{BenchUtil.Median(q):F2}x ({q.Min():F2}–{q.Max():F2}, {q.Length})"
        : "-";

    /// <summary>Speed-up of a row over NanoSparse dense at the same part, model and threads (time: dense / row; rate: row / dense).</summary>
    static double? Speedup(List<Row> rows, Row r)
    {
        var dense = rows.FirstOrDefault(x => x.Part == r.Part && x.Model == r.Model && x.Contender == "NanoSparse" && x.Kind == "dense" && x.Threads == r.Threads);
        if (dense is null) return null;
        return r.Part == "train" ? dense.Median / r.Median : r.Median / dense.Median;
    }

    /// <summary>Tokens/s of a decode row over ONNX Runtime's on the dense weights, same model and threads.</summary>
    static double? VersusOrt(List<Row> rows, Row r)
    {
        var ort = rows.FirstOrDefault(x => x.Part == r.Part && x.Model == r.Model && x.Contender == DecodePeers.OrtContender && x.Threads == r.Threads);
        return ort is null || r.Part != "decode" ? null : r.Median / ort.Median;
    }

    static void Plot(List<Row> rows, string prefix)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(prefix));
        if (folder is not null) Directory.CreateDirectory(folder);
        foreach (var part in new[] { "train", "prefill", "decode" })
        {
            var ours = rows.Where(r => r.Part == part && r.Contender == "NanoSparse").ToList();
            if (ours.Count == 0) continue;
            var plot = new ScottPlot.Plot();
            foreach (var g in ours.Where(r => r.Kind is "uniform" or "erk" or "dense").GroupBy(r => (r.Model, r.Threads)))
                foreach (var kind in new[] { "uniform", "erk" })
                {
                    var line = g.Where(r => r.Kind == kind || r.Kind == "dense").OrderBy(r => r.Density).ToList();
                    if (line.Count(r => r.Kind == kind) == 0) continue;
                    var scatter = plot.Add.Scatter(line.Select(r => r.Density).ToArray(), line.Select(r => Speedup(rows, r) ?? double.NaN).ToArray());
                    scatter.LegendText = $"{kind}, {(part == "train" ? "" : g.Key.Model + ", ")}{g.Key.Threads} thr";
                }
            foreach (var r in ours.Where(r => r.Kind == "nm"))
            {
                var marker = plot.Add.Marker(r.Density, Speedup(rows, r) ?? double.NaN);
                marker.LegendText = $"{r.Variant}, {(part == "train" ? "" : r.Model + ", ")}{r.Threads} thr";
                marker.Size = 10;
            }
            // ONNX Runtime on the dense weights, as a speed-up over our dense: where a sparse model must climb to beat it.
            foreach (var ort in rows.Where(r => r.Part == part && r.Contender == DecodePeers.OrtContender))
                if (rows.FirstOrDefault(x => x.Part == part && x.Model == ort.Model && x.Threads == ort.Threads && x.Contender == "NanoSparse" && x.Kind == "dense") is { } ourDense)
                {
                    var line = plot.Add.HorizontalLine(ort.Median / ourDense.Median);
                    line.LinePattern = ScottPlot.LinePattern.Dotted;
                    line.LegendText = $"ONNX Runtime dense, {ort.Model}, {ort.Threads} thr";
                }
            var one = plot.Add.HorizontalLine(1);
            one.LinePattern = ScottPlot.LinePattern.Dashed;
            string what = part == "train" ? "training step (wide)" : $"{part} (gpt2-124m shape)";
            plot.Title($"{what}: speed-up over the same model dense (random weights)");
            plot.XLabel("density of the block Linear weights");
            plot.YLabel("speed-up (1 = dense)");
            plot.ShowLegend();
            string path = $"{prefix}_{part}.png";
            plot.SavePng(path, 900, 560);
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}");
        }
    }

    static JsonObject ToJson(Options o, GptConfig train, List<Row> rows, JsonArray memory, List<Target> targets, DecodePeers? peers)
    {
        var results = new JsonArray();
        foreach (var r in rows)
            results.Add(new JsonObject
            {
                ["part"] = r.Part, ["model"] = r.Model, ["variant"] = r.Variant, ["kind"] = r.Kind, ["density"] = r.Density,
                ["contender"] = r.Contender, ["threads"] = r.Threads, ["unit"] = r.Unit, ["median"] = r.Median,
                ["samples"] = new JsonArray(r.Samples.Select(s => (JsonNode)s).ToArray()), ["speedup_vs_dense"] = Speedup(rows, r),
                ["speedup_vs_dense_per_round"] = r.RoundSpeedups is null ? null : new JsonArray(r.RoundSpeedups.Select(v => (JsonNode)v).ToArray()),
                ["ratio_vs_onnxruntime"] = VersusOrt(rows, r),
                ["cpu_samples_tokens_per_cpu_s"] = r.CpuSamples is null ? null : new JsonArray(r.CpuSamples.Select(v => (JsonNode)v).ToArray()),
                ["cpu_median_tokens_per_cpu_s"] = r.CpuMedian,
            });
        return new JsonObject
        {
            ["bench"] = "sparse-model",
            ["weights"] = "random at the wanted density (nanoGPT init on the stored positions); embeddings and tied lm_head dense",
            ["train_model"] = JsonSerializer.SerializeToNode(new { train.NLayer, train.NHead, train.NEmbd, train.BlockSize, train.VocabSize, batch_size = o.Batch }),
            ["decode_model"] = JsonSerializer.SerializeToNode(new { o.DecodeLayers, n_head = 12, n_embd = 768, block_size = 1024, vocabs = o.DecodeVocabs, o.Prompt, o.NewTokens, o.Prefill }),
            ["threads"] = new JsonArray(o.Threads.Select(t => (JsonNode)t).ToArray()),
            ["rounds"] = o.Rounds, ["iters"] = o.Iters, ["warmup"] = o.Warmup, ["reps"] = o.Reps,
            ["huge_pages"] = HugePages.Describe(),
            ["results"] = results,
            ["memory"] = memory,
            ["onnxruntime_checks"] = new JsonArray((peers?.Checks ?? []).Select(c => (JsonNode)new JsonObject
            {
                ["model"] = c.Model, ["threads"] = c.Threads, ["logits_max_abs_diff_vs_ours"] = c.MaxAbsDiff, ["tolerance"] = DecodePeers.Tolerance * c.Scale, ["ok"] = c.Ok,
            }).ToArray()),
            ["onnx_exports"] = new JsonArray((peers?.Exports ?? []).Select(e => (JsonNode)new JsonObject
            {
                ["model"] = e.Model, ["export_onnx"] = JsonNode.Parse(e.Report.GetRawText()),
            }).ToArray()),
            ["targets"] = new JsonArray(targets.Select(t => (JsonNode)new JsonObject
            {
                ["part"] = t.Part, ["variant"] = t.Variant, ["threads"] = t.Threads, ["target"] = t.Wanted, ["stretch"] = t.Stretch,
                ["measured"] = t.Measured, ["met"] = t.Measured is null ? null : t.Met,
                ["per_round"] = t.PerRound is null ? null : new JsonArray(t.PerRound.Select(v => (JsonNode)v).ToArray()),
            }).ToArray()),
            ["machine"] = $"{Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
        };
    }
}
