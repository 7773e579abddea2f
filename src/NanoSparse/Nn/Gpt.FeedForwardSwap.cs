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
        ArgumentNullException.ThrowIfNull(part);
        if ((uint)layer >= (uint)_blocks.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"must lie in [0, {_blocks.Length}) (n_layer)");
        if (!IsInferenceOnly) throw new InvalidOperationException("a feed-forward part is replaced only in a model held for inference (call PrepareForInference first)");
        _blocks[layer].FeedForward = part;
    }

    /// <summary>
    /// Replaces block <paramref name="layer"/>'s attention part with <paramref name="part"/> (e.g. Deja Vu's predicted
    /// heads over the same weights), under the same rules as <see cref="ReplaceFeedForward"/>.
    /// </summary>
    public void ReplaceAttention(int layer, IAttention part)
    {
        ArgumentNullException.ThrowIfNull(part);
        if ((uint)layer >= (uint)_blocks.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"must lie in [0, {_blocks.Length}) (n_layer)");
        if (!IsInferenceOnly) throw new InvalidOperationException("an attention part is replaced only in a model held for inference (call PrepareForInference first)");
        _blocks[layer].Attention = part;
    }
}
