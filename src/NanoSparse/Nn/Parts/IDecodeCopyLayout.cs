namespace NanoSparse.Nn.Parts;

/// <summary>
/// A Linear weight layout that can keep a second copy of its values laid out for one-row forwards (decoding), read
/// while the values passed to Forward are unchanged (<see cref="DecodeCopyCheck"/>): CSR's SELL or bitmap copies, N:M's
/// values on a 64-byte boundary. <see cref="Gpt.PrepareForInference"/> (keepSellCopy: true) asks every such layout.
/// </summary>
public interface IDecodeCopyLayout : ILinearWeight
{
    /// <summary>Builds the copy from <paramref name="values"/> (the weight's stored values, final); <paramref name="format"/>
    /// is the CSR copy's format (Auto: per weight, the least estimated time); layouts with one kind of copy ignore it.</summary>
    void PrepareDecodeCopy(ReadOnlySpan<float> values, DecodeCopyFormat format);
}
