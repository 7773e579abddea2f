using System.Diagnostics;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Sparsity.Activation;

/// <summary>Progress of a greedy allocation: the block being allocated, its average sparsity so far, block-output evaluations done.</summary>
public readonly record struct AllocationProgress(int Layer, int Layers, double Reached, double Target, int Evaluations,
    double PerSecond, TimeSpan? Remaining);

/// <summary>
/// TEAL's block-wise greedy allocation (Liu et al. 2024, §4): instead of one sparsity for every Linear input, each
/// block shares its target among its inputs (c_attn's, attn.c_proj's, c_fc's, mlp.c_proj's) by how much each one's
/// sparsity disturbs the block's output. Per block, on calibration tokens, starting from sparsity 0 everywhere:
///   repeat: for each input j, raise s_j by one step (δ_j = min(step, s_max − s_j, what the target still needs)) and
///           measure E = mean over rows and features of (Block_s(x) − Block(x))², x the dense model's residual stream
///           entering the block; keep the raise with the least added error per weight entry it stops reading,
///           (E(s + δ_j e_j) − E(s)) / (δ_j · P_j),   P_j = weights read by input j's matrix,
///   until Σ_j P_j s_j / Σ_j P_j = target.
/// The last raise is cut to land exactly on the target, so every block's average (by weights read) is the target and
/// the whole model's is too. Thresholds are the quantiles of each input's dense-model scores (as in
/// <see cref="TealCalibration"/>), so TEAL and WINA both work; s_j is the fraction of input j's calibration scores
/// below its threshold. The block runs with the candidate thresholds on the dense input, so the error includes how an
/// upstream input's zeros shift a downstream input's activations within the block.
/// </summary>
public static class TealAllocation
{
    public const string Uniform = "uniform";
    public const string Greedy = "greedy";
    public static readonly IReadOnlyList<string> All = [Uniform, Greedy];
    public const double DefaultStep = 0.05;
    /// <summary>No input is thresholded past this sparsity.</summary>
    public const double MaxSparsity = 0.99;

    /// <summary>
    /// The greedy search over n inputs: <paramref name="weightsRead"/>[j] = P_j, <paramref name="error"/>(s) the error with
    /// sparsities s (it may keep the array only for the call). Returns s with Σ P_j s_j / Σ P_j = target (to rounding).
    /// </summary>
    public static double[] Allocate(IReadOnlyList<long> weightsRead, double target, double step, Func<double[], double> error,
        double maxSparsity = MaxSparsity, Action<double[]>? onStep = null) =>
        Allocate(weightsRead, [target], step, error, maxSparsity, onStep)[0];

    /// <summary>
    /// The same search for several targets in one pass: the moves do not depend on the target until the one that
    /// would reach it, so the search walks the whole-step path once and, where a target falls within the next move,
    /// records the allocation a search for that target alone would end with (its last move cut to land on it) and goes
    /// on from before that move. Result i is for <paramref name="targets"/>[i] and equals Allocate(…, targets[i], …).
    /// </summary>
    public static double[][] Allocate(IReadOnlyList<long> weightsRead, IReadOnlyList<double> targets, double step,
        Func<double[], double> error, double maxSparsity = MaxSparsity, Action<double[]>? onStep = null)
    {
        ArgumentNullException.ThrowIfNull(weightsRead);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(error);
        if (targets.Count == 0) throw new ArgumentException("no target sparsity", nameof(targets));
        foreach (var t in targets)
        {
            ActivationThresholds.CheckSparsity(t, "target sparsity");
            if (t > maxSparsity)
                throw new ArgumentException($"target sparsity ({t}) exceeds the most any input is given ({maxSparsity})", nameof(targets));
        }
        CheckStep(step);
        if (!(maxSparsity > 0 && maxSparsity < 1)) throw new ArgumentOutOfRangeException(nameof(maxSparsity), maxSparsity, "must lie in (0, 1)");
        if (weightsRead.Count == 0) throw new ArgumentException("no inputs to allocate sparsity to", nameof(weightsRead));
        if (weightsRead.Any(p => p <= 0)) throw new ArgumentException("every input's weights read must be positive", nameof(weightsRead));
        int n = weightsRead.Count;
        double total = weightsRead.Sum(p => (double)p), eps = 1e-9 * total;
        var order = Enumerable.Range(0, targets.Count).OrderBy(i => targets[i]).ToArray();
        var results = new double[targets.Count][];
        var s = new double[n];
        double current = error(s);
        double mass = 0;                 // Σ P_j s_j
        var trial = new double[n];
        int k = 0;                       // next target, in ascending order
        while (true)
        {
            while (k < order.Length && targets[order[k]] * total - mass <= eps) results[order[k++]] = (double[])s.Clone();
            if (k == order.Length) break;
            double need = targets[order[k]] * total - mass;
            int best = -1;
            double bestRate = double.PositiveInfinity, bestError = 0, bestDelta = 0;
            bool bestCut = false;
            for (int j = 0; j < n; j++)
            {
                double full = Math.Min(step, maxSparsity - s[j]);
                double delta = Math.Min(full, need / weightsRead[j]);
                if (delta <= 1e-12) continue;
                s.CopyTo(trial, 0);
                trial[j] += delta;
                double e = error(trial);
                double rate = (e - current) / (delta * weightsRead[j]);
                if (rate < bestRate || best < 0)
                {
                    best = j;
                    bestRate = rate;
                    bestError = e;
                    bestDelta = delta;
                    bestCut = delta < full;
                }
            }
            if (best < 0) throw new InvalidOperationException("every input is at the largest sparsity before the target");   // unreachable for targets ≤ maxSparsity
            if (bestCut)
            {
                // The move lands on this target: record it, then go on with whole steps from here.
                var landed = (double[])s.Clone();
                landed[best] += bestDelta;
                results[order[k++]] = landed;
                onStep?.Invoke(landed);
                continue;
            }
            s[best] += bestDelta;
            mass += bestDelta * weightsRead[best];
            current = bestError;
            onStep?.Invoke(s);
        }
        return results;
    }

    public static double CheckStep(double step)
    {
        if (!(step > 0 && step <= 0.5))
            throw new ArgumentException($"allocation step ({step.ToString(System.Globalization.CultureInfo.InvariantCulture)}) must lie in (0, 0.5]");
        return step;
    }

    /// <summary>
    /// Thresholds for every block Linear weight of <paramref name="model"/> with the sparsity allocated per block by the
    /// greedy search (<paramref name="tokens"/> as in <see cref="TealCalibration.Calibrate"/>; the same tokens score the
    /// inputs and measure the block errors). <paramref name="model"/> is only read.
    /// </summary>
    public static ActivationThresholds Calibrate(Gpt model, ReadOnlySpan<int> tokens, string method, double sparsity,
        double step = DefaultStep, int maxSamples = TealCalibration.DefaultMaxSamples,
        IProgress<CalibrationProgress>? scoring = null, IProgress<AllocationProgress>? progress = null,
        string? dataName = null, ulong seed = 0, int errorPasses = 0) =>
        Calibrate(model, tokens, method, [sparsity], step, maxSamples, scoring, progress, dataName, seed, errorPasses)[0];

    /// <summary>
    /// Thresholds for each of <paramref name="sparsities"/> from one greedy search (see the multi-target
    /// <see cref="Allocate(IReadOnlyList{long}, IReadOnlyList{double}, double, Func{double[], double}, double, Action{double[]})"/>).
    /// The block errors are measured on the first <paramref name="errorPasses"/> forward passes' worth of
    /// <paramref name="tokens"/> (0: all of them); the scores, and so the thresholds, come from all of them.
    /// </summary>
    public static ActivationThresholds[] Calibrate(Gpt model, ReadOnlySpan<int> tokens, string method, IReadOnlyList<double> sparsities,
        double step = DefaultStep, int maxSamples = TealCalibration.DefaultMaxSamples,
        IProgress<CalibrationProgress>? scoring = null, IProgress<AllocationProgress>? progress = null,
        string? dataName = null, ulong seed = 0, int errorPasses = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sparsities);
        if (sparsities.Count == 0) throw new ArgumentException("no target sparsity", nameof(sparsities));
        foreach (var sp in sparsities) ActivationThresholds.CheckSparsity(sp, "sparsity");
        CheckStep(step);
        if (errorPasses < 0) throw new ArgumentOutOfRangeException(nameof(errorPasses), errorPasses, "must be >= 0 (0: every pass)");
        var scores = TealCalibration.CollectScores(model, tokens, method, maxSamples, scoring);
        var weights = scores.Weights;
        int L = model.Config.NLayer, C = model.Config.NEmbd, rowsPerPass = model.BatchSize * model.SeqLen;
        int passes = tokens.Length / rowsPerPass;
        if (errorPasses > 0) passes = Math.Min(passes, errorPasses);
        double sparsity = sparsities.Max();

        // The dense residual stream into and out of every block, per pass: (B·T, C) each.
        var inputs = new float[L, passes][];
        var outputs = new float[L, passes][];
        for (int p = 0; p < passes; p++)
        {
            model.ForwardBlocks(tokens.Slice(p * rowsPerPass, rowsPerPass), L);
            for (int l = 0; l < L; l++)
            {
                inputs[l, p] = model.BlockInput(l).ToArray();
                outputs[l, p] = model.BlockOutput(l).ToArray();
            }
        }

        // A copy whose block weights are thresholded (all thresholds 0 to start: nothing zeroed).
        var zero = new ActivationThresholds
        {
            Method = method, TargetSparsity = 0, NLayer = L, NEmbd = C,
            Weights = weights.Select(w => new WeightThreshold(w.Name, w.Weight.OutFeatures, w.Weight.InFeatures, 0f, 0)).ToList(),
        };
        var probe = ActivationSparsity.Apply(model, zero, decodeCopies: false);
        var thresholded = ActivationSparsity.Weights(probe).ToDictionary(w => w.Name, w => w.Weight);
        var norms = weights.Select(w => method == ActivationMethods.Wina ? TealCalibration.ColumnNorms(w.Weight, w.Values.Span) : null).ToArray();

        var allocated = sparsities.Select(_ => new double[weights.Count]).ToArray();
        int evaluations = 0;
        var clock = Stopwatch.StartNew();
        for (int l = 0; l < L; l++)
        {
            int layer = l;
            var members = Enumerable.Range(0, weights.Count).Where(j => weights[j].Layer == layer).ToArray();
            if (members.Length == 0) continue;
            var tau = members.Select(j => new float[weights[j].Weight.InFeatures]).ToArray();
            double Error(double[] s)
            {
                for (int k = 0; k < members.Length; k++)
                {
                    int j = members[k];
                    float t = TealCalibration.QuantileOfSorted(scores.Sorted[j], s[k]).Threshold;
                    InputThresholds(t, norms[j], tau[k]);
                    thresholded[weights[j].Name].SetThresholds(tau[k]);
                }
                double sum = 0;
                for (int p = 0; p < passes; p++)
                {
                    var y = probe.ForwardBlock(layer, inputs[layer, p]);
                    var reference = outputs[layer, p];
                    for (int i = 0; i < y.Length; i++)
                    {
                        double d = (double)y[i] - reference[i];
                        sum += d * d;
                    }
                }
                evaluations++;
                return sum / ((double)passes * rowsPerPass * C);
            }
            var read = members.Select(j => (long)weights[j].Weight.StoredCount).ToArray();
            double total = read.Sum(p => (double)p);
            void Report(double[] s)
            {
                if (progress is null) return;
                double reached = s.Select((v, k) => v * read[k]).Sum() / total;
                double done = (layer + (sparsity > 0 ? reached / sparsity : 1)) / L;
                double seconds = clock.Elapsed.TotalSeconds;
                progress.Report(new AllocationProgress(layer, L, reached, sparsity, evaluations, evaluations / Math.Max(seconds, 1e-9),
                    done > 0 ? TimeSpan.FromSeconds(seconds * (1 - done) / done) : null));
            }
            var found = Allocate(read, sparsities, step, Error, MaxSparsity, Report);
            Report(found[Array.IndexOf(sparsities.ToArray(), sparsity)]);
            for (int i = 0; i < sparsities.Count; i++)
                for (int k = 0; k < members.Length; k++) allocated[i][members[k]] = found[i][k];
        }

        var results = new ActivationThresholds[sparsities.Count];
        for (int i = 0; i < sparsities.Count; i++)
        {
            var list = new List<WeightThreshold>();
            for (int j = 0; j < weights.Count; j++)
            {
                var w = weights[j].Weight;
                var (t, below) = TealCalibration.QuantileOfSorted(scores.Sorted[j], allocated[i][j]);
                list.Add(new WeightThreshold(weights[j].Name, w.OutFeatures, w.InFeatures, t, below));
            }
            results[i] = new ActivationThresholds
            {
                Method = method, TargetSparsity = sparsities[i], NLayer = L, NEmbd = C, Weights = list, Allocation = Greedy,
                CalibrationData = dataName, CalibrationWindows = tokens.Length / model.SeqLen, CalibrationBlockSize = model.SeqLen,
                CalibrationSeed = seed, CalibrationRowsSampled = scores.RowsSampled,
            };
        }
        return results;
    }

    // τ_i as TealCalibration.InputThresholds, from precomputed column norms (null for TEAL).
    static void InputThresholds(float t, float[]? norms, float[] tau)
    {
        if (norms is null || t == 0)
        {
            Array.Fill(tau, t);
            return;
        }
        for (int i = 0; i < tau.Length; i++) tau[i] = norms[i] > 0 ? t / norms[i] : float.PositiveInfinity;
    }

    /// <summary>Σ P_j s_j / Σ P_j per block: the average sparsity by weights read that each block's thresholds aim at.</summary>
    public static double[] BlockAverages(Gpt model, ActivationThresholds thresholds)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(thresholds);
        var byName = thresholds.Weights.ToDictionary(w => w.Name);
        int L = model.Config.NLayer;
        var mass = new double[L];
        var total = new double[L];
        foreach (var (name, layer, _, w, _) in TealCalibration.BlockWeights(model))
        {
            var inner = w is ThresholdedLinearWeight t ? t.Inner : w;
            mass[layer] += byName[name].CalibrationSparsity * inner.StoredCount;
            total[layer] += inner.StoredCount;
        }
        return mass.Select((m, l) => total[l] > 0 ? m / total[l] : 0).ToArray();
    }
}
