namespace NanoSparse.Nn;

/// <summary>A named view into the model's flat parameter and gradient buffers.</summary>
public sealed class Parameter
{
    internal Parameter(string name, int[] shape, float[] values, float[] grads, int offset)
    {
        Name = name;
        Shape = shape;
        Offset = offset;
        Length = 1;
        foreach (int d in shape) Length *= d;
        Value = new Memory<float>(values, offset, Length);
        Grad = new Memory<float>(grads, offset, Length);
    }

    /// <summary>nanoGPT state_dict name, e.g. transformer.h.0.attn.c_attn.weight.</summary>
    public string Name { get; }
    /// <summary>PyTorch shape: a Linear weight is (out, in).</summary>
    public int[] Shape { get; }
    public Memory<float> Value { get; }
    public Memory<float> Grad { get; }
    public int Length { get; }
    /// <summary>Start of this parameter in the flat buffers.</summary>
    public int Offset { get; }
    /// <summary>Weight decay applies to matrices (and embeddings), not to biases and LayerNorm gains (nanoGPT).</summary>
    public bool Decay => Shape.Length >= 2;

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}
