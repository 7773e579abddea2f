using System.Numerics.Tensors;
using NanoSparse.Kernels;

namespace NanoSparse.Nn;

// Incremental decoding with a KV cache: the same model, run one sequence a few positions at a time.
public sealed partial class Gpt
{
    /// <summary>A key/value cache for incremental decoding of one sequence (batch 1) up to block_size positions.</summary>
    public KvCache CreateKvCache() => new(Config);

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
        int C = Config.NEmbd, NH = Config.NHead, hs = C / NH, V = Config.VocabSize, L = Config.NLayer;
        if (n == 0) throw new ArgumentException("newTokens is empty", nameof(newTokens));
        if (pos0 + n > Config.BlockSize)
            throw new ArgumentException($"the KV cache holds {pos0} positions; {n} more exceed block_size ({Config.BlockSize}): reset it and crop the context", nameof(newTokens));
        for (int i = 0; i < n; i++)
            if ((uint)newTokens[i] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(newTokens), newTokens[i], $"token at index {i} must lie in [0, {V}) (vocab_size)");

        var x = cache.X.AsSpan(0, n * C);
        var ln = cache.Ln.AsSpan(0, n * C);
        var mean = cache.Mean.AsSpan(0, n);
        var rstd = cache.Rstd.AsSpan(0, n);
        var qkv = cache.Qkv.AsSpan(0, n * 3 * C);
        var atty = cache.Atty.AsSpan(0, n * C);
        var tmp = cache.Tmp.AsSpan(0, n * C);
        var fch = cache.Fch.AsSpan(0, n * 4 * C);
        var wte = P(_wte, V * C);
        var wpe = P(_wpe, Config.BlockSize * C);
        for (int i = 0; i < n; i++)
            TensorPrimitives.Add(wte.Slice(newTokens[i] * C, C), wpe.Slice((pos0 + i) * C, C), x.Slice(i * C, C));

        float scale = 1f / MathF.Sqrt(hs);
        for (int l = 0; l < L; l++)
        {
            ref readonly var lp = ref _lp[l];
            LayerNorm.Forward(ln, mean, rstd, x, P(lp.Ln1W, C), P(lp.Ln1B, C), n, C);
            Linear.Forward(qkv, ln, P(lp.AttnW, 3 * C * C), P(lp.AttnB, 3 * C), n, C, 3 * C);
            var keys = cache.Keys[l];
            var values = cache.Values[l];
            for (int i = 0; i < n; i++)
            {
                qkv.Slice(i * 3 * C + C, C).CopyTo(keys.AsSpan((pos0 + i) * C, C));
                qkv.Slice(i * 3 * C + 2 * C, C).CopyTo(values.AsSpan((pos0 + i) * C, C));
            }
            for (int i = 0; i < n; i++)
            {
                int pos = pos0 + i;
                for (int h = 0; h < NH; h++)
                {
                    var q = qkv.Slice(i * 3 * C + h * hs, hs);
                    var scores = cache.Scores.AsSpan(0, pos + 1);
                    for (int j = 0; j <= pos; j++)
                        scores[j] = TensorPrimitives.Dot(q, keys.AsSpan(j * C + h * hs, hs)) * scale;
                    Softmax.Row(scores, scores);
                    var y = atty.Slice(i * C + h * hs, hs);
                    y.Clear();
                    for (int j = 0; j <= pos; j++)
                        TensorPrimitives.MultiplyAdd(values.AsSpan(j * C + h * hs, hs), scores[j], y, y);
                }
            }
            Linear.Forward(tmp, atty, P(lp.AttnProjW, C * C), P(lp.AttnProjB, C), n, C, C);
            Residual.Add(x, tmp, x);
            LayerNorm.Forward(ln, mean, rstd, x, P(lp.Ln2W, C), P(lp.Ln2B, C), n, C);
            Linear.Forward(fch, ln, P(lp.FcW, 4 * C * C), P(lp.FcB, 4 * C), n, C, 4 * C);
            ActivationForward(fch, fch);
            Linear.Forward(tmp, fch, P(lp.FcProjW, 4 * C * C), P(lp.FcProjB, C), n, 4 * C, C);
            Residual.Add(x, tmp, x);
        }
        var last = x.Slice((n - 1) * C, C);
        LayerNorm.Forward(ln.Slice(0, C), mean.Slice(0, 1), rstd.Slice(0, 1), last, P(_lnfW, C), P(_lnfB, C), 1, C);
        Gemm.Multiply(false, true, 1, V, C, 1f, ln.Slice(0, C), C, wte, C, 0f, cache.Logits, V);
        cache.Length = pos0 + n;
        return cache.Logits;
    }
}
