using System.Numerics.Tensors;
using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Nn;

// Incremental decoding with a KV cache: the same model and parts, run one sequence a few positions at a time.
public sealed partial class Gpt
{
    /// <summary>
    /// A key/value cache for incremental decoding of one sequence (batch 1) up to block_size positions; each layer's
    /// storage is the one <paramref name="kind"/> names (dense when null: every key and value kept exactly).
    /// </summary>
    public KvCache CreateKvCache(KvCacheSpec? kind = null)
    {
        kind = (kind ?? KvCacheSpec.Exact).Validate();
        // The sparse attention patterns choose their own keys and read the cache as dense spans; the pruned, h2o and quest
        // caches attend through their own kernels, which only the dense pattern calls.
        if (kind.Kind != KvCacheSpec.Dense && Config.Attention is not (null or "dense"))
            throw new ArgumentException($"KV cache '{kind.Kind}' runs with the dense attention pattern only; this model's attention is '{Config.Attention}' (use the dense KV cache)");
        int Tmax = Config.BlockSize;
        var layers = new IKvCache[_blocks.Length];
        long scratch = 0;
        for (int l = 0; l < _blocks.Length; l++)
        {
            int width = Config.AttentionWidth(l);   // heads · hs: C unless the layer's heads were pruned
            layers[l] = kind.Create(Tmax, width, width / Config.HeadSize);
            scratch = Math.Max(scratch, Math.Max(_blocks[l].Attention.DecodeScratchFloats(Tmax), _blocks[l].FeedForward.DecodeScratchFloats(Tmax)));
        }
        long workspace = 0;
        foreach (var w in _linearWeights) workspace = Math.Max(workspace, w.WorkspaceFloats(Tmax));
        var cache = new KvCache(Config, layers, scratch, workspace);
        Kernels.HugePages.CollapsePending();   // extents the GC had not fully committed when their first array was advised
        return cache;
    }

    /// <summary>
    /// Appends newTokens at the next positions of <paramref name="cache"/> (a prefill of many, or one at a time),
    /// running only those positions, and returns the logits (V) of the last new token. No dropout. Uses the
    /// cache's own buffers; the training workspace is untouched.
    /// </summary>
    public ReadOnlySpan<float> ForwardCached(KvCache cache, ReadOnlySpan<int> newTokens)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (cache.Config != Config) throw new ArgumentException("the KV cache was made for a different model configuration", nameof(cache));
        int n = newTokens.Length, pos0 = cache.Length;
        int C = Config.NEmbd, V = Config.VocabSize;
        if (n == 0) throw new ArgumentException("newTokens is empty", nameof(newTokens));
        if (pos0 + n > Config.BlockSize)
            throw new ArgumentException($"the KV cache holds {pos0} positions; {n} more exceed block_size ({Config.BlockSize}): reset it and crop the context", nameof(newTokens));
        for (int i = 0; i < n; i++)
            if ((uint)newTokens[i] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(newTokens), newTokens[i], $"token at index {i} must lie in [0, {V}) (vocab_size)");

        var decoding = new Decoding(_params, cache.Scratch, cache.Workspace, pos0, n);
        var x = cache.X.AsSpan(0, n * C);
        var ln = cache.Ln.AsSpan(0, n * C);
        var mean = cache.Mean.AsSpan(0, n);
        var rstd = cache.Rstd.AsSpan(0, n);
        var branch = cache.Branch.AsSpan(0, n * C);
        var wte = decoding.Param(_wte);
        var wpe = decoding.Param(_wpe);
        for (int i = 0; i < n; i++)   // x = wte[idx] + wpe[pos]
            TensorPrimitives.Add(wte.Slice(newTokens[i] * C, C), wpe.Slice((pos0 + i) * C, C), x.Slice(i * C, C));

        for (int l = 0; l < _blocks.Length; l++)
            _blocks[l].Decode(x, ln, mean, rstd, branch, cache.Layers[l], decoding);

        // Only the last position's logits are needed: (1, V) = ln_f(x[n-1]) · wteᵀ, a matrix-vector product over the
        // tied embedding (V·C weights: 38.6M at GPT-2's vocabulary, read once per token).
        var last = _lnf.Decode(ln.Slice(0, C), mean.Slice(0, 1), rstd.Slice(0, 1), x.Slice((n - 1) * C, C), 1, decoding);
        Gemv.Forward(cache.Logits, last, wte, default, 1, C, V);
        if (Config.LogitScale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(cache.Logits, Config.LogitScale, cache.Logits);
        cache.Length = pos0 + n;
        return cache.Logits;
    }
}
