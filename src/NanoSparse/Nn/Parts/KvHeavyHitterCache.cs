using System.Numerics.Tensors;
using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// H2O (Zhang et al. 2023, "Heavy-Hitter Oracle"): each head keeps at most Budget positions, its own choice: the
/// Recent most recent positions plus the heavy hitters, the older positions whose accumulated attention
/// (Σ over the queries that saw them of softmax(q·kᵀ/√hs)) is largest. The greedy rule of the paper's Algorithm 1,
/// applied as each position arrives:
///   write(p): when the head holds Budget slots, evict the slot with the least accumulated attention among those
///             older than the recent window (position ≤ p − Recent; ties: the oldest), then store p with score 0;
///   attend(p): softmax over the head's slots (p among them), y = Σ prob·v, and every slot's score += its prob.
/// The choice depends on the attention weights, so a prompt is written and attended one position at a time (no exact
/// prefill). Storage is (NH, Budget, hs) keys and values plus each slot's position and score: memory and work per
/// query are Budget positions whatever the context length.
/// </summary>
public sealed class KvHeavyHitterCache : IKvCache
{
    readonly int _heads, _headSize, _budget, _recent;
    readonly float[] _keys, _values;   // (NH, Budget, hs)
    readonly int[] _positions;         // (NH, Budget) the position in each slot
    readonly double[] _scores;         // (NH, Budget) accumulated attention of each slot
    int _count, _last = -1;            // slots in use (the same in every head); the last position written

    public KvHeavyHitterCache(int capacity, int width, int heads, int budget, int recent)
    {
        if (capacity <= 0 || width <= 0 || heads <= 0 || width % heads != 0)
            throw new ArgumentException($"a KV cache needs positive capacity and width of whole heads, got ({capacity}, {width}, {heads} heads)");
        if (budget < 1) throw new ArgumentException($"KV budget {budget} must be at least 1 (positions kept per head)", nameof(budget));
        if (recent < 0 || recent >= budget)
            throw new ArgumentException($"KV recent window {recent} must lie in [0, budget {budget})", nameof(recent));
        Capacity = capacity;
        Width = width;
        _heads = heads;
        _headSize = width / heads;
        _budget = Math.Min(budget, capacity);
        _recent = Math.Min(recent, _budget - 1);
        _keys = new float[(long)heads * _budget * _headSize];
        _values = new float[(long)heads * _budget * _headSize];
        Kernels.HugePages.Advise(_keys);
        Kernels.HugePages.Advise(_values);
        _positions = new int[heads * _budget];
        _scores = new double[heads * _budget];
    }

    public int Capacity { get; }
    public int Width { get; }
    public int Budget => _budget;
    public int Recent => _recent;
    /// <summary>Positions each head holds now.</summary>
    public int Count => _count;
    public bool ExactPrefill => false;

    /// <summary>
    /// Stores position's key and value in every head, evicting one slot per head when the head is full. Positions come
    /// in order; position 0 starts a new sequence.
    /// </summary>
    public void Write(int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        if ((uint)position >= (uint)Capacity)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"position must lie in [0, {Capacity}) (block_size)");
        if (position == 0) _count = 0;
        else if (position != _last + 1)
            throw new InvalidOperationException($"the H2O KV cache takes positions in order: got {position} after {_last} (start again at 0)");
        _last = position;
        int B = _budget, hs = _headSize;
        for (int h = 0; h < _heads; h++)
        {
            int slot = _count < B ? _count : Victim(h, position);
            int s = h * B + slot;
            key.Slice(h * hs, hs).CopyTo(_keys.AsSpan(s * hs, hs));
            value.Slice(h * hs, hs).CopyTo(_values.AsSpan(s * hs, hs));
            _positions[s] = position;
            _scores[s] = 0;
        }
        if (_count < B) _count++;
    }

    // The slot of head h to evict for the new position p: least accumulated attention among positions ≤ p − Recent,
    // ties to the oldest. A full head holds Budget > Recent slots, at most Recent − 1 of them recent, so one exists.
    int Victim(int h, int p)
    {
        int B = _budget, best = -1, limit = p - _recent;
        double bestScore = double.PositiveInfinity;
        for (int slot = 0; slot < B; slot++)
        {
            int s = h * B + slot, pos = _positions[s];
            if (pos > limit) continue;
            double score = _scores[s];
            if (score < bestScore || (score == bestScore && pos < _positions[h * B + best]))
            {
                best = slot;
                bestScore = score;
            }
        }
        return best;
    }

    public ReadOnlySpan<float> Keys(int count) =>
        throw new NotSupportedException("the H2O KV cache keeps a subset of positions per head: attention reads it through Attend");
    public ReadOnlySpan<float> Values(int count) =>
        throw new NotSupportedException("the H2O KV cache keeps a subset of positions per head: attention reads it through Attend");

    public long Bytes(int count)
    {
        long kept = Math.Min(count, _budget);
        return 2L * kept * Width * sizeof(float) + kept * _heads * (sizeof(int) + sizeof(double));
    }

    /// <summary>The positions head h holds now, in slot order.</summary>
    public int[] KeptPositions(int head) => _positions.AsSpan(head * _budget, _count).ToArray();
    /// <summary>The accumulated attention of head h's slots, in slot order.</summary>
    public double[] AccumulatedAttention(int head) => _scores.AsSpan(head * _budget, _count).ToArray();

    public void Attend(Span<float> y, ReadOnlySpan<float> q, int position, int heads, Span<float> scores)
    {
        if (heads != _heads) throw new ArgumentException($"the cache was made for {_heads} heads, got {heads}", nameof(heads));
        if (position != _last) throw new InvalidOperationException($"attend at position {position}, but the last position written is {_last}");
        int hs = _headSize, B = _budget, n = _count;
        float scale = 1f / MathF.Sqrt(hs);
        for (int h = 0; h < heads; h++)
        {
            // y[h] = softmax(q·kᵀ · scale over the head's slots) · v; each slot's score += its probability
            var qh = q.Slice(h * hs, hs);
            var keys = _keys.AsSpan(h * B * hs, n * hs);
            var values = _values.AsSpan(h * B * hs, n * hs);
            var s = scores.Slice(0, n);
            for (int j = 0; j < n; j++)
                s[j] = TensorPrimitives.Dot(qh, keys.Slice(j * hs, hs)) * scale;
            Softmax.Row(s, s);
            var acc = _scores.AsSpan(h * B, n);
            for (int j = 0; j < n; j++) acc[j] += s[j];
            var yh = y.Slice(h * hs, hs);
            yh.Clear();
            for (int j = 0; j < n; j++)
                TensorPrimitives.MultiplyAdd(values.Slice(j * hs, hs), s[j], yh, yh);
        }
    }
}
