namespace NanoSparse.Nn.Parts;

/// <summary>
/// Lays out the parameters and the training workspace that the parts of a model declare for a fixed (B, T), in the
/// order they declare them (parts are built in data order, so parameters follow nanoGPT's state_dict). The model then
/// allocates each buffer once; a step allocates nothing.
/// </summary>
public sealed class BufferLayout
{
    readonly List<(string Name, int[] Shape, ILinearWeight? Weight, int Offset)> _parameters = [];
    readonly List<ILinearWeight> _weights = [];

    internal BufferLayout(int batchSize, int seqLen)
    {
        BatchSize = batchSize;
        SeqLen = seqLen;
    }

    public int BatchSize { get; }
    public int SeqLen { get; }
    /// <summary>Rows (positions) of every activation buffer: B·T.</summary>
    public long Rows => (long)BatchSize * SeqLen;

    /// <summary>Floats of the flat parameter buffer so far.</summary>
    public long ParameterFloats { get; private set; }
    /// <summary>Floats of the kept activations so far.</summary>
    public long ActivationFloats { get; private set; }
    /// <summary>Floats per row of the shared scratch: the widest part's scratch.</summary>
    public int ScratchWidth { get; private set; }
    /// <summary>Dropout seeds drawn per training forward pass.</summary>
    public int DropoutSeeds { get; private set; }

    internal IReadOnlyList<(string Name, int[] Shape, ILinearWeight? Weight, int Offset)> Parameters => _parameters;
    internal IReadOnlyList<ILinearWeight> LinearWeights => _weights;

    /// <summary>A parameter tensor of the given PyTorch shape, all values stored.</summary>
    public ParameterSlot Parameter(string name, params int[] shape)
    {
        long length = 1;
        foreach (int d in shape) length *= d;
        return Add(name, shape, null, length);
    }

    /// <summary>A bias (or other optional tensor) that exists only when <paramref name="present"/>.</summary>
    public ParameterSlot OptionalParameter(bool present, string name, params int[] shape) =>
        present ? Parameter(name, shape) : ParameterSlot.Absent;

    /// <summary>The weight of a Linear layer, (Out, In) by name, StoredCount values in the buffer.</summary>
    public ParameterSlot LinearWeight(string name, ILinearWeight weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        _weights.Add(weight);
        return Add(name, [weight.OutFeatures, weight.InFeatures], weight, weight.StoredCount);
    }

    ParameterSlot Add(string name, int[] shape, ILinearWeight? weight, long length)
    {
        int offset = checked((int)ParameterFloats);
        _parameters.Add((name, shape, weight, offset));
        ParameterFloats += length;
        if (ParameterFloats > Array.MaxLength)
            throw new ArgumentException($"the model's parameters need {ParameterFloats} floats, more than one array holds");
        return new ParameterSlot(offset, checked((int)length));
    }

    /// <summary>A (B·T, width) buffer kept from the forward pass to the backward pass.</summary>
    public ActivationSlot Activation(int width)
    {
        long offset = ActivationFloats;
        ActivationFloats += Rows * width;
        return new ActivationSlot(offset, width, false);
    }

    /// <summary>A kept buffer that exists only when <paramref name="present"/>.</summary>
    public ActivationSlot OptionalActivation(bool present, int width) => present ? Activation(width) : ActivationSlot.Absent;

    /// <summary>
    /// One part's scratch buffers, (B·T, width) each, valid during one call of that part only: they do not overlap
    /// each other but overlap other parts' scratch. A width of 0 gives an absent slot.
    /// </summary>
    public ActivationSlot[] Scratch(params int[] widths)
    {
        var slots = new ActivationSlot[widths.Length];
        int rowOffset = 0;
        for (int i = 0; i < widths.Length; i++)
        {
            if (widths[i] == 0) { slots[i] = ActivationSlot.Absent; continue; }
            slots[i] = new ActivationSlot(rowOffset, widths[i], true);
            rowOffset += widths[i];
        }
        ScratchWidth = Math.Max(ScratchWidth, rowOffset);
        return slots;
    }

    /// <summary>The index of a dropout seed drawn anew by each training forward pass.</summary>
    public int DropoutSeed() => DropoutSeeds++;
}
