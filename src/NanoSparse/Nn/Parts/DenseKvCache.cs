namespace NanoSparse.Nn.Parts;

/// <summary>Every position's key and value, (block_size, C) each, heads side by side as in qkv.</summary>
public sealed class DenseKvCache : IKvCache
{
    readonly float[] _keys, _values;

    public DenseKvCache(int capacity, int width)
    {
        if (capacity <= 0 || width <= 0) throw new ArgumentException($"a KV cache needs positive capacity and width, got ({capacity}, {width})");
        Capacity = capacity;
        Width = width;
        _keys = new float[(long)capacity * width];
        _values = new float[(long)capacity * width];
        // attention streams both once per layer and token, right after the weights went through the caches
        Kernels.HugePages.Advise(_keys);
        Kernels.HugePages.Advise(_values);
    }

    public int Capacity { get; }
    public int Width { get; }

    public void Write(int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        if ((uint)position >= (uint)Capacity)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"position must lie in [0, {Capacity}) (block_size)");
        key.Slice(0, Width).CopyTo(_keys.AsSpan(position * Width, Width));
        value.Slice(0, Width).CopyTo(_values.AsSpan(position * Width, Width));
    }

    public ReadOnlySpan<float> Keys(int count) => _keys.AsSpan(0, count * Width);
    public ReadOnlySpan<float> Values(int count) => _values.AsSpan(0, count * Width);
}
