namespace NanoSparse.Nn;

/// <summary>
/// One block at a time, for block-wise calibration (TEAL's greedy allocation): read the residual stream entering and
/// leaving a block after a forward pass, and run one block alone on a given input.
/// </summary>
public sealed partial class Gpt
{
    /// <summary>
    /// The residual stream (B·T, C) that entered block <paramref name="layer"/> in the last forward pass (the embeddings
    /// for block 0, block layer−1's output otherwise). Valid until the next forward pass.
    /// </summary>
    public ReadOnlySpan<float> BlockInput(int layer)
    {
        CheckLayer(layer);
        var pass = SlicePass(0, 1, _grads);
        return layer == 0 ? pass.Act(_encoded) : _blocks[layer - 1].Output(pass);
    }

    /// <summary>The output (B·T, C) of block <paramref name="layer"/> in the last forward pass that ran it.</summary>
    public ReadOnlySpan<float> BlockOutput(int layer)
    {
        CheckLayer(layer);
        return _blocks[layer].Output(SlicePass(0, 1, _grads));
    }

    /// <summary>
    /// Runs block <paramref name="layer"/> alone in eval mode on x (B·T, C), the residual stream entering it, and returns
    /// its output (B·T, C), valid until the next forward pass. x must not be one of this model's own buffers. One slice
    /// on the calling thread; the model cannot run Backward afterwards.
    /// </summary>
    public ReadOnlySpan<float> ForwardBlock(int layer, ReadOnlySpan<float> x)
    {
        CheckLayer(layer);
        long n = (long)BatchSize * SeqLen * Config.NEmbd;
        if (x.Length != n)
            throw new ArgumentException($"x has {x.Length} elements, expected batch_size × seq_len × n_embd = {n}", nameof(x));
        _dropoutActive = false;
        _hasTargets = false;
        _logitsAreGradients = false;
        _shards = 1;
        return _blocks[layer].Forward(x, SlicePass(0, 1, _grads));
    }

    void CheckLayer(int layer)
    {
        if ((uint)layer >= (uint)_blocks.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"must lie in [0, {_blocks.Length}) (n_layer)");
    }
}
