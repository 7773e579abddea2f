namespace NanoSparse.Nn.Parts.Gated;

/// <summary>
/// The per-input controller's model keys (GptConfig.Gate, GptConfig.GateGroup): which halves of each block are gated
/// ("heads": attention heads; "mlp": groups of gate_group MLP neurons; "both"), and how they are checked.
/// </summary>
public static class GateSettings
{
    public const string Heads = "heads", Mlp = "mlp", Both = "both";
    public static readonly IReadOnlyList<string> Names = ["none", Heads, Mlp, Both];
    /// <summary>MLP neurons per gate when gate_group is 0 (not written).</summary>
    public const int DefaultGroup = 64;

    public static bool GatesHeads(GptConfig config) => config.Gate is Heads or Both;
    public static bool GatesMlp(GptConfig config) => config.Gate is Mlp or Both;
    public static int Group(GptConfig config) => config.GateGroup == 0 ? DefaultGroup : config.GateGroup;

    /// <summary>Throws a one-line ArgumentException naming the key, the value found and what was expected.</summary>
    public static void Validate(GptConfig config)
    {
        if (config.Gate is not null && !Names.Contains(config.Gate))
            throw new ArgumentException($"gate (\"{config.Gate}\") must be one of: {string.Join(", ", Names)}");
        if (config.GateGroup < 0)
            throw new ArgumentException($"gate_group ({config.GateGroup}) must be positive (0 reads as {DefaultGroup})");
        if (config.Gate is null or "none") return;
        if (config.Attention is not (null or "dense"))
            throw new ArgumentException($"gate (\"{config.Gate}\") runs with the dense attention pattern only; attention is \"{config.Attention}\"");
        if (!GatesMlp(config)) return;
        if (config.Activation is not (GptConfig.Gelu or GptConfig.GeluTanh))
            throw new ArgumentException($"activation (\"{config.Activation}\") is not supported by the gated MLP; expected \"{GptConfig.Gelu}\" or \"{GptConfig.GeluTanh}\"");
        int group = Group(config);
        for (int l = 0; l < config.NLayer; l++)
        {
            int hidden = config.MlpHidden(l);
            if (hidden % group != 0)
                throw new ArgumentException($"gate_group ({group}) must divide the MLP hidden width of layer {l} ({hidden})");
        }
    }

    /// <summary>The dense weight a gated part reads by rows and columns at decode (other layouts are refused by name).</summary>
    internal static void RequireDense(ILinearWeight weight, string name)
    {
        if (weight is not DenseLinearWeight)
            throw new ArgumentException($"{name}: a gated part needs a dense weight, found layout \"{weight.Layout}\" (gate runs with dense weights only)");
    }
}
