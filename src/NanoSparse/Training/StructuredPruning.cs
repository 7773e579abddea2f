using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Optim;
using NanoSparse.Sparsity.Pruning.Structured;

namespace NanoSparse.Training;

/// <summary>What `nanosparse prune-structured` does: the fractions, the score, its calibration and the evaluation.</summary>
public sealed record StructuredPruneSettings
{
    public required string Checkpoint { get; init; }
    public required string OutDir { get; init; }
    /// <summary>Fraction of attention heads to remove, in [0, 1).</summary>
    public double Heads { get; init; }
    /// <summary>Fraction of MLP neurons to remove, in [0, 1).</summary>
    public double Neurons { get; init; }
    public StructuredScore Score { get; init; } = StructuredScore.Norm;
    public StructuredScope Scope { get; init; } = StructuredScope.Layer;
    /// <summary>Dataset whose train split gives the calibration windows (activation score); default: the checkpoint's dataset.</summary>
    public string? Calibration { get; init; }
    public int CalibrationWindows { get; init; } = 128;
    public ulong CalibrationSeed { get; init; }
    /// <summary>Dataset whose val split measures the loss before and after; default: the checkpoint's, else the calibration dataset.</summary>
    public string? EvalData { get; init; }
    /// <summary>Val batches (default: the run's eval_iters, 20 for an imported model); 0 skips the evaluation.</summary>
    public int? EvalIters { get; init; }
}

/// <summary>One layer after pruning: heads and MLP neurons kept of those it had.</summary>
public sealed record StructuredLayerRow(int Layer, int HeadsKept, int HeadsBefore, int NeuronsKept, int NeuronsBefore);

/// <summary>The outcome: per layer what was kept; val loss before and after (NaN when not evaluated); sizes.</summary>
public sealed record StructuredPruneResult(
    IReadOnlyList<StructuredLayerRow> Layers, StructuredPlan Plan, UnitScores Scores, GptConfig PrunedConfig,
    float ValLossBefore, float ValLossAfter, string? EvalDataset, int EvalIters, int EvalBatch, int EvalSeqLen,
    long ParametersBefore, long ParametersAfter, long BytesOnDiskBefore, long BytesOnDiskAfter, long CalibrationTokens);

/// <summary>
/// Structured pruning of a checkpoint into a smaller dense one (<see cref="StructuredPruner"/>): load, score every head
/// and neuron (weight norms, or activations over calibration windows), remove the lowest fraction per layer or
/// globally, copy the kept rows and columns, evaluate before and after, and save with the checkpoint's journaled
/// save. A training checkpoint keeps its state (step, RNGs, dataset) and its AdamW moments at the kept positions, so
/// `train --init_from resume` (with a larger max_iters) fine-tunes the pruned model; an imported one stays a
/// model.safetensors + config.json. The input checkpoint is only read.
/// </summary>
public static class StructuredPruning
{
    /// <summary>Stages reported to <c>progress</c>: (stage, done, total).</summary>
    public const string CalibrationStage = "calibration", EvalBeforeStage = "eval before", EvalAfterStage = "eval after";

    public static StructuredPruneResult Run(StructuredPruneSettings s, Action<string, int, int>? progress = null) =>
        Run(s, progress, out _, out _);

    /// <summary>As <see cref="Run(StructuredPruneSettings, Action{string, int, int}?)"/>, also handing back the original and pruned models (built for the evaluation batch).</summary>
    public static StructuredPruneResult Run(StructuredPruneSettings s, Action<string, int, int>? progress, out Gpt pruned, out Gpt original)
    {
        ArgumentNullException.ThrowIfNull(s);
        StructuredPruner.CheckFraction(s.Heads, "--heads");
        StructuredPruner.CheckFraction(s.Neurons, "--neurons");
        if (s.CalibrationWindows <= 0)
            throw new ArgumentException($"--calibration-windows ({s.CalibrationWindows}) must be positive");
        if (s.EvalIters is < 0) throw new ArgumentException($"--eval-iters ({s.EvalIters}) must be >= 0 (0 skips the evaluation)");
        string dir = s.Checkpoint;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        if (Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar) == Path.GetFullPath(s.OutDir).TrimEnd(Path.DirectorySeparatorChar))
            throw new ArgumentException($"--out {s.OutDir} is the checkpoint itself; write the pruned model to another folder");

        CheckpointState? state = Checkpoint.Exists(dir) ? Checkpoint.ReadState(dir) : null;
        var config = state?.Model.ToConfig() ?? Checkpoint.ReadAnyConfig(dir);
        string? evalData = s.EvalData ?? (state is not null && Directory.Exists(state.Dataset) ? state.Dataset : null) ?? s.Calibration;
        string? calibration = s.Calibration ?? evalData;
        if (s.Score == StructuredScore.Activation && calibration is null)
            throw new ArgumentException($"--score activation needs calibration data: give --calibration DATASET (checkpoint {dir} names no dataset that exists here)");
        int evalIters = s.EvalIters ?? state?.Config.EvalIters ?? 20;
        int batch = Math.Max(1, state?.Config.BatchSize ?? 8);
        int seqLen = Math.Min(state?.Config.BlockSize ?? config.BlockSize, config.BlockSize);
        var modelMeta = ModelMeta(dir, state);

        // The model at the batch the calibration and the evaluation run with.
        var source = Checkpoint.LoadAnyModel(dir, batch, seqLen, out _);
        long calibrationTokens = 0;
        UnitScores scores;
        if (s.Score == StructuredScore.Norm) scores = StructuredScores.Norm(source);
        else
        {
            var meta = CheckData(calibration!, config, modelMeta, "--calibration");
            using var train = TokenFile.OpenSplit(calibration!, "train", meta, fullScan: true);
            if (train.Length <= seqLen)
                throw new ArgumentException($"--calibration {calibration}: its train split holds {train.Length} tokens, too few for calibration windows of {seqLen} tokens (the model's block size)");
            // Whole batches of the largest size up to the eval batch that divides the window count, so exactly N windows are seen.
            int b = Enumerable.Range(1, Math.Min(batch, s.CalibrationWindows)).Last(d => s.CalibrationWindows % d == 0);
            var calibrationModel = b == batch ? source : Checkpoint.LoadAnyModel(dir, b, seqLen, out _);
            var sampler = new BatchSampler(train, b, seqLen, s.CalibrationSeed);
            var x = new int[b * seqLen];
            var y = new int[x.Length];
            var accumulator = new ActivationScores(calibrationModel);
            int batches = s.CalibrationWindows / b;
            for (int i = 0; i < batches; i++)
            {
                sampler.Next(x, y);
                calibrationModel.Forward(x, [], training: false);
                accumulator.Accumulate();
                progress?.Invoke(CalibrationStage, i + 1, batches);
            }
            scores = accumulator.Scores();
            calibrationTokens = accumulator.Tokens;
        }

        var plan = StructuredPruner.Select(scores, s.Heads, s.Neurons, s.Scope);
        var target = StructuredPruner.Build(source, plan, batch, seqLen);

        float before = float.NaN, after = float.NaN;
        if (evalData is not null && evalIters > 0)
        {
            var meta = CheckData(evalData, config, modelMeta, "--data");
            using var val = TokenFile.OpenSplit(evalData, "val", meta, fullScan: true);
            if (val.Length <= seqLen)
                throw new ArgumentException($"--data {evalData}: its val split holds {val.Length} tokens, too few for windows of {seqLen} tokens");
            ulong seed = Evaluator.SplitSeed(state?.Config.Seed ?? 1337UL, "val");
            before = MeanLoss(source, val, evalIters, seed, EvalBeforeStage, progress);
            after = MeanLoss(target, val, evalIters, seed, EvalAfterStage, progress);
        }
        else evalData = null;

        Save(dir, s.OutDir, source, target, plan, state, after);

        var layers = Enumerable.Range(0, config.NLayer).Select(l => new StructuredLayerRow(l, plan.KeptHeads[l].Length, config.Heads(l),
            plan.KeptNeurons[l].Length, config.MlpHidden(l))).ToList();
        var result = new StructuredPruneResult(layers, plan, scores, target.Config, before, after, evalData, evalIters, batch, seqLen,
            source.ParameterCount, target.ParameterCount, FileBytes(dir), FileBytes(s.OutDir), calibrationTokens);
        pruned = target;
        original = source;
        return result;
    }

    static float MeanLoss(Gpt gpt, TokenFile file, int batches, ulong seed, string stage, Action<string, int, int>? progress)
    {
        var sampler = new BatchSampler(file, gpt.BatchSize, gpt.SeqLen, seed);
        var x = new int[gpt.BatchSize * gpt.SeqLen];
        var y = new int[x.Length];
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            sampler.Next(x, y);
            sum += gpt.Forward(x, y, training: false);
            progress?.Invoke(stage, i + 1, batches);
        }
        return (float)(sum / batches);
    }

    /// <summary>The checkpoint's own meta.json (or its dataset's), the vocabulary its token ids mean.</summary>
    static DatasetMeta? ModelMeta(string dir, CheckpointState? state)
    {
        string own = Path.Combine(dir, Checkpoint.MetaFile);
        if (File.Exists(own)) return DatasetMeta.Load(own);
        if (state is not null && File.Exists(Path.Combine(state.Dataset, DatasetMeta.FileName)))
            return DatasetMeta.Load(Path.Combine(state.Dataset, DatasetMeta.FileName));
        return null;
    }

    /// <summary>A dataset's meta.json, refused unless its token ids mean what the model's do.</summary>
    static DatasetMeta CheckData(string dataset, GptConfig config, DatasetMeta? modelMeta, string option)
    {
        if (!Directory.Exists(dataset)) throw new DirectoryNotFoundException($"{option} dataset directory {dataset} does not exist");
        var meta = DatasetMeta.Load(Path.Combine(dataset, DatasetMeta.FileName));
        if (meta.VocabSize != config.VocabSize && (modelMeta is not null || meta.VocabSize > config.VocabSize))
            throw new InvalidDataException($"{option} dataset {dataset} has vocab_size {meta.VocabSize} ({meta.Tokenizer}) but the model has vocab_size {config.VocabSize}; calibrate with data tokenized like the model's");
        if (modelMeta is not null && modelMeta.Tokenizer != meta.Tokenizer)
            throw new InvalidDataException($"{option} dataset {dataset} is tokenized with {meta.Tokenizer} but the model expects {modelMeta.Tokenizer}");
        if (modelMeta is { Tokenizer: Tokenizers.Char } && !modelMeta.Symbols.SequenceEqual(meta.Symbols))
            throw new InvalidDataException($"{option} dataset {dataset} has a different char vocabulary ({meta.VocabSize} symbols) from the model's ({modelMeta.VocabSize} symbols)");
        return meta;
    }

    static void Save(string dir, string outDir, Gpt source, Gpt target, StructuredPlan plan, CheckpointState? state, float valLoss)
    {
        string meta = Path.Combine(dir, Checkpoint.MetaFile);
        if (state is null)
        {
            Checkpoint.SaveModel(outDir, target, meta);
            return;
        }
        AdamW? optimizer = null;
        if (File.Exists(Path.Combine(dir, Checkpoint.OptimizerFile)))
        {
            var from = NewOptimizer(source, state.Config);
            Checkpoint.LoadOptimizer(dir, source, from, state);
            optimizer = NewOptimizer(target, state.Config);
            optimizer.StepCount = from.StepCount;
            MoveMoments(source, from.MMemory, target, System.Runtime.InteropServices.MemoryMarshal.AsMemory(optimizer.MMemory), plan);
            MoveMoments(source, from.VMemory, target, System.Runtime.InteropServices.MemoryMarshal.AsMemory(optimizer.VMemory), plan);
        }
        state.Model = ModelArgs.From(target.Config);
        // The best val loss is the smaller model's own (the original's would stop a fine-tuning run from ever saving
        // until it beats the unpruned model): the loss just measured, or "none yet" when not evaluated.
        state.BestValLoss = float.IsNaN(valLoss) ? 1e9f : valLoss;
        state.SaveId = null;
        state.Files = null;
        Checkpoint.Save(outDir, target, optimizer, state, File.Exists(meta) ? meta : Path.Combine(state.Dataset, DatasetMeta.FileName));
    }

    static AdamW NewOptimizer(Gpt gpt, TrainConfig c) =>
        new(gpt.ParameterData.Length, gpt.Parameters.Select(p => AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay)).ToArray(),
            c.Beta1, c.Beta2, 1e-8f, c.WeightDecay);

    // An AdamW moment buffer, laid out like the parameters, moved to the pruned model's rows and columns.
    static void MoveMoments(Gpt source, ReadOnlyMemory<float> from, Gpt target, Memory<float> to, StructuredPlan plan) =>
        StructuredPruner.Transfer(source, p => Segment(source, p, from.Span), target, p => Segment(target, p, to.Span), plan);

    static ReadOnlySpan<float> Segment(Gpt gpt, Parameter p, ReadOnlySpan<float> buffer)
    {
        var seg = AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay);
        return buffer.Slice(seg.Offset, seg.Length);
    }

    static Span<float> Segment(Gpt gpt, Parameter p, Span<float> buffer)
    {
        var seg = AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay);
        return buffer.Slice(seg.Offset, seg.Length);
    }

    static long FileBytes(string dir)
    {
        string path = Path.Combine(dir, Checkpoint.ModelFile);
        return File.Exists(path) ? new FileInfo(path).Length : 0;
    }

    /// <summary>exp(loss), or NaN.</summary>
    public static double Perplexity(float loss) => float.IsNaN(loss) ? double.NaN : Math.Exp(loss);

    internal static string Format(double x) => x.ToString("F4", CultureInfo.InvariantCulture);
}
