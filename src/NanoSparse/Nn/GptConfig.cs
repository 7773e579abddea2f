using System.Text.Json.Serialization;

namespace NanoSparse.Nn;

/// <summary>The model's shape, as nanoGPT's GPTConfig (same field names in JSON).</summary>
public sealed record GptConfig
{
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 4;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 4;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 128;
    [JsonPropertyName("block_size")] public int BlockSize { get; init; } = 64;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 65;
    /// <summary>Biases in Linear layers and LayerNorms (nanoGPT: False is a bit better and faster).</summary>
    [JsonPropertyName("bias")] public bool Bias { get; init; } = false;
    [JsonPropertyName("dropout")] public float Dropout { get; init; } = 0f;
    /// <summary>MLP activation: "gelu" (exact erf GELU, nanoGPT's nn.GELU()) or "gelu_tanh" (GPT-2's tanh approximation).</summary>
    [JsonPropertyName("activation")] public string Activation { get; init; } = Gelu;

    public const string Gelu = "gelu";
    public const string GeluTanh = "gelu_tanh";

    /// <summary>Throws an ArgumentException naming the first field that is out of range (or too large for the parameters to fit one array).</summary>
    public void Validate()
    {
        Positive(NLayer, "n_layer");
        Positive(NHead, "n_head");
        Positive(NEmbd, "n_embd");
        Positive(BlockSize, "block_size");
        Positive(VocabSize, "vocab_size");
        if (NEmbd % NHead != 0)
            throw new ArgumentException($"n_embd ({NEmbd}) must be divisible by n_head ({NHead})");
        if (!(Dropout >= 0f && Dropout < 1f))
            throw new ArgumentException($"dropout ({Dropout}) must lie in [0, 1)");
        if (Activation is not (Gelu or GeluTanh))
            throw new ArgumentException($"activation (\"{Activation}\") must be \"{Gelu}\" or \"{GeluTanh}\"");
        GptSize.CheckParameters(this);
    }

    static void Positive(int value, string field)
    {
        if (value <= 0) throw new ArgumentException($"{field} ({value}) must be positive");
    }
}
