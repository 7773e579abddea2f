namespace NanoSparse.Nn.Parts;

/// <summary>
/// The feed-forward half of a block: nanoGPT's MLP today (c_fc, GELU, c_proj, residual dropout); mixture-of-experts
/// and sparse-activation MLPs later. Every buffer is (rows, C) with rows = positions.
/// </summary>
public interface IFeedForward
{
    /// <summary>output = residual + dropout(ffn(input)): the block's x + mlp(ln_2(x)).</summary>
    void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass);

    /// <summary>dinput (written) = d input given doutput (the branch only); parameter gradients accumulated.</summary>
    void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass);

    /// <summary>The input (rows, hidden) c_proj saw in the last Forward (the GELU output, kept for backward).</summary>
    ReadOnlySpan<float> ProjectionInput(scoped in Pass pass);

    /// <summary>Scratch floats <see cref="Decode"/> needs for up to <paramref name="rows"/> positions.</summary>
    long DecodeScratchFloats(int rows);

    /// <summary>output (n, C) = ffn(input (n, C)), no dropout.</summary>
    void Decode(Span<float> output, ReadOnlySpan<float> input, in Decoding decoding);
}
