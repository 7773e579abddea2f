namespace NanoSparse.Nn.Parts;

/// <summary>
/// One training pass over one slice of the batch (sequences [FirstSequence, FirstSequence + Sequences), T positions
/// each): the buffers a part reads and writes, cut to the slice. With several threads each slice runs its whole pass
/// on its own thread (data-parallel shards) and accumulates gradients into a buffer of its own.
/// </summary>
public readonly struct Pass
{
    readonly float[] _parameters, _gradients, _activations, _scratch, _workspace;
    readonly ulong[] _seeds;
    readonly int _scratchWidth;

    internal Pass(float[] parameters, float[] gradients, float[] activations, float[] scratch, int scratchWidth,
        float[] workspace, ulong[] seeds, float dropout, int firstSequence, int sequences, int seqLen)
    {
        _parameters = parameters;
        _gradients = gradients;
        _activations = activations;
        _scratch = scratch;
        _scratchWidth = scratchWidth;
        _workspace = workspace;
        _seeds = seeds;
        Dropout = dropout;
        FirstSequence = firstSequence;
        Sequences = sequences;
        SeqLen = seqLen;
    }

    public int FirstSequence { get; }
    public int Sequences { get; }
    public int SeqLen { get; }
    /// <summary>First row (position) of the slice in the batch.</summary>
    public int FirstRow => FirstSequence * SeqLen;
    /// <summary>Rows (positions) of the slice: N.</summary>
    public int Rows => Sequences * SeqLen;
    /// <summary>Dropout probability of this pass: the config's when training, else 0.</summary>
    public float Dropout { get; }
    public bool DropoutActive => Dropout > 0;

    /// <summary>The seed a dropout site drew for this pass (valid only when <see cref="DropoutActive"/>).</summary>
    public ulong Seed(int index) => _seeds[index];

    /// <summary>Offset of this slice's first element in a (B·T, width) buffer: dropout masks are indexed over the whole
    /// batch so that they do not depend on the slicing.</summary>
    public long MaskOffset(int width) => (long)FirstRow * width;

    public Span<float> Param(ParameterSlot slot) =>
        slot.Offset < 0 ? default : _parameters.AsSpan(slot.Offset, slot.Length);

    /// <summary>The gradient of a parameter: where this slice accumulates it.</summary>
    public Span<float> Grad(ParameterSlot slot) =>
        slot.Offset < 0 ? default : _gradients.AsSpan(slot.Offset, slot.Length);

    /// <summary>This slice's rows of an activation or scratch buffer: (Rows, Width).</summary>
    public Span<float> Act(ActivationSlot slot)
    {
        if (slot.Offset < 0) return default;
        if (!slot.IsScratch) return _activations.AsSpan(checked((int)(slot.Offset + (long)FirstRow * slot.Width)), Rows * slot.Width);
        // The slice owns scratch rows [FirstRow, FirstRow + Rows) of the widest part's width; a part's buffers lie
        // one after another inside them (slot.Offset: the widths before this one).
        return _scratch.AsSpan(checked((int)(((long)FirstRow * _scratchWidth) + slot.Offset * Rows)), Rows * slot.Width);
    }

    /// <summary>Scratch for a Linear weight call (ILinearWeight.WorkspaceFloats(Rows) floats at least).</summary>
    public Span<float> Workspace => _workspace;
}
