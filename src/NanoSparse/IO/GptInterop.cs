using NanoSparse.Nn;

namespace NanoSparse.IO;

/// <summary>Moves canonical (nanoGPT-named) tensors into and out of a NanoSparse.Nn.Gpt.</summary>
public static class GptInterop
{
    /// <summary>The GptConfig for dims (GPT-2's tanh GELU becomes activation "gelu_tanh").</summary>
    public static GptConfig ToConfig(GptDims d)
    {
        var config = new GptConfig
        {
            NLayer = d.NLayer, NHead = d.NHead, NEmbd = d.NEmbd, BlockSize = d.BlockSize, VocabSize = d.VocabSize, Bias = d.Bias,
            Activation = d.Activation == GptDims.GeluTanh ? GptConfig.GeluTanh : GptConfig.Gelu,
        };
        config.Validate();
        return config;
    }

    public static GptDims ToDims(GptConfig c) => new(c.NLayer, c.NHead, c.NEmbd, c.BlockSize, c.VocabSize, c.Bias,
        c.Activation switch
        {
            GptConfig.GeluTanh => GptDims.GeluTanh,
            GptConfig.Gelu => GptDims.GeluExact,
            _ => throw new NotSupportedException($"activation \"{c.Activation}\" has no nanoGPT / GPT-2 equivalent here (expected \"{GptConfig.Gelu}\" or \"{GptConfig.GeluTanh}\")"),
        });

    /// <summary>Copies canonical tensors into the model's parameters; every parameter must be present with its shape.</summary>
    public static void LoadInto(Gpt gpt, IReadOnlyList<SafeTensor> canonical)
    {
        var byName = canonical.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var p in gpt.Parameters)
        {
            if (!byName.Remove(p.Name, out var t))
                throw new InvalidDataException($"tensor '{p.Name}' [{string.Join(", ", p.Shape)}] the model needs is missing");
            if (!t.Shape.SequenceEqual(p.Shape))
                throw new InvalidDataException($"tensor '{p.Name}' has shape [{string.Join(", ", t.Shape)}] but the model needs [{string.Join(", ", p.Shape)}]");
            t.Data.Span.CopyTo(p.Value.Span);
        }
        if (byName.Count > 0)
            throw new InvalidDataException($"unexpected tensor(s) the model does not have: {string.Join(", ", byName.Keys.Take(8).Select(n => $"'{n}'"))}");
    }

    /// <summary>Copies of the model's parameters as canonical tensors (nanoGPT state_dict order, no lm_head).</summary>
    public static List<SafeTensor> FromGpt(Gpt gpt) =>
        gpt.Parameters.Select(p => new SafeTensor(p.Name, (int[])p.Shape.Clone(), p.Value.ToArray())).ToList();

    /// <summary>Builds a Gpt for (batchSize, seqLen) from a NanoSparse checkpoint directory (model.safetensors + config.json/state.json).</summary>
    public static Gpt LoadCheckpoint(string dir, int batchSize, int seqLen)
    {
        var (dims, tensors) = ModelImporter.ReadCheckpoint(dir);
        var gpt = new Gpt(ToConfig(dims), batchSize, seqLen);
        LoadInto(gpt, tensors);
        return gpt;
    }

    /// <summary>Builds a Gpt from foreign weights (nanoGPT or GPT-2) directly.</summary>
    public static Gpt Load(ModelFormat format, string weightsPath, string? configPath, int batchSize, int seqLen)
    {
        var (dims, tensors) = ModelImporter.Read(format, weightsPath, configPath);
        var gpt = new Gpt(ToConfig(dims), batchSize, seqLen);
        LoadInto(gpt, tensors);
        return gpt;
    }

    /// <summary>Writes a live model as a NanoSparse checkpoint directory (model.safetensors + config.json).</summary>
    public static void SaveCheckpoint(Gpt gpt, string dir) => ModelImporter.WriteCheckpoint(dir, ToDims(gpt.Config), FromGpt(gpt));
}
