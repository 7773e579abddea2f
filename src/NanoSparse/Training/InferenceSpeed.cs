using System.Diagnostics;
using NanoSparse.Nn;

namespace NanoSparse.Training;

/// <summary>Median speeds of one model: decode and prefill tokens/s through the KV cache (batch 1), and a training step.</summary>
public sealed record ModelSpeed(double DecodeTokensPerSecond, double PrefillTokensPerSecond, double TrainStepMs);

/// <summary>
/// Wall-clock speed of models side by side, measured in interleaved rounds (model 0, model 1, ..., then again) so
/// that a noisy machine slows every model alike; each figure is the median over the rounds.
///   decode:  <c>newTokens</c> tokens one at a time after a prompt of <c>prompt</c> tokens
///   prefill: one prompt of <c>prompt</c> tokens
///   train:   Forward + Backward over one (B, T) batch of each model as built (0 ms when trainRounds is 0)
/// </summary>
public static class InferenceSpeed
{
    public static ModelSpeed[] Measure(IReadOnlyList<Gpt> models, int prompt, int newTokens, int rounds, bool trainStep,
        Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(models);
        if (rounds <= 0) throw new ArgumentException($"speed rounds ({rounds}) must be positive");
        int blockSize = models.Min(m => m.Config.BlockSize);
        if (prompt <= 0 || newTokens <= 0 || prompt + newTokens > blockSize)
            throw new ArgumentException($"a prompt of {prompt} and {newTokens} new tokens must both be positive and fit block_size ({blockSize})");
        int n = models.Count;
        var caches = models.Select(m => m.CreateKvCache()).ToArray();
        int vocab = models.Min(m => m.Config.VocabSize);
        var promptTokens = Enumerable.Range(0, prompt).Select(i => (i * 7 + 3) % vocab).ToArray();
        var batches = models.Select(m => Enumerable.Range(0, m.BatchSize * m.SeqLen).Select(i => (i * 13 + 5) % vocab).ToArray()).ToArray();
        var decode = new double[n][];
        var prefill = new double[n][];
        var train = new double[n][];
        for (int i = 0; i < n; i++) { decode[i] = new double[rounds]; prefill[i] = new double[rounds]; train[i] = new double[rounds]; }
        var one = new int[1];

        double Decode(int i)
        {
            var cache = caches[i];
            cache.Reset();
            var logits = models[i].ForwardCached(cache, promptTokens);
            long t0 = Stopwatch.GetTimestamp();
            for (int s = 0; s < newTokens; s++)
            {
                one[0] = ArgMax(logits);   // greedy: the step depends on the previous one, as in sampling
                logits = models[i].ForwardCached(cache, one);
            }
            return newTokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        double Prefill(int i)
        {
            caches[i].Reset();
            long t0 = Stopwatch.GetTimestamp();
            models[i].ForwardCached(caches[i], promptTokens);
            return prompt / Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        double Train(int i)
        {
            var gpt = models[i];
            long t0 = Stopwatch.GetTimestamp();
            gpt.ZeroGrad();
            gpt.Forward(batches[i], batches[i], training: true);
            gpt.Backward();
            return Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }

        for (int i = 0; i < n; i++) { Decode(i); Prefill(i); if (trainStep) Train(i); }   // JIT and caches
        for (int r = 0; r < rounds; r++)
        {
            for (int i = 0; i < n; i++) decode[i][r] = Decode(i);
            for (int i = 0; i < n; i++) prefill[i][r] = Prefill(i);
            if (trainStep) for (int i = 0; i < n; i++) train[i][r] = Train(i);
            progress?.Invoke(r + 1, rounds);
        }
        return Enumerable.Range(0, n).Select(i => new ModelSpeed(Median(decode[i]), Median(prefill[i]), trainStep ? Median(train[i]) : 0)).ToArray();
    }

    static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    static double Median(double[] x)
    {
        var s = x.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
