using System.Text.Json;
using System.Text.Json.Nodes;

namespace NanoSparse.IO;

public enum ModelFormat { NanoGpt, Gpt2 }

/// <summary>
/// Converts between foreign checkpoints (nanoGPT state_dict, Hugging Face GPT-2) and a NanoSparse checkpoint
/// directory: model.safetensors (canonical nanoGPT names, F32, no tied lm_head) + config.json (GptConfig, snake_case).
/// </summary>
public static class ModelImporter
{
    public const string ModelFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string StateFile = "state.json";

    public static ModelFormat ParseFormat(string text) => text.ToLowerInvariant() switch
    {
        "nanogpt" => ModelFormat.NanoGpt,
        "gpt2" or "gpt-2" or "hf" => ModelFormat.Gpt2,
        _ => throw new ArgumentException($"unknown model format '{text}' (expected nanogpt or gpt2)"),
    };

    /// <summary>Reads foreign weights + config and returns the dims and canonical tensors.</summary>
    public static (GptDims Dims, List<SafeTensor> Tensors) Read(ModelFormat format, string weightsPath, string? configPath = null)
    {
        configPath ??= Path.Combine(Path.GetDirectoryName(Path.GetFullPath(weightsPath))!, ConfigFile);
        var dims = format == ModelFormat.NanoGpt ? GptDims.ReadNanoGptConfig(configPath) : GptDims.ReadGpt2Config(configPath);
        using var file = SafeTensorsFile.Open(weightsPath);
        var tensors = format == ModelFormat.NanoGpt ? NanoGptFormat.Import(file, dims) : Gpt2Format.Import(file, dims);
        return (dims, tensors);
    }

    /// <summary>
    /// import: foreign checkpoint → NanoSparse checkpoint directory (model.safetensors + config.json). A meta.json
    /// beside the weights (a tokenizer, e.g. from tools/nanogpt_to_safetensors.py --meta) is validated and copied too,
    /// with GPT-2's encoder.json/vocab.bpe when present, so sample decodes without --tokenizer.
    /// </summary>
    public static GptDims Import(ModelFormat format, string weightsPath, string? configPath, string outDir)
    {
        var (dims, tensors) = Read(format, weightsPath, configPath);
        string sourceDir = Path.GetDirectoryName(Path.GetFullPath(weightsPath))!;
        string metaPath = Path.Combine(sourceDir, Data.DatasetMeta.FileName);
        Data.DatasetMeta? meta = File.Exists(metaPath) ? Data.DatasetMeta.Load(metaPath) : null;
        if (meta != null && meta.VocabSize > dims.VocabSize)
            throw new InvalidDataException($"{metaPath}: vocab_size {meta.VocabSize} exceeds the model's vocab_size {dims.VocabSize}");
        WriteCheckpoint(outDir, dims, tensors);
        if (meta != null && Path.GetFullPath(outDir) != sourceDir)
        {
            meta.Save(Path.Combine(outDir, Data.DatasetMeta.FileName));
            if (Data.Gpt2Vocabulary.IsPresent(sourceDir)) Data.DatasetPreparer.CopyGpt2Files(sourceDir, outDir);
        }
        return dims;
    }

    public static void WriteCheckpoint(string dir, GptDims dims, IReadOnlyList<SafeTensor> canonical)
    {
        TensorMapping.EnsureWritable(canonical, Path.Combine(dir, ModelFile), SafeTensorsDtype.F32);
        WriteSet(dir, staged =>
        {
            SafeTensors.Write(staged(ModelFile), canonical, new Dictionary<string, string> { ["format"] = "pt" });
            GptDims.WriteJsonAtomic(staged(ConfigFile), dims.ToNanoSparseJson());
        });
    }

    /// <summary>
    /// Replaces model.safetensors and config.json in <paramref name="dir"/> as one change (<see cref="RedoJournal"/>:
    /// staged, then committed by one rename), so an interrupted write leaves the previous pair or the new one.
    /// </summary>
    static void WriteSet(string dir, Action<Func<string, string>> write)
    {
        string[] files = [ModelFile, ConfigFile];
        using var save = RedoJournal.Begin(dir, $"write-{Guid.NewGuid():N}"[..22], files);
        write(save.StagedPath);
        save.Commit(files, []);
    }

    /// <summary>
    /// Reads a NanoSparse checkpoint directory. Sizes come from the tensors themselves; n_head (which shapes cannot
    /// tell) and the activation come from config.json, or from the trainer's state.json.
    /// </summary>
    public static (GptDims Dims, List<SafeTensor> Tensors) ReadCheckpoint(string dir)
    {
        if (Directory.Exists(dir)) RedoJournal.Recover(dir);   // a training save interrupted after its commit
        string model = Path.Combine(dir, ModelFile);
        if (!File.Exists(model)) throw new FileNotFoundException($"checkpoint '{dir}' has no {ModelFile}", model);
        JsonObject? cfg = null;
        string cfgPath = Path.Combine(dir, ConfigFile);
        string statePath = Path.Combine(dir, StateFile);
        if (File.Exists(cfgPath)) cfg = GptDims.ReadObject(cfgPath);
        else if (File.Exists(statePath)) { cfgPath = statePath; cfg = FindObjectWith(GptDims.ReadObject(statePath), "n_head"); }
        if (cfg == null) throw new FileNotFoundException($"checkpoint '{dir}' has neither {ConfigFile} nor a {StateFile} holding n_head", cfgPath);

        RefuseLayerWidths(cfg, cfgPath);
        RefuseAttentionVariants(cfg, cfgPath);
        using var file = SafeTensorsFile.Open(model);
        var wte = file.Get(NanoGptFormat.Wte);
        var wpe = file.Get("transformer.wpe.weight");
        int nLayer = 0;
        while (file.Contains($"transformer.h.{nLayer}.ln_1.weight")) nLayer++;
        var dims = new GptDims(nLayer, GptDims.GetInt(cfg, "n_head", cfgPath), wte.Shape[1], wpe.Shape[0], wte.Shape[0],
            file.Contains("transformer.ln_f.bias"), cfg["activation"] is JsonValue a ? GptDims.ParseActivation(a.GetValue<string>(), cfgPath) : GptDims.GeluExact);
        dims.Validate($"checkpoint '{dir}'");
        return (dims, SparseWeightFiles.AnySparse(file) ? Densified(file, model, dims) : NanoGptFormat.Import(file, dims));
    }

    /// <summary>
    /// The canonical tensors of a checkpoint that stores some Linear weights sparse: those as dense (Out, In) matrices
    /// with zeros where nothing is stored (so PyTorch and Hugging Face load the export), the rest as stored.
    /// </summary>
    static List<SafeTensor> Densified(SafeTensorsFile file, string path, GptDims dims)
    {
        var result = new List<SafeTensor>();
        foreach (var spec in NanoGptFormat.Layout(dims))
        {
            if (spec.Shape.Length == 2 && SparseWeightFiles.IsSparse(file, spec.Name))
            {
                result.Add(new SafeTensor(spec.Name, spec.Shape, SparseWeightFiles.ReadDense(file, path, spec.Name, spec.Shape[0], spec.Shape[1])));
                continue;
            }
            if (!file.TryGet(spec.Name, out var info))
                throw new InvalidDataException($"{path} is missing tensor '{spec.Name}' (expected shape [{string.Join(", ", spec.Shape)}])");
            if (!info.Shape.AsSpan().SequenceEqual(spec.Shape))
                throw new InvalidDataException($"{path}: tensor '{spec.Name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", spec.Shape)}]");
            result.Add(new SafeTensor(spec.Name, spec.Shape, file.ReadFloat32Array(spec.Name)));
        }
        return result;
    }

    /// <summary>export: NanoSparse checkpoint directory → foreign format in outDir (model.safetensors + config.json).</summary>
    /// <summary>
    /// nanoGPT's and GPT-2's formats hold one n_head and a 4·n_embd MLP for every layer: a model whose per-layer head
    /// counts or MLP widths (structured pruning) differ from those is refused, naming the field and the first layer.
    /// </summary>
    /// <summary>
    /// nanoGPT and GPT-2 run dense causal attention with learned positions only: a model trained with a sparse attention
    /// pattern or with RoPE would load there and silently compute something else, so its export is refused.
    /// </summary>
    static void RefuseAttentionVariants(JsonObject cfg, string cfgPath)
    {
        if (cfg["rope"] is JsonValue r && r.GetValueKind() == JsonValueKind.True)
            throw new InvalidDataException($"config '{cfgPath}': rope is true but nanoGPT and GPT-2 have learned positions only; a model trained with RoPE cannot be exported to them");
        if (cfg["attention"] is JsonValue a && a.GetValueKind() == JsonValueKind.String && a.GetValue<string>() is var pattern && pattern != "dense")
            throw new InvalidDataException($"config '{cfgPath}': attention is '{pattern}' but nanoGPT and GPT-2 run dense attention; a model trained with a sparse attention pattern cannot be exported to them");
    }

    static void RefuseLayerWidths(JsonObject cfg, string cfgPath)
    {
        // SμPar's output multiplier has no place in those formats: the exported model would give other logits.
        if (cfg["logit_scale"] is JsonValue scale && scale.GetValueKind() == JsonValueKind.Number && scale.GetValue<double>() != 1)
            throw new InvalidDataException($"config '{cfgPath}': logit_scale is {scale.ToJsonString()} (SμPar) but nanoGPT and GPT-2 checkpoints have no output multiplier (1); this model cannot be exported to them");
        if (cfg["n_head_per_layer"] is null && cfg["mlp_hidden_per_layer"] is null) return;
        int nHead = GptDims.GetInt(cfg, "n_head", cfgPath), nEmbd = GptDims.GetInt(cfg, "n_embd", cfgPath);
        foreach (var (field, standard, what) in new[] { ("n_head_per_layer", nHead, "n_head"), ("mlp_hidden_per_layer", 4 * nEmbd, "4·n_embd") })
        {
            if (cfg[field] is not JsonArray list) continue;
            for (int l = 0; l < list.Count; l++)
                if (list[l] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || v.GetValue<double>() != standard)
                    throw new InvalidDataException($"config '{cfgPath}': {field}[{l}] is {list[l]?.ToJsonString() ?? "null"} but nanoGPT and GPT-2 checkpoints have {what} ({standard}) in every layer; a structurally pruned model with per-layer widths cannot be exported to them");
        }
    }

    public static GptDims Export(ModelFormat format, string checkpointDir, string outDir, SafeTensorsDtype dtype = SafeTensorsDtype.F32)
    {
        if (MoeExport.Read(format, checkpointDir) is { } moe)   // a mixture of experts: its own tensor names, documented there
        {
            TensorMapping.EnsureWritable(moe.Tensors, Path.Combine(outDir, ModelFile), dtype);
            WriteSet(outDir, staged =>
            {
                SafeTensors.Write(staged(ModelFile), NanoGptFormat.Export(moe.Tensors, dtype), new Dictionary<string, string> { ["format"] = "pt" });
                GptDims.WriteJsonAtomic(staged(ConfigFile), moe.Config);
            });
            return moe.Dims;
        }
        var (dims, tensors) = ReadCheckpoint(checkpointDir);
        Write(format, dims, tensors, outDir, dtype);
        return dims;
    }

    public static void Write(ModelFormat format, GptDims dims, IReadOnlyList<SafeTensor> canonical, string outDir, SafeTensorsDtype dtype = SafeTensorsDtype.F32)
    {
        TensorMapping.EnsureWritable(canonical, Path.Combine(outDir, ModelFile), dtype);
        if (format == ModelFormat.Gpt2 && !dims.Bias)
            throw new ArgumentException("GPT-2 models always have biases; this model has bias=false and cannot be exported as gpt2");
        var meta = new Dictionary<string, string> { ["format"] = "pt" }; // transformers refuses safetensors files without it
        WriteSet(outDir, staged =>
        {
            if (format == ModelFormat.NanoGpt)
            {
                SafeTensors.Write(staged(ModelFile), NanoGptFormat.Export(canonical, dtype), meta);
                GptDims.WriteJsonAtomic(staged(ConfigFile), dims.ToNanoGptJson());
            }
            else
            {
                SafeTensors.Write(staged(ModelFile), Gpt2Format.Export(canonical, dtype), meta);
                GptDims.WriteJsonAtomic(staged(ConfigFile), dims.ToGpt2Json());
            }
        });
    }

    private static JsonObject? FindObjectWith(JsonNode? node, string key)
    {
        if (node is JsonObject o)
        {
            if (o.ContainsKey(key)) return o;
            foreach (var (_, v) in o) if (FindObjectWith(v, key) is { } found) return found;
        }
        return null;
    }
}
