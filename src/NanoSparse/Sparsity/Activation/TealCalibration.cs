using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Sparsity.Activation;

/// <summary>Progress of a calibration: forward passes done of the total.</summary>
public readonly record struct CalibrationProgress(int Done, int Total, double PerSecond, TimeSpan? Remaining);

/// <summary>Every block Linear weight (in state_dict order) with its sorted calibration scores.</summary>
public sealed record CalibrationScores(
    IReadOnlyList<(string Name, int Layer, string Key, ILinearWeight Weight, Memory<float> Values)> Weights,
    float[][] Sorted, long RowsSampled);

/// <summary>
/// Calibrates TEAL / WINA thresholds (one per block Linear weight) on calibration tokens: the dense model runs the
/// windows, each weight's inputs x (rows, In) are scored (TEAL |x_i|; WINA |x_i|·‖W_:,i‖₂) and the threshold is the
/// target-sparsity quantile of the scores,
///   t = sorted(scores)[⌊s·n⌋],   so that a fraction s of the calibration scores lie below t (ties aside).
/// Every weight sees the dense model's activations (no thresholds applied upstream during calibration) and gets the
/// same sparsity here (uniform allocation); <see cref="TealAllocation"/> allocates sparsity per weight within each block. Scores are sampled by whole rows, every k-th row, so at most
/// maxSamples scores per weight are held (the quantile of an evenly strided sample).
/// </summary>
public static class TealCalibration
{
    public const int DefaultMaxSamples = 1 << 20;

    /// <summary>
    /// Thresholds for every block Linear weight of <paramref name="model"/> from <paramref name="tokens"/>: windows of
    /// model.SeqLen tokens, a whole number of model.BatchSize windows per forward pass. Only positions from
    /// <paramref name="firstPosition"/> on are scored (a benchmark calibrates on the positions it decodes).
    /// </summary>
    public static ActivationThresholds Calibrate(Gpt model, ReadOnlySpan<int> tokens, string method, double sparsity,
        int maxSamples = DefaultMaxSamples, IProgress<CalibrationProgress>? progress = null, string? dataName = null, ulong seed = 0,
        int firstPosition = 0)
    {
        ActivationThresholds.CheckSparsity(sparsity, "sparsity");
        var scores = CollectScores(model, tokens, method, maxSamples, progress, firstPosition);
        return FromScores(model, scores, method, sparsity, dataName, seed, tokens.Length / model.SeqLen);
    }

    /// <summary>Uniform thresholds (every weight at <paramref name="sparsity"/>) from scores already collected.</summary>
    public static ActivationThresholds FromScores(Gpt model, CalibrationScores scores, string method, double sparsity,
        string? dataName, ulong seed, int windows)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(scores);
        ActivationThresholds.CheckSparsity(sparsity, "sparsity");
        var result = new List<WeightThreshold>();
        for (int j = 0; j < scores.Weights.Count; j++)
        {
            var (name, _, _, w, _) = scores.Weights[j];
            var (t, below) = QuantileOfSorted(scores.Sorted[j], sparsity);
            result.Add(new WeightThreshold(name, w.OutFeatures, w.InFeatures, t, below));
        }
        return new ActivationThresholds
        {
            Method = method, TargetSparsity = sparsity, NLayer = model.Config.NLayer, NEmbd = model.Config.NEmbd, Weights = result,
            CalibrationData = dataName, CalibrationWindows = windows, CalibrationBlockSize = model.SeqLen,
            CalibrationSeed = seed, CalibrationRowsSampled = scores.RowsSampled,
        };
    }

    /// <summary>
    /// Every block Linear weight's input scores on the dense model's activations for <paramref name="tokens"/> (see
    /// <see cref="Calibrate"/>), each weight's sample sorted ascending, so any sparsity's threshold is one look-up.
    /// </summary>
    public static CalibrationScores CollectScores(Gpt model, ReadOnlySpan<int> tokens, string method,
        int maxSamples = DefaultMaxSamples, IProgress<CalibrationProgress>? progress = null, int firstPosition = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ActivationThresholds.CheckMethod(method, "method");
        if (maxSamples < 1) throw new ArgumentException($"maxSamples ({maxSamples}) must be positive", nameof(maxSamples));
        if (firstPosition < 0 || firstPosition >= model.SeqLen)
            throw new ArgumentOutOfRangeException(nameof(firstPosition), firstPosition, $"must lie in [0, {model.SeqLen}) (seq_len)");
        int rowsPerPass = model.BatchSize * model.SeqLen;
        if (tokens.Length == 0 || tokens.Length % rowsPerPass != 0)
            throw new ArgumentException($"calibration tokens ({tokens.Length}) must be a positive multiple of batch × seq_len ({model.BatchSize} × {model.SeqLen})", nameof(tokens));
        int passes = tokens.Length / rowsPerPass;
        long totalRows = tokens.Length;

        var weights = BlockWeights(model);
        var samples = new float[weights.Count][];
        var norms = new float[weights.Count][];
        var stride = new long[weights.Count];
        var filled = new long[weights.Count];
        for (int j = 0; j < weights.Count; j++)
        {
            var (_, _, _, w, values) = weights[j];
            stride[j] = Math.Max(1, (totalRows * w.InFeatures + maxSamples - 1) / maxSamples);
            long rows = (totalRows + stride[j] - 1) / stride[j];
            samples[j] = new float[checked(rows * w.InFeatures)];
            if (method == ActivationMethods.Wina) norms[j] = ColumnNorms(w, values.Span);
        }

        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (int pass = 0; pass < passes; pass++)
        {
            model.ForwardBlocks(tokens.Slice(pass * rowsPerPass, rowsPerPass), model.Config.NLayer);
            for (int j = 0; j < weights.Count; j++)
            {
                var (_, layer, key, w, _) = weights[j];
                int I = w.InFeatures;
                var x = model.LinearInput(layer, key);
                for (int r = 0; r < rowsPerPass; r++)
                {
                    long global = (long)pass * rowsPerPass + r;
                    if (global % stride[j] != 0 || r % model.SeqLen < firstPosition) continue;
                    var dst = samples[j].AsSpan(checked((int)(filled[j] * I)), I);
                    Scores(x.Slice(r * I, I), norms[j], dst);
                    filled[j]++;
                }
            }
            if (progress is not null)
            {
                double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
                double rate = (pass + 1) / Math.Max(seconds, 1e-9);
                progress.Report(new CalibrationProgress(pass + 1, passes, rate, TimeSpan.FromSeconds((passes - pass - 1) / rate)));
            }
        }

        var sorted = new float[weights.Count][];
        long sampled = 0;
        for (int j = 0; j < weights.Count; j++)
        {
            sorted[j] = samples[j].AsSpan(0, checked((int)(filled[j] * weights[j].Weight.InFeatures))).ToArray();
            if (sorted[j].Length == 0) throw new ArgumentException("no calibration scores", nameof(tokens));
            Array.Sort(sorted[j]);
            sampled = Math.Max(sampled, filled[j]);
        }
        return new CalibrationScores(weights, sorted, sampled);
    }

    /// <summary>
    /// t = the ⌊s·n⌋-th smallest of <paramref name="sorted"/> (ascending; 0 when s = 0: keep everything) and the fraction
    /// of the scores below t.
    /// </summary>
    public static (float Threshold, double Below) QuantileOfSorted(ReadOnlySpan<float> sorted, double sparsity)
    {
        ActivationThresholds.CheckSparsity(sparsity, "sparsity");
        if (sorted.IsEmpty) throw new ArgumentException("no calibration scores", nameof(sorted));
        if (sparsity == 0) return (0f, 0.0);
        long k = Math.Min(sorted.Length - 1, (long)Math.Floor(sparsity * sorted.Length));
        float t = sorted[(int)k];
        // first index with a score ≥ t
        int lo = 0, hi = (int)k;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] < t) lo = mid + 1; else hi = mid;
        }
        return (t, (double)lo / sorted.Length);
    }

    /// <summary>
    /// t = the ⌊s·n⌋-th smallest score (0 when s = 0: keep everything, also below the calibration minimum) and the
    /// fraction of the scores below t. Sorts <paramref name="scores"/> in place.
    /// </summary>
    public static (float Threshold, double Below) Quantile(Span<float> scores, double sparsity)
    {
        ActivationThresholds.CheckSparsity(sparsity, "sparsity");
        if (scores.IsEmpty) throw new ArgumentException("no calibration scores", nameof(scores));
        if (sparsity == 0) return (0f, 0.0);
        scores.Sort();
        return QuantileOfSorted(scores, sparsity);
    }

    /// <summary>WINA's per-input weight: ‖W_:,i‖₂, the Euclidean norm of column i of W (Out, In), in double.</summary>
    public static float[] ColumnNorms(ILinearWeight weight, ReadOnlySpan<float> values)
    {
        int O = weight.OutFeatures, I = weight.InFeatures;
        var dense = new float[(long)O * I];
        weight.ToDense(values, dense);
        var sum = new double[I];
        for (int o = 0; o < O; o++)
        {
            var row = dense.AsSpan(o * I, I);
            for (int i = 0; i < I; i++) sum[i] += (double)row[i] * row[i];
        }
        var norms = new float[I];
        for (int i = 0; i < I; i++) norms[i] = (float)Math.Sqrt(sum[i]);
        return norms;
    }

    /// <summary>Scores of one input row: |x_i| (TEAL, norms null) or |x_i|·norms[i] (WINA).</summary>
    public static void Scores(ReadOnlySpan<float> x, float[]? norms, Span<float> scores)
    {
        if (norms is null) System.Numerics.Tensors.TensorPrimitives.Abs(x, scores);
        else
            for (int i = 0; i < x.Length; i++) scores[i] = MathF.Abs(x[i]) * norms[i];
    }

    /// <summary>
    /// The per-input thresholds τ_i a <see cref="ThresholdedLinearWeight"/> compares |x_i| with: t for TEAL; for WINA
    /// t / ‖W_:,i‖₂ (|x_i|·‖W_:,i‖ ≥ t ⇔ |x_i| ≥ t/‖W_:,i‖), +∞ for an all-zero column (it contributes nothing).
    /// </summary>
    public static float[] InputThresholds(string method, float threshold, ILinearWeight weight, ReadOnlySpan<float> values)
    {
        var tau = new float[weight.InFeatures];
        if (method == ActivationMethods.Teal || threshold == 0)
        {
            Array.Fill(tau, threshold);
            return tau;
        }
        var norms = ColumnNorms(weight, values);
        for (int i = 0; i < tau.Length; i++) tau[i] = norms[i] > 0 ? threshold / norms[i] : float.PositiveInfinity;
        return tau;
    }

    /// <summary>The block Linear weights of a model in state_dict order: (name, layer, "mlp.c_fc", layout, stored values).</summary>
    internal static List<(string Name, int Layer, string Key, ILinearWeight Weight, Memory<float> Values)> BlockWeights(Gpt model)
    {
        var list = new List<(string, int, string, ILinearWeight, Memory<float>)>();
        foreach (var p in model.Parameters)
        {
            if (p.Layout is not { } w || !p.Name.StartsWith("transformer.h.", StringComparison.Ordinal)) continue;
            // transformer.h.{layer}.{attn|mlp}.{c_attn|c_proj|c_fc}.weight
            var parts = p.Name.Split('.');
            if (parts.Length != 6) continue;
            list.Add((p.Name, int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture), parts[3] + "." + parts[4], w, p.Value));
        }
        return list;
    }
}
