using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.IO;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench sample</c>: tokens/s of NanoSparse's KV-cached sampling (<see cref="Sampler.Generate"/>) beside
/// PyTorch running nanoGPT's generate() (bench/peers/sample_torch.py: the whole cropped window again for every token,
/// no KV cache) in the same run, same model shape, same number of new tokens, same thread count. The ratio is
/// NanoSparse tokens/s over PyTorch tokens/s (target ≥ 10). Weights are a checkpoint's when --checkpoint is given,
/// else nanoGPT-init random weights of the preset's shape (the speed does not depend on the values).
/// </summary>
public static class SampleBench
{
    public static Command CreateCommand()
    {
        var presets = new Option<string[]>("--preset")
        {
            Description = "model shapes to measure: " + string.Join(", ", ModelPreset.Names) + " (default: baby and small); ignored with --checkpoint",
            DefaultValueFactory = _ => ["baby", "small"],
            AllowMultipleArgumentsPerToken = true,
        };
        presets.AcceptOnlyFromAmong(ModelPreset.Names);
        var checkpoint = new Option<string?>("--checkpoint") { Description = "checkpoint directory or model.safetensors to sample from (nanoGPT tensor names)" };
        var tokens = new Option<int?>("--tokens") { Description = "new tokens per generation (default: block 64: 63 and 500; otherwise 256)" };
        var threads = new Option<int[]>("--threads")
        {
            Description = "thread counts, each for both contenders (default: 1)",
            DefaultValueFactory = _ => [1],
            AllowMultipleArgumentsPerToken = true,
        };
        var repeats = new Option<int>("--repeats") { Description = "timed generations per contender (median)", DefaultValueFactory = _ => 3 };
        var vocab = new Option<int?>("--vocab") { Description = "vocabulary size of the random model (default: data/brown/meta.json, else the Brown char vocabulary)" };
        var nHead = new Option<int?>("--n-head") { Description = "n_head of the checkpoint when neither its metadata nor state.json says" };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file" };
        var python = new Option<string>("--python") { Description = "Python with torch for the peer", DefaultValueFactory = _ => TorchPeer.DefaultPython };
        var noPeer = new Option<bool>("--no-peer") { Description = "measure NanoSparse only" };

        var command = new Command("sample", "sampling tokens/s: NanoSparse KV-cached vs PyTorch nanoGPT generate()");
        foreach (var o in new Option[] { presets, checkpoint, tokens, threads, repeats, vocab, nHead, json, python, noPeer }) command.Options.Add(o);
        command.SetAction(parseResult =>
        {
            var options = new Options(
                parseResult.GetValue(presets) ?? ["baby", "small"],
                parseResult.GetValue(checkpoint),
                parseResult.GetValue(tokens),
                parseResult.GetValue(threads) ?? [1],
                parseResult.GetValue(repeats),
                parseResult.GetValue(vocab) ?? ModelPreset.DefaultVocab(),
                parseResult.GetValue(nHead),
                parseResult.GetValue(python)!,
                !parseResult.GetValue(noPeer));
            var result = Run(options);
            var file = parseResult.GetValue(json);
            if (file != null) TrainBench.WriteJson(file.FullName, result);
            return 0;
        });
        return command;
    }

    public sealed record Options(string[] Presets, string? Checkpoint, int? Tokens, int[] Threads, int Repeats, int Vocab, int? NHead, string Python, bool RunPeer)
    {
        public void Validate()
        {
            if (Tokens is < 1) throw new ArgumentException($"--tokens ({Tokens}) must be at least 1");
            if (Repeats < 1) throw new ArgumentException($"--repeats ({Repeats}) must be at least 1");
            if (Threads.Length == 0 || Threads.Any(t => t < 1)) throw new ArgumentException($"--threads ({string.Join(" ", Threads)}) must be one or more counts >= 1");
            if (Vocab < 2) throw new ArgumentException($"--vocab ({Vocab}) must be at least 2");
            BenchUtil.CheckRepetitions("--repeats", Repeats);
            // Sampler.Generate returns prompt + new tokens as one array.
            if (Tokens is int n) BenchUtil.CheckRange("--tokens", n, 1, Array.MaxLength - 1, "the prompt and the new tokens must fit one array");
            if (Checkpoint is null)
                foreach (var name in Presets)
                {
                    var p = ModelPreset.Get(name);
                    BenchUtil.CheckVocab("--vocab", p.ToConfig(Vocab), 1, p.BlockSize, NanoSparse.Nn.GptUse.Decoding);
                }
        }
    }

    public sealed record Measurement(string Model, string Contender, int Threads, int NewTokens, double[] Seconds, double TokensPerSecond);

    // nanoGPT sample.py defaults
    const float Temperature = 0.8f;
    const int TopK = 200;

    public static JsonObject Run(Options options)
    {
        options.Validate();
        var models = new List<(string Label, GptConfig Config, string? Weights)>();
        if (options.Checkpoint != null)
        {
            var (config, weights) = ReadCheckpointShape(options.Checkpoint, options.NHead);
            models.Add(($"checkpoint {Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(weights)))}", config, weights));
        }
        else
        {
            foreach (var name in options.Presets.Distinct()) models.Add((name, ModelPreset.Get(name).ToConfig(options.Vocab) with { Dropout = 0 }, null));
        }

        var measurements = new List<Measurement>();
        int savedMax = KernelThreads.Max;
        try
        {
            foreach (var (label, config, weights) in models)
            {
                config.Validate();
                // Default lengths: 500 new tokens for a block of 64 (baby) and 256 otherwise. When that overflows the
                // window, also time block_size - 1 tokens: past the window nanoGPT crops the context, every position's
                // embedding shifts, and an exact sampler must recompute the whole window per token, cache or not.
                int[] lengths = options.Tokens is int t ? [t]
                    : config.BlockSize <= 64 ? [config.BlockSize - 1, 500] : [256];
                AnsiConsole.MarkupLine($"[bold]bench sample[/] [cyan]{Markup.Escape(label)}[/]: n_layer {config.NLayer}, n_head {config.NHead}, n_embd {config.NEmbd}, " +
                                       $"block {config.BlockSize}, vocab {config.VocabSize}; {string.Join(" and ", lengths)} new tokens from a 1-token prompt, " +
                                       $"temperature {Temperature}, top_k {TopK}");
                if (lengths.Any(n => 1 + n > config.BlockSize))
                    AnsiConsole.MarkupLine($"note: past {config.BlockSize} tokens the context is cropped to block_size as in nanoGPT, " +
                                           "so every further token refills NanoSparse's KV cache (the whole window again, like PyTorch)");
                var gpt = new Gpt(config, 1, config.BlockSize);
                if (weights != null) LoadWeights(gpt, weights);
                else gpt.InitializeWeights(1337);
                foreach (int newTokens in lengths)
                foreach (int threads in options.Threads)
                {
                    KernelThreads.Max = threads;
                    measurements.Add(MeasureNanoSparse(label, gpt, newTokens, threads, options.Repeats, 0));
                    // Past the window, also the sliding policy that keeps one position's work per token: refill from
                    // the last block_size/2 tokens when the cache is full (sample --crop-to).
                    if (1 + newTokens > gpt.Config.BlockSize)
                        measurements.Add(MeasureNanoSparse(label, gpt, newTokens, threads, options.Repeats, gpt.Config.BlockSize / 2));
                    if (options.RunPeer) measurements.Add(MeasurePyTorch(label, config, weights, newTokens, threads, options));
                }
            }
        }
        finally { KernelThreads.Max = savedMax; }

        return Render(measurements, options);
    }

    static Measurement MeasureNanoSparse(string label, Gpt gpt, int newTokens, int threads, int repeats, int cropTo)
    {
        int[] prompt = [0];
        var rng = new Rng(1337);
        // Warm-up: the same work once, untimed, so every kernel has reached optimised (tier-1) code and the caches are warm.
        // At least a second of it: tiered compilation installs optimised code ~100 ms after a method gets hot, in the
        // background, so a short warm-up would time part of the run on unoptimised code.
        long warmEnd = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
        for (int w = 0; w < 2 || Stopwatch.GetTimestamp() < warmEnd; w++) Sampler.Generate(gpt, prompt, newTokens, Temperature, TopK, rng, cropTo: cropTo);
        var seconds = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            var output = Sampler.Generate(gpt, prompt, newTokens, Temperature, TopK, rng, cropTo: cropTo);
            seconds[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (output.Length < newTokens)
                throw new InvalidOperationException($"Sampler.Generate returned {output.Length} tokens, expected at least {newTokens}");
        }
        string contender = cropTo == 0 ? "NanoSparse (KV)" : $"NanoSparse (KV, crop to {cropTo})";
        return new Measurement(label, contender, threads, newTokens, seconds, newTokens / TrainBench.Median(seconds));
    }

    static Measurement MeasurePyTorch(string label, GptConfig c, string? weights, int newTokens, int threads, Options options)
    {
        var args = new List<string>
        {
            "--n-layer", c.NLayer.ToString(), "--n-head", c.NHead.ToString(), "--n-embd", c.NEmbd.ToString(),
            "--block-size", c.BlockSize.ToString(), "--bias", c.Bias ? "true" : "false", "--vocab", c.VocabSize.ToString(),
            "--threads", threads.ToString(), "--tokens", newTokens.ToString(), "--repeats", options.Repeats.ToString(),
            "--temperature", Temperature.ToString(System.Globalization.CultureInfo.InvariantCulture), "--top-k", TopK.ToString(),
        };
        if (weights != null) { args.Add("--checkpoint"); args.Add(weights); }
        var r = TorchPeer.Run(options.Python, "sample_torch.py", args, blasThreads: threads);
        var seconds = r.GetProperty("seconds").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        return new Measurement(label, "PyTorch (no KV)", threads, newTokens, seconds, newTokens / TrainBench.Median(seconds));
    }

    static JsonObject Render(List<Measurement> ms, Options options)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("model").AddColumn("contender").AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("new tokens").RightAligned()).AddColumn(new TableColumn("median s").RightAligned())
            .AddColumn(new TableColumn("tokens/s").RightAligned());
        foreach (var m in ms)
            table.AddRow(Markup.Escape(m.Model), Markup.Escape(m.Contender), m.Threads.ToString(), m.NewTokens.ToString(),
                $"{TrainBench.Median(m.Seconds):F3}", $"{m.TokensPerSecond:N0}");
        AnsiConsole.Write(table);

        var ratios = new JsonArray();
        foreach (var group in ms.GroupBy(m => (m.Model, m.Threads, m.NewTokens)))
        {
            var pt = group.FirstOrDefault(m => m.Contender.StartsWith("PyTorch"));
            if (pt == null) continue;
            foreach (var ns in group.Where(m => m.Contender.StartsWith("NanoSparse")))
            {
                double ratio = ns.TokensPerSecond / pt.TokensPerSecond;
                var color = ratio >= 10 ? "green" : "red";
                AnsiConsole.MarkupLine($"[bold]{Markup.Escape(group.Key.Model)}, {group.Key.NewTokens} tokens, {group.Key.Threads} thread(s): {Markup.Escape(ns.Contender)} / PyTorch tokens/s = [{color}]{ratio:F1}x[/][/] (target ≥ 10x)");
                ratios.Add(new JsonObject { ["model"] = group.Key.Model, ["contender"] = ns.Contender, ["threads"] = group.Key.Threads, ["new_tokens"] = group.Key.NewTokens, ["ratio_tokens_per_s"] = ratio });
            }
        }

        var rows = new JsonArray();
        foreach (var m in ms)
            rows.Add(new JsonObject
            {
                ["model"] = m.Model, ["contender"] = m.Contender, ["threads"] = m.Threads, ["new_tokens"] = m.NewTokens,
                ["seconds"] = new JsonArray(m.Seconds.Select(s => (JsonNode)s).ToArray()), ["tokens_per_s"] = m.TokensPerSecond,
            });
        return new JsonObject
        {
            ["bench"] = "sample", ["temperature"] = Temperature, ["top_k"] = TopK, ["prompt_tokens"] = 1,
            ["repeats"] = options.Repeats, ["results"] = rows, ["ratios"] = ratios,
            ["machine"] = $"{Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
        };
    }

    /// <summary>
    /// The model shape of a checkpoint (a directory holding model.safetensors, or the file itself), read from its tensor
    /// shapes: n_layer from the transformer.h.{i} blocks, (vocab_size, n_embd) from wte, block_size from wpe, bias from
    /// ln_1.bias. n_head is not in the shapes: it comes from the safetensors metadata "n_head", else from the first
    /// "n_head" in state.json / config.json beside it, else <paramref name="nHead"/>.
    /// </summary>
    public static (GptConfig Config, string WeightsPath) ReadCheckpointShape(string checkpoint, int? nHead)
    {
        string weights = Directory.Exists(checkpoint) ? Path.Combine(checkpoint, "model.safetensors") : checkpoint;
        if (!File.Exists(weights)) throw new FileNotFoundException($"checkpoint '{checkpoint}': {weights} not found");
        using var file = SafeTensorsFile.Open(weights);
        var wte = file.Get("transformer.wte.weight");
        var wpe = file.Get("transformer.wpe.weight");
        if (wte.Shape.Length != 2 || wpe.Shape.Length != 2 || wte.Shape[1] != wpe.Shape[1])
            throw new InvalidDataException($"{weights}: wte shape [{string.Join(", ", wte.Shape)}] and wpe shape [{string.Join(", ", wpe.Shape)}] are not (V, C) and (block_size, C)");
        int layers = 0;
        while (file.Contains($"transformer.h.{layers}.ln_1.weight")) layers++;
        if (layers == 0) throw new InvalidDataException($"{weights}: no transformer.h.0.ln_1.weight, expected nanoGPT tensor names");
        int? heads = nHead;
        if (heads == null && file.Metadata.TryGetValue("n_head", out var s) && int.TryParse(s, out int h)) heads = h;
        if (heads == null)
        {
            foreach (var name in new[] { "state.json", "config.json" })
            {
                var path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(weights))!, name);
                if (heads == null && File.Exists(path)) heads = FindInt(JsonNode.Parse(NanoSparse.IO.JsonText.ReadFile(path)), "n_head");
            }
        }
        if (heads == null) throw new InvalidDataException($"{weights}: n_head not found in metadata, state.json or config.json; pass --n-head");
        var config = new GptConfig
        {
            NLayer = layers, NHead = heads.Value, NEmbd = wte.Shape[1], BlockSize = wpe.Shape[0], VocabSize = wte.Shape[0],
            Bias = file.Contains("transformer.h.0.ln_1.bias"), Dropout = 0,
        };
        return (config, weights);
    }

    static int? FindInt(JsonNode? node, string key)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (k, v) in obj)
                {
                    if (k == key && v is JsonValue value && value.TryGetValue(out int i)) return i;
                    if (FindInt(v, key) is int found) return found;
                }
                return null;
            case JsonArray arr:
                foreach (var v in arr) if (FindInt(v, key) is int found) return found;
                return null;
            default:
                return null;
        }
    }

    static void LoadWeights(Gpt gpt, string weights)
    {
        using var file = SafeTensorsFile.Open(weights);
        foreach (var p in gpt.Parameters) file.ReadInto(p.Name, p.Value.Span);
    }
}
