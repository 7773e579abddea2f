using System.Globalization;
using NanoSparse.Kernels;

namespace NanoSparse.Nn;

/// <summary>What a model is built for: each use allocates different buffers.</summary>
public enum GptUse
{
    /// <summary>Forward and backward (parameters, gradients, AdamW's two moments, activations, attention scratch).</summary>
    Training,
    /// <summary>Forward only over (B, T) batches (parameters, gradients, activations, attention scratch).</summary>
    Evaluation,
    /// <summary>KV-cached sampling of one sequence (parameters, gradients, activations for (1, block_size), KV cache).</summary>
    Decoding,
}

/// <summary>
/// Sizes of a Gpt's buffers computed before anything is allocated, so that a configuration too large for this
/// machine (or for an int-indexed array) is refused at the boundary with a message that names the setting to change,
/// instead of an OverflowException or OutOfMemoryException from deep inside the constructor. The counts mirror
/// Gpt's layout (parameters in state_dict order; per-layer activations; the attention kernels' per-thread scratch;
/// KvCache's buffers). They are computed in double: exact below 2^53, and anything larger is refused anyway.
/// </summary>
public static class GptSize
{
    /// <summary>Elements one .NET array can hold (<see cref="Array.MaxLength"/>).</summary>
    public static long MaxArrayLength => Array.MaxLength;

    /// <summary>A setting that may be blamed for a size: its name as the user wrote it and the value found.</summary>
    public sealed record Key(string Name, int Value, Func<Dims, int, Dims> With);

    /// <summary>
    /// The numbers the sizes depend on: batch B, sequence T, and the model's fields. <paramref name="HeadsPerLayer"/> and
    /// <paramref name="HiddenPerLayer"/> are the per-layer head counts and MLP widths of a structurally pruned model
    /// (null: NH and 4C in every layer); when a key changes L they stand for layers of their average width.
    /// </summary>
    public readonly record struct Dims(int B, int T, int L, int C, int NH, int V, int BlockSize, bool Bias, bool Dropout,
        IReadOnlyList<int>? HeadsPerLayer = null, IReadOnlyList<int>? HiddenPerLayer = null)
    {
        /// <summary>Σ over the L layers of f(heads, attention width A = heads·C/NH, MLP width H).</summary>
        internal double SumOverLayers(Func<double, double, double, double> f)
        {
            var heads = HeadsPerLayer;
            var hidden = HiddenPerLayer;
            if (heads is null && hidden is null) return L * f(NH, C, 4.0 * C);
            int n = Math.Max(heads?.Count ?? 0, hidden?.Count ?? 0);
            double sum = 0;
            double hs = (double)C / Math.Max(1, NH);
            for (int l = 0; l < n; l++)
            {
                double h = heads is not null && l < heads.Count ? heads[l] : NH;
                sum += f(h, h * hs, hidden is not null && l < hidden.Count ? hidden[l] : 4.0 * C);
            }
            return n == 0 ? 0 : sum / n * L;
        }

        /// <summary>The largest f(heads, A, H) of any layer.</summary>
        internal double MaxOverLayers(Func<double, double, double, double> f)
        {
            if (HeadsPerLayer is null && HiddenPerLayer is null) return f(NH, C, 4.0 * C);
            int n = Math.Max(HeadsPerLayer?.Count ?? 0, HiddenPerLayer?.Count ?? 0);
            double hs = (double)C / Math.Max(1, NH), max = 0;
            for (int l = 0; l < n; l++)
            {
                double h = HeadsPerLayer is not null && l < HeadsPerLayer.Count ? HeadsPerLayer[l] : NH;
                max = Math.Max(max, f(h, h * hs, HiddenPerLayer is not null && l < HiddenPerLayer.Count ? HiddenPerLayer[l] : 4.0 * C));
            }
            return max;
        }
    }

    /// <summary>Parameter count (floats) of a model: embeddings, L blocks, final LayerNorm (lm_head is tied to wte).</summary>
    public static double ParameterCount(Dims d)
    {
        double C = d.C, bias = d.Bias ? 1 : 0;
        // A = heads·hs (C unless pruned), H the MLP width (4C unless pruned)
        double layers = d.SumOverLayers((_, A, H) =>
                          C + bias * C              // ln_1
                        + 3 * A * C + bias * 3 * A  // attn.c_attn (3A, C)
                        + C * A + bias * C          // attn.c_proj (C, A)
                        + C + bias * C              // ln_2
                        + H * C + bias * H          // mlp.c_fc (H, C)
                        + C * H + bias * C);        // mlp.c_proj (C, H)
        return (double)d.V * C + (double)d.BlockSize * C + layers + C + bias * C;
    }

    public static double ParameterCount(GptConfig c) => ParameterCount(DimsOf(c, 1, 1));

    /// <summary>Floats of Gpt's activation workspace for (B, T), as its constructor lays it out.</summary>
    public static double ActivationCount(Dims d)
    {
        double N = (double)d.B * d.T, C = d.C;
        double Tp = Math.Ceiling(d.T / 16.0) * 16;
        int T = d.T;
        // per layer: ln_1, h, ln_2, y (N, C); qkv (N, 3A), y (N, A); the MLP's (N, H) twice; four LayerNorm statistics;
        // lse (B, NH, T) and the kept probabilities where the kernel keeps them
        double layers = d.SumOverLayers((NH, A, H) =>
        {
            bool keepProbs = T <= (1 << 30) && NH >= 1 && Attention.KeepsProbabilities(T, (int)A, (int)NH);
            return N * (4 * C + 4 * A + 2 * H) + 4 * N + (double)d.B * NH * T + (keepProbs ? (double)d.B * NH * T * Tp : 0);
        });
        // the parts' shared scratch: the widest of attention's (N, 3A) (+ (N, A) when A > C) and the MLP's (N, H)
        // gradients, + dropout's (N, C)
        double scratch = d.MaxOverLayers((_, A, H) => Math.Max(3 * A + (A > C ? A : 0), H)) + (d.Dropout ? C : 0);
        return N * C                       // encoded
             + layers
             + N * C + 2 * N               // ln_f and its statistics
             + N * d.V                     // logits
             + 2 * N                       // cross-entropy log-partition and losses
             + 2 * N * C                   // the residual stream's gradient and a branch's
             + N * scratch;
    }

    /// <summary>
    /// Floats of the attention kernels' scratch per thread: (T, T) scores (times 3 in the backward pass) or the tiled
    /// kernels' transposed keys and score tiles, whichever is larger (the choice depends on the CPU).
    /// </summary>
    public static double AttentionScratchCount(Dims d, bool backward)
    {
        double T = d.T, Tp = Math.Ceiling(d.T / 16.0) * 16, hs = d.C / Math.Max(1, d.NH);
        double plain = (backward ? 3 : 1) * T * T;
        double tiled = backward ? 2 * hs * Tp + 3 * T * Tp + Math.Max(Tp, hs) : hs * Tp + 2 * T * Tp + Math.Max(Tp, hs);
        return Math.Max(plain, tiled);
    }

    /// <summary>Floats of a KvCache (keys and values of every layer, decode workspaces, logits) and its largest array.</summary>
    public static (double Total, double Largest) KvCacheCount(Dims d)
    {
        double Tmax = d.BlockSize, C = d.C;
        // keys and values (2 × (Tmax, A) per layer); x, ln, branch (Tmax, C) and mean, rstd (Tmax); the parts' decode
        // scratch, the larger of attention's qkv, y and scores (Tmax·4A + Tmax) and the MLP's h (Tmax·H); logits (V)
        double scratch = d.MaxOverLayers((_, A, H) => Math.Max(4 * Tmax * A + Tmax, Tmax * H));
        double total = d.SumOverLayers((_, A, _) => 2 * Tmax * A) + 3 * Tmax * C + 2 * Tmax + scratch + d.V;
        return (total, scratch);
    }

    public static Dims DimsOf(GptConfig c, int batchSize, int seqLen) =>
        new(batchSize, seqLen, c.NLayer, c.NEmbd, c.NHead, c.VocabSize, c.BlockSize, c.Bias, c.Dropout > 0,
            c.NHeadPerLayer, c.MlpHiddenPerLayer);

    /// <summary>
    /// The first limit the sizes break, as "what need N floats, more than ...", or null when everything fits.
    /// <paramref name="availableBytes"/> is the memory the buffers may take (0: not checked).
    /// </summary>
    public static string? FirstProblem(Dims d, GptUse use, long availableBytes, int threads)
    {
        double max = MaxArrayLength;
        string OneArray(string what, double count, bool plural = true) =>
            $"{what} {(plural ? "need" : "needs")} {Count(count)} floats, more than the {Count(max)} one array holds";

        double parameters = ParameterCount(d);
        if (parameters > max) return OneArray("the parameters", parameters);
        double acts = ActivationCount(d);
        if (acts > max) return OneArray($"the activations for {d.B} sequences × {d.T} positions", acts);
        double bytes = 4 * (parameters * (use == GptUse.Training ? 4 : 2) + acts);   // + gradients (+ AdamW m and v)
        if (use == GptUse.Decoding)
        {
            var (total, largest) = KvCacheCount(d);
            if (largest > Math.Min(max, int.MaxValue)) return OneArray("the KV cache's decode scratch (4 × block_size × n_embd + block_size)", largest, plural: false);
            bytes += 4 * total;
        }
        else
        {
            double scratch = AttentionScratchCount(d, backward: use == GptUse.Training);
            if (scratch > Math.Min(max, int.MaxValue)) return OneArray($"the attention scratch of each thread at sequence length {d.T}", scratch, plural: false);
            bytes += 4 * scratch * Math.Max(1, Math.Min(threads, (double)d.B * d.MaxOverLayers((NH, _, _) => NH)));
        }
        if (availableBytes > 0 && bytes > availableBytes)
            return $"{UseWord(use)} needs about {Bytes(bytes)} of memory, more than the {Bytes(availableBytes)} this machine has";
        return null;
    }

    /// <summary>
    /// Throws an ArgumentException when the buffers for <paramref name="use"/> break a limit. The message names the
    /// key that is out of proportion (the one whose value exceeds by the largest factor the most it could be with the
    /// others unchanged; of near ties, the largest value), its value, what it would need and the limit, e.g. "block_size (100000000) is too large: ...;
    /// with the other settings as given block_size can be at most 3,577".
    /// </summary>
    public static void Check(Dims dims, GptUse use, IReadOnlyList<Key> keys, string source = "", long? availableBytes = null, int? threads = null)
    {
        long available = availableBytes ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        int t = threads ?? KernelThreads.Max;
        string? problem = FirstProblem(dims, use, available, t);
        if (problem is null) return;

        var candidates = new List<(Key Key, int Max, double Factor)>();
        foreach (var key in keys)
        {
            if (key.Value <= 1) continue;
            // Largest value in [1, Value) that fits with every other setting unchanged (sizes grow with each key).
            int lo = 0, hi = key.Value - 1;
            while (lo < hi)
            {
                int mid = lo + (hi - lo + 1) / 2;
                if (FirstProblem(key.With(dims, mid), use, available, t) is null) lo = mid;
                else hi = mid - 1;
            }
            if (lo == 0) continue;   // even 1 does not fit: this key alone cannot fix it
            candidates.Add((key, lo, (double)key.Value / lo));
        }
        if (candidates.Count > 0)
        {
            // A product such as vocab_size × n_embd gives its factors about the same excess; of those within 2x of
            // the largest excess, the largest value is the one out of proportion.
            double worst = candidates.Max(c => c.Factor);
            var (blamed, blamedMax, _) = candidates.Where(c => c.Factor >= worst / 2).MaxBy(c => c.Key.Value);
            throw new ArgumentException(
                $"{source}{blamed.Name} ({blamed.Value}) is too large: {problem}; with the other settings as given {blamed.Name} can be at most {Count(blamedMax)}");
        }
        throw new ArgumentException(
            $"{source}{string.Join(", ", keys.Select(k => $"{k.Name} {k.Value}"))} are too large together: {problem}");
    }

    /// <summary>
    /// Checks that a model's parameters fit one array (the part that depends on the config alone; Gpt's constructor
    /// calls it through <see cref="GptConfig.Validate"/>).
    /// </summary>
    public static void CheckParameters(GptConfig c)
    {
        var d = DimsOf(c, 1, 1);
        double parameters = ParameterCount(d);
        if (parameters <= MaxArrayLength) return;
        Check(d with { T = 0, B = 0 }, GptUse.Evaluation, ModelKeys(c), "", availableBytes: 0, threads: 1);
    }

    /// <summary>
    /// The model's own fields as keys (block_size only when it is not the sequence length's key too);
    /// <paramref name="vocabName"/> names vocab_size where it comes from another file (a dataset's meta.json).
    /// </summary>
    public static List<Key> ModelKeys(GptConfig c, bool includeBlockSize = true, string vocabName = "vocab_size")
    {
        var keys = new List<Key>
        {
            new("n_layer", c.NLayer, (d, v) => d with { L = v }),
            new("n_embd", c.NEmbd, (d, v) => d with { C = v }),
            new(vocabName, c.VocabSize, (d, v) => d with { V = v }),
        };
        if (includeBlockSize) keys.Add(new("block_size", c.BlockSize, (d, v) => d with { BlockSize = v }));
        return keys;
    }

    static string UseWord(GptUse use) => use switch
    {
        GptUse.Training => "training",
        GptUse.Evaluation => "evaluation",
        _ => "sampling",
    };

    static string Count(double n) => n < 1e15 ? n.ToString("N0", CultureInfo.InvariantCulture) : n.ToString("0.##e0", CultureInfo.InvariantCulture);

    static string Bytes(double b) => b >= 1L << 40
        ? (b / (1L << 40)).ToString("N1", CultureInfo.InvariantCulture) + " TiB"
        : (b / (1L << 30)).ToString("N1", CultureInfo.InvariantCulture) + " GiB";
}
