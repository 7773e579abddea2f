namespace NanoSparse.Nn.Parts.FeedForwards;

/// <summary>
/// Builds the feed-forward half of each block from the config. Every block gets nanoGPT's <see cref="Mlp"/> except the
/// mixture-of-experts blocks (<see cref="MoeSettings.IsMoeLayer"/>: n_experts set and (layer + 1) % moe_every == 0);
/// a variant (mixture of experts, a gated or predicted MLP) is one new part file plus its case here, so that
/// <see cref="Block"/> never changes for it.
/// </summary>
public static class FeedForwardRegistry
{
    /// <summary>
    /// Creates a block's Linear weight by its name inside the block ("mlp.c_fc", ...), its (out, in) shape, and the
    /// layout the config (or a checkpoint's stored structure) gives it.
    /// </summary>
    public delegate ILinearWeight WeightFactory(string name, int outFeatures, int inFeatures);

    /// <summary>The feed-forward part of block <paramref name="layer"/>; <paramref name="name"/> is its state_dict prefix (transformer.h.{layer}.mlp).</summary>
    public static IFeedForward Create(GptConfig config, int layer, string name, WeightFactory weight, BufferLayout layout)
    {
        if (MoeSettings.IsMoeLayer(config, layer)) return new MoeFeedForward(config, name, layout);
        int C = config.NEmbd, H = config.MlpHidden(layer);
        if (Gated.GateSettings.GatesMlp(config))
            return new Gated.GatedMlp(config, name, weight("mlp.c_fc", H, C), weight("mlp.c_proj", C, H), layout);
        return new Mlp(config, name, weight("mlp.c_fc", H, C), weight("mlp.c_proj", C, H), layout);
    }
}
