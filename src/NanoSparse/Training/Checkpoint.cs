using System.Text.Json;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Optim;

namespace NanoSparse.Training;

/// <summary>
/// A checkpoint directory:
///   model.safetensors      the parameters under nanoGPT's state_dict names, plus lm_head.weight (a copy of the tied wte)
///   optimizer.safetensors  AdamW state: {name}.exp_avg (m) and {name}.exp_avg_sq (v), torch's names
///   meta.json              the dataset's metadata (tokenizer vocabulary), so sample/eval work without the data folder
///   state.json             configs, step, best val loss, RNG and sampler states (written last)
/// Each file is written to a temporary file and renamed over the old one.
/// </summary>
public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "state.json";
    public const string MetaFile = "meta.json";
    public const string LmHeadName = "lm_head.weight";
    public const string WteName = "transformer.wte.weight";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, StateFile));

    /// <summary>Writes the checkpoint. Refuses (throws, writes nothing) when a parameter or optimizer value is NaN or infinite.</summary>
    public static void Save(string dir, Gpt gpt, AdamW? optimizer, CheckpointState state, string? metaPath)
    {
        EnsureFinite(gpt.ParameterData, "model parameters", state.IterNum);
        if (optimizer is not null)
        {
            EnsureFinite(optimizer.M, "optimizer state exp_avg", state.IterNum);
            EnsureFinite(optimizer.V, "optimizer state exp_avg_sq", state.IterNum);
        }
        Directory.CreateDirectory(dir);
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };

        var tensors = new List<SafeTensor>();
        foreach (var p in gpt.Parameters)
        {
            tensors.Add(new SafeTensor(p.Name, (int[])p.Shape.Clone(), p.Value));
            if (p.Name == WteName) tensors.Add(new SafeTensor(LmHeadName, (int[])p.Shape.Clone(), p.Value));
        }
        SafeTensors.Write(Path.Combine(dir, ModelFile), tensors, metadata);

        if (optimizer is not null)
        {
            var m = optimizer.MMemory;
            var v = optimizer.VMemory;
            var state2 = new List<SafeTensor>();
            foreach (var p in gpt.Parameters)
            {
                var seg = AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay);
                state2.Add(new SafeTensor(p.Name + ".exp_avg", (int[])p.Shape.Clone(), m.Slice(seg.Offset, seg.Length)));
                state2.Add(new SafeTensor(p.Name + ".exp_avg_sq", (int[])p.Shape.Clone(), v.Slice(seg.Offset, seg.Length)));
            }
            SafeTensors.Write(Path.Combine(dir, OptimizerFile), state2,
                new Dictionary<string, string> { ["step"] = optimizer.StepCount.ToString() });
            state.OptimizerStep = optimizer.StepCount;
        }

        if (metaPath is not null && File.Exists(metaPath) &&
            Path.GetFullPath(metaPath) != Path.GetFullPath(Path.Combine(dir, MetaFile)))
        {
            WriteAtomic(Path.Combine(dir, MetaFile), File.ReadAllBytes(metaPath));
            // A gpt2 dataset's vocabulary files travel with its meta.json, so sample decodes offline.
            string dataDir = Path.GetDirectoryName(Path.GetFullPath(metaPath))!;
            if (Data.Gpt2Vocabulary.IsPresent(dataDir)) Data.DatasetPreparer.CopyGpt2Files(dataDir, dir);
        }

        WriteAtomic(Path.Combine(dir, StateFile), JsonSerializer.SerializeToUtf8Bytes(state, Json));
    }

    /// <summary>Reads and validates state.json.</summary>
    public static CheckpointState ReadState(string dir)
    {
        string path = Path.Combine(dir, StateFile);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {StateFile}", path);
        CheckpointState? state;
        try
        {
            state = JsonSerializer.Deserialize<CheckpointState>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: invalid JSON{(e.Path is null ? "" : " at " + e.Path)}: {e.Message.Split(". Path:")[0]}", e);
        }
        if (state is null) throw new FormatException($"{path}: expected a JSON object");
        if (state.Format != CheckpointState.FormatName)
            throw new FormatException($"{path}: format is '{state.Format}', expected '{CheckpointState.FormatName}'");
        if (state.Version != 1) throw new FormatException($"{path}: version {state.Version} is not supported (expected 1)");
        try
        {
            state.Model.ToConfig().Validate();
            state.Config.Validate(path + " config");
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"{path}: {e.Message}", e);
        }
        state.DropoutRng.ToState("dropout_rng");
        state.TrainSampler.ToState("train_sampler");
        return state;
    }

    /// <summary>Builds a model from the checkpoint's model_args and loads its weights.</summary>
    public static Gpt LoadModel(string dir, int batchSize, int seqLen, out CheckpointState state)
    {
        state = ReadState(dir);
        var gpt = new Gpt(state.Model.ToConfig(), batchSize, Math.Min(seqLen, state.Model.BlockSize));
        LoadWeights(dir, gpt);
        return gpt;
    }

    /// <summary>
    /// Loads the model of a training checkpoint (state.json) or of an imported one (`nanosparse import` writes
    /// model.safetensors + config.json, no training state). <paramref name="state"/> is null for the latter.
    /// </summary>
    public static Gpt LoadAnyModel(string dir, int batchSize, int seqLen, out CheckpointState? state)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        if (File.Exists(Path.Combine(dir, StateFile)))
        {
            var gpt = LoadModel(dir, batchSize, seqLen, out var s);
            state = s;
            return gpt;
        }
        state = null;
        var config = ReadModelConfig(Path.Combine(dir, ConfigFile), dir);
        var model = new Gpt(config, batchSize, Math.Min(seqLen, config.BlockSize));
        LoadWeights(dir, model);
        return model;
    }

    public const string ConfigFile = "config.json";

    /// <summary>The model config of a training checkpoint (state.json) or an imported one (config.json); loads no weights.</summary>
    public static GptConfig ReadAnyConfig(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        return File.Exists(Path.Combine(dir, StateFile)) ? ReadState(dir).Model.ToConfig() : ReadModelConfig(Path.Combine(dir, ConfigFile), dir);
    }

    static GptConfig ReadModelConfig(string path, string dir)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has neither {StateFile} nor {ConfigFile}", path);
        System.Text.Json.Nodes.JsonObject? obj;
        try
        {
            obj = System.Text.Json.Nodes.JsonNode.Parse(JsonText.ReadFile(path)) as System.Text.Json.Nodes.JsonObject;
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: invalid JSON: {e.Message.Split(". Path:")[0]}", e);
        }
        if (obj is null) throw new FormatException($"{path}: expected a JSON object of model settings");
        // Hugging Face names of GPT-2's tanh GELU ("gelu_new", ...) are accepted as "gelu_tanh".
        if (obj["activation"] is System.Text.Json.Nodes.JsonValue act && act.TryGetValue(out string? actName))
        {
            try { obj["activation"] = GptDims.ParseActivation(actName, path); }
            catch (InvalidDataException e) { throw new FormatException(e.Message, e); }
        }
        GptConfig? config;
        try
        {
            config = obj.Deserialize<GptConfig>();
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: invalid value{(e.Path is null ? "" : " at " + e.Path)}", e);
        }
        if (config is null) throw new FormatException($"{path}: expected a JSON object of model settings");
        try { config.Validate(); }
        catch (ArgumentException e) { throw new FormatException($"{path}: {e.Message}", e); }
        return config;
    }

    /// <summary>Reads model.safetensors into <paramref name="gpt"/>, checking every name, shape and dtype first.</summary>
    public static void LoadWeights(string dir, Gpt gpt)
    {
        string path = Path.Combine(dir, ModelFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {ModelFile}", path);
        using var file = SafeTensorsFile.Open(path);
        foreach (var p in gpt.Parameters) CheckTensor(file, path, p.Name, p.Shape, allowHalf: true);
        CheckTiedHead(file, path);
        foreach (var p in gpt.Parameters) file.ReadInto(p.Name, p.Value.Span);
        EnsureFinite(gpt.ParameterData, $"{path} parameters", null);
    }

    /// <summary>Reads optimizer.safetensors into the AdamW state (same checks, F32 only).</summary>
    public static void LoadOptimizer(string dir, Gpt gpt, AdamW optimizer, long step)
    {
        string path = Path.Combine(dir, OptimizerFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {OptimizerFile}", path);
        using var file = SafeTensorsFile.Open(path);
        foreach (var p in gpt.Parameters)
        {
            CheckTensor(file, path, p.Name + ".exp_avg", p.Shape, allowHalf: false);
            CheckTensor(file, path, p.Name + ".exp_avg_sq", p.Shape, allowHalf: false);
        }
        foreach (var p in gpt.Parameters)
        {
            var seg = AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay);
            file.ReadInto(p.Name + ".exp_avg", optimizer.M.Slice(seg.Offset, seg.Length));
            file.ReadInto(p.Name + ".exp_avg_sq", optimizer.V.Slice(seg.Offset, seg.Length));
        }
        optimizer.StepCount = step;
    }

    static void CheckTensor(SafeTensorsFile file, string path, string name, int[] expected, bool allowHalf)
    {
        if (!file.Contains(name))
            throw new FormatException($"{path} is missing tensor '{name}' (expected shape {Shape(expected)})");
        var info = file.Get(name);
        if (!info.Shape.AsSpan().SequenceEqual(expected))
            throw new FormatException($"{path}: tensor '{name}' has shape {Shape(info.Shape)}, expected {Shape(expected)}");
        if (info.Dtype != SafeTensorsDtype.F32 && !allowHalf)
            throw new FormatException($"{path}: tensor '{name}' has dtype {info.Dtype}, expected F32");
    }

    /// <summary>
    /// A stored lm_head.weight must equal transformer.wte.weight bit for bit: the model ties the output head to the
    /// embedding, so a different head (an untied or edited checkpoint) would be silently replaced by wte.
    /// </summary>
    static void CheckTiedHead(SafeTensorsFile file, string path)
    {
        if (!file.TryGet(LmHeadName, out var head)) return;
        var wteInfo = file.Get(WteName);
        if (!head.Shape.AsSpan().SequenceEqual(wteInfo.Shape))
            throw new FormatException($"{path}: tensor '{LmHeadName}' has shape {Shape(head.Shape)} but must equal the tied '{WteName}' {Shape(wteInfo.Shape)}");
        var h = file.ReadFloat32Array(LmHeadName);
        var w = file.ReadFloat32Array(WteName);
        for (int i = 0; i < h.Length; i++)
            if (BitConverter.SingleToInt32Bits(h[i]) != BitConverter.SingleToInt32Bits(w[i]))
                throw new FormatException($"{path}: tensor '{LmHeadName}' differs from the tied '{WteName}' at element {i} ({h[i]} vs {w[i]}); the model ties its output head to the embedding, so the two must be equal");
    }

    static string Shape(int[] s) => "[" + string.Join(", ", s) + "]";

    static void EnsureFinite(ReadOnlySpan<float> values, string what, int? step)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new InvalidDataException($"{what} contain {values[i]} at index {i}{(step is int s ? $" (step {s})" : "")}; refusing to use them");
    }

    /// <summary>Writes bytes to a temporary file in the same directory, flushes, then renames over <paramref name="path"/>.</summary>
    public static void WriteAtomic(string path, ReadOnlySpan<byte> bytes)
    {
        string tmp = path + ".tmp-" + Environment.ProcessId;
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            fs.Write(bytes);
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
