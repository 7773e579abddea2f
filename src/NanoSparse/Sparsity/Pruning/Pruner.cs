using System.Diagnostics;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>Calibration tokens: <see cref="Windows"/> windows of <see cref="WindowLength"/> tokens, row-major.</summary>
public sealed record CalibrationData(int[] Tokens, int Windows, int WindowLength)
{
    public long TokenCount => (long)Windows * WindowLength;
}

/// <summary>Where a pruning run is: a stage ("outliers", "calibrate", "prune"), its block, and its progress.</summary>
public readonly record struct PruneProgress(string Stage, int Block, int Blocks, long Done, long Total, string Unit,
    double PerSecond, TimeSpan? Remaining, double OverallFraction);

/// <summary>One pruned weight: the sparsity asked of it, the weights its mask removed and the zeros it now holds.</summary>
public sealed record PrunedWeight(int Layer, string Weight, int OutFeatures, int InFeatures, double TargetSparsity, long Removed, long Zeros)
{
    public string Name => $"h.{Layer}.{Weight}";
    public double Sparsity => (double)Zeros / ((long)OutFeatures * InFeatures);
}

/// <summary>What <see cref="Pruner.Prune(Gpt, PruneOptions, CalibrationData?, IProgress{PruneProgress}?, CancellationToken)"/> did.</summary>
public sealed record PruneReport(IReadOnlyList<PrunedWeight> Weights, IReadOnlyList<double>? BlockSparsities,
    IReadOnlyList<double>? OutlierRatios, TimeSpan Elapsed)
{
    /// <summary>Zeros over all pruned weights / their size.</summary>
    public double OverallSparsity => Weights.Count == 0 ? 0
        : (double)Weights.Sum(w => w.Zeros) / Weights.Sum(w => (long)w.OutFeatures * w.InFeatures);
}

/// <summary>
/// Prunes a model's block Linear weights in place, the way SparseGPT's and Wanda's reference code does:
///   - methods without calibration (magnitude, random) score each weight on its own, or, with --scope global, all
///     targeted weights against one threshold;
///   - methods that calibrate run the calibration windows block by block, in order: block l's inputs come from the
///     model whose blocks before l are already pruned; one pass collects the statistics of the four Linear inputs of
///     block l (c_attn and c_fc see the LayerNorm outputs, attn.c_proj the attention output, mlp.c_proj the GELU
///     output, read from the activations the model keeps for backward), then the four are pruned, then block l + 1;
///   - OWL first measures every block's outlier ratio on the dense model and sets per-block sparsities.
/// Removed weights become exactly 0 in the model's dense weights; store the result sparse with Training.Sparsify.
/// </summary>
public static class Pruner
{
    /// <summary>Rows of one calibration forward pass (windows × block_size): bounds the activations' memory.</summary>
    public const int CalibrationRows = 2048;

    public static PruneReport Prune(Gpt model, PruneOptions options, CalibrationData? calibration = null,
        IProgress<PruneProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Prune(model, options, PruningMethods.Pruner(options.Method), calibration, progress, cancel);
    }

    /// <summary>As above with the method given as an instance (one not registered, e.g. in a test).</summary>
    public static PruneReport Prune(Gpt model, PruneOptions options, ILayerPruner pruner, CalibrationData? calibration,
        IProgress<PruneProgress>? progress, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(pruner);
        options.Validate(pruner);
        var clock = Stopwatch.StartNew();
        var config = model.Config;
        int L = config.NLayer;
        var targets = PruneTargets.Resolve(config, options.Targets, options.Ignore);
        var target = options.Target();
        var parameters = model.Parameters.ToDictionary(p => p.Name);
        foreach (var w in targets)
        {
            var p = parameters[w.ParameterName];
            if (p.Layout is not DenseLinearWeight)
                throw new ArgumentException($"{w}: the weight is stored as {p.Layout?.Layout}; pruning works on dense weights (load the model with dense layouts, or leave the weight out with --ignore {w})");
            if (target.IsNm && p.Shape[1] % target.M != 0)
                throw new ArgumentException($"--pattern {target.N}:{target.M}: M = {target.M} does not divide the {p.Shape[1]} inputs of {w} ({p.Shape[0]}, {p.Shape[1]})");
        }
        var refiner = options.Refiner is null ? null : PruningMethods.Refiner(options.Refiner);
        bool owl = options.Profile == PruneOptions.OwlProfileName;
        bool needsStats = pruner.NeedsCalibration || refiner is not null || owl;
        bool needsGram = pruner.NeedsGram || (refiner?.NeedsGram ?? false);
        if (needsStats)
        {
            string who = pruner.NeedsCalibration ? $"--method {pruner.Name}" : owl ? "--profile owl" : $"refiner {refiner!.Name}";
            if (calibration is null || calibration.Windows == 0)
                throw new ArgumentException($"{who} needs calibration data (--calibration DATASET)");
            if (calibration.WindowLength <= 0 || calibration.WindowLength > config.BlockSize)
                throw new ArgumentException($"calibration windows of {calibration.WindowLength} tokens: expected 1 to block_size ({config.BlockSize})");
            if (calibration.Tokens.Length != calibration.TokenCount)
                throw new ArgumentException($"calibration data holds {calibration.Tokens.Length} tokens, expected {calibration.Windows} windows × {calibration.WindowLength}");
        }

        if (options.Scope == PruneOptions.GlobalScope)
            return PruneGlobal(model, options, (IScoredPruner)pruner, targets, progress, clock);

        // Calibration runs on a model of its own shape (windows per pass × block length) that shares the weights' layouts.
        Gpt work = model;
        Calibrator? calibrator = null;
        if (needsStats)
        {
            calibrator = new Calibrator(model, calibration!, needsGram, progress, cancel);
            work = calibrator.Model;
        }
        var workParameters = work.Parameters.ToDictionary(p => p.Name);

        double[]? blockSparsity = null, ratios = null;
        var blocksWithTargets = targets.Select(t => t.Layer).Distinct().ToArray();
        if (owl)
        {
            var norms = calibrator!.Collect(targets, blocks: L, withGram: false, stage: "outliers", 0, 0);
            ratios = new double[L];
            foreach (int l in blocksWithTargets)
            {
                var scores = targets.Where(t => t.Layer == l).Select(t =>
                {
                    var p = workParameters[t.ParameterName];
                    var s = new double[p.Length];
                    WandaPruner.Score(p.Value.Span, p.Shape[0], p.Shape[1], norms[t].SumSquares, s);
                    return s;
                }).ToList();
                ratios[l] = OwlProfile.OutlierRatio(scores, options.OwlThreshold);
            }
            var perBlock = OwlProfile.Sparsities(blocksWithTargets.Select(l => ratios[l]).ToArray(), target.Sparsity, options.OwlLambda);
            blockSparsity = Enumerable.Repeat(double.NaN, L).ToArray();
            for (int i = 0; i < blocksWithTargets.Length; i++) blockSparsity[blocksWithTargets[i]] = perBlock[i];
        }

        var results = new List<PrunedWeight>();
        int done = 0;
        foreach (int l in blocksWithTargets)
        {
            cancel.ThrowIfCancellationRequested();
            var inBlock = targets.Where(t => t.Layer == l).ToList();
            var stats = calibrator?.Collect(inBlock, blocks: l + 1, withGram: needsGram, stage: "calibrate", done, blocksWithTargets.Length);
            var blockTarget = blockSparsity is null ? target : new SparsityTarget(blockSparsity[l]);
            foreach (var t in inBlock)
            {
                var p = workParameters[t.ParameterName];
                results.Add(PruneWeight(p, t, blockTarget, stats?[t], pruner, refiner, options.Seed));
            }
            done++;
            progress?.Report(new PruneProgress("prune", l, L, done, blocksWithTargets.Length, "blocks", 0, null, (double)done / blocksWithTargets.Length));
        }
        if (!ReferenceEquals(work, model)) work.ParameterData.CopyTo(model.ParameterData);
        return new PruneReport(results, blockSparsity, ratios, clock.Elapsed);
    }

    static PrunedWeight PruneWeight(Parameter p, WeightRef t, SparsityTarget target, LayerInputStats? stats, ILayerPruner pruner,
        IMaskRefiner? refiner, ulong seed)
    {
        int rows = p.Shape[0], cols = p.Shape[1];
        var values = p.Value.Span;
        var request = new LayerPruneRequest(t.ToString(), values.ToArray(), rows, cols, target, stats, new Rng(WeightSeed(seed, t)));
        pruner.Prune(request);
        refiner?.Refine(request, values);
        MaskSelection.ApplyMask(request.Weight, request.Mask);
        long removed = 0, zeros = 0;
        foreach (byte m in request.Mask) if (m == 0) removed++;
        foreach (float v in request.Weight) if (v == 0) zeros++;
        request.Weight.CopyTo(values);
        return new PrunedWeight(t.Layer, t.Weight, rows, cols, target.Sparsity, removed, zeros);
    }

    /// <summary>One threshold across every targeted weight: the target's count of lowest scores over all of them is removed.</summary>
    static PruneReport PruneGlobal(Gpt model, PruneOptions options, IScoredPruner pruner, IReadOnlyList<WeightRef> targets,
        IProgress<PruneProgress>? progress, Stopwatch clock)
    {
        var parameters = model.Parameters.ToDictionary(p => p.Name);
        var target = options.Target();
        var requests = new List<(WeightRef Ref, Parameter P, LayerPruneRequest R, long Offset)>();
        long total = 0;
        foreach (var t in targets)
        {
            var p = parameters[t.ParameterName];
            var r = new LayerPruneRequest(t.ToString(), p.Value.Span.ToArray(), p.Shape[0], p.Shape[1], target, null, new Rng(WeightSeed(options.Seed, t)));
            requests.Add((t, p, r, total));
            total += p.Length;
        }
        if (total > Array.MaxLength) throw new ArgumentException($"--scope global: the targeted weights hold {total} values, more than one array holds");
        var scores = new double[total];
        foreach (var (_, _, r, offset) in requests) pruner.Score(r, scores.AsSpan((int)offset, r.Weight.Length));
        var mask = new byte[total];
        MaskSelection.PruneLowest(scores, target.PrunedCount(total), mask);
        var results = new List<PrunedWeight>();
        foreach (var (t, p, r, offset) in requests)
        {
            mask.AsSpan((int)offset, r.Weight.Length).CopyTo(r.Mask);
            MaskSelection.ApplyMask(r.Weight, r.Mask);
            r.Weight.CopyTo(p.Value.Span);
            long removed = r.Mask.LongCount(m => m == 0), zeros = r.Weight.LongCount(v => v == 0);
            results.Add(new PrunedWeight(t.Layer, t.Weight, r.OutFeatures, r.InFeatures, target.Sparsity, removed, zeros));
        }
        progress?.Report(new PruneProgress("prune", model.Config.NLayer - 1, model.Config.NLayer, 1, 1, "blocks", 0, null, 1));
        return new PruneReport(results, null, null, clock.Elapsed);
    }

    /// <summary>The seed of a weight's Rng: SplitMix64 of the run's seed XOR the FNV-1a hash of "h.{layer}.{weight}".</summary>
    public static ulong WeightSeed(ulong seed, WeightRef weight)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char ch in weight.ToString()) hash = (hash ^ ch) * 1099511628211UL;
        ulong z = seed ^ hash;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// Runs the calibration windows through a copy of the model (same config and weight layouts, built for a batch
    /// of windows) and accumulates the input statistics of chosen Linear weights from its kept activations.
    /// </summary>
    sealed class Calibrator
    {
        readonly CalibrationData _data;
        readonly IProgress<PruneProgress>? _progress;
        readonly CancellationToken _cancel;
        readonly int _batch;

        public Calibrator(Gpt source, CalibrationData data, bool withGram, IProgress<PruneProgress>? progress, CancellationToken cancel)
        {
            _data = data;
            _progress = progress;
            _cancel = cancel;
            // The largest divisor of the window count whose batch stays within CalibrationRows rows.
            int cap = Math.Max(1, CalibrationRows / data.WindowLength);
            _batch = 1;
            for (int b = Math.Min(cap, data.Windows); b >= 1; b--)
                if (data.Windows % b == 0) { _batch = b; break; }
            var layouts = source.Parameters.Where(p => p.Layout is not null).ToDictionary(p => p.Name, p => p.Layout!);
            Model = new Gpt(source.Config with { Dropout = 0f }, _batch, data.WindowLength, layouts);
            source.ParameterData.CopyTo(Model.ParameterData);
        }

        public Gpt Model { get; }

        /// <summary>Statistics of <paramref name="weights"/>' inputs over every window, running the first <paramref name="blocks"/> blocks.</summary>
        public Dictionary<WeightRef, LayerInputStats> Collect(IReadOnlyList<WeightRef> weights, int blocks, bool withGram, string stage,
            int blocksDone, int blocksTotal)
        {
            var parameters = Model.Parameters.ToDictionary(p => p.Name);
            var stats = weights.ToDictionary(w => w, w => new LayerInputStats(parameters[w.ParameterName].Shape[1], withGram));
            int T = _data.WindowLength, rows = _batch * T;
            var clock = Stopwatch.StartNew();
            for (int w0 = 0; w0 < _data.Windows; w0 += _batch)
            {
                _cancel.ThrowIfCancellationRequested();
                Model.ForwardBlocks(_data.Tokens.AsSpan(w0 * T, rows), blocks);
                foreach (var w in weights) stats[w].Accumulate(Model.LinearInput(w.Layer, w.Weight), rows);
                long done = w0 + _batch;
                double rate = done / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                double overall = blocksTotal == 0 ? (double)done / _data.Windows : (blocksDone + (double)done / _data.Windows) / blocksTotal;
                _progress?.Report(new PruneProgress(stage, blocks - 1, Model.Config.NLayer, done, _data.Windows, "windows", rate,
                    TimeSpan.FromSeconds((_data.Windows - done) / rate), overall));
            }
            return stats;
        }
    }
}
