using NanoSparse.Nn.Parts;

namespace NanoSparse.Nn;

/// <summary>
/// A named view into the model's flat parameter and gradient buffers. A Linear weight stored in a sparse layout
/// keeps its logical PyTorch shape (out, in) in <see cref="Shape"/> while the buffers hold only its
/// <see cref="Length"/> stored values, in the order its <see cref="Layout"/> defines.
/// </summary>
public sealed class Parameter
{
    internal Parameter(string name, int[] shape, float[] values, float[] grads, int offset, ILinearWeight? layout = null)
    {
        Name = name;
        Shape = shape;
        Offset = offset;
        Layout = layout;
        LogicalLength = 1;
        foreach (int d in shape) LogicalLength *= d;
        Length = layout?.StoredCount ?? checked((int)LogicalLength);
        Value = new Memory<float>(values, offset, Length);
        Grad = new Memory<float>(grads, offset, Length);
    }

    /// <summary>nanoGPT state_dict name, e.g. transformer.h.0.attn.c_attn.weight.</summary>
    public string Name { get; }
    /// <summary>PyTorch shape: a Linear weight is (out, in), whatever its storage layout.</summary>
    public int[] Shape { get; }
    /// <summary>The stored values (Length of them).</summary>
    public Memory<float> Value { get; }
    /// <summary>The gradient (Length floats in the model's gradient buffer); empty once the model is held for inference.</summary>
    public Memory<float> Grad { get; private set; }

    /// <summary>Gpt.PrepareForInference: the model's gradient buffer is dropped.</summary>
    internal void ReleaseGradient() => Grad = Memory<float>.Empty;
    /// <summary>Stored values: the product of <see cref="Shape"/> unless a sparse layout stores fewer.</summary>
    public int Length { get; }
    /// <summary>The product of <see cref="Shape"/>: the values of the dense tensor.</summary>
    public long LogicalLength { get; }
    /// <summary>The storage layout of a Linear weight; null for embeddings, biases and LayerNorm gains.</summary>
    public ILinearWeight? Layout { get; }
    /// <summary>True when the buffers hold fewer values than the dense tensor (a sparse layout).</summary>
    public bool IsSparse => Length != LogicalLength;
    /// <summary>Start of this parameter in the flat buffers.</summary>
    public int Offset { get; }
    /// <summary>Weight decay applies to matrices (and embeddings), not to biases and LayerNorm gains (nanoGPT).</summary>
    public bool Decay => Shape.Length >= 2;

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]" + (IsSparse ? $" {Layout!.Layout}, {Length} stored" : "");
}
