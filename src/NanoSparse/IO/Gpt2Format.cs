namespace NanoSparse.IO;

/// <summary>
/// Hugging Face GPT-2 (model.safetensors + config.json). Names are nanoGPT's without the "transformer." prefix
/// (a GPT2LMHeadModel state_dict keeps the prefix; both are accepted). Attention and MLP projections are Conv1D
/// modules whose weight is stored (in, out), the transpose of nn.Linear's (out, in).
/// The buffers h.{i}.attn.bias (causal mask) and h.{i}.attn.masked_bias are ignored.
/// </summary>
public static class Gpt2Format
{
    private const string Prefix = "transformer.";

    public static List<SafeTensor> Import(SafeTensorsFile file, GptDims dims)
    {
        if (!dims.Bias) throw new ArgumentException("GPT-2 models always have biases (bias=true)");
        return TensorMapping.Import(file, dims, "gpt2",
            toCanonical: name => name == NanoGptFormat.LmHead || name.StartsWith(Prefix, StringComparison.Ordinal) ? name : Prefix + name,
            isBuffer: name => NanoGptFormat.IsCausalMaskBuffer(name) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal),
            transposed: IsConv1DWeight);
    }

    /// <summary>The canonical tensors under GPT-2 names (no prefix, no lm_head: tied), Conv1D weights transposed to (in, out).</summary>
    public static IEnumerable<SafeTensor> Export(IReadOnlyList<SafeTensor> canonical, SafeTensorsDtype dtype = SafeTensorsDtype.F32)
    {
        foreach (var t in canonical)
        {
            string name = t.Name.StartsWith(Prefix, StringComparison.Ordinal) ? t.Name[Prefix.Length..] : t.Name;
            if (IsConv1DWeight(t.Name))
                yield return new SafeTensor(name, [t.Shape[1], t.Shape[0]], TensorMapping.Transpose(t.Data.Span, t.Shape[0], t.Shape[1]), dtype);
            else
                yield return t with { Name = name, Dtype = dtype };
        }
    }

    /// <summary>c_attn, attn.c_proj, c_fc, mlp.c_proj weights are Conv1D (in, out) in GPT-2.</summary>
    internal static bool IsConv1DWeight(string canonicalName) =>
        canonicalName.EndsWith(".c_attn.weight", StringComparison.Ordinal) || canonicalName.EndsWith(".c_proj.weight", StringComparison.Ordinal)
        || canonicalName.EndsWith(".c_fc.weight", StringComparison.Ordinal);
}
