using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Mustafar's pruned KV cache: each token's key and value keep, per head, their keep = hs − round(sparsity · hs)
/// largest-magnitude entries (per-token magnitude pruning), stored as a bitmap of hs bits plus the kept entries packed
/// in index order. Every token keeps the same count, so a head's packed entries sit at a fixed stride and need no
/// offsets. Attention reads them compressed (<see cref="KvAttention"/>): softmax(q·k̃ᵀ/√hs) · ṽ over the pruned k̃, ṽ.
/// Bytes per token and head, key or value: 8·⌈hs/64⌉ + 4·keep (dense: 4·hs); at hs = 32 and 70%: 8 + 40 of 128 (0.375x), at hs = 64: 8 + 76 of 256 (0.33x).
/// </summary>
public sealed unsafe class KvPrunedCache : IKvCache
{
    readonly int _heads, _headSize, _keep, _words;
    readonly ulong[] _keyBits, _valueBits;      // (NH, capacity, words): a head's positions side by side, read in one stream
    readonly float[] _keyValues, _valueValues;  // (NH, capacity, keep)

    public KvPrunedCache(int capacity, int width, int heads, double sparsity)
    {
        if (capacity <= 0 || width <= 0 || heads <= 0 || width % heads != 0)
            throw new ArgumentException($"a KV cache needs positive capacity and width of whole heads, got ({capacity}, {width}, {heads} heads)");
        if (!(sparsity >= 0 && sparsity < 1)) throw new ArgumentException($"KV sparsity {sparsity} must lie in [0, 1)", nameof(sparsity));
        Capacity = capacity;
        Width = width;
        _heads = heads;
        _headSize = width / heads;
        _keep = KvAttention.KeepCount(_headSize, sparsity);
        _words = KvAttention.BitmapWords(_headSize);
        _keyBits = new ulong[(long)capacity * heads * _words];
        _valueBits = new ulong[(long)capacity * heads * _words];
        _keyValues = new float[(long)capacity * heads * _keep];
        _valueValues = new float[(long)capacity * heads * _keep];
        Kernels.HugePages.Advise(_keyValues);
        Kernels.HugePages.Advise(_valueValues);
    }

    public int Capacity { get; }
    public int Width { get; }
    /// <summary>Entries each token keeps per head, in its key and in its value.</summary>
    public int KeepPerHead => _keep;

    public void Write(int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        if ((uint)position >= (uint)Capacity)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"position must lie in [0, {Capacity}) (block_size)");
        int hs = _headSize;
        for (int h = 0; h < _heads; h++)
        {
            long row = (long)h * Capacity + position;
            KvAttention.Pack(key.Slice(h * hs, hs), _keep, _keyBits.AsSpan((int)(row * _words), _words), _keyValues.AsSpan((int)(row * _keep), _keep));
            KvAttention.Pack(value.Slice(h * hs, hs), _keep, _valueBits.AsSpan((int)(row * _words), _words), _valueValues.AsSpan((int)(row * _keep), _keep));
        }
    }

    public ReadOnlySpan<float> Keys(int count) =>
        throw new NotSupportedException("the pruned KV cache stores keys bitmap-packed: attention reads them through Attend");
    public ReadOnlySpan<float> Values(int count) =>
        throw new NotSupportedException("the pruned KV cache stores values bitmap-packed: attention reads them through Attend");

    public long Bytes(int count) => 2L * count * _heads * (_words * sizeof(ulong) + _keep * sizeof(float));

    /// <summary>The pruned key (C) of a position, zeros where entries were dropped (for inspection and tests).</summary>
    public void PrunedKey(int position, Span<float> key) => Expand(_keyBits, _keyValues, position, key);
    /// <summary>The pruned value (C) of a position, zeros where entries were dropped.</summary>
    public void PrunedValue(int position, Span<float> value) => Expand(_valueBits, _valueValues, position, value);

    void Expand(ulong[] bits, float[] values, int position, Span<float> dense)
    {
        dense.Slice(0, Width).Clear();
        for (int h = 0; h < _heads; h++)
        {
            long row = (long)h * Capacity + position;
            KvAttention.MultiplyAdd(dense.Slice(h * _headSize, _headSize), 1f, bits.AsSpan((int)(row * _words), _words), values.AsSpan((int)(row * _keep), _keep));
        }
    }

    public void Attend(Span<float> y, ReadOnlySpan<float> q, int position, int heads, Span<float> scores)
    {
        if (heads != _heads) throw new ArgumentException($"the cache was made for {_heads} heads, got {heads}", nameof(heads));
        int hs = _headSize, keep = _keep, words = _words, n = position + 1, cap = Capacity;
        float scale = 1f / MathF.Sqrt(hs);
        fixed (float* pq = q, py = y, ps = scores, kv = _keyValues, vv = _valueValues)
        fixed (ulong* kb = _keyBits, vb = _valueBits)
        {
            for (int h = 0; h < heads; h++)
            {
                // y[h] = softmax(q·k̃ᵀ · scale over positions 0..position) · ṽ, k̃ and ṽ read packed
                float* qh = pq + h * hs;
                for (int j = 0; j < n; j++)
                {
                    long row = (long)h * cap + j;
                    ps[j] = KvAttention.Dot(qh, kb + row * words, kv + row * keep, hs) * scale;
                }
                var s = scores.Slice(0, n);
                Softmax.Row(s, s);
                float* yh = py + h * hs;
                new Span<float>(yh, hs).Clear();
                for (int j = 0; j < n; j++)
                {
                    long row = (long)h * cap + j;
                    KvAttention.MultiplyAdd(yh, ps[j], vb + row * words, vv + row * keep, hs);
                }
            }
        }
    }
}
