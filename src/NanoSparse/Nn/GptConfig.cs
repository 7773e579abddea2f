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
    /// <summary>
    /// Storage layout of the blocks' Linear weights (see Parts.LinearWeightLayouts), by weight name: "attn.c_attn",
    /// "attn.c_proj", "mlp.c_fc", "mlp.c_proj" for every layer, or "h.{layer}.mlp.c_fc" (and so on) for one layer,
    /// which wins. Weights not named are "dense"; null (the default) makes them all dense.
    /// </summary>
    [JsonPropertyName("weight_layouts")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? WeightLayouts { get; init; }
    /// <summary>
    /// Fraction of positions stored, in (0, 1], of the Linear weights whose layout draws its positions from a density
    /// ("csr", "bsr:RxC"), keyed like <see cref="WeightLayouts"/>; a weight not named stores all positions (1.0).
    /// Layouts with a fixed pattern ("dense", "nm:N:M") ignore it.
    /// </summary>
    [JsonPropertyName("weight_densities")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, double>? WeightDensities { get; init; }
    /// <summary>
    /// Seeds the positions a sparse layout draws from its density: weight h.{l}.{name} uses an Rng seeded from this and
    /// its name (<see cref="WeightSeed"/>), so rebuilding the model from this config gives the same structure.
    /// </summary>
    [JsonPropertyName("sparsity_seed")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public ulong SparsitySeed { get; init; }

    public const string Gelu = "gelu";
    public const string GeluTanh = "gelu_tanh";
    /// <summary>The Linear weights of a block, by their state_dict names inside it.</summary>
    public static readonly IReadOnlyList<string> BlockWeights = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

    /// <summary>The layout name of Linear weight <paramref name="name"/> (one of <see cref="BlockWeights"/>) of a layer.</summary>
    public string WeightLayout(int layer, string name)
    {
        if (WeightLayouts is null) return Parts.LinearWeightLayouts.Dense;
        if (WeightLayouts.TryGetValue($"h.{layer}.{name}", out var layout)) return layout;
        return WeightLayouts.TryGetValue(name, out layout) ? layout : Parts.LinearWeightLayouts.Dense;
    }

    /// <summary>The density of Linear weight <paramref name="name"/> of a layer (1.0 unless <see cref="WeightDensities"/> names it).</summary>
    public double WeightDensity(int layer, string name)
    {
        if (WeightDensities is null) return 1.0;
        if (WeightDensities.TryGetValue($"h.{layer}.{name}", out double density)) return density;
        return WeightDensities.TryGetValue(name, out density) ? density : 1.0;
    }

    /// <summary>
    /// The seed of the Rng that draws the positions of Linear weight <paramref name="name"/> of a layer:
    /// SplitMix64 of <see cref="SparsitySeed"/> XOR the FNV-1a hash of "h.{layer}.{name}" (stable across runs and machines).
    /// </summary>
    public ulong WeightSeed(int layer, string name)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char ch in $"h.{layer}.{name}") hash = (hash ^ ch) * 1099511628211UL;
        ulong z = SparsitySeed ^ hash;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>True when every Linear weight is dense (whatever <see cref="WeightLayouts"/> spells out).</summary>
    public bool AllWeightsDense => WeightLayouts is null || WeightLayouts.Values.All(v => v == Parts.LinearWeightLayouts.Dense);

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
        if (WeightLayouts is not null)
            foreach (var (key, value) in WeightLayouts)
            {
                if (!IsWeightKey(key))
                    throw new ArgumentException($"weight_layouts key \"{key}\" must be one of {string.Join(", ", BlockWeights)}, optionally prefixed h.<layer>. with layer in [0, {NLayer})");
                if (!Parts.LinearWeightLayouts.IsRegistered(value))
                    throw new ArgumentException($"weight_layouts[\"{key}\"] (\"{value}\") must be one of: {string.Join(", ", Parts.LinearWeightLayouts.Names)}");
            }
        if (WeightDensities is not null)
            foreach (var (key, value) in WeightDensities)
            {
                if (!IsWeightKey(key))
                    throw new ArgumentException($"weight_densities key \"{key}\" must be one of {string.Join(", ", BlockWeights)}, optionally prefixed h.<layer>. with layer in [0, {NLayer})");
                if (!(value > 0 && value <= 1))
                    throw new ArgumentException($"weight_densities[\"{key}\"] ({value.ToString(System.Globalization.CultureInfo.InvariantCulture)}) must be in (0, 1]");
            }
        GptSize.CheckParameters(this);
    }

    bool IsWeightKey(string key)
    {
        if (BlockWeights.Contains(key)) return true;
        if (!key.StartsWith("h.")) return false;
        int dot = key.IndexOf('.', 2);
        return dot > 2 && int.TryParse(key.AsSpan(2, dot - 2), System.Globalization.NumberStyles.None, null, out int layer)
            && layer < NLayer && BlockWeights.Contains(key[(dot + 1)..]);
    }

    // Value equality over the layouts' entries too (a record compares a dictionary by reference).
    public bool Equals(GptConfig? other) =>
        other is not null && NLayer == other.NLayer && NHead == other.NHead && NEmbd == other.NEmbd && BlockSize == other.BlockSize
        && VocabSize == other.VocabSize && Bias == other.Bias && Dropout.Equals(other.Dropout) && Activation == other.Activation
        && Same(WeightLayouts, other.WeightLayouts) && Same(WeightDensities, other.WeightDensities) && SparsitySeed == other.SparsitySeed;

    public override int GetHashCode() =>
        HashCode.Combine(NLayer, NHead, NEmbd, BlockSize, VocabSize, Bias, Dropout, HashCode.Combine(Activation, WeightLayouts?.Count ?? 0, WeightDensities?.Count ?? 0, SparsitySeed));

    static bool Same<T>(IReadOnlyDictionary<string, T>? a, IReadOnlyDictionary<string, T>? b)
    {
        if (a is null || b is null) return ReferenceEquals(a, b) || (a ?? b)!.Count == 0;
        return a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && EqualityComparer<T>.Default.Equals(v, kv.Value));
    }

    static void Positive(int value, string field)
    {
        if (value <= 0) throw new ArgumentException($"{field} ({value}) must be positive");
    }
}
