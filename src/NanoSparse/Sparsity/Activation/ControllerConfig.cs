using System.Globalization;
using System.Text.Json.Serialization;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// The keys of a per-input controller run (`nanosparse gate`), nanoGPT style: plain values with defaults, each
/// settable as key=value. The model keys gate and gate_group become the gated model's config; the others drive the
/// fine-tune (schedule, regulariser, optimiser) and are recorded beside the checkpoint in controller.json.
/// </summary>
public sealed record ControllerConfig
{
    /// <summary>"heads", "mlp" or "both": which units of each block the controller gates.</summary>
    [JsonPropertyName("gate")] public string Gate { get; set; } = "both";
    /// <summary>MLP neurons per gate; must divide the hidden width.</summary>
    [JsonPropertyName("gate_group")] public int GateGroup { get; set; } = 64;
    /// <summary>Target fraction of units kept on average, in (0, 1]: the penalty acts while a half keeps more.</summary>
    [JsonPropertyName("gate_budget")] public double GateBudget { get; set; } = 0.5;
    /// <summary>Weight of the budget penalty R = gate_l1 · max(0, mean kept − gate_budget), per gated half of a block.</summary>
    [JsonPropertyName("gate_l1")] public double GateL1 { get; set; } = 2.0;
    /// <summary>Iterations over which the budget the penalty aims at falls linearly from 1 to gate_budget (0: the budget from the start).</summary>
    [JsonPropertyName("gate_budget_warmup")] public int GateBudgetWarmup { get; set; }
    /// <summary>Iterations of soft gates, τ annealed geometrically from gate_temperature to gate_temperature_min; hard (0/1, straight-through) after. -1: 70% of max_iters.</summary>
    [JsonPropertyName("gate_anneal_iters")] public int GateAnnealIters { get; set; } = -1;
    [JsonPropertyName("gate_temperature")] public double GateTemperature { get; set; } = 1.0;
    [JsonPropertyName("gate_temperature_min")] public double GateTemperatureMin { get; set; } = 0.1;
    /// <summary>Initial gate bias: sigmoid(2) = 0.88 soft, every unit open (hard) when the controller is added.</summary>
    [JsonPropertyName("gate_bias_init")] public double GateBiasInit { get; set; } = 2.0;
    /// <summary>Learning-rate multiplier of the gate parameters.</summary>
    [JsonPropertyName("gate_lr_scale")] public double GateLrScale { get; set; } = 1.0;
    /// <summary>true: only the gates learn (the model frozen); false: the model is fine-tuned with them.</summary>
    [JsonPropertyName("freeze")] public bool Freeze { get; set; }
    [JsonPropertyName("max_iters")] public int MaxIters { get; set; } = 300;
    [JsonPropertyName("batch_size")] public int BatchSize { get; set; } = 8;
    /// <summary>Sequence length of the fine-tune and evaluation batches (0: the model's block_size).</summary>
    [JsonPropertyName("block_size")] public int BlockSize { get; set; }
    [JsonPropertyName("learning_rate")] public double LearningRate { get; set; } = 3e-4;
    [JsonPropertyName("min_lr")] public double MinLr { get; set; } = 3e-5;
    [JsonPropertyName("warmup_iters")] public int WarmupIters { get; set; } = 20;
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; set; } = 0.1;
    [JsonPropertyName("grad_clip")] public double GradClip { get; set; } = 1.0;
    [JsonPropertyName("eval_iters")] public int EvalIters { get; set; } = 20;
    [JsonPropertyName("log_interval")] public int LogInterval { get; set; } = 10;
    [JsonPropertyName("seed")] public ulong Seed { get; set; } = 1337;

    [JsonIgnore] public int ResolvedAnnealIters => GateAnnealIters >= 0 ? GateAnnealIters : (int)(0.7 * MaxIters);

    /// <summary>
    /// The budget the penalty aims at in iteration <paramref name="iter"/>: 1 − (1 − gate_budget)·min(1, (iter + 1) / gate_budget_warmup),
    /// so the gates close gradually instead of all in the first few iterations; gate_budget without a warmup.
    /// </summary>
    public double BudgetAt(int iter) =>
        GateBudgetWarmup <= 0 ? GateBudget : 1 - (1 - GateBudget) * Math.Min(1.0, (iter + 1) / (double)GateBudgetWarmup);

    public static IReadOnlyList<string> Keys { get; } =
    [
        "gate", "gate_group", "gate_budget", "gate_l1", "gate_budget_warmup", "gate_anneal_iters", "gate_temperature", "gate_temperature_min", "gate_bias_init",
        "gate_lr_scale", "freeze", "max_iters", "batch_size", "block_size", "learning_rate", "min_lr", "warmup_iters", "weight_decay",
        "grad_clip", "eval_iters", "log_interval", "seed",
    ];

    /// <summary>Sets one key from its text ("gate_budget", "0.3"); a one-line ArgumentException names the key and value.</summary>
    public void Set(string key, string value)
    {
        var inv = CultureInfo.InvariantCulture;
        double D() => double.TryParse(value, NumberStyles.Float, inv, out double d) && double.IsFinite(d) ? d
            : throw new ArgumentException($"{key} (\"{value}\") must be a number");
        int I() => int.TryParse(value, NumberStyles.Integer, inv, out int i) ? i
            : throw new ArgumentException($"{key} (\"{value}\") must be an integer");
        switch (key)
        {
            case "gate": Gate = value; break;
            case "gate_group": GateGroup = I(); break;
            case "gate_budget": GateBudget = D(); break;
            case "gate_l1": GateL1 = D(); break;
            case "gate_budget_warmup": GateBudgetWarmup = I(); break;
            case "gate_anneal_iters": GateAnnealIters = I(); break;
            case "gate_temperature": GateTemperature = D(); break;
            case "gate_temperature_min": GateTemperatureMin = D(); break;
            case "gate_bias_init": GateBiasInit = D(); break;
            case "gate_lr_scale": GateLrScale = D(); break;
            case "freeze": Freeze = value is "true" or "1" ? true : value is "false" or "0" ? false
                : throw new ArgumentException($"freeze (\"{value}\") must be true or false"); break;
            case "max_iters": MaxIters = I(); break;
            case "batch_size": BatchSize = I(); break;
            case "block_size": BlockSize = I(); break;
            case "learning_rate": LearningRate = D(); break;
            case "min_lr": MinLr = D(); break;
            case "warmup_iters": WarmupIters = I(); break;
            case "weight_decay": WeightDecay = D(); break;
            case "grad_clip": GradClip = D(); break;
            case "eval_iters": EvalIters = I(); break;
            case "log_interval": LogInterval = I(); break;
            case "seed": Seed = ulong.TryParse(value, NumberStyles.None, inv, out ulong s) ? s
                : throw new ArgumentException($"seed (\"{value}\") must be a non-negative integer"); break;
            default: throw new ArgumentException($"unknown key \"{key}\"; expected one of: {string.Join(", ", Keys)}");
        }
    }

    /// <summary>Throws a one-line ArgumentException naming the first key out of range.</summary>
    public void Validate()
    {
        var inv = CultureInfo.InvariantCulture;
        if (Gate is not ("heads" or "mlp" or "both")) throw new ArgumentException($"gate (\"{Gate}\") must be heads, mlp or both");
        if (GateGroup <= 0) throw new ArgumentException($"gate_group ({GateGroup}) must be positive");
        if (!(GateBudget > 0 && GateBudget <= 1)) throw new ArgumentException($"gate_budget ({GateBudget.ToString(inv)}) must lie in (0, 1]");
        if (!(GateL1 >= 0)) throw new ArgumentException($"gate_l1 ({GateL1.ToString(inv)}) must be >= 0");
        if (GateBudgetWarmup < 0) throw new ArgumentException($"gate_budget_warmup ({GateBudgetWarmup}) must be >= 0");
        if (GateAnnealIters < -1) throw new ArgumentException($"gate_anneal_iters ({GateAnnealIters}) must be >= 0 (or -1: 70% of max_iters)");
        if (!(GateTemperature > 0)) throw new ArgumentException($"gate_temperature ({GateTemperature.ToString(inv)}) must be > 0");
        if (!(GateTemperatureMin > 0 && GateTemperatureMin <= GateTemperature))
            throw new ArgumentException($"gate_temperature_min ({GateTemperatureMin.ToString(inv)}) must lie in (0, gate_temperature = {GateTemperature.ToString(inv)}]");
        if (!(GateLrScale >= 0)) throw new ArgumentException($"gate_lr_scale ({GateLrScale.ToString(inv)}) must be >= 0");
        if (MaxIters < 0) throw new ArgumentException($"max_iters ({MaxIters}) must be >= 0");
        if (BatchSize <= 0) throw new ArgumentException($"batch_size ({BatchSize}) must be positive");
        if (BlockSize < 0) throw new ArgumentException($"block_size ({BlockSize}) must be >= 0 (0: the model's)");
        if (!(LearningRate >= 0 && MinLr >= 0)) throw new ArgumentException($"learning_rate ({LearningRate.ToString(inv)}) and min_lr ({MinLr.ToString(inv)}) must be >= 0");
        if (WarmupIters < 0) throw new ArgumentException($"warmup_iters ({WarmupIters}) must be >= 0");
        if (!(WeightDecay >= 0)) throw new ArgumentException($"weight_decay ({WeightDecay.ToString(inv)}) must be >= 0");
        if (!(GradClip >= 0)) throw new ArgumentException($"grad_clip ({GradClip.ToString(inv)}) must be >= 0 (0: no clipping)");
        if (EvalIters <= 0) throw new ArgumentException($"eval_iters ({EvalIters}) must be positive");
        if (LogInterval <= 0) throw new ArgumentException($"log_interval ({LogInterval}) must be positive");
    }
}
