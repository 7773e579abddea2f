namespace NanoSparse.Nn.Parts.FeedForwards;

/// <summary>
/// Builds the feed-forward half of each block from the config. Today every block gets nanoGPT's <see cref="Mlp"/>;
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
        int C = config.NEmbd, H = config.MlpHidden(layer);
        if (Gated.GateSettings.GatesMlp(config))
            return new Gated.GatedMlp(config, name, weight("mlp.c_fc", H, C), weight("mlp.c_proj", C, H), layout);
        return new Mlp(config, name, weight("mlp.c_fc", H, C), weight("mlp.c_proj", C, H), layout);
    }
}
