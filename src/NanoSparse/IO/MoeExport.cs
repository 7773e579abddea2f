using System.Text.Json.Nodes;

namespace NanoSparse.IO;

/// <summary>
/// `export` of a mixture-of-experts checkpoint: nanoGPT's tensor names for everything a dense model has, and for each MoE
/// block transformer.h.{l}.mlp.router.weight (E, C) and transformer.h.{l}.mlp.experts.{e}.c_fc.weight (H, C),
/// .c_fc.bias (H), .c_proj.weight (C, H), .c_proj.bias (C) in place of mlp.c_fc / mlp.c_proj; config.json is nanoGPT's
/// plus the MoE keys (n_experts, top_k, moe_every, expert_hidden, moe_routing, capacity_factor, moe_aux_loss, moe_z_loss).
/// Hugging Face GPT-2 has no experts, so --format gpt2 is refused.
/// </summary>
internal static class MoeExport
{
    static readonly string[] Keys = ["n_experts", "top_k", "moe_every", "expert_hidden", "moe_routing", "capacity_factor", "moe_aux_loss", "moe_z_loss"];

    /// <summary>The tensors, dims and config.json of an MoE checkpoint; null when <paramref name="dir"/> has no experts.</summary>
    public static (GptDims Dims, List<SafeTensor> Tensors, JsonObject Config)? Read(ModelFormat format, string dir)
    {
        string statePath = Path.Combine(dir, ModelImporter.StateFile), cfgPath = Path.Combine(dir, ModelImporter.ConfigFile);
        string path = File.Exists(cfgPath) ? cfgPath : statePath;
        if (!File.Exists(path)) return null;
        var root = GptDims.ReadObject(path);
        var cfg = path == statePath ? root["model_args"] as JsonObject : root;
        if (cfg?["n_experts"] is not JsonValue experts) return null;
        if (format == ModelFormat.Gpt2)
            throw new ArgumentException($"checkpoint '{dir}' is a mixture of experts (n_experts {experts.ToJsonString()}); Hugging Face GPT-2 has no experts: export it with --format nanogpt");
        string model = Path.Combine(dir, ModelImporter.ModelFile);
        if (!File.Exists(model)) throw new FileNotFoundException($"checkpoint '{dir}' has no {ModelImporter.ModelFile}", model);
        using var file = SafeTensorsFile.Open(model);
        if (SparseWeightFiles.AnySparse(file))
            throw new ArgumentException($"checkpoint '{dir}': exporting a mixture of experts whose other weights are stored sparse is not supported; export it before sparsifying");
        var tensors = file.Tensors.Where(t => t.Name != NanoGptFormat.LmHead).Select(t => new SafeTensor(t.Name, t.Shape.Select(d => checked((int)d)).ToArray(), file.ReadFloat32Array(t.Name))).ToList();
        var wte = file.Get(NanoGptFormat.Wte);
        var wpe = file.Get("transformer.wpe.weight");
        int nLayer = 0;
        while (file.Contains($"transformer.h.{nLayer}.ln_1.weight")) nLayer++;
        var dims = new GptDims(nLayer, GptDims.GetInt(cfg, "n_head", path), (int)wte.Shape[1], (int)wpe.Shape[0], (int)wte.Shape[0],
            file.Contains("transformer.ln_f.bias"), cfg["activation"] is JsonValue a ? GptDims.ParseActivation(a.GetValue<string>(), path) : GptDims.GeluExact);
        dims.Validate($"checkpoint '{dir}'");
        var json = dims.ToNanoGptJson();
        foreach (var key in Keys)
            if (cfg[key] is JsonNode v) json[key] = v.DeepClone();
        return (dims, tensors, json);
    }
}
