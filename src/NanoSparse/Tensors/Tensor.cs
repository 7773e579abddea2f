namespace NanoSparse.Tensors;

/// <summary>A dense fp32 tensor: a shape and a contiguous row-major buffer. No strides, no broadcasting.</summary>
public sealed class Tensor
{
    public int[] Shape { get; }
    public float[] Data { get; }
    public int Length => Data.Length;

    public Tensor(params int[] shape)
    {
        Shape = (int[])shape.Clone();
        Data = new float[ElementCount(shape)];
    }

    public Tensor(int[] shape, float[] data)
    {
        long n = ElementCount(shape);
        if (data.Length != n)
            throw new ArgumentException($"tensor data has {data.Length} elements but shape [{string.Join(", ", shape)}] needs {n}", nameof(data));
        Shape = (int[])shape.Clone();
        Data = data;
    }

    public int Rank => Shape.Length;
    public int Rows => Shape.Length >= 1 ? Shape[0] : 1;
    public int Columns => Shape[^1];
    public Span<float> Span => Data;

    public static int ElementCount(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension {d} in shape");
            n *= d;
        }
        if (n > Array.MaxLength) throw new ArgumentException($"shape has {n} elements, more than an array can hold");
        return (int)n;
    }

    public override string ToString() => $"Tensor[{string.Join(", ", Shape)}]";
}
