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
    /// <summary>
    /// MLP activation: "gelu" (exact erf GELU, nanoGPT's nn.GELU()), "gelu_tanh" (GPT-2's tanh approximation), or one
    /// that makes exact zeros: "relu", "relu2" (squared ReLU), "fatrelu" (x if x &gt; fatrelu_threshold else 0).
    /// </summary>
    [JsonPropertyName("activation")] public string Activation { get; init; } = Gelu;
    /// <summary>FATReLU's threshold t ≥ 0 (activation "fatrelu" only; 0 is ReLU).</summary>
    [JsonPropertyName("fatrelu_threshold")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public float FatreluThreshold { get; init; }
    /// <summary>
    /// Storage layout of the blocks' Linear weights (see Parts.LinearWeightLayouts), by weight name: "attn.c_attn",
    /// "attn.c_proj", "mlp.c_fc", "mlp.c_proj" for every layer, or "h.{layer}.mlp.c_fc" (and so on) for one layer,
    /// which wins. A value is a layout string: a registered name and optionally the layout's parameters after ':'
    /// ("nm:2:4"). Weights not named are "dense"; null (the default) makes them all dense.
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

    /// <summary>
    /// Attention heads of each layer (n_layer entries), e.g. after structured pruning removed some; null (the default):
    /// every layer has <see cref="NHead"/>. The head size stays n_embd / n_head, so layer l's attention is
    /// heads_l · head_size wide: c_attn (3·heads_l·hs, C), c_proj (C, heads_l·hs).
    /// </summary>
    [JsonPropertyName("n_head_per_layer")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? NHeadPerLayer { get; init; }
    /// <summary>
    /// MLP hidden width of each layer (n_layer entries): c_fc (hidden_l, C), c_proj (C, hidden_l); null (the default):
    /// every layer is 4·n_embd wide, as nanoGPT.
    /// </summary>
    [JsonPropertyName("mlp_hidden_per_layer")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? MlpHiddenPerLayer { get; init; }

    /// <summary>
    /// Multiplier of the output logits, logits = logit_scale · ln_f(x) · wteᵀ: µP's output multiplier 1/width
    /// multiplier under SμPar (see Supar); 1 (the default, not written) is nanoGPT's head.
    /// </summary>
    [JsonPropertyName("logit_scale")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public float LogitScale { get; init; } = 1f;
    /// Attention pattern (see Parts.AttentionPatterns): "dense" (null, the default), "window", "block", "topk" or "nsa",
    /// with its parameters in the attn_* fields (0 where a pattern does not use one).
    /// </summary>
    [JsonPropertyName("attention")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Attention { get; init; }
    /// <summary>Sliding window in positions (window; NSA's window branch).</summary>
    [JsonPropertyName("attn_window")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnWindow { get; init; }
    /// <summary>Key block in positions, a multiple of 16 (block, topk; NSA's compression and selection block).</summary>
    [JsonPropertyName("attn_block")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnBlock { get; init; }
    /// <summary>block: local blocks, the query's own included (0 reads as 1).</summary>
    [JsonPropertyName("attn_local")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnLocal { get; init; }
    /// <summary>block: the first blocks every query sees.</summary>
    [JsonPropertyName("attn_global")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnGlobal { get; init; }
    /// <summary>block: every attn_stride-th block is seen too (0: none); nsa: the compression stride (0 reads as attn_block).</summary>
    [JsonPropertyName("attn_stride")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnStride { get; init; }
    /// <summary>Rotary position embedding on q and k in every attention layer (Parts.RotaryEmbedding), besides the
    /// learned wpe; off by default (nanoGPT has none).</summary>
    [JsonPropertyName("rope")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool Rope { get; init; }
    /// <summary>topk, nsa: blocks selected per query besides its own.</summary>
    [JsonPropertyName("attn_topk")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnTopK { get; init; }

    /// <summary>
    /// Per-input controller (see Parts.Gated): "heads", "mlp" or "both" put a gate network on each block's attention
    /// heads and/or groups of gate_group MLP neurons; null or "none" (the default, not written): no gates.
    /// </summary>
    [JsonPropertyName("gate")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Gate { get; init; }
    /// <summary>MLP neurons per controller gate (0 reads as 64); must divide every layer's MLP hidden width.</summary>
    [JsonPropertyName("gate_group")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int GateGroup { get; init; }
    // Mixture of experts (Parts.FeedForwards.MoeSettings says what each key means and its default); n_experts absent: dense MLPs.
    [JsonPropertyName("n_experts")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NExperts { get; init; }
    [JsonPropertyName("top_k")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? TopK { get; init; }
    [JsonPropertyName("moe_every")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? MoeEvery { get; init; }
    [JsonPropertyName("expert_hidden")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? ExpertHidden { get; init; }
    [JsonPropertyName("moe_routing")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? MoeRouting { get; init; }
    [JsonPropertyName("capacity_factor")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CapacityFactor { get; init; }
    [JsonPropertyName("moe_aux_loss")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? MoeAuxLoss { get; init; }
    [JsonPropertyName("moe_z_loss")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? MoeZLoss { get; init; }

    public const string Gelu = "gelu";
    public const string GeluTanh = "gelu_tanh";
    public const string Relu = "relu";
    public const string Relu2 = "relu2";
    public const string FatRelu = "fatrelu";
    /// <summary>Every MLP activation by its config name.</summary>
    public static readonly IReadOnlyList<string> Activations = [Gelu, GeluTanh, Relu, Relu2, FatRelu];
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

    /// <summary>Width of one attention head: n_embd / n_head (whatever a layer's head count).</summary>
    public int HeadSize => NEmbd / NHead;

    /// <summary>Attention heads of layer <paramref name="layer"/> (<see cref="NHeadPerLayer"/>, else n_head).</summary>
    public int Heads(int layer) => NHeadPerLayer is { } h ? h[layer] : NHead;

    /// <summary>Layer <paramref name="layer"/>'s attention width: heads · head_size (q, k and v each; the KV cache's width).</summary>
    public int AttentionWidth(int layer) => Heads(layer) * HeadSize;

    /// <summary>MLP hidden width of layer <paramref name="layer"/> (<see cref="MlpHiddenPerLayer"/>, else 4·n_embd).</summary>
    public int MlpHidden(int layer) => MlpHiddenPerLayer is { } h ? h[layer] : 4 * NEmbd;

    /// <summary>
    /// True when every layer has n_head heads and a 4·n_embd MLP (nanoGPT's and GPT-2's shape, whether or not the
    /// per-layer lists spell it out).
    /// </summary>
    public bool HasStandardWidths =>
        Enumerable.Range(0, NLayer).All(l => (NHeadPerLayer is null || l < NHeadPerLayer.Count && NHeadPerLayer[l] == NHead)
            && (MlpHiddenPerLayer is null || l < MlpHiddenPerLayer.Count && MlpHiddenPerLayer[l] == 4 * NEmbd));

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
        if (!Activations.Contains(Activation))
            throw new ArgumentException($"activation (\"{Activation}\") must be one of {string.Join(", ", Activations)}");
        if (!(FatreluThreshold >= 0f && float.IsFinite(FatreluThreshold)))
            throw new ArgumentException($"fatrelu_threshold ({FatreluThreshold.ToString(System.Globalization.CultureInfo.InvariantCulture)}) must be finite and >= 0");
        if (FatreluThreshold != 0f && Activation != FatRelu)
            throw new ArgumentException($"fatrelu_threshold ({FatreluThreshold.ToString(System.Globalization.CultureInfo.InvariantCulture)}) is set but activation is \"{Activation}\"; expected \"{FatRelu}\"");
        if (!(float.IsFinite(LogitScale) && LogitScale > 0))
            throw new ArgumentException($"logit_scale ({LogitScale}) must be a finite number > 0");
        Parts.AttentionPatterns.AttentionPatternRegistry.Validate(this);
        Parts.Gated.GateSettings.Validate(this);
        Parts.FeedForwards.MoeSettings.Validate(this);
        PerLayer(NHeadPerLayer, "n_head_per_layer");
        PerLayer(MlpHiddenPerLayer, "mlp_hidden_per_layer");
        if (WeightLayouts is not null)
            foreach (var (key, value) in WeightLayouts)
            {
                if (!IsWeightKey(key))
                    throw new ArgumentException($"weight_layouts key \"{key}\" must be one of {string.Join(", ", BlockWeights)}, optionally prefixed h.<layer>. with layer in [0, {NLayer})");
                if (!Parts.LinearWeightLayouts.IsRegistered(value))
                    throw new ArgumentException($"weight_layouts[\"{key}\"] (\"{value}\") must name one of: {string.Join(", ", Parts.LinearWeightLayouts.Names)} (optionally with \":\" and the layout's parameters)");
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

    void PerLayer(IReadOnlyList<int>? values, string field)
    {
        if (values is null) return;
        if (values.Count != NLayer)
            throw new ArgumentException($"{field} has {values.Count} entries, expected one per layer (n_layer = {NLayer})");
        for (int l = 0; l < values.Count; l++)
            if (values[l] <= 0)
                throw new ArgumentException($"{field}[{l}] ({values[l]}) must be positive (a layer keeps at least one {(field == "n_head_per_layer" ? "head" : "neuron")})");
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
        && FatreluThreshold.Equals(other.FatreluThreshold)
        && Same(WeightLayouts, other.WeightLayouts) && Same(WeightDensities, other.WeightDensities) && SparsitySeed == other.SparsitySeed
        && LogitScale.Equals(other.LogitScale) && SameWidths(other)
        && (Attention ?? "dense") == (other.Attention ?? "dense") && AttnWindow == other.AttnWindow && AttnBlock == other.AttnBlock
        && AttnLocal == other.AttnLocal && AttnGlobal == other.AttnGlobal && AttnStride == other.AttnStride && AttnTopK == other.AttnTopK
        && Rope == other.Rope
        && (Gate ?? "none") == (other.Gate ?? "none") && GateGroup == other.GateGroup
        && Parts.FeedForwards.MoeSettings.Same(this, other);

    // Per-layer widths compare by what they mean: an absent list equals one that spells out the uniform values.
    bool SameWidths(GptConfig other)
    {
        if (NHeadPerLayer is null && MlpHiddenPerLayer is null && other.NHeadPerLayer is null && other.MlpHiddenPerLayer is null) return true;
        if (NLayer != other.NLayer || NHeadPerLayer?.Count is int a && a != NLayer || MlpHiddenPerLayer?.Count is int b && b != NLayer
            || other.NHeadPerLayer?.Count is int c && c != NLayer || other.MlpHiddenPerLayer?.Count is int d && d != NLayer)
            return (NHeadPerLayer ?? []).SequenceEqual(other.NHeadPerLayer ?? []) && (MlpHiddenPerLayer ?? []).SequenceEqual(other.MlpHiddenPerLayer ?? []);
        for (int l = 0; l < NLayer; l++)
            if (Heads(l) != other.Heads(l) || MlpHidden(l) != other.MlpHidden(l)) return false;
        return true;
    }

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
