using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Training;

/// <summary>Autoregressive sampling as nanoGPT's GPT.generate, with a KV cache instead of re-running the context.</summary>
public static class Sampler
{
    /// <summary>
    /// Extends <paramref name="prompt"/> by <paramref name="maxNewTokens"/> tokens and returns prompt + new tokens.
    /// Each step: logits of the last position / temperature; with topK &gt; 0 all logits below the k-th largest
    /// become −∞; softmax; one multinomial draw from <paramref name="rng"/>. The context is the last block_size
    /// tokens: when the cache is full, it is refilled from the cropped window (positions restart at 0), exactly
    /// what nanoGPT's idx[:, -block_size:] computes. Past that point every token costs a whole window, because with
    /// learned absolute positions a cropped window shifts every position. <paramref name="cropTo"/> &gt; 0 trades
    /// exactness for speed: when the cache is full it is refilled from the last cropTo tokens only, and the next
    /// block_size − cropTo tokens are again one position's work each (the context then varies between cropTo and
    /// block_size tokens instead of staying at block_size). kvCache chooses the KV cache (null: dense, exact).
    /// </summary>
    public static int[] Generate(Gpt gpt, ReadOnlySpan<int> prompt, int maxNewTokens, float temperature, int topK, Rng rng,
        Action<int>? onToken = null, int cropTo = 0, KvCacheSpec? kvCache = null)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        ArgumentNullException.ThrowIfNull(rng);
        if (prompt.IsEmpty) throw new ArgumentException("prompt is empty: give at least one token", nameof(prompt));
        if (maxNewTokens < 0) throw new ArgumentException($"max_new_tokens ({maxNewTokens}) must not be negative", nameof(maxNewTokens));
        if (!(temperature > 0) || float.IsInfinity(temperature))
            throw new ArgumentException($"temperature ({temperature}) must be positive and finite", nameof(temperature));
        int blockSize = gpt.Config.BlockSize, V = gpt.Config.VocabSize;
        if (cropTo < 0 || cropTo > blockSize)
            throw new ArgumentException($"crop_to ({cropTo}) must lie in [0, block_size ({blockSize})]; 0 keeps nanoGPT's full window", nameof(cropTo));
        if ((long)prompt.Length + maxNewTokens > Array.MaxLength)
            throw new ArgumentException($"max_new_tokens ({maxNewTokens}) plus the prompt's {prompt.Length} tokens exceed {Array.MaxLength}, the most one array holds", nameof(maxNewTokens));
        int keep = cropTo == 0 ? blockSize : cropTo;
        // Capacity grows with the output, so a long run does not reserve all its memory up front.
        var ids = new List<int>((int)Math.Min((long)prompt.Length + maxNewTokens, prompt.Length + 65536L));
        foreach (int t in prompt) ids.Add(t);
        if (maxNewTokens == 0) return ids.ToArray();

        var cache = gpt.CreateKvCache(kvCache);
        var probs = new float[V];
        var sorted = new float[V];
        var one = new int[1];
        int start = Math.Max(0, ids.Count - blockSize);
        var logits = gpt.ForwardCached(cache, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids)[start..]);
        for (int step = 0; step < maxNewTokens; step++)
        {
            int next = SampleToken(logits, temperature, topK, rng, probs, sorted);
            ids.Add(next);
            onToken?.Invoke(next);
            if (step == maxNewTokens - 1) break;
            if (cache.Length < blockSize)
            {
                one[0] = next;
                logits = gpt.ForwardCached(cache, one);
            }
            else
            {
                cache.Reset();
                var window = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids)[^keep..];
                logits = gpt.ForwardCached(cache, window);
            }
        }
        return ids.ToArray();
    }

    /// <summary>One draw from softmax(logits / temperature) restricted to the top k (k ≤ 0: all).</summary>
    public static int SampleToken(ReadOnlySpan<float> logits, float temperature, int topK, Rng rng, Span<float> probs, Span<float> sorted)
    {
        int V = logits.Length;
        System.Numerics.Tensors.TensorPrimitives.Multiply(logits, 1f / temperature, probs[..V]);
        if (topK > 0 && topK < V)
        {
            probs[..V].CopyTo(sorted);
            sorted[..V].Sort();
            float kth = sorted[V - topK];
            for (int v = 0; v < V; v++)
                if (probs[v] < kth) probs[v] = float.NegativeInfinity;   // ties with the k-th value are kept, as in nanoGPT
        }
        Softmax.Row(probs[..V], probs[..V]);
        double u = rng.NextDouble(), cumulative = 0;
        int last = 0;
        for (int v = 0; v < V; v++)
        {
            if (probs[v] <= 0) continue;
            last = v;
            cumulative += probs[v];
            if (u < cumulative) return v;
        }
        return last;   // rounding left u just above the total: the last token with nonzero probability
    }
}
