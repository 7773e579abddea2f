namespace NanoSparse.Nn.Parts;

/// <summary>
/// One incremental-decoding call of one sequence (batch 1): Rows new positions starting at Position, no dropout, no
/// gradients. Parameters are the model's; scratch and workspace belong to the caller's <see cref="KvCache"/>, so
/// decoding allocates nothing and several caches can decode with one model.
/// </summary>
public readonly struct Decoding
{
    readonly float[] _parameters, _scratch, _workspace;

    internal Decoding(float[] parameters, float[] scratch, float[] workspace, int position, int rows)
    {
        _parameters = parameters;
        _scratch = scratch;
        _workspace = workspace;
        Position = position;
        Rows = rows;
    }

    /// <summary>Position of the first new row in the sequence.</summary>
    public int Position { get; }
    /// <summary>New positions: n.</summary>
    public int Rows { get; }

    public ReadOnlySpan<float> Param(ParameterSlot slot) =>
        slot.Offset < 0 ? default : _parameters.AsSpan(slot.Offset, slot.Length);

    /// <summary>A part's scratch for this call (its DecodeScratchFloats(block_size) floats).</summary>
    public Span<float> Scratch => _scratch;

    /// <summary>Scratch for a Linear weight call (ILinearWeight.WorkspaceFloats(Rows) floats at least).</summary>
    public Span<float> Workspace => _workspace;
}
