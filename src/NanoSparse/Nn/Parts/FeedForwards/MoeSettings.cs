using System.Globalization;

namespace NanoSparse.Nn.Parts.FeedForwards;

/// <summary>
/// The mixture-of-experts keys of a <see cref="GptConfig"/>, resolved to their defaults, and their validation.
///   n_experts        experts per MoE block (absent: no MoE anywhere; 0 is an error)
///   top_k            experts per token, topk routing (default 2); expert_choice uses it for the bucket size
///   moe_every        block l is MoE when (l + 1) % moe_every == 0: 1 (default) = every block, 2 = blocks 1, 3, 5, ...
///   expert_hidden    each expert's hidden width (default 4·n_embd)
///   moe_routing      "topk" (default; top_k = 1 is Switch, ≥ 2 Mixtral-style renormalised gates) or "expert_choice"
///   capacity_factor  topk: an expert takes at most ceil(cf·T·top_k/n_experts) assignments per sequence (absent: dropless);
///                    expert_choice: each expert picks ceil(cf·T·top_k/n_experts) tokens per sequence (absent: 1.0)
///   moe_aux_loss     weight α of Switch's load-balancing loss n·Σ f_i·P_i (default 0.01)
///   moe_z_loss       weight β of the router z-loss mean(logsumexp(z)²) (default 0.001)
/// </summary>
public static class MoeSettings
{
    public const string TopK = "topk";
    public const string ExpertChoice = "expert_choice";
    public const double DefaultAuxLoss = 0.01, DefaultZLoss = 0.001;

    public static bool Enabled(GptConfig c) => c.NExperts is not null;

    /// <summary>True when block <paramref name="layer"/> has an MoE feed-forward: (layer + 1) % moe_every == 0.</summary>
    public static bool IsMoeLayer(GptConfig c, int layer) => Enabled(c) && (layer + 1) % Every(c) == 0;

    public static int Experts(GptConfig c) => c.NExperts ?? 0;
    public static int K(GptConfig c) => c.TopK ?? 2;
    public static int Every(GptConfig c) => c.MoeEvery ?? 1;
    public static int Hidden(GptConfig c) => c.ExpertHidden ?? 4 * c.NEmbd;
    public static string Routing(GptConfig c) => c.MoeRouting ?? TopK;
    public static double AuxWeight(GptConfig c) => c.MoeAuxLoss ?? DefaultAuxLoss;
    public static double ZWeight(GptConfig c) => c.MoeZLoss ?? DefaultZLoss;

    /// <summary>The capacity factor in force: null = dropless (topk only).</summary>
    public static double? Capacity(GptConfig c) => c.CapacityFactor ?? (Routing(c) == ExpertChoice ? 1.0 : null);

    /// <summary>Assignments (topk) or tokens (expert_choice) one expert takes from a sequence of T positions; T·k when dropless.</summary>
    public static int ExpertCapacity(GptConfig c, int T)
    {
        int k = K(c), n = Experts(c);
        if (Capacity(c) is not double cf) return T;   // dropless: at most one assignment per token per expert
        double cap = Math.Ceiling(cf * T * k / n - 1e-9);
        return (int)Math.Clamp(cap, 1, T);
    }

    /// <summary>The MoE blocks of a model, e.g. "1, 3, 5" (empty without MoE).</summary>
    public static string Layers(GptConfig c) =>
        string.Join(", ", Enumerable.Range(0, c.NLayer).Where(l => IsMoeLayer(c, l)));

    /// <summary>Throws a one-line ArgumentException naming the first MoE key out of range.</summary>
    public static void Validate(GptConfig c)
    {
        bool any = c.NExperts is not null;
        if (!any)
        {
            string? stray = c.TopK is not null ? "top_k" : c.MoeEvery is not null ? "moe_every" : c.ExpertHidden is not null ? "expert_hidden"
                : c.MoeRouting is not null ? "moe_routing" : c.CapacityFactor is not null ? "capacity_factor" : null;
            if (stray is not null) throw new ArgumentException($"{stray} is set but n_experts is not: set n_experts (≥ 1) to use a mixture of experts");
            return;
        }
        int n = c.NExperts!.Value;
        if (n <= 0) throw new ArgumentException($"n_experts ({n}) must be ≥ 1 (leave it out for a dense MLP)");
        if (c.Activation is not (GptConfig.Gelu or GptConfig.GeluTanh))
            throw new ArgumentException($"activation (\"{c.Activation}\") is not supported by the mixture-of-experts blocks; expected \"{GptConfig.Gelu}\" or \"{GptConfig.GeluTanh}\"");
        if (c.TopK is int k && (k <= 0 || k > n)) throw new ArgumentException($"top_k ({k}) must lie in [1, n_experts = {n}]");
        if (c.TopK is null && n < 2) throw new ArgumentException($"top_k defaults to 2, more than n_experts ({n}): set top_k = 1");
        if (c.MoeEvery is int every && every <= 0) throw new ArgumentException($"moe_every ({every}) must be ≥ 1 (1: every block, 2: blocks 1, 3, 5, ...)");
        if (c.MoeEvery is int e2 && e2 > c.NLayer) throw new ArgumentException($"moe_every ({e2}) exceeds n_layer ({c.NLayer}): no block would be MoE");
        if (c.ExpertHidden is int h && h <= 0) throw new ArgumentException($"expert_hidden ({h}) must be ≥ 1");
        if (c.MoeRouting is string r && r is not (TopK or ExpertChoice))
            throw new ArgumentException($"moe_routing (\"{r}\") must be \"{TopK}\" or \"{ExpertChoice}\"");
        if (c.CapacityFactor is double cf && !(double.IsFinite(cf) && cf > 0))
            throw new ArgumentException($"capacity_factor ({Show(cf)}) must be a finite number > 0 (leave it out for dropless routing)");
        if (c.MoeAuxLoss is double a && !(double.IsFinite(a) && a >= 0)) throw new ArgumentException($"moe_aux_loss ({Show(a)}) must be a finite number ≥ 0");
        if (c.MoeZLoss is double z && !(double.IsFinite(z) && z >= 0)) throw new ArgumentException($"moe_z_loss ({Show(z)}) must be a finite number ≥ 0");
    }

    /// <summary>Same MoE settings (compared by their resolved values).</summary>
    public static bool Same(GptConfig a, GptConfig b)
    {
        if (Enabled(a) != Enabled(b)) return false;
        if (!Enabled(a)) return true;
        return Experts(a) == Experts(b) && K(a) == K(b) && Every(a) == Every(b) && Hidden(a) == Hidden(b) && Routing(a) == Routing(b)
            && Capacity(a) == Capacity(b) && AuxWeight(a) == AuxWeight(b) && ZWeight(a) == ZWeight(b);
    }

    /// <summary>One line for inspect and logs: "8 experts, top-2 (topk, dropless), expert_hidden 512, blocks 0, 1".</summary>
    public static string Describe(GptConfig c)
    {
        if (!Enabled(c)) return "none";
        string cap = Capacity(c) is double cf ? $"capacity factor {Show(cf)}" : "dropless";
        return $"{Experts(c)} experts, top-{K(c)} ({Routing(c)}, {cap}), expert_hidden {Hidden(c)}, blocks {Layers(c)}, aux {Show(AuxWeight(c))}, z {Show(ZWeight(c))}";
    }

    static string Show(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
