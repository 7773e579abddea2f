using NanoSparse.Nn.Parts;

namespace NanoSparse.Nn;

// Inference-time feed-forward variants (a predicted or thresholded MLP) chosen when a model is loaded for eval or
// sampling, not by its config: the block's data flow stays as it is and only its feed-forward part is swapped.
public sealed partial class Gpt
{
    /// <summary>
    /// Replaces block <paramref name="layer"/>'s feed-forward part with <paramref name="part"/> (which usually wraps the
    /// current one's weights: read <see cref="Block.FeedForward"/> first). Only for a model held for inference
    /// (<see cref="PrepareForInference"/>): the part's parameters stay the model's. Create KV caches after the swap: a
    /// cache sizes its scratch from the parts it sees.
    /// </summary>
    public void ReplaceFeedForward(int layer, IFeedForward part)
    {
        CheckSwap(layer, part, "a feed-forward part");
        _blocks[layer].FeedForward = part;
    }

    /// <summary>
    /// Replaces block <paramref name="layer"/>'s attention part with <paramref name="part"/> (e.g. Deja Vu's predicted
    /// heads over the same weights), under the same rules as <see cref="ReplaceFeedForward"/>.
    /// </summary>
    public void ReplaceAttention(int layer, IAttention part)
    {
        CheckSwap(layer, part, "an attention part");
        _blocks[layer].Attention = part;
    }

    void CheckSwap(int layer, object part, string what)
    {
        ArgumentNullException.ThrowIfNull(part);
        CheckLayer(layer);
        if (!IsInferenceOnly) throw new InvalidOperationException($"{what} is replaced only in a model held for inference (call PrepareForInference first)");
    }
}
