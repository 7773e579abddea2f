using NanoSparse.Kernels;

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

    /// <summary>
    /// Whether a prompt into an empty cache may attend exactly over its own keys and values (the training pass's tiled
    /// kernel) after writing them, instead of writing and attending one position at a time (a cache whose choice of
    /// what to keep depends on the attention weights, such as H2O, says no).
    /// </summary>
    bool ExactPrefill => true;

    /// <summary>Bytes the cache holds for <paramref name="count"/> positions (keys, values and any index).</summary>
    long Bytes(int count) => 2L * count * Width * sizeof(float);

    /// <summary>
    /// y (C) = for each of the <paramref name="heads"/> heads h (slices of hs = C / heads):
    /// softmax(q_h · k_jᵀ / √hs over the cached positions j ≤ position) · v_j, the query q (C) being that of
    /// <paramref name="position"/>, whose key and value were written last. scores: scratch of Capacity floats.
    /// A sparse cache attends over what it keeps (pruned entries, a subset of positions).
    /// </summary>
    void Attend(Span<float> y, ReadOnlySpan<float> q, int position, int heads, Span<float> scores) =>
        CachedAttention.Forward(y, q, Keys(position + 1), Values(position + 1), position + 1, Width, heads, scores);
}
