using System.Diagnostics;
using System.Numerics.Tensors;
using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Optim;
using NanoSparse.Sparsity.Dst;
using NanoSparse.Sparsity;
using NanoSparse.Sparsity.Pruning;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Training;

/// <summary>One training iteration's numbers (step is the 0-based iteration, as nanoGPT's "iter k" lines).</summary>
public readonly record struct StepReport(int Step, int MaxIters, float Loss, double LearningRate, double GradNorm, double MsPerIter, double TokensPerSecond);

/// <summary>An evaluation after <see cref="Step"/> updates; <see cref="Saved"/> says whether a checkpoint was written.</summary>
public sealed record EvalReport(int Step, float TrainLoss, float ValLoss, double LearningRate, bool Saved, float BestValLoss);

public sealed record TrainSummary(int StartStep, int FinalStep, float LastLoss, float BestValLoss, EvalReport? LastEval,
    double Seconds, double MeanMsPerIter, double TokensPerSecond, long ParameterCount, string OutDir)
{
    /// <summary>
    /// Median ms/iter of this session's iterations (0 without any): unlike the mean, not moved by the first steps'
    /// just-in-time compilation or by a stall of a shared machine.
    /// </summary>
    public double MedianMsPerIter { get; init; }
    /// <summary>Gradual pruning: mean ms/iter of this session's iterations on dense (masked) weights and on the sparse layout.</summary>
    public double? DenseMsPerIter { get; init; }
    public double? SparseMsPerIter { get; init; }
    /// <summary>The same as process CPU time (all threads) per iteration: steadier than wall time on a shared machine.</summary>
    public double? DenseCpuMsPerIter { get; init; }
    public double? SparseCpuMsPerIter { get; init; }
    /// <summary>The step at which the pruned weights moved to the sparse layout (null: not in this session).</summary>
    public int? SwitchStep { get; init; }
    /// <summary>Pruning while training or an L1 penalty: the exact-zero fraction of each block Linear weight at the end.</summary>
    public IReadOnlyList<(string Name, double ZeroFraction)>? WeightZeros { get; init; }
    /// <summary>Dynamic sparse training: in-time over-parameterisation rate at the end, updates this session, their mean ms.</summary>
    public double? DstItopRate { get; init; }
    public int? DstUpdates { get; init; }
    public double? DstUpdateMs { get; init; }
}

/// <summary>A loss, gradient norm or evaluation became NaN or infinite. The last good checkpoint stays as it was.</summary>
/// <summary>IMP's rewind point: the step, every parameter's dense values by name, and the sampler and dropout RNG states.</summary>
public sealed record RewindPoint(int Step, IReadOnlyDictionary<string, float[]> Values, NanoSparse.Numerics.RngState SamplerState,
    NanoSparse.Numerics.RngState DropoutState);

public sealed class TrainingDivergedException(int step, string message) : Exception(message)
{
    public int Step { get; } = step;
}

/// <summary>
/// nanoGPT's train.py as a class. Per iteration:
///   lr = schedule(it); for each of gradient_accumulation_steps micro-batches: forward, backward (gradients add up);
///   g ← g / accumulation; clip to grad_clip by global norm; AdamW step.
/// Every eval_interval updates (and at max_iters) the train and val losses are estimated over eval_iters batches and
/// a checkpoint is written when val improves (or always, with always_save_checkpoint).
/// Deterministic for a seed and thread count; a resumed run continues bit-identically (RNG and sampler states,
/// AdamW moments and step are in the checkpoint).
/// </summary>
public sealed class Trainer : IDisposable
{
    const ulong DropoutSalt = 0x64726F706F75745FUL;

    readonly TokenFile _trainFile, _valFile;
    readonly BatchSampler _sampler;
    readonly LossTargets? _lossTargets;   // loss_targets: the positions that carry loss (null: all)
    readonly Prefetcher? _prefetcher;
    readonly CosineSchedule _schedule;
    readonly int[] _x, _y;
    readonly string _metaPath;
    readonly bool _resumed;

    public TrainConfig Config { get; }
    public DatasetMeta Meta { get; }
    public Gpt Model { get; private set; }
    public AdamW Optimizer { get; private set; }
    /// <summary>Pruning while training (prune_schedule gmp, or masks set by IMP); null when the run prunes nothing.</summary>
    public GradualPruning? Pruning { get; private set; }
    /// <summary>Dynamic sparse training (dst set|rigl|srigl); null for a static layout.</summary>
    public DynamicSparseTraining? Dst { get; }
    /// <summary>SR-STE N:M training (srste); null otherwise.</summary>
    public SrSte? SrSte { get; }
    /// <summary>The L1 penalty on the MLP hidden activations (act_l1 &gt; 0); null otherwise.</summary>
    public ActivationL1? ActivationL1 { get; }
    readonly ProximalPenalty _penalty;
    readonly int[] _penalized;   // positions in Model.Parameters of the weights the penalty applies to
    /// <summary>Updates done so far (nanoGPT's iter_num).</summary>
    public int Step { get; private set; }
    public float BestValLoss { get; private set; } = 1e9f;
    /// <summary>Every iteration's training loss of this session, in order (index = iteration − start).</summary>
    public List<float> Losses { get; } = [];
    public List<EvalReport> Evaluations { get; } = [];
    public long TokensPerIteration => (long)Config.BatchSize * Config.BlockSize * Config.GradientAccumulationSteps;

    public Action<StepReport>? StepCompleted { get; set; }
    public Action<EvalReport>? Evaluated { get; set; }

    public Trainer(TrainConfig config)
    {
        config.Validate();
        Config = config.Clone();
        if (Config.Threads > 0) KernelThreads.Max = Config.Threads;

        if (!Directory.Exists(Config.Dataset))
            throw new DirectoryNotFoundException($"dataset directory {Config.Dataset} does not exist (run `nanosparse prepare` first)");
        _metaPath = Path.Combine(Config.Dataset, "meta.json");
        Meta = DatasetMeta.Load(_metaPath);

        CheckpointState? resume = null;
        GptConfig modelConfig;
        // init_from a checkpoint directory: its model shape and weights, then a new run (step 0) into out_dir.
        string? initDir = Config.InitFrom is "scratch" or "resume" ? null : Config.InitFrom;
        string modelDir = initDir ?? Config.OutDir;
        if (Config.InitFrom == "resume" || initDir is not null)
        {
            resume = Checkpoint.ReadState(modelDir);
            if (Config.InitFrom == "resume" && resume.Config is { } was && was.DstSplitQkv != Config.DstSplitQkv)
                throw new ArgumentException($"config: dst_split_qkv ({Config.DstSplitQkv.ToString().ToLowerInvariant()}) differs from the run being resumed in {modelDir} ({was.DstSplitQkv.ToString().ToLowerInvariant()}); set it as that run did");
            modelConfig = resume.Model.ToConfig();   // as nanoGPT: the checkpoint's model args win
            // SR-STE's checkpoint holds the N:M model; the run trains its weights dense.
            if (Config.Srste) modelConfig = SrSte.DenseConfig(modelConfig, SparseModelConfig.ParseWeights(Config.SparseWeights.Split(',')));
            if (modelConfig.VocabSize != Meta.VocabSize)
                throw new InvalidDataException($"checkpoint {modelDir} has vocab_size {modelConfig.VocabSize} but dataset {_metaPath} has {Meta.VocabSize}");
        }
        else
        {
            modelConfig = new GptConfig
            {
                NLayer = Config.NLayer, NHead = Config.NHead, NEmbd = Config.NEmbd, BlockSize = Config.BlockSize,
                VocabSize = Meta.VocabSize, Bias = Config.Bias, Dropout = Config.Dropout,
            };
            modelConfig = Config.ApplyMoe(Config.ApplyAttention(modelConfig));
        }
        if (Config.BlockSize > modelConfig.BlockSize)
            throw new ArgumentException($"block_size ({Config.BlockSize}) exceeds the checkpoint model's block_size ({modelConfig.BlockSize})");
        // Sizes in long before anything is allocated: a huge batch_size, block_size, n_layer, n_embd or vocabulary is
        // refused by name here (the config's other fields were validated above, or with the checkpoint's state).
        var sizeKeys = new List<GptSize.Key> { new("batch_size", Config.BatchSize, (d, v) => d with { B = v }) };
        if (resume is null)
        {
            sizeKeys.Add(new("block_size", Config.BlockSize, (d, v) => d with { T = v, BlockSize = v }));
            sizeKeys.AddRange(GptSize.ModelKeys(modelConfig, includeBlockSize: false, vocabName: $"vocab_size of {_metaPath}"));
        }
        else sizeKeys.Add(new("block_size", Config.BlockSize, (d, v) => d with { T = v }));
        GptSize.Check(GptSize.DimsOf(modelConfig, Config.BatchSize, Config.BlockSize), GptUse.Training, sizeKeys, "config: ");
        // Static sparse training: the sparsity keys choose the blocks' weight layouts and densities (a resumed run keeps
        // the checkpoint's, which model_args record, and rebuilds the same positions from sparsity_seed).
        if (resume is null)
        {
            try { modelConfig = Config.ApplySparsity(modelConfig); }
            catch (ArgumentException e) { throw new ArgumentException("config: " + e.Message, e); }
        }
        // SμPar: µP's output multiplier (a resumed run has it in the checkpoint's model args).
        if (Config.Supar && resume is null) modelConfig = modelConfig with { LogitScale = (float)(1.0 / SuparWidthMultiplier(modelConfig)) };
        // activation set: it replaces the checkpoint's (ReLU-fication keeps the weights, swaps the activation)
        modelConfig = Config.ApplyActivation(modelConfig);
        modelConfig.Validate();

        // Full scan: a token id beyond vocab_size is reported now, naming the file, not mid-run.
        _trainFile = TokenFile.OpenSplit(Config.Dataset, "train", Meta, fullScan: true);
        try
        {
            _valFile = TokenFile.OpenSplit(Config.Dataset, "val", Meta, fullScan: true);
        }
        catch
        {
            _trainFile.Dispose();
            throw;
        }

        // A resumed model's sparse layouts are rebuilt from the checkpoint's stored structure, not drawn again.
        var dstMethod = DstMethods.Parse(Config.Dst);
        Model = new Gpt(modelConfig, Config.BatchSize, Config.BlockSize, resume is null
            ? DynamicSparseTraining.InitialLayouts(dstMethod, modelConfig, Config.DstSplitQkv)   // SRigL: constant fan-in; split: exact Q/K/V counts
            : Checkpoint.ReadLinearWeights(modelDir, modelConfig));
        var gpt = Model;
        if (Config.Srste)
        {
            var (n, m) = SparseModelConfig.ParseNm(Config.Nm);
            SrSte = new SrSte(Model, n, m, Config.SrsteLambda, SparseModelConfig.ParseWeights(Config.SparseWeights.Split(',')));
        }
        var supar = Config.Supar ? SuparOf(Model) : null;
        Optimizer = new AdamW(Model.ParameterData.Length,
            Model.Parameters.Select(p => AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay) with { LrScale = (float)(supar?.LearningRateFactor(p) ?? 1) }),
            Config.Beta1, Config.Beta2, 1e-8f, Config.WeightDecay);
        _schedule = new CosineSchedule(Config.LearningRate, Config.MinLr, Config.WarmupIters, Config.LrDecayIters, Config.DecayLr);
        _sampler = new BatchSampler(_trainFile, Config.BatchSize, Config.BlockSize, Config.Seed);
        _lossTargets = LossTargets.Parse(Config.LossTargets, modelConfig.VocabSize);

        if (initDir is not null)
        {
            if (SrSte is not null) throw new ArgumentException($"config: srste cannot start from init_from ('{initDir}'); it trains from scratch or resumes its own run");
            Checkpoint.LoadWeights(initDir, Model, resume);   // weights only: fresh moments, step 0, this run's sampler
            Model.DropoutRng.Reseed(Config.Seed ^ DropoutSalt);
            resume = null;
        }
        else if (resume is not null)
        {
            if (SrSte is not null) SrSteCheckpoint.Load(Config.OutDir, resume, SrSte, Model, Optimizer);
            else
            {
                Checkpoint.LoadWeights(Config.OutDir, Model, resume);
                Checkpoint.LoadOptimizer(Config.OutDir, Model, Optimizer, resume);
            }
            Step = resume.IterNum;
            BestValLoss = resume.BestValLoss;
            Model.DropoutRng.State = resume.DropoutRng.ToState("dropout_rng");
            _sampler.State = resume.TrainSampler.ToState("train_sampler");
            _resumed = true;
        }
        else
        {
            Model.InitializeWeights(Config.Seed);
            supar?.ScaleInitialization(Model);
            Model.DropoutRng.Reseed(Config.Seed ^ DropoutSalt);
            SrSte?.Project(Model);
        }
        if (Config.PruneSchedule == "gmp")
        {
            var schedule = new CubicSchedule(Config.PruneInitialSparsity, Config.PruneFinalSparsity, Config.PruneStart, Config.ResolvedPruneEnd, Config.PruneFrequency);
            Pruning = new GradualPruning(Model, schedule, Config.PruneScope == "global", Config.PruneSwitchSparsity);
            if (resume is not null) Pruning.LoadMasks(Config.OutDir, Model);
        }
        if (dstMethod != DstMethod.Static)
        {
            try { Dst = new DynamicSparseTraining(Model, dstMethod, new DstSchedule(Config.DstInterval, Config.DstDropFraction, Config.ResolvedDstStop), Config.DstAblation, Config.Seed, Config.DstSplitQkv); }
            catch (ArgumentException e) { throw new ArgumentException("config: " + e.Message, e); }
            if (resume is not null) Dst.LoadCheckpoint(Path.Combine(Config.OutDir, Checkpoint.OptimizerFile));
        }
        if (Config.ActL1 > 0) ActivationL1 = new ActivationL1(Model, Config.ActL1, Config.ActL1Warmup, Step);
        _penalty = new ProximalPenalty(Config.L1, Config.L2);
        _penalized = GradualPruning.PrunableIndices(Model);
        if (Config.Prefetch) _prefetcher = new Prefetcher(_sampler);
        _x = new int[Config.BatchSize * Config.BlockSize];
        _y = new int[Config.BatchSize * Config.BlockSize];
    }

    public double LearningRateAt(int iter) => _schedule.At(iter);

    double SuparWidthMultiplier(GptConfig model) => (double)model.NEmbd / (Config.SuparBaseWidth > 0 ? Config.SuparBaseWidth : model.NEmbd);

    /// <summary>SμPar's scaling for this run: a hidden weight's density is its stored fraction (N/M under SR-STE).</summary>
    Supar SuparOf(Gpt model) => new(model.Config.NEmbd, Config.SuparBaseWidth > 0 ? Config.SuparBaseWidth : model.Config.NEmbd, Config.SuparBaseDensity,
        p => SrSte is not null && SrSte.Covers(p.Name) ? (double)SrSte.N / SrSte.M : (double)p.Length / p.LogicalLength);

    /// <summary>Runs until max_iters (or once, with eval_only). Throws <see cref="TrainingDivergedException"/> on NaN/Inf.</summary>
    public TrainSummary Run(CancellationToken cancellation = default)
    {
        using var log = new TrainingLog(Config.OutDir, _resumed ? Step : null);
        using var dstLog = Dst?.OpenLog(Config.OutDir, _resumed ? Step : null);
        int start = Step;
        long runStart = Stopwatch.GetTimestamp();
        double trainSeconds = 0;
        int iterations = 0;
        float lastLoss = float.NaN;
        EvalReport? lastEval = null;
        Losses.EnsureCapacity(Math.Clamp(Config.MaxIters - start, 0, 1 << 20));   // grows further if max_iters is larger
        var iterationMs = new List<double>(Math.Clamp(Config.MaxIters - start, 0, 1 << 20));

        double sparseSeconds = 0, cpuSeconds = 0, sparseCpuSeconds = 0;
        int sparseIterations = 0;
        bool tracksZeros = Pruning is not null || _penalty.IsActive;
        bool tracksActivationZeros = ActivationL1 is not null || Model.Config.Activation is GptConfig.Relu or GptConfig.Relu2 or GptConfig.FatRelu;
        while (true)
        {
            double lr = _schedule.At(Step);
            // The resumed run skips the pruning and the evaluation at its first step: the run that wrote the
            // checkpoint did them (a checkpoint is written after its step's pruning).
            bool resumedStart = _resumed && Step == start;
            if (Pruning?.Schedule is { } pruneSchedule && !Config.EvalOnly && !resumedStart && pruneSchedule.IsPruningStep(Step))
                PruneTo(pruneSchedule.SparsityAt(Step));
            bool evalDue = Step % Config.EvalInterval == 0 || Step == Config.MaxIters;
            if (Config.EvalOnly || (evalDue && !resumedStart))
            {
                lastEval = EvaluateAndCheckpoint(lr, log, mayCheckpoint: !Config.EvalOnly && Step > start);
                if (Config.EvalOnly) break;
            }
            if (Step >= Config.MaxIters) break;
            cancellation.ThrowIfCancellationRequested();
            IterationStarting?.Invoke(this);

            bool sparse = Pruning?.Switched == true;
            TimeSpan cpu0 = Pruning is not null ? Environment.CpuUsage.TotalTime : default;
            long t0 = Stopwatch.GetTimestamp();
            float loss = TrainIteration((float)lr, out double gradNorm);
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            double cpuSecondsNow = Pruning is not null ? (Environment.CpuUsage.TotalTime - cpu0).TotalSeconds : 0;
            trainSeconds += seconds;
            cpuSeconds += cpuSecondsNow;
            iterations++;
            if (sparse) { sparseSeconds += seconds; sparseCpuSeconds += cpuSecondsNow; sparseIterations++; }
            lastLoss = loss;
            Losses.Add(loss);
            int it = Step;
            Step++;
            double ms = seconds * 1e3, tps = TokensPerIteration / Math.Max(seconds, 1e-9);
            iterationMs.Add(ms);
            if (it % Config.LogInterval == 0)
            {
                LastActivationSparsity = tracksActivationZeros ? ActivationStats.LastPassZeros(Model) : double.NaN;
                log.Iteration(it, loss, lr, ms, tps, tracksZeros ? ZeroFraction() : double.NaN, LastActivationSparsity);
            }
            StepCompleted?.Invoke(new StepReport(it, Config.MaxIters, loss, lr, gradNorm, ms, tps));
        }

        double total = Stopwatch.GetElapsedTime(runStart).TotalSeconds;
        int denseIterations = iterations - sparseIterations;
        return new TrainSummary(start, Step, lastLoss, BestValLoss, lastEval, total,
            iterations > 0 ? trainSeconds * 1e3 / iterations : 0,
            iterations > 0 ? (double)TokensPerIteration * iterations / trainSeconds : 0,
            Model.ParameterCount, Config.OutDir)
        {
            MedianMsPerIter = iterationMs.Count > 0 ? DstQuality.Median(iterationMs) : 0,
            DenseMsPerIter = Pruning is not null && denseIterations > 0 ? (trainSeconds - sparseSeconds) * 1e3 / denseIterations : null,
            SparseMsPerIter = Pruning is not null && sparseIterations > 0 ? sparseSeconds * 1e3 / sparseIterations : null,
            DenseCpuMsPerIter = Pruning is not null && denseIterations > 0 ? (cpuSeconds - sparseCpuSeconds) * 1e3 / denseIterations : null,
            SparseCpuMsPerIter = Pruning is not null && sparseIterations > 0 ? sparseCpuSeconds * 1e3 / sparseIterations : null,
            SwitchStep = Pruning?.SwitchStep,
            WeightZeros = tracksZeros ? WeightZeroFractions() : null,
            DstItopRate = Dst?.ItopRate,
            DstUpdates = Dst?.Updates.Count,
            DstUpdateMs = Dst is { Updates.Count: > 0 } d ? d.Updates.Average(u => u.Milliseconds) : null,
        };
    }

    /// <summary>
    /// Mean over layers of the exact-zero fraction of the MLP hidden activations in the last logged iteration's batch
    /// (log.csv's act_sparsity); NaN when the activation makes no zeros and there is no act_l1.
    /// </summary>
    public double LastActivationSparsity { get; private set; } = double.NaN;

    /// <summary>Called before each training iteration (after that step's pruning and evaluation); IMP takes its rewind point here.</summary>
    public Action<Trainer>? IterationStarting { get; set; }

    /// <summary>Prunes the blocks' Linear weights by magnitude to <paramref name="sparsity"/> (see <see cref="GradualPruning"/>).</summary>
    public void PruneTo(double sparsity)
    {
        if (Pruning is null) throw new InvalidOperationException("this run does not prune (prune_schedule is none)");
        (Model, Optimizer) = Pruning.PruneTo(Model, Optimizer, sparsity, Step);
    }

    /// <summary>
    /// Holds the given masks (1 kept, 0 pruned; one per block Linear weight, in model order) for the rest of the run:
    /// IMP's rounds. Moves the weights to CSR when the masks' sparsity reaches prune_switch_sparsity.
    /// </summary>
    public void SetPruningMasks(IReadOnlyList<float[]> masks)
    {
        Pruning ??= new GradualPruning(Model, null, Config.PruneScope == "global", Config.PruneSwitchSparsity);
        (Model, Optimizer) = Pruning.SetMasks(Model, Optimizer, masks, Step);
    }

    /// <summary>
    /// Puts the run at the point's step with its parameter values (dense views, by name), sampler and
    /// dropout states, and fresh AdamW moments: IMP's rewinding. Call before <see cref="SetPruningMasks"/>.
    /// </summary>
    public void RewindTo(RewindPoint point)
    {
        foreach (var p in Model.Parameters)
        {
            if (!point.Values.TryGetValue(p.Name, out var values) || values.Length != p.LogicalLength)
                throw new ArgumentException($"rewind point has no values of {p.LogicalLength} for '{p.Name}'");
            if (p.Layout is ISparseLinearStructure s) s.Gather(values, p.Value.Span);
            else values.CopyTo(p.Value.Span);
        }
        Optimizer.M.Clear();
        Optimizer.V.Clear();
        Optimizer.StepCount = 0;
        Step = point.Step;
        if (_prefetcher is not null) _prefetcher.State = point.SamplerState;
        else _sampler.State = point.SamplerState;
        Model.DropoutRng.State = point.DropoutState;
    }

    /// <summary>The run's state at this step for IMP's rewinding: every parameter's dense values, sampler and dropout states.</summary>
    public RewindPoint CaptureRewindPoint() => new(Step,
        Model.Parameters.ToDictionary(p => p.Name, GradualPruning.DenseValues),
        _prefetcher is not null ? _prefetcher.State : _sampler.State, Model.DropoutRng.State);

    /// <summary>Exact zeros over the blocks' Linear weights (positions a sparse layout does not store count as zeros).</summary>
    public double ZeroFraction()
    {
        long zeros = 0, cells = 0;
        var parameters = Model.Parameters;
        for (int k = 0; k < _penalized.Length; k++)
        {
            var p = parameters[_penalized[k]];
            cells += p.LogicalLength;
            zeros += p.LogicalLength - p.Length + CountZeros(p.Value.Span);
        }
        return cells == 0 ? 0 : (double)zeros / cells;
    }

    /// <summary>The exact-zero fraction of each block Linear weight.</summary>
    public IReadOnlyList<(string Name, double ZeroFraction)> WeightZeroFractions() =>
        _penalized.Select(i => Model.Parameters[i]).Select(p => (p.Name, (double)(p.LogicalLength - p.Length + CountZeros(p.Value.Span)) / p.LogicalLength)).ToArray();

    static long CountZeros(ReadOnlySpan<float> values)
    {
        long zeros = 0;
        foreach (float v in values) if (v == 0) zeros++;
        return zeros;
    }

    /// <summary>
    /// One update: accumulated micro-batch gradients, divided by the number of micro-batches, clipped, AdamW step.
    /// Returns the mean micro-batch loss. Allocates nothing. Throws before touching the weights if the loss or
    /// the gradient norm is not finite.
    /// </summary>
    public float TrainIteration(float learningRate, out double gradNorm)
    {
        Model.ZeroGrad();
        Dst?.BeforeIteration(Step);
        ActivationL1?.Apply(Step);
        int accumulation = Config.GradientAccumulationSteps;
        double sum = 0;
        for (int micro = 0; micro < accumulation; micro++)
        {
            if (_prefetcher is not null) _prefetcher.Next(_x, _y);
            else _sampler.Next(_x, _y);
            _lossTargets?.Apply(_y);
            // + the mixture-of-experts balance and z losses (their gradients reach the routers in Backward)
            float loss = Model.Forward(_x, _y, training: true) + (float)Nn.Parts.FeedForwards.MoeLosses.Weighted(Model);
            if (!float.IsFinite(loss))
                throw new TrainingDivergedException(Step, $"training loss became {loss} at step {Step}; stopped before updating the weights (last good checkpoint in {Config.OutDir} is untouched)");
            sum += loss;
            Model.Backward();
        }
        var grads = Model.GradientData;
        if (accumulation > 1) TensorPrimitives.Multiply(grads, 1f / accumulation, grads);
        Pruning?.MaskGradients(Model);
        SrSte?.BeforeOptimizerStep(Model);
        gradNorm = GradientClipping.ClipByGlobalNorm(grads, Config.GradClip);
        if (!double.IsFinite(gradNorm))
            throw new TrainingDivergedException(Step, $"gradient norm became {gradNorm} at step {Step}; stopped before updating the weights (last good checkpoint in {Config.OutDir} is untouched)");
        Optimizer.Step(Model.ParameterData, grads, learningRate);
        SrSte?.Project(Model);
        if (_penalty.IsActive)
        {
            var parameters = Model.Parameters;
            for (int k = 0; k < _penalized.Length; k++) _penalty.Apply(parameters[_penalized[k]].Value.Span, learningRate);
        }
        Dst?.AfterIteration(Model, Optimizer, Step);   // on update steps: drop and regrow, values and moments moved
        return (float)(sum / accumulation);
    }

    /// <summary>Train and val loss over eval_iters fixed batches each, in eval mode.</summary>
    public (float Train, float Val) Evaluate()
    {
        float train = Evaluator.MeanLoss(Model, _trainFile, Config.EvalIters, Evaluator.SplitSeed(Config.Seed, "train"), _x, _y, _lossTargets);
        float val = Evaluator.MeanLoss(Model, _valFile, Config.EvalIters, Evaluator.SplitSeed(Config.Seed, "val"), _x, _y, _lossTargets);
        return (train, val);
    }

    EvalReport EvaluateAndCheckpoint(double lr, TrainingLog log, bool mayCheckpoint)
    {
        var (train, val) = Evaluate();
        if (!float.IsFinite(train) || !float.IsFinite(val))
            throw new TrainingDivergedException(Step, $"evaluation at step {Step} gave train loss {train}, val loss {val}; stopped without writing a checkpoint");
        bool improved = val < BestValLoss;
        if (improved) BestValLoss = val;
        bool saved = false;
        if (mayCheckpoint && Step > 0 && (improved || Config.AlwaysSaveCheckpoint))
        {
            SaveCheckpoint(Config.OutDir);
            saved = true;
        }
        log.Evaluation(Step, train, val, lr);
        var report = new EvalReport(Step, train, val, lr, saved, BestValLoss);
        Evaluations.Add(report);
        Evaluated?.Invoke(report);
        return report;
    }

    /// <summary>Writes the full training state to <paramref name="dir"/> (see <see cref="Checkpoint"/>).</summary>
    public void SaveCheckpoint(string dir)
    {
        // SR-STE: the checkpoint holds the N:M model it runs, plus W and its moments for resuming.
        var (model, optimizer, extras) = SrSte is null ? (Model, Optimizer, Pruning?.CheckpointTensors()) : SrSte.ToNmModel(Model, Optimizer);
        var state = new CheckpointState
        {
            Model = ModelArgs.From(model.Config),
            Config = Config.Clone(),
            IterNum = Step,
            BestValLoss = BestValLoss,
            Dataset = Config.Dataset,
            Tokenizer = Meta.Tokenizer,
            DropoutRng = RngStateJson.From(Model.DropoutRng.State),
            TrainSampler = RngStateJson.From(_prefetcher is not null ? _prefetcher.State : _sampler.State),
        };
        Checkpoint.Save(dir, model, optimizer, state, _metaPath, [.. extras ?? [], .. Dst?.CheckpointTensors() ?? []]);
    }

    public void Dispose()
    {
        _prefetcher?.Dispose();
        _trainFile.Dispose();
        _valFile.Dispose();
    }
}
