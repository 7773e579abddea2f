namespace NanoSparse.Nn.Parts;

/// <summary>
/// The attention half of a block, nanoGPT's CausalSelfAttention: c_attn, an attention pattern, c_proj and the
/// residual dropout. Variants (dense causal today; window, block, top-k, NSA later) implement this; the block's data
/// flow does not change. Every buffer is (rows, C) with rows = positions.
/// </summary>
public interface IAttention
{
    /// <summary>
    /// output = residual + dropout(attn(input)): the block's x + attn(ln_1(x)), the residual add fused into c_proj
    /// where it can be. Keeps what <see cref="Backward"/> needs in the part's own activations.
    /// </summary>
    void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass);

    /// <summary>
    /// dinput (written) = d input given doutput, the gradient at output (only the attention branch; the residual path
    /// is the block's). Parameter gradients are accumulated into the pass's gradients. input as in Forward.
    /// </summary>
    void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass);

    /// <summary>
    /// The input (rows, C) c_proj saw in the last Forward (the heads' attention output, kept for backward): what
    /// pruning calibrates c_proj on.
    /// </summary>
    ReadOnlySpan<float> ProjectionInput(scoped in Pass pass);

    /// <summary>Scratch floats <see cref="Decode"/> needs for up to <paramref name="rows"/> new positions.</summary>
    long DecodeScratchFloats(int rows);

    /// <summary>
    /// output (n, C) = attn(input (n, C)) for n new positions at decoding.Position..: their keys and values are
    /// written to <paramref name="cache"/> first, then each attends to every cached position up to its own.
    /// </summary>
    void Decode(Span<float> output, ReadOnlySpan<float> input, IKvCache cache, in Decoding decoding);
}
