namespace NanoSparse.IO;

/// <summary>One tensor a model of given dims has, under its nanoGPT state_dict name, with its PyTorch shape.</summary>
public sealed record TensorSpec(string Name, int[] Shape);

/// <summary>
/// nanoGPT's state_dict layout, which is also NanoSparse's canonical parameter naming (Linear weights are (out, in)).
/// lm_head.weight is tied to transformer.wte.weight and is not part of the canonical list.
/// </summary>
public static class NanoGptFormat
{
    public const string LmHead = "lm_head.weight";
    public const string Wte = "transformer.wte.weight";

    /// <summary>The canonical tensors in nanoGPT state_dict order (without the tied lm_head.weight).</summary>
    public static List<TensorSpec> Layout(GptDims d)
    {
        int C = d.NEmbd;
        var list = new List<TensorSpec>
        {
            new(Wte, [d.VocabSize, C]),                  // (V, C)
            new("transformer.wpe.weight", [d.BlockSize, C]), // (block_size, C)
        };
        void LayerNorm(string prefix)
        {
            list.Add(new($"{prefix}.weight", [C]));
            if (d.Bias) list.Add(new($"{prefix}.bias", [C]));
        }
        void Linear(string prefix, int outF, int inF)
        {
            list.Add(new($"{prefix}.weight", [outF, inF])); // (OC, C)
            if (d.Bias) list.Add(new($"{prefix}.bias", [outF]));
        }
        for (int i = 0; i < d.NLayer; i++)
        {
            string h = $"transformer.h.{i}";
            LayerNorm($"{h}.ln_1");
            Linear($"{h}.attn.c_attn", 3 * C, C);
            Linear($"{h}.attn.c_proj", C, C);
            LayerNorm($"{h}.ln_2");
            Linear($"{h}.mlp.c_fc", 4 * C, C);
            Linear($"{h}.mlp.c_proj", C, 4 * C);
        }
        LayerNorm("transformer.ln_f");
        return list;
    }

    /// <summary>Reads a nanoGPT state_dict saved as safetensors into canonical tensors (F32, Layout order).</summary>
    public static List<SafeTensor> Import(SafeTensorsFile file, GptDims dims)
    {
        // torch.compile wraps the model and prefixes every name with "_orig_mod."; nanoGPT's sample.py strips it too.
        const string compiled = "_orig_mod.";
        return TensorMapping.Import(file, dims, "nanogpt",
            toCanonical: name => name.StartsWith(compiled, StringComparison.Ordinal) ? name[compiled.Length..] : name,
            isBuffer: name => IsCausalMaskBuffer(name),
            transposed: _ => false);
    }

    /// <summary>The canonical tensors as a nanoGPT state_dict (lm_head.weight included so load_state_dict(strict=True) works).</summary>
    public static IEnumerable<SafeTensor> Export(IReadOnlyList<SafeTensor> canonical, SafeTensorsDtype dtype = SafeTensorsDtype.F32)
    {
        SafeTensor? wte = null;
        foreach (var t in canonical)
        {
            if (t.Name == Wte) wte = t;
            yield return t with { Dtype = dtype };
        }
        if (wte != null) yield return wte with { Name = LmHead, Dtype = dtype };
    }

    /// <summary>nanoGPT registers the causal mask as buffer "attn.bias" (1, 1, T, T) when flash attention is unavailable.</summary>
    internal static bool IsCausalMaskBuffer(string name) =>
        name.StartsWith("transformer.h.", StringComparison.Ordinal) && name.EndsWith(".attn.bias", StringComparison.Ordinal);
}
