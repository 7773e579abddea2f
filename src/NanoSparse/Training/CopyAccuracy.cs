using NanoSparse.Data;
using NanoSparse.Nn;

namespace NanoSparse.Training;

/// <summary>
/// Measures a model on the copying probe (<see cref="CopyProbe"/>) over a stream as it is (no tokens written in):
/// windows of seqLen + 1 tokens at evenly spaced offsets of the stream run through the full forward pass in batches of
/// the model's batch size; every target in a window that lies in a segment's second copy at index ≥ 1 and whose
/// source (the earlier occurrence of its input token, L positions back) lies inside the window is one sample, right
/// when the argmax of the logits is the copied token. Samples are counted per distance bin: bin k holds distances in
/// [edges[k], edges[k + 1]), the last bin [edges[^1], seqLen − 1]. Chance is 1/alphabet.
/// </summary>
public static class CopyAccuracy
{
    /// <summary>The longest copy distance a window of seqLen inputs can measure (source and target both inside).</summary>
    public static int MaxDistance(int seqLen) => seqLen - 1;

    /// <summary>Bin lower edges 1, 2, 4, ... below the window's longest distance.</summary>
    public static int[] DefaultEdges(int seqLen)
    {
        var list = new List<int>();
        for (int d = 1; d <= MaxDistance(seqLen); d *= 2) list.Add(d);
        return [.. list];
    }

    /// <summary>"8-15" for a bin (the last one ends at the window's longest distance).</summary>
    public static string BinLabel(IReadOnlyList<int> edges, int k, int seqLen)
    {
        int hi = k + 1 < edges.Count ? edges[k + 1] - 1 : MaxDistance(seqLen);
        return hi == edges[k] ? edges[k].ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{edges[k]}-{hi}";
    }

    /// <summary>
    /// Accuracy per bin over <paramref name="windows"/> windows of <paramref name="stream"/>; a point's Distance is its
    /// bin's lower edge, Samples the number of predicted tokens in it (Accuracy and DigitAccuracy are the same: one
    /// token per sample).
    /// </summary>
    public static RetrievalPoint[] Measure(Gpt gpt, CopyProbe task, TokenFile stream, IReadOnlyList<int> edges, int windows,
        Action<long, long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(edges);
        int T = gpt.SeqLen, B = gpt.BatchSize, V = gpt.Config.VocabSize;
        if (windows < 1) throw new ArgumentOutOfRangeException(nameof(windows), windows, "windows must be at least 1");
        if (edges.Count == 0) throw new ArgumentException("at least one distance bin edge is needed", nameof(edges));
        for (int k = 0; k < edges.Count; k++)
        {
            if (edges[k] < 1 || edges[k] > MaxDistance(T))
                throw new ArgumentOutOfRangeException(nameof(edges), edges[k], $"distance {edges[k]} must lie in [1, {MaxDistance(T)}] for windows of {T} tokens");
            if (k > 0 && edges[k] <= edges[k - 1])
                throw new ArgumentException($"distance bin edges must increase ({edges[k - 1]} then {edges[k]})", nameof(edges));
        }
        if (stream.Length < T + 1) throw new ArgumentException($"{stream.Path}: holds {stream.Length} tokens, fewer than {T + 1} for one window");
        if (stream.Length > Array.MaxLength) throw new ArgumentException($"{stream.Path}: holds {stream.Length} tokens, too many to measure in memory");
        var tokens = new int[stream.Length];
        stream.Read(0, tokens);
        var distance = task.CopyDistances(tokens, stream.Path);
        // bin of every distance 0..T-1 (−1: not counted)
        var binOf = new int[T];
        Array.Fill(binOf, -1);
        for (int k = 0; k < edges.Count; k++)
            for (int d = edges[k]; d < (k + 1 < edges.Count ? edges[k + 1] : T); d++) binOf[d] = k;
        var hits = new long[edges.Count];
        var counts = new long[edges.Count];
        long step = Math.Max(1, (tokens.Length - T - 1) / windows);
        var x = new int[B * T];
        for (int w0 = 0; w0 < windows; w0 += B)
        {
            int n = Math.Min(B, windows - w0);
            for (int b = 0; b < B; b++)
                tokens.AsSpan((int)(Math.Min(w0 + b, windows - 1) * step), T).CopyTo(x.AsSpan(b * T, T));
            gpt.Forward(x, [], false);
            for (int b = 0; b < n; b++)
            {
                long start = (w0 + b) * step;
                var logits = gpt.Logits.Slice(b * T * V, T * V);
                for (int j = 0; j < T; j++)
                {
                    long p = start + j + 1;   // the target's index in the stream
                    int L = distance[p];
                    if (L == 0 || L >= T || p - 1 - L < start || binOf[L] < 0) continue;
                    counts[binOf[L]]++;
                    if (ArgMax(logits.Slice(j * V, V)) == tokens[p]) hits[binOf[L]]++;
                }
            }
            progress?.Invoke(w0 + n, windows);
        }
        var points = new RetrievalPoint[edges.Count];
        for (int k = 0; k < edges.Count; k++)
        {
            double acc = counts[k] == 0 ? double.NaN : (double)hits[k] / counts[k];
            points[k] = new RetrievalPoint(edges[k], (int)Math.Min(counts[k], int.MaxValue), acc, acc);
        }
        return points;
    }

    static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
