using System.Text.Json.Serialization;
using NanoSparse.Nn;
using NanoSparse.Numerics;

namespace NanoSparse.Training;

/// <summary>The JSON half of a checkpoint (state.json): everything except the tensors.</summary>
public sealed class CheckpointState
{
    public const string FormatName = "nanosparse-checkpoint";

    [JsonPropertyName("format")] public string Format { get; set; } = FormatName;
    [JsonPropertyName("version")] public int Version { get; set; } = 1;
    [JsonPropertyName("model_args")] public ModelArgs Model { get; set; } = new();
    [JsonPropertyName("config")] public TrainConfig Config { get; set; } = new();
    /// <summary>nanoGPT's iter_num: the iteration the run continues from.</summary>
    [JsonPropertyName("iter_num")] public int IterNum { get; set; }
    [JsonPropertyName("best_val_loss")] public float BestValLoss { get; set; } = 1e9f;
    [JsonPropertyName("optimizer_step")] public long OptimizerStep { get; set; }
    [JsonPropertyName("dataset")] public string Dataset { get; set; } = "";
    [JsonPropertyName("tokenizer")] public string Tokenizer { get; set; } = "char";
    [JsonPropertyName("dropout_rng")] public RngStateJson DropoutRng { get; set; } = new();
    [JsonPropertyName("train_sampler")] public RngStateJson TrainSampler { get; set; } = new();
    /// <summary>
    /// The id of the save that wrote this file; model.safetensors and optimizer.safetensors carry it in their
    /// metadata (absent in checkpoints written before saves had ids).
    /// </summary>
    [JsonPropertyName("save_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? SaveId { get; set; }
    /// <summary>Every other file of the save, with its size and SHA-256 (absent in checkpoints written before saves had ids).</summary>
    [JsonPropertyName("files"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public Dictionary<string, CheckpointFile>? Files { get; set; }
}

/// <summary>One file of a save as state.json records it: its size in bytes and the SHA-256 of its contents (hex).</summary>
public sealed class CheckpointFile
{
    [JsonPropertyName("bytes")] public long Bytes { get; set; }
    [JsonPropertyName("sha256")] public string Sha256 { get; set; } = "";
}

/// <summary>nanoGPT's model_args, in its key names.</summary>
public sealed class ModelArgs
{
    [JsonPropertyName("n_layer")] public int NLayer { get; set; }
    [JsonPropertyName("n_head")] public int NHead { get; set; }
    [JsonPropertyName("n_embd")] public int NEmbd { get; set; }
    [JsonPropertyName("block_size")] public int BlockSize { get; set; }
    [JsonPropertyName("vocab_size")] public int VocabSize { get; set; }
    [JsonPropertyName("bias")] public bool Bias { get; set; }
    [JsonPropertyName("dropout")] public float Dropout { get; set; }
    /// <summary>MLP activation, "gelu" or "gelu_tanh" (absent in older state.json files: "gelu").</summary>
    [JsonPropertyName("activation")] public string Activation { get; set; } = GptConfig.Gelu;
    /// <summary>GptConfig.FatreluThreshold; written only for activation "fatrelu" with a threshold above 0.</summary>
    [JsonPropertyName("fatrelu_threshold")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? FatreluThreshold { get; set; }
    /// <summary>GptConfig.WeightLayouts; written only when some Linear weight is not dense (absent: all dense).</summary>
    [JsonPropertyName("weight_layouts")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Dictionary<string, string>? WeightLayouts { get; set; }
    /// <summary>GptConfig.WeightDensities (absent: every weight stores all its positions).</summary>
    [JsonPropertyName("weight_densities")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Dictionary<string, double>? WeightDensities { get; set; }
    /// <summary>GptConfig.SparsitySeed: seeds the positions of layouts drawn from a density (absent: 0).</summary>
    [JsonPropertyName("sparsity_seed")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public ulong SparsitySeed { get; set; }

    /// <summary>GptConfig.NHeadPerLayer: each layer's attention heads after structured pruning (absent: n_head in every layer).</summary>
    [JsonPropertyName("n_head_per_layer")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int[]? NHeadPerLayer { get; set; }
    /// <summary>GptConfig.MlpHiddenPerLayer: each layer's MLP width after structured pruning (absent: 4·n_embd in every layer).</summary>
    [JsonPropertyName("mlp_hidden_per_layer")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int[]? MlpHiddenPerLayer { get; set; }

    /// <summary>GptConfig.LogitScale (SμPar's output multiplier); written only when it is not 1.</summary>
    [JsonPropertyName("logit_scale")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? LogitScale { get; set; }

    /// <summary>GptConfig.Attention and its attn_* parameters (absent: dense).</summary>
    [JsonPropertyName("attention")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Attention { get; set; }
    [JsonPropertyName("attn_window")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnWindow { get; set; }
    [JsonPropertyName("rope")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool Rope { get; set; }
    [JsonPropertyName("attn_block")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnBlock { get; set; }
    [JsonPropertyName("attn_local")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnLocal { get; set; }
    [JsonPropertyName("attn_global")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnGlobal { get; set; }
    [JsonPropertyName("attn_stride")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnStride { get; set; }
    [JsonPropertyName("attn_topk")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int AttnTopK { get; set; }

    /// <summary>GptConfig.Gate and GateGroup: the per-input controller (absent: none).</summary>
    [JsonPropertyName("gate")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Gate { get; set; }
    [JsonPropertyName("gate_group")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int GateGroup { get; set; }
    /// <summary>The mixture-of-experts keys of GptConfig (see Nn.Parts.FeedForwards.MoeSettings); absent without MoE.</summary>
    [JsonPropertyName("n_experts")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NExperts { get; set; }
    [JsonPropertyName("top_k")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? TopK { get; set; }
    [JsonPropertyName("moe_every")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? MoeEvery { get; set; }
    [JsonPropertyName("expert_hidden")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? ExpertHidden { get; set; }
    [JsonPropertyName("moe_routing")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? MoeRouting { get; set; }
    [JsonPropertyName("capacity_factor")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CapacityFactor { get; set; }
    [JsonPropertyName("moe_aux_loss")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? MoeAuxLoss { get; set; }
    [JsonPropertyName("moe_z_loss")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? MoeZLoss { get; set; }

    public static ModelArgs From(GptConfig c) => new()
    {
        NLayer = c.NLayer, NHead = c.NHead, NEmbd = c.NEmbd, BlockSize = c.BlockSize,
        VocabSize = c.VocabSize, Bias = c.Bias, Dropout = c.Dropout, Activation = c.Activation,
        FatreluThreshold = c.FatreluThreshold == 0f ? null : c.FatreluThreshold,
        WeightLayouts = c.AllWeightsDense ? null : new Dictionary<string, string>(c.WeightLayouts!),
        WeightDensities = c.AllWeightsDense || c.WeightDensities is null || c.WeightDensities.Count == 0 ? null : new Dictionary<string, double>(c.WeightDensities),
        SparsitySeed = c.AllWeightsDense ? 0 : c.SparsitySeed,
        // Written only for a model whose widths differ from nanoGPT's, so other readers of model_args see its keys only.
        NHeadPerLayer = c.HasStandardWidths ? null : Enumerable.Range(0, c.NLayer).Select(c.Heads).ToArray(),
        MlpHiddenPerLayer = c.HasStandardWidths ? null : Enumerable.Range(0, c.NLayer).Select(c.MlpHidden).ToArray(),
        LogitScale = c.LogitScale == 1f ? null : c.LogitScale,
        Attention = c.Attention is null or "dense" ? null : c.Attention, AttnWindow = c.AttnWindow, AttnBlock = c.AttnBlock, AttnLocal = c.AttnLocal,
        AttnGlobal = c.AttnGlobal, AttnStride = c.AttnStride, AttnTopK = c.AttnTopK, Rope = c.Rope,
        Gate = c.Gate is null or "none" ? null : c.Gate, GateGroup = c.GateGroup,
        NExperts = c.NExperts, TopK = c.TopK, MoeEvery = c.MoeEvery, ExpertHidden = c.ExpertHidden, MoeRouting = c.MoeRouting,
        CapacityFactor = c.CapacityFactor, MoeAuxLoss = c.MoeAuxLoss, MoeZLoss = c.MoeZLoss,
    };

    public GptConfig ToConfig() => new()
    {
        NLayer = NLayer, NHead = NHead, NEmbd = NEmbd, BlockSize = BlockSize,
        VocabSize = VocabSize, Bias = Bias, Dropout = Dropout, Activation = Activation, FatreluThreshold = FatreluThreshold ?? 0f, WeightLayouts = WeightLayouts,
        WeightDensities = WeightDensities, SparsitySeed = SparsitySeed, NHeadPerLayer = NHeadPerLayer, MlpHiddenPerLayer = MlpHiddenPerLayer,
        LogitScale = LogitScale ?? 1f,
        Attention = Attention, AttnWindow = AttnWindow, AttnBlock = AttnBlock, AttnLocal = AttnLocal, AttnGlobal = AttnGlobal,
        AttnStride = AttnStride, AttnTopK = AttnTopK, Rope = Rope, Gate = Gate, GateGroup = GateGroup,
        NExperts = NExperts, TopK = TopK, MoeEvery = MoeEvery, ExpertHidden = ExpertHidden, MoeRouting = MoeRouting,
        CapacityFactor = CapacityFactor, MoeAuxLoss = MoeAuxLoss, MoeZLoss = MoeZLoss,
    };
}

/// <summary>An <see cref="RngState"/> as JSON. Words are decimal strings so that no JSON reader rounds them.</summary>
public sealed class RngStateJson
{
    [JsonPropertyName("s")] public string[] S { get; set; } = ["0", "0", "0", "0"];
    [JsonPropertyName("has_spare")] public bool HasSpare { get; set; }
    /// <summary>The cached Gaussian as the hex of its IEEE bits: bit-exact across write and read.</summary>
    [JsonPropertyName("spare_bits")] public string SpareBits { get; set; } = "0";

    public static RngStateJson From(RngState s) => new()
    {
        S = [s.S0.ToString(), s.S1.ToString(), s.S2.ToString(), s.S3.ToString()],
        HasSpare = s.HasSpare,
        SpareBits = BitConverter.DoubleToUInt64Bits(s.Spare).ToString("x16"),
    };

    public RngState ToState(string field)
    {
        if (S is not { Length: 4 } || !S.All(w => ulong.TryParse(w, out _)))
            throw new FormatException($"{field}.s must hold four unsigned 64-bit integers as strings");
        if (!ulong.TryParse(SpareBits, System.Globalization.NumberStyles.HexNumber, null, out ulong bits))
            throw new FormatException($"{field}.spare_bits ('{SpareBits}') must be hexadecimal");
        return new RngState(ulong.Parse(S[0]), ulong.Parse(S[1]), ulong.Parse(S[2]), ulong.Parse(S[3]), HasSpare, BitConverter.UInt64BitsToDouble(bits));
    }
}
