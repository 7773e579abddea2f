using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using SparseModelConfig = NanoSparse.Sparsity.SparseModelConfig;
using SparseDst = NanoSparse.Sparsity.Dst;

namespace NanoSparse.Training;

/// <summary>
/// The training run's configuration: nanoGPT train.py's variables, one property each, same snake_case names in
/// JSON and in <c>--set key=value</c>. Defaults are train.py's except where a CPU run needs smaller ones
/// (model size, block_size, iterations, warm-up, eval cadence, gradient_accumulation_steps 1).
/// </summary>
public sealed class TrainConfig
{
    // I/O
    [JsonPropertyName("out_dir")] public string OutDir { get; set; } = "out";
    [JsonPropertyName("eval_interval")] public int EvalInterval { get; set; } = 250;
    [JsonPropertyName("log_interval")] public int LogInterval { get; set; } = 1;
    [JsonPropertyName("eval_iters")] public int EvalIters { get; set; } = 20;
    [JsonPropertyName("eval_only")] public bool EvalOnly { get; set; }
    [JsonPropertyName("always_save_checkpoint")] public bool AlwaysSaveCheckpoint { get; set; } = true;
    /// <summary>
    /// scratch | resume (continue the run in out_dir) | a checkpoint directory: start a new run (step 0, fresh AdamW
    /// moments, this config's schedule) from its weights and model shape, e.g. a fine-tune that swaps the activation.
    /// </summary>
    [JsonPropertyName("init_from")] public string InitFrom { get; set; } = "scratch";
    // data
    [JsonPropertyName("dataset")] public string Dataset { get; set; } = "data/brown";
    [JsonPropertyName("gradient_accumulation_steps")] public int GradientAccumulationSteps { get; set; } = 1;
    [JsonPropertyName("batch_size")] public int BatchSize { get; set; } = 12;
    [JsonPropertyName("block_size")] public int BlockSize { get; set; } = 64;
    /// <summary>Token ids whose prediction carries loss, e.g. "129-192" (see <see cref="LossTargets"/>); empty: every position (nanoGPT).</summary>
    [JsonPropertyName("loss_targets")] public string LossTargets { get; set; } = "";
    // model
    [JsonPropertyName("n_layer")] public int NLayer { get; set; } = 4;
    [JsonPropertyName("n_head")] public int NHead { get; set; } = 4;
    [JsonPropertyName("n_embd")] public int NEmbd { get; set; } = 128;
    [JsonPropertyName("dropout")] public float Dropout { get; set; } = 0f;
    [JsonPropertyName("bias")] public bool Bias { get; set; }
    // MLP activation (see Nn.GptConfig.Activation) and activation sparsity (see Sparsity.Activation)
    /// <summary>gelu | gelu_tanh | relu | relu2 | fatrelu; empty: gelu from scratch, the checkpoint's when resuming or
    /// initialising from one (set it there to swap the activation, e.g. ReLU-fication; shapes stay).</summary>
    [JsonPropertyName("activation")] public string Activation { get; set; } = "";
    /// <summary>FATReLU's threshold t ≥ 0: x if x &gt; t else 0 (activation fatrelu only).</summary>
    [JsonPropertyName("fatrelu_threshold")] public float FatreluThreshold { get; set; }
    /// <summary>λ of the L1 penalty λ · Σ_layers mean |a| on the MLP hidden activations (ProSparse); 0: none.</summary>
    [JsonPropertyName("act_l1")] public float ActL1 { get; set; }
    /// <summary>Steps over which act_l1 ramps linearly from the run's first step up to its value (0: full from the start).</summary>
    [JsonPropertyName("act_l1_warmup")] public int ActL1Warmup { get; set; }
    // attention pattern (see Nn.Parts.AttentionPatterns): dense | window | block | topk | nsa, and its parameters
    [JsonPropertyName("attention")] public string Attention { get; set; } = "dense";
    [JsonPropertyName("attn_window")] public int AttnWindow { get; set; }
    /// <summary>Rotary position embedding on q and k (besides the learned wpe); off by default.</summary>
    [JsonPropertyName("rope")] public bool Rope { get; set; }
    [JsonPropertyName("attn_block")] public int AttnBlock { get; set; }
    [JsonPropertyName("attn_local")] public int AttnLocal { get; set; }
    [JsonPropertyName("attn_global")] public int AttnGlobal { get; set; }
    [JsonPropertyName("attn_stride")] public int AttnStride { get; set; }
    [JsonPropertyName("attn_topk")] public int AttnTopK { get; set; }
    // mixture of experts (see Nn.Parts.FeedForwards.MoeSettings): absent (null) keys keep their defaults; no n_experts: dense MLPs
    [JsonPropertyName("n_experts"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NExperts { get; set; }
    [JsonPropertyName("top_k"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? TopK { get; set; }
    [JsonPropertyName("moe_every"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? MoeEvery { get; set; }
    [JsonPropertyName("expert_hidden"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? ExpertHidden { get; set; }
    [JsonPropertyName("moe_routing"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? MoeRouting { get; set; }
    [JsonPropertyName("capacity_factor"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CapacityFactor { get; set; }
    [JsonPropertyName("moe_aux_loss"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? MoeAuxLoss { get; set; }
    [JsonPropertyName("moe_z_loss"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? MoeZLoss { get; set; }
    /// <summary>The dense MLP's hidden width in every block (absent: 4·n_embd): the dense baselines of an MoE comparison.</summary>
    [JsonPropertyName("mlp_hidden"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? MlpHidden { get; set; }
    // sparse weights (static sparse training from random init; see Sparsity.SparseModelConfig)
    /// <summary>Global fraction of zeros over the sparse weights, in [0, 1); 0 trains a dense model.</summary>
    [JsonPropertyName("sparsity")] public float Sparsity { get; set; }
    /// <summary>How the global sparsity is spread over the weights: uniform | er | erk.</summary>
    [JsonPropertyName("sparsity_distribution")] public string SparsityDistribution { get; set; } = "uniform";
    /// <summary>Layout of the sparse weights: csr | bsr:RxC (e.g. bsr:4x4).</summary>
    [JsonPropertyName("sparse_format")] public string SparseFormat { get; set; } = "csr";
    /// <summary>"N:M" (e.g. 2:4): the sparse weights are N:M along the reduction dimension (overrides sparsity); empty: not N:M.</summary>
    [JsonPropertyName("nm")] public string Nm { get; set; } = "";
    /// <summary>Comma-separated block weights that are sparse (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj).</summary>
    [JsonPropertyName("sparse_weights")] public string SparseWeights { get; set; } = "attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj";
    // dynamic sparse training (see Sparsity.Dst.DynamicSparseTraining): the CSR weights change positions while training
    /// <summary>static | set | rigl | srigl.</summary>
    [JsonPropertyName("dst")] public string Dst { get; set; } = "static";
    /// <summary>ΔT: steps between topology updates.</summary>
    [JsonPropertyName("dst_interval")] public int DstInterval { get; set; } = 100;
    /// <summary>α: fraction of each layer's active weights dropped (and regrown) at the first update, cosine-annealed to 0 at dst_stop.</summary>
    [JsonPropertyName("dst_drop_fraction")] public float DstDropFraction { get; set; } = 0.3f;
    /// <summary>T_end: no updates from this step on; -1: three quarters of max_iters.</summary>
    [JsonPropertyName("dst_stop")] public int DstStop { get; set; } = -1;
    /// <summary>SRigL's γ_sal: a neuron with fewer than γ·fan-in salient weights is ablated (0: never).</summary>
    [JsonPropertyName("dst_ablation")] public float DstAblation { get; set; } = 0.3f;
    /// <summary>c_attn's Q, K and V row slices are three layers for the er/erk densities, the starting layout and every topology update.</summary>
    [JsonPropertyName("dst_split_qkv")] public bool DstSplitQkv { get; set; }
    // SR-STE: N:M sparse training from scratch on dense weights (see Sparsity.SrSte); nm gives N:M, sparse_weights which
    /// <summary>Train the sparse_weights dense with their N:M projection (nm) in the forward pass; checkpoints hold the N:M model.</summary>
    [JsonPropertyName("srste")] public bool Srste { get; set; }
    /// <summary>λ_W of SR-STE's sparse-refined gradient term λ_W·(pruned mask ⊙ W) (the paper's 2e-4).</summary>
    [JsonPropertyName("srste_lambda")] public float SrsteLambda { get; set; } = NanoSparse.Sparsity.SrSte.DefaultLambda;
    // SμPar: sparse maximal update parameterisation (see Nn.Supar)
    /// <summary>Scale init std and AdamW learning rate of the blocks' Linear weights by width and density multipliers, logits by 1/width multiplier.</summary>
    [JsonPropertyName("supar")] public bool Supar { get; set; }
    /// <summary>n_embd of the base model the learning rate was tuned on; 0: this model's n_embd (width multiplier 1).</summary>
    [JsonPropertyName("supar_base_width")] public int SuparBaseWidth { get; set; }
    /// <summary>Density of the base model's Linear weights, in (0, 1].</summary>
    [JsonPropertyName("supar_base_density")] public float SuparBaseDensity { get; set; } = 1f;
    // pruning while training (see GradualPruning): Zhu & Gupta's gradual magnitude pruning of the blocks' Linear weights
    /// <summary>none | gmp (gradual magnitude pruning with the cubic schedule).</summary>
    [JsonPropertyName("prune_schedule")] public string PruneSchedule { get; set; } = "none";
    [JsonPropertyName("prune_initial_sparsity")] public float PruneInitialSparsity { get; set; }
    [JsonPropertyName("prune_final_sparsity")] public float PruneFinalSparsity { get; set; } = 0.9f;
    /// <summary>First pruning step (t0).</summary>
    [JsonPropertyName("prune_start")] public int PruneStart { get; set; }
    /// <summary>Step at which the final sparsity is reached; -1: three quarters of max_iters.</summary>
    [JsonPropertyName("prune_end")] public int PruneEnd { get; set; } = -1;
    /// <summary>Steps between pruning steps (Δt).</summary>
    [JsonPropertyName("prune_frequency")] public int PruneFrequency { get; set; } = 100;
    /// <summary>layer (each weight pruned to the sparsity) | global (one magnitude threshold over all of them).</summary>
    [JsonPropertyName("prune_scope")] public string PruneScope { get; set; } = "layer";
    /// <summary>
    /// Schedule sparsity from which the pruned weights move to the CSR layout (training then runs on the sparse
    /// kernels); 1 keeps them dense (masked) throughout. Default 0.7: the `wide` training step ran faster sparse than
    /// dense from about 70% sparsity.
    /// </summary>
    [JsonPropertyName("prune_switch_sparsity")] public float PruneSwitchSparsity { get; set; } = 0.7f;
    // L1 / elastic-net penalties on the blocks' Linear weights, applied by their proximal operator after each step
    /// <summary>λ1: w ← sign(w)·max(|w| − lr·λ1, 0) after each AdamW step.</summary>
    [JsonPropertyName("l1")] public float L1 { get; set; }
    /// <summary>λ2 of the elastic net, as a proximal L2 term: w ← w / (1 + lr·λ2) after the soft-threshold.</summary>
    [JsonPropertyName("l2")] public float L2 { get; set; }
    // AdamW
    [JsonPropertyName("learning_rate")] public float LearningRate { get; set; } = 6e-4f;
    [JsonPropertyName("max_iters")] public int MaxIters { get; set; } = 2000;
    [JsonPropertyName("weight_decay")] public float WeightDecay { get; set; } = 0.1f;
    [JsonPropertyName("beta1")] public float Beta1 { get; set; } = 0.9f;
    [JsonPropertyName("beta2")] public float Beta2 { get; set; } = 0.95f;
    [JsonPropertyName("grad_clip")] public float GradClip { get; set; } = 1.0f;
    // learning-rate schedule
    [JsonPropertyName("decay_lr")] public bool DecayLr { get; set; } = true;
    [JsonPropertyName("warmup_iters")] public int WarmupIters { get; set; } = 100;
    [JsonPropertyName("lr_decay_iters")] public int LrDecayIters { get; set; } = 2000;
    [JsonPropertyName("min_lr")] public float MinLr { get; set; } = 6e-5f;
    // system
    [JsonPropertyName("seed")] public ulong Seed { get; set; } = 1337;
    /// <summary>Kernel threads; 0 means all cores.</summary>
    [JsonPropertyName("threads")] public int Threads { get; set; }
    /// <summary>Build the next batch on a background thread while this one computes.</summary>
    [JsonPropertyName("prefetch")] public bool Prefetch { get; set; } = true;

    public TrainConfig Clone() => (TrainConfig)MemberwiseClone();

    /// <summary>dst_stop with -1 resolved: three quarters of max_iters.</summary>
    public int ResolvedDstStop => DstStop >= 0 ? DstStop : MaxIters * 3 / 4;

    /// <summary>prune_end with -1 resolved: three quarters of max_iters.</summary>
    public int ResolvedPruneEnd => PruneEnd >= 0 ? PruneEnd : MaxIters * 3 / 4;

    /// <summary>
    /// <paramref name="model"/> with the sparsity keys applied (see Sparsity.SparseModelConfig); positions are seeded
    /// from <see cref="Seed"/>. Errors name the key.
    /// </summary>
    /// <summary>The model config with this config's attention pattern (attention, attn_*).</summary>
    /// <summary>The model config with this config's activation when one is set (fatrelu_threshold with it); else unchanged.</summary>
    public Nn.GptConfig ApplyActivation(Nn.GptConfig model) => Activation.Length == 0 ? model
        : model with { Activation = Activation, FatreluThreshold = Activation == Nn.GptConfig.FatRelu ? FatreluThreshold : 0f };

    public Nn.GptConfig ApplyAttention(Nn.GptConfig model) => model with
    {
        Attention = Attention == "dense" ? null : Attention, AttnWindow = AttnWindow, AttnBlock = AttnBlock, AttnLocal = AttnLocal,
        AttnGlobal = AttnGlobal, AttnStride = AttnStride, AttnTopK = AttnTopK, Rope = Rope,
    };

    /// <summary>The model config with this config's mixture-of-experts keys (n_experts, top_k, ...).</summary>
    public Nn.GptConfig ApplyMoe(Nn.GptConfig model) => model with
    {
        NExperts = NExperts, TopK = TopK, MoeEvery = MoeEvery, ExpertHidden = ExpertHidden, MoeRouting = MoeRouting,
        CapacityFactor = CapacityFactor, MoeAuxLoss = MoeAuxLoss, MoeZLoss = MoeZLoss,
        MlpHiddenPerLayer = MlpHidden is int h && h != 4 * model.NEmbd ? Enumerable.Repeat(h, model.NLayer).ToArray() : model.MlpHiddenPerLayer,
    };

    public Nn.GptConfig ApplySparsity(Nn.GptConfig model) =>
        SparseModelConfig.Apply(model,
            double.Parse(Sparsity.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),   // 0.9f as 0.9, not 0.899999976
            SparsityDistribution, SparseFormat, Srste ? "" : Nm, (SparseWeights ?? "").Split(','), Seed, DstSplitQkv);

    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>Every key with its property, in declaration order.</summary>
    static readonly (string Key, PropertyInfo Property)[] Keys = typeof(TrainConfig)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetCustomAttribute<JsonPropertyNameAttribute>() is not null)
        .Select(p => (p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name, p))
        .ToArray();

    public static IReadOnlyList<string> KeyNames => Keys.Select(k => k.Key).ToArray();

    /// <summary>The (key, value) pairs as they would appear in JSON, for tables and logs.</summary>
    public IEnumerable<(string Key, string Value)> Entries() =>
        Keys.Select(k => (k.Key, FormatValue(k.Property.GetValue(this))));

    static string FormatValue(object? value) => value switch
    {
        null => "",
        bool b => b ? "true" : "false",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Parses JSON text (unknown keys are errors), then validates. <paramref name="source"/> names the origin in messages.</summary>
    public static TrainConfig FromJson(string json, string source = "config")
    {
        TrainConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<TrainConfig>(json, Json);
        }
        catch (JsonException e)
        {
            string where = e.Path is null ? "" : $" at {e.Path}";
            string why = e.Message.Contains("could not be mapped", StringComparison.Ordinal)
                ? $"unknown key{where.Replace(" at $.", " '")}{(where.Length > 0 ? "'" : "")}; valid keys: {string.Join(", ", KeyNames)}"
                : $"invalid value{where}: {e.Message.Split(". Path:")[0]}";
            throw new FormatException($"{source}: {why}", e);
        }
        if (config is null) throw new FormatException($"{source}: the JSON is null, expected an object of training settings");
        config.Validate(source);
        return config;
    }

    public static TrainConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config file {path} does not exist", path);
        return FromJson(NanoSparse.IO.JsonText.ReadAllText(path), path);
    }

    /// <summary>Applies one <c>key=value</c> override; an unknown key or unparsable value is an error naming both.</summary>
    public void Set(string assignment)
    {
        int eq = assignment.IndexOf('=');
        if (eq <= 0) throw new FormatException($"--set expects key=value, got '{assignment}'");
        Set(assignment[..eq].Trim(), assignment[(eq + 1)..].Trim());
    }

    public void Set(string key, string value)
    {
        var entry = Keys.FirstOrDefault(k => k.Key == key);
        if (entry.Property is null)
            throw new FormatException($"unknown config key '{key}'; valid keys: {string.Join(", ", KeyNames)}");
        var type = entry.Property.PropertyType;
        object? parsed = null;
        var inv = CultureInfo.InvariantCulture;
        bool ok = true;
        if (type == typeof(string)) parsed = value;
        else if (type == typeof(int)) { ok = int.TryParse(value, NumberStyles.Integer, inv, out int x); parsed = x; }
        else if (type == typeof(ulong)) { ok = ulong.TryParse(value, NumberStyles.Integer, inv, out ulong x); parsed = x; }
        else if (type == typeof(float)) { ok = float.TryParse(value, NumberStyles.Float, inv, out float x); parsed = x; }
        else if (type == typeof(int?)) { ok = int.TryParse(value, NumberStyles.Integer, inv, out int x); parsed = x; }
        else if (type == typeof(double?)) { ok = double.TryParse(value, NumberStyles.Float, inv, out double x); parsed = x; }
        else if (type == typeof(bool))
        {
            switch (value.ToLowerInvariant())
            {
                case "true" or "1" or "yes": parsed = true; break;
                case "false" or "0" or "no": parsed = false; break;
                default: ok = false; break;
            }
        }
        else throw new InvalidOperationException($"config key {key} has unsupported type {type.Name}");
        if (!ok) throw new FormatException($"invalid value '{value}' for config key '{key}': expected {TypeWord(type)}");
        entry.Property.SetValue(this, parsed);
    }

    static string TypeWord(Type t) =>
        t == typeof(int) || t == typeof(int?) ? "an integer" : t == typeof(ulong) ? "a non-negative integer" : t == typeof(float) || t == typeof(double?) ? "a number" : t == typeof(bool) ? "true or false" : "a string";

    /// <summary>Checks ranges and relations; throws ArgumentException naming the key, the value and what is allowed.</summary>
    public void Validate(string source = "config")
    {
        void Fail(string message) => throw new ArgumentException($"{source}: {message}");
        void Positive(string key, int v) { if (v <= 0) Fail($"{key} ({v}) must be positive"); }
        void NonNegative(string key, int v) { if (v < 0) Fail($"{key} ({v}) must be >= 0"); }
        void Finite(string key, float v, float min, float max, bool maxInclusive = true)
        {
            if (!float.IsFinite(v) || v < min || (maxInclusive ? v > max : v >= max))
                Fail($"{key} ({v.ToString(CultureInfo.InvariantCulture)}) must be in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}{(maxInclusive ? "]" : ")")}");
        }

        if (string.IsNullOrWhiteSpace(OutDir)) Fail("out_dir must not be empty");
        if (string.IsNullOrWhiteSpace(Dataset)) Fail("dataset must not be empty");
        if (InitFrom is not ("scratch" or "resume") && !File.Exists(Path.Combine(InitFrom, Checkpoint.StateFile)))
            Fail($"init_from ('{InitFrom}') must be 'scratch', 'resume' or a checkpoint directory (a run's out_dir with {Checkpoint.StateFile})");
        if (InitFrom is not ("scratch" or "resume") && Path.GetFullPath(InitFrom).TrimEnd('/') == Path.GetFullPath(OutDir).TrimEnd('/'))
            Fail($"init_from ('{InitFrom}') is out_dir itself; use init_from=resume to continue that run, or another out_dir (the input checkpoint is never written)");
        if (Activation.Length > 0 && !Nn.GptConfig.Activations.Contains(Activation))
            Fail($"activation ('{Activation}') must be one of {string.Join(", ", Nn.GptConfig.Activations)} (or empty: the checkpoint's, gelu from scratch)");
        Finite("fatrelu_threshold", FatreluThreshold, 0, float.MaxValue);
        if (FatreluThreshold > 0 && Activation != Nn.GptConfig.FatRelu)
            Fail($"fatrelu_threshold ({FatreluThreshold.ToString(CultureInfo.InvariantCulture)}) is set but activation is '{Activation}'; expected '{Nn.GptConfig.FatRelu}'");
        Finite("act_l1", ActL1, 0, float.MaxValue);
        NonNegative("act_l1_warmup", ActL1Warmup);
        Positive("eval_interval", EvalInterval);
        Positive("log_interval", LogInterval);
        Positive("eval_iters", EvalIters);
        Positive("gradient_accumulation_steps", GradientAccumulationSteps);
        Positive("batch_size", BatchSize);
        Positive("block_size", BlockSize);
        Positive("n_layer", NLayer);
        Positive("n_head", NHead);
        Positive("n_embd", NEmbd);
        if (NEmbd % NHead != 0) Fail($"n_embd ({NEmbd}) must be divisible by n_head ({NHead})");
        Finite("dropout", Dropout, 0, 1, maxInclusive: false);
        if (!(Sparsity >= 0 && Sparsity < 1)) Fail($"sparsity ({Sparsity.ToString(CultureInfo.InvariantCulture)}) must be in [0, 1) (the fraction of zeros; density = 1 - sparsity must be in (0, 1])");
        try
        {
            SparseModelConfig.CheckDistribution(SparsityDistribution);
            SparseModelConfig.ParseWeights((SparseWeights ?? "").Split(','));
            if (!string.IsNullOrEmpty(Nm)) SparseModelConfig.ParseNm(Nm);
            if (string.IsNullOrWhiteSpace(SparseFormat)) Fail("sparse_format must not be empty (csr, bsr:RxC, ...)");
        }
        catch (ArgumentException e) when (!e.Message.StartsWith(source + ":", StringComparison.Ordinal)) { Fail(e.Message); }
        if (PruneSchedule is not ("none" or "gmp")) Fail($"prune_schedule ('{PruneSchedule}') must be 'none' or 'gmp'");
        if (PruneScope is not ("layer" or "global")) Fail($"prune_scope ('{PruneScope}') must be 'layer' or 'global'");
        Finite("prune_initial_sparsity", PruneInitialSparsity, 0, 1, maxInclusive: false);
        Finite("prune_final_sparsity", PruneFinalSparsity, 0, 1, maxInclusive: false);
        Finite("prune_switch_sparsity", PruneSwitchSparsity, 0, 1);
        Finite("l1", L1, 0, float.MaxValue);
        Finite("l2", L2, 0, float.MaxValue);
        if (PruneSchedule == "gmp")
        {
            if (PruneInitialSparsity > PruneFinalSparsity)
                Fail($"prune_initial_sparsity ({PruneInitialSparsity.ToString(CultureInfo.InvariantCulture)}) must not exceed prune_final_sparsity ({PruneFinalSparsity.ToString(CultureInfo.InvariantCulture)})");
            NonNegative("prune_start", PruneStart);
            Positive("prune_frequency", PruneFrequency);
            if (PruneEnd < -1) Fail($"prune_end ({PruneEnd}) must be >= 0, or -1 for three quarters of max_iters");
            if (ResolvedPruneEnd <= PruneStart)
                Fail($"prune_end ({ResolvedPruneEnd}{(PruneEnd == -1 ? $", three quarters of max_iters {MaxIters}" : "")}) must be greater than prune_start ({PruneStart})");
            if (Sparsity > 0 || !string.IsNullOrEmpty(Nm))
                Fail($"prune_schedule 'gmp' prunes a dense model; it cannot be combined with sparsity ({Sparsity.ToString(CultureInfo.InvariantCulture)}) or nm ('{Nm}'), which train sparse from the start");
        }
        if (!SparseDst.DstMethods.Names.Contains(Dst)) Fail($"dst ('{Dst}') must be one of {string.Join(", ", SparseDst.DstMethods.Names)}");
        Positive("dst_interval", DstInterval);
        Finite("dst_drop_fraction", DstDropFraction, 0, 1);
        Finite("dst_ablation", DstAblation, 0, 1);
        if (DstStop < -1) Fail($"dst_stop ({DstStop}) must be >= 0, or -1 for three quarters of max_iters");
        if (Dst != "static")
        {
            if (Sparsity <= 0) Fail($"dst ('{Dst}') changes the positions of sparse weights: set sparsity above 0 (found {Sparsity.ToString(CultureInfo.InvariantCulture)})");
            if (!string.IsNullOrEmpty(Nm)) Fail($"dst ('{Dst}') updates unstructured csr weights; it cannot be combined with nm ('{Nm}')");
            if (SparseFormat != "csr") Fail($"dst ('{Dst}') updates csr weights; sparse_format is '{SparseFormat}', expected csr");
            if (PruneSchedule != "none") Fail($"dst ('{Dst}') cannot be combined with prune_schedule ('{PruneSchedule}')");
        }
        if (DstSplitQkv)
        {
            if (Sparsity <= 0) Fail($"dst_split_qkv (true) splits the sparse c_attn into Q, K and V: set sparsity above 0 (found {Sparsity.ToString(CultureInfo.InvariantCulture)})");
            if (!string.IsNullOrEmpty(Nm) || SparseFormat != "csr") Fail($"dst_split_qkv (true) draws csr slices; sparse_format is '{SparseFormat}'{(string.IsNullOrEmpty(Nm) ? "" : $" and nm '{Nm}'")}, expected csr without nm");
            if (!(SparseWeights ?? "").Split(',').Select(w => w.Trim()).Contains("attn.c_attn") && !string.IsNullOrWhiteSpace(SparseWeights))
                Fail($"dst_split_qkv (true) splits attn.c_attn, but sparse_weights ('{SparseWeights}') does not include it");
        }
        Finite("srste_lambda", SrsteLambda, 0, float.MaxValue);
        if (Srste)
        {
            if (string.IsNullOrEmpty(Nm)) Fail("srste is true but nm is empty; expected the N:M pattern to train, e.g. nm=2:4");
            if (Sparsity > 0) Fail($"srste trains an N:M model (nm '{Nm}'); it cannot be combined with sparsity ({Sparsity.ToString(CultureInfo.InvariantCulture)})");
            if (PruneSchedule != "none") Fail($"srste cannot be combined with prune_schedule '{PruneSchedule}'");
            if (L1 > 0 || L2 > 0) Fail($"srste cannot be combined with l1 ({L1.ToString(CultureInfo.InvariantCulture)}) or l2 ({L2.ToString(CultureInfo.InvariantCulture)}): their proximal step would act on the projection, not on the dense weights");
        }
        if (SuparBaseWidth < 0) Fail($"supar_base_width ({SuparBaseWidth}) must be >= 0 (0: this model's n_embd)");
        if (!(SuparBaseDensity > 0 && SuparBaseDensity <= 1)) Fail($"supar_base_density ({SuparBaseDensity.ToString(CultureInfo.InvariantCulture)}) must be in (0, 1]");
        if (Supar && PruneSchedule != "none") Fail($"supar cannot be combined with prune_schedule '{PruneSchedule}' (the densities change while training)");
        Finite("learning_rate", LearningRate, 0, float.MaxValue);
        NonNegative("max_iters", MaxIters);
        Finite("weight_decay", WeightDecay, 0, float.MaxValue);
        Finite("beta1", Beta1, 0, 1, maxInclusive: false);
        Finite("beta2", Beta2, 0, 1, maxInclusive: false);
        Finite("grad_clip", GradClip, 0, float.MaxValue);
        NonNegative("warmup_iters", WarmupIters);
        Finite("min_lr", MinLr, 0, float.MaxValue);
        if (DecayLr && LrDecayIters <= WarmupIters) Fail($"lr_decay_iters ({LrDecayIters}) must be greater than warmup_iters ({WarmupIters}) when decay_lr is true");
        NonNegative("threads", Threads);
    }
}
