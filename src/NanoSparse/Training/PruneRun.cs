using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Training;

/// <summary>
/// Everything `nanosparse prune` needs: the checkpoint, the pruning options, the data, the storage format and what
/// to measure. Serialized as the recipe file (prune-recipe.json) written beside the pruned checkpoint.
/// </summary>
public sealed record PruneRunOptions
{
    public const string RecipeFile = "prune-recipe.json";
    public const string RecipeFormat = "nanosparse-prune-recipe";

    [JsonPropertyName("format")] public string Format { get; init; } = RecipeFormat;
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    /// <summary>The input checkpoint (never modified).</summary>
    [JsonPropertyName("checkpoint")] public string Checkpoint { get; init; } = "";
    /// <summary>SHA-256 of the input's model.safetensors when the recipe was written (a re-run warns when it differs).</summary>
    [JsonPropertyName("checkpoint_sha256")] public string? CheckpointSha256 { get; init; }
    [JsonPropertyName("prune")] public PruneOptions Prune { get; init; } = new();
    /// <summary>Dataset folder: calibration windows from its train.bin, eval windows from its val.bin (null: the checkpoint's own dataset).</summary>
    [JsonPropertyName("calibration")] public string? Calibration { get; init; }
    /// <summary>How the pruned weights are stored: csr, nm:N:M, bsr:RxC or auto (see SparseLayoutChoice).</summary>
    [JsonPropertyName("storage_format")] public string StorageFormat { get; init; } = SparseLayoutChoice.Auto;
    /// <summary>Windows of block_size tokens from val.bin for the loss before and after (0: no evaluation).</summary>
    [JsonPropertyName("eval_windows")] public int EvalWindows { get; init; } = 64;
    [JsonPropertyName("eval_seed")] public ulong EvalSeed { get; init; } = 1337;
    /// <summary>Tokens decoded (after a 16-token prompt) to time dense and sparse decoding (0: not timed).</summary>
    [JsonPropertyName("decode_tokens")] public int DecodeTokens { get; init; } = 64;

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    /// <summary>Reads a recipe; a file that is not one (wrong format or version, missing or wrong-kind fields) is refused naming it.</summary>
    public static PruneRunOptions Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"recipe {path} does not exist", path);
        JsonNode? node;
        try { node = JsonNode.Parse(IO.JsonText.ReadFile(path)); }
        catch (JsonException e) { throw new FormatException($"{path}: invalid JSON: {e.Message.Split(". Path:")[0]}", e); }
        if (node is not JsonObject obj || obj["format"]?.GetValueKind() != JsonValueKind.String || (string?)obj["format"] != RecipeFormat)
            throw new FormatException($"{path}: field format must be \"{RecipeFormat}\"; not a prune recipe");
        PruneRunOptions? options;
        try { options = obj.Deserialize<PruneRunOptions>(Json); }
        catch (JsonException e) { throw new FormatException($"{path}: invalid value{(e.Path is null ? "" : " at " + e.Path)}", e); }
        if (options is null || options.Version != 1) throw new FormatException($"{path}: field version is {options?.Version}, expected 1");
        if (options.Prune is null) throw new FormatException($"{path}: field prune is missing");
        return options;
    }

    /// <summary>Checks the options that do not need the checkpoint; ArgumentException naming the option.</summary>
    public void Validate()
    {
        Prune.Validate();
        SparseLayoutChoice.Validate(StorageFormat);
        // Unstructured pruning leaves any number of nonzeros in a group: the N:M layout could only refuse it after pruning.
        if (StorageFormat.StartsWith(LinearWeightLayouts.Nm + ":", StringComparison.Ordinal) && Prune.Pattern == PruneOptions.Unstructured)
            throw new ArgumentException($"--format {StorageFormat} stores N:M weights, but --pattern is unstructured; give --pattern {StorageFormat[(LinearWeightLayouts.Nm.Length + 1)..]} or --format auto");
        if (EvalWindows < 0) throw new ArgumentException($"--eval-windows ({EvalWindows}) must be >= 0");
        if (DecodeTokens < 0) throw new ArgumentException($"--decode-tokens ({DecodeTokens}) must be >= 0");
    }
}

/// <summary>One pruned Linear weight as stored: what pruning reached and the layout that holds it.</summary>
public sealed record PruneRunWeight(PrunedWeight Pruned, SparsifiedWeight Stored);

/// <summary>What a prune run measured.</summary>
public sealed record PruneRunResult(
    PruneReport Report, IReadOnlyList<PruneRunWeight> Weights,
    float? ValLossBefore, float? ValLossAfter, long BytesBefore, long BytesAfter,
    double? DecodeTokensPerSecondDense, double? DecodeTokensPerSecondSparse, string OutDir, string RecipePath,
    string? Dataset, string? Note)
{
    public static double Perplexity(float loss) => Math.Exp(loss);
}

/// <summary>
/// `nanosparse prune` as a library call: loads a checkpoint (never modifying it), prunes its dense weights with
/// <see cref="Pruner"/> on calibration windows from a dataset, stores the zeros sparse as `sparsify` does (through
/// the checkpoint's journaled save, with the recipe in the same commit), and measures val loss, size on disk and
/// decode speed before and after.
/// </summary>
public static class PruneRun
{
    /// <summary>Rows per evaluation forward pass (windows × block_size).</summary>
    const int EvalRows = 2048;
    const int DecodePrompt = 16;

    public static PruneRunResult Run(PruneRunOptions options, string outDir, IProgress<PruneProgress>? progress = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        string dir = options.Checkpoint;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        Sparsify.CheckOutDir(dir, outDir);
        string modelPath = Path.Combine(dir, Checkpoint.ModelFile);
        var source = Checkpoint.LoadAnyModel(dir, 1, 1, out var state);
        var config = source.Config;
        string? note = null;
        string sha = Sha256(modelPath);
        if (options.CheckpointSha256 is { } recorded && !recorded.Equals(sha, StringComparison.OrdinalIgnoreCase))
            note = $"{modelPath} differs from the one the recipe was made from (SHA-256 {recorded[..12]}…, now {sha[..12]}…)";

        // The data: calibration windows from train.bin, evaluation windows from val.bin.
        string? data = options.Calibration ?? (state is not null && state.Dataset.Length > 0 ? state.Dataset : null);
        bool calibrate = options.Prune.NeedsCalibration;
        if (options.Calibration is null && data is not null && !Directory.Exists(data))
        {
            if (calibrate)
                throw new ArgumentException($"--method {options.Prune.Method} needs calibration data: checkpoint {dir} records dataset {data}, which does not exist here; give --calibration DATASET");
            note = $"checkpoint {dir} records dataset {data}, which does not exist here: no evaluation (give --calibration DATASET)";
            data = null;
        }
        if (data is null && calibrate)
            throw new ArgumentException($"--method {options.Prune.Method}{(options.Prune.Profile == PruneOptions.OwlProfileName ? " with --profile owl" : "")} needs calibration data: give --calibration DATASET (checkpoint {dir} records no dataset)");
        DatasetMeta? meta = data is null ? null : CheckDataset(data, dir, state, config);
        int T = config.BlockSize;
        CalibrationData? calibration = null;
        if (calibrate)
        {
            using var train = TokenFile.OpenSplit(data!, "train", meta!);
            long need = (long)options.Prune.CalibrationWindows * T;
            if (train.Length < need + 1)
                throw new ArgumentException($"dataset {data}: train.bin holds {train.Length} tokens, too few for --calibration-windows {options.Prune.CalibrationWindows} × block_size {T} = {need} calibration tokens; give fewer windows");
            calibration = new CalibrationData(SampleWindows(train, options.Prune.CalibrationWindows, T, options.Prune.CalibrationSeed), options.Prune.CalibrationWindows, T);
        }
        int[]? evalX = null, evalY = null;
        if (data is not null && options.EvalWindows > 0)
        {
            using var val = TokenFile.OpenSplit(data, "val", meta!);
            if (val.Length < T + 1)
                throw new ArgumentException($"dataset {data}: val.bin holds {val.Length} tokens, fewer than block_size + 1 = {T + 1} for one evaluation window");
            (evalX, evalY) = (new int[options.EvalWindows * T], new int[options.EvalWindows * T]);
            new BatchSampler(val, options.EvalWindows, T, options.EvalSeed).Next(evalX, evalY);
        }
        else if (options.EvalWindows > 0 && note is null) note = "no dataset to evaluate on (give --calibration DATASET)";

        // Prune a dense copy, then store its zeros sparse.
        var dense = DenseCopy(source);
        float? before = evalX is null ? null : MeanLoss(dense, evalX, evalY!, T);
        var report = Pruner.Prune(dense, options.Prune, calibration, progress, cancel);
        var selected = report.Weights.Select(w => $"transformer.h.{w.Layer}.{w.Weight}.weight")
            .Concat(source.Parameters.Where(p => p.IsSparse).Select(p => p.Name)).ToHashSet(StringComparer.Ordinal);
        var target = Sparsify.Convert(dense, options.StorageFormat, selected);
        var recipe = options with { Checkpoint = dir, CheckpointSha256 = sha };
        // The pruned model has no best val loss of its own yet: the dense model's would keep a fine-tuning run
        // (train --set init_from=resume) from saving any checkpoint until it beat the unpruned model.
        if (state is not null) state.BestValLoss = 1e9f;
        Sparsify.Write(dir, source, state, target, outDir, new Dictionary<string, byte[]> { [PruneRunOptions.RecipeFile] = recipe.ToJsonBytes() });

        // Measure the model as written: loaded back from the output, in its sparse layouts.
        var stored = target.Parameters.Where(p => p.Layout is not null).ToDictionary(p => p.Name, p => Sparsify.Describe(p.Name, p.Layout!));
        var weights = report.Weights.Select(w => new PruneRunWeight(w, stored[$"transformer.h.{w.Layer}.{w.Weight}.weight"])).ToList();
        float? after = null;
        double? denseSpeed = null, sparseSpeed = null;
        if (evalX is not null || options.DecodeTokens > 0)
        {
            var written = Checkpoint.LoadAnyModel(outDir, 1, 1, out _);
            if (evalX is not null) after = MeanLoss(written, evalX, evalY!, T);
            if (options.DecodeTokens > 0) (denseSpeed, sparseSpeed) = CompareDecoding(DenseCopy(source), written, evalX, options.DecodeTokens);
        }
        return new PruneRunResult(report, weights, before, after, new FileInfo(modelPath).Length,
            new FileInfo(Path.Combine(outDir, Checkpoint.ModelFile)).Length, denseSpeed, sparseSpeed, outDir,
            Path.Combine(outDir, PruneRunOptions.RecipeFile), data, note);
    }

    /// <summary>
    /// The dataset's metadata, checked against the model: the same vocabulary size, the same tokenizer kind, and for a
    /// char vocabulary the same symbols as the checkpoint's own meta.json when it has one.
    /// </summary>
    static DatasetMeta CheckDataset(string data, string dir, CheckpointState? state, GptConfig config)
    {
        if (!Directory.Exists(data)) throw new DirectoryNotFoundException($"--calibration: dataset directory {data} does not exist");
        var meta = DatasetMeta.Load(Path.Combine(data, DatasetMeta.FileName));
        if (meta.VocabSize != config.VocabSize)
            throw new InvalidDataException($"--calibration: dataset {data} has vocab_size {meta.VocabSize}, but checkpoint {dir} has {config.VocabSize}; calibrate on data tokenized as the model was trained");
        string ownMeta = Path.Combine(dir, Checkpoint.MetaFile);
        if (File.Exists(ownMeta))
        {
            var recorded = DatasetMeta.Load(ownMeta);
            if (recorded.Tokenizer != meta.Tokenizer)
                throw new InvalidDataException($"--calibration: dataset {data} is tokenized with {meta.Tokenizer}, but checkpoint {dir} with {recorded.Tokenizer}");
            if (meta.Tokenizer == Tokenizers.Char && !recorded.Symbols.SequenceEqual(meta.Symbols))
                throw new InvalidDataException($"--calibration: dataset {data} has a different char vocabulary from checkpoint {dir}'s {Checkpoint.MetaFile} (same size {meta.VocabSize}, other symbols)");
        }
        return meta;
    }

    /// <summary><paramref name="windows"/> windows of <paramref name="length"/> tokens at offsets drawn as BatchSampler draws them.</summary>
    public static int[] SampleWindows(TokenFile file, int windows, int length, ulong seed)
    {
        var x = new int[checked(windows * length)];
        var y = new int[x.Length];
        new BatchSampler(file, windows, length, seed).Next(x, y);
        return x;
    }

    /// <summary>The same model with every Linear weight in a dense layout (batch 1 × 1 position).</summary>
    public static Gpt DenseCopy(Gpt source)
    {
        var dense = new Gpt(source.Config with { WeightLayouts = null, WeightDensities = null }, 1, 1);
        var byName = source.Parameters.ToDictionary(p => p.Name);
        foreach (var p in dense.Parameters)
        {
            var from = byName[p.Name];
            if (from.Layout is not null) from.Layout.ToDense(from.Value.Span, p.Value.Span);
            else from.Value.Span.CopyTo(p.Value.Span);
        }
        return dense;
    }

    /// <summary>Mean cross-entropy over windows x, y (windows × T) in eval mode, in batches of up to EvalRows rows.</summary>
    public static float MeanLoss(Gpt model, int[] x, int[] y, int T)
    {
        int windows = x.Length / T, batch = 1;
        for (int b = Math.Min(Math.Max(1, EvalRows / T), windows); b >= 1; b--)
            if (windows % b == 0) { batch = b; break; }
        var layouts = model.Parameters.Where(p => p.Layout is not null).ToDictionary(p => p.Name, p => p.Layout!);
        var eval = new Gpt(model.Config with { Dropout = 0f }, batch, T, layouts);
        model.ParameterData.CopyTo(eval.ParameterData);
        double sum = 0;
        for (int w = 0; w < windows; w += batch)
            sum += eval.Forward(x.AsSpan(w * T, batch * T), y.AsSpan(w * T, batch * T), training: false);
        return (float)(sum / (windows / batch));
    }

    /// <summary>Decode tokens/s of two models, timed in turns (dense, sparse) over three rounds; the best round of each.</summary>
    public static (double Dense, double Sparse) CompareDecoding(Gpt dense, Gpt sparse, int[]? windows, int tokens)
    {
        double a = 0, b = 0;
        for (int round = 0; round < 3; round++)
        {
            a = Math.Max(a, DecodeTokensPerSecond(dense, windows, tokens));
            b = Math.Max(b, DecodeTokensPerSecond(sparse, windows, tokens));
        }
        return (a, b);
    }

    /// <summary>
    /// Greedy decoding speed: a 16-token prompt (the first evaluation window's, or token 0 repeated) fills the KV
    /// cache untimed, then <paramref name="tokens"/> single-token steps are timed (after eight warm-up steps on a cache
    /// of their own); tokens per second of those steps.
    /// </summary>
    public static double DecodeTokensPerSecond(Gpt model, int[]? windows, int tokens)
    {
        int prompt = Math.Min(DecodePrompt, model.Config.BlockSize - 1);
        tokens = Math.Max(1, Math.Min(tokens, model.Config.BlockSize - prompt));
        var start = windows is null ? new int[prompt] : windows.AsSpan(0, prompt).ToArray();
        Steps(model, start, Math.Min(8, tokens));
        return tokens / Steps(model, start, tokens);

        // Seconds the steps took (the prompt's prefill not counted).
        static double Steps(Gpt model, int[] prompt, int steps)
        {
            var cache = model.CreateKvCache();
            var logits = model.ForwardCached(cache, prompt);
            var one = new int[1];
            var clock = Stopwatch.StartNew();
            for (int s = 0; s < steps; s++)
            {
                int best = 0;
                for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
                one[0] = best;
                logits = model.ForwardCached(cache, one);
            }
            return clock.Elapsed.TotalSeconds;
        }
    }

    static string Sha256(string path)
    {
        if (!File.Exists(path)) return "";
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }
}
