using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Training;

/// <summary>
/// The loss of a model decoding through a KV cache of a given kind: the same fixed batches as
/// <see cref="Evaluator.MeanLoss"/>, but each sequence is fed one token at a time through
/// <see cref="Gpt.ForwardCached"/>, so every position's attention reads what the cache keeps (pruned entries, an
/// evicted subset, the selected pages) exactly as in generation. Costs one decode step per token.
/// </summary>
public static class KvCachedLoss
{
    /// <summary>
    /// Mean cross-entropy (nats) over <paramref name="batches"/> batches of (batchSize, seqLen) from
    /// <paramref name="file"/>, drawn with <paramref name="seed"/> as the evaluator draws them.
    /// <paramref name="progress"/> gets (tokens done, tokens in all).
    /// </summary>
    public static double MeanLoss(Gpt gpt, TokenFile file, int batches, int batchSize, int seqLen, ulong seed, KvCacheSpec kind,
        Action<long, long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        if (batches <= 0) throw new ArgumentOutOfRangeException(nameof(batches), batches, "batches must be positive");
        if (seqLen < 1 || seqLen > gpt.Config.BlockSize)
            throw new ArgumentOutOfRangeException(nameof(seqLen), seqLen, $"sequence length must lie in [1, block_size ({gpt.Config.BlockSize})]");
        var sampler = new BatchSampler(file, batchSize, seqLen, seed);
        var x = new int[batchSize * seqLen];
        var y = new int[x.Length];
        var cache = gpt.CreateKvCache(kind);
        long total = (long)batches * batchSize * seqLen, done = 0;
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            sampler.Next(x, y);
            for (int b = 0; b < batchSize; b++)
            {
                cache.Reset();
                for (int t = 0; t < seqLen; t++)
                {
                    var logits = gpt.ForwardCached(cache, x.AsSpan(b * seqLen + t, 1));
                    sum += CrossEntropy(logits, y[b * seqLen + t]);
                }
                done += seqLen;
                progress?.Invoke(done, total);
            }
        }
        return sum / total;
    }

    /// <summary>−log softmax(logits)[target], in double.</summary>
    public static double CrossEntropy(ReadOnlySpan<float> logits, int target)
    {
        double max = double.NegativeInfinity;
        foreach (float v in logits) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits) sum += Math.Exp(v - max);
        return max + Math.Log(sum) - logits[target];
    }
}
