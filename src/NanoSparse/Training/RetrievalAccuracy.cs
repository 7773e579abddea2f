using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Training;

/// <summary>Retrieval accuracy at one distance: exact (all the value's digits right) and per digit.</summary>
public sealed record RetrievalPoint(int Distance, int Samples, double Accuracy, double DigitAccuracy);

/// <summary>
/// Measures a model on a retrieval task (<see cref="RetrievalProbe"/> over running text, or
/// <see cref="AssociativeRecall"/> over its own stream): per distance, samples windows of seqLen tokens of filler
/// (random offsets of a token file) with a record and its query written in, and checks the model's greedy
/// (argmax) prediction of each answer digit under teacher forcing: a sample counts when all are right.
/// Without a KV cache (null) the windows run through the full forward pass in batches of the model's batch size;
/// with one, each window's text before the query is a prefill and the query and answer are decoded one token at a time,
/// as generation would read them through that cache.
/// </summary>
public static class RetrievalAccuracy
{
    public static RetrievalPoint[] Measure(Gpt gpt, IRetrievalTask probe, TokenFile filler, IReadOnlyList<int> distances, int samples,
        int distractors, ulong seed, KvCacheSpec? kvCache = null, Action<long, long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(filler);
        int T = gpt.SeqLen, B = gpt.BatchSize, V = gpt.Config.VocabSize;
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), samples, "samples must be at least 1");
        foreach (int d in distances)
            if (d < 0 || d > probe.MaxDistance(T))
                throw new ArgumentOutOfRangeException(nameof(distances), d, $"distance {d} must lie in [0, {probe.MaxDistance(T)}] for windows of {T} tokens");
        if (filler.Length < T + 1) throw new ArgumentException($"{filler.Path}: holds {filler.Length} tokens, fewer than {T + 1} for one window");
        var points = new RetrievalPoint[distances.Count];
        var windows = new int[B * (T + 1)];
        var answers = new int[B];
        var x = new int[B * T];
        var cache = kvCache is null ? null : gpt.CreateKvCache(kvCache);
        long total = (long)distances.Count * samples, done = 0;
        for (int di = 0; di < distances.Count; di++)
        {
            int d = distances[di];
            var rng = new Rng(seed ^ (ulong)d * 0x9E3779B97F4A7C15UL);
            int exact = 0, digits = 0;
            for (int s0 = 0; s0 < samples; s0 += B)
            {
                int n = Math.Min(B, samples - s0);
                for (int b = 0; b < n; b++)
                {
                    var window = windows.AsSpan(b * (T + 1), T + 1);
                    filler.Read(rng.NextInt64(filler.Length - T), window);
                    answers[b] = probe.Write(window, d, distractors, rng);
                }
                for (int b = 0; b < n; b++)
                {
                    var window = windows.AsSpan(b * (T + 1), T + 1);
                    int right = 0;
                    if (cache is null)
                    {
                        if (b == 0)
                        {
                            for (int i = 0; i < B; i++) windows.AsSpan(i * (T + 1), T).CopyTo(x.AsSpan(i * T, T));
                            gpt.Forward(x, [], false);
                        }
                        var logits = gpt.Logits.Slice(b * T * V, T * V);
                        for (int i = 0; i < probe.ValueLength; i++)
                            if (ArgMax(logits.Slice((answers[b] - 1 + i) * V, V)) == window[answers[b] + i]) right++;
                    }
                    else
                    {
                        // the text up to the query is the prompt; the query and the answer are decoded one by one
                        int query = answers[b] - probe.QueryLength;
                        cache.Reset();
                        gpt.ForwardCached(cache, window.Slice(0, query));
                        for (int t = query; t < answers[b] + probe.ValueLength - 1; t++)
                        {
                            var logits = gpt.ForwardCached(cache, window.Slice(t, 1));
                            int digit = t + 1 - answers[b];
                            if (digit >= 0 && ArgMax(logits) == window[t + 1]) right++;
                        }
                    }
                    digits += right;
                    if (right == probe.ValueLength) exact++;
                }
                done += n;
                progress?.Invoke(done, total);
            }
            points[di] = new RetrievalPoint(d, samples, (double)exact / samples, (double)digits / (samples * probe.ValueLength));
        }
        return points;
    }

    /// <summary>Labelled results as CSV (label, distance, samples, accuracy, digit_accuracy), written atomically.</summary>
    public static void WriteCsv(string path, IEnumerable<(string Label, RetrievalPoint[] Points)> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var sb = new System.Text.StringBuilder("label,distance,samples,accuracy,digit_accuracy\n");
        foreach (var (label, points) in results)
            foreach (var p in points)
                sb.Append(string.Create(inv, $"{Quote(label)},{p.Distance},{p.Samples},{p.Accuracy:R},{p.DigitAccuracy:R}\n"));
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(sb.ToString());
        AtomicFile.Write(path, fs => fs.Write(bytes));
    }

    static string Quote(string s) => s.IndexOfAny([',', '"', '\n']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
