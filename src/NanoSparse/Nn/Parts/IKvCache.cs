namespace NanoSparse.Nn.Parts;

/// <summary>
/// One layer's keys and values of the positions a sequence has seen so far, for incremental decoding: attention
/// writes each new position's key and value, then reads them back for every query. Storage is the implementation's
/// choice (dense today; pruned or evicted caches later keep fewer).
/// </summary>
public interface IKvCache
{
    /// <summary>Positions it can hold (block_size).</summary>
    int Capacity { get; }
    /// <summary>Floats of one key or value: C (all heads side by side, as in qkv).</summary>
    int Width { get; }

    /// <summary>Stores the key (C) and value (C) of <paramref name="position"/>.</summary>
    void Write(int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value);

    /// <summary>Keys (count, C) of positions [0, count).</summary>
    ReadOnlySpan<float> Keys(int count);

    /// <summary>Values (count, C) of positions [0, count).</summary>
    ReadOnlySpan<float> Values(int count);
}
