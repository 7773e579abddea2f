using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Training;

/// <summary>One IMP round: the sparsity of the blocks' Linear weights it trained at, its final val loss, its checkpoint.</summary>
public sealed record ImpRound(int Round, double Sparsity, float ValLoss, float BestValLoss, double MeanMsPerIter, bool Sparse, string Dir);

/// <summary>
/// Iterative magnitude pruning with weight rewinding: the lottery ticket procedure (Frankle &amp; Carbin 2019) with
/// rewinding to step k instead of to the initialisation (Frankle et al. 2020, "Linear mode connectivity and the
/// lottery ticket hypothesis"):
///   round 0: train the dense model for max_iters steps, saving every parameter at step k (once);
///   round r = 1..R: prune by magnitude (of the previous round's final weights, layer-wise or global per prune_scope)
///   until a fraction 1 − (1 − P)^r of the blocks' Linear weights is pruned (P of the remaining ones each round);
///   rewind every parameter to its step-k value (pruned ones 0), the sampler and dropout RNG to their step-k states,
///   and retrain from step k to max_iters with the mask held (fresh AdamW moments: the rewind point keeps no
///   optimizer state, as in the paper's code).
/// A round whose sparsity reaches prune_switch_sparsity trains on the CSR layout from its first step. Each round's
/// checkpoint is written to {out}/round-{r}.
/// </summary>
public static class IterativeMagnitudePruning
{
    /// <summary>Progress: the round, and the step report of its training iterations.</summary>
    public readonly record struct Progress(int Round, int Rounds, StepReport Step);

    public static IReadOnlyList<ImpRound> Run(TrainConfig config, int rounds, double rate, int rewindStep, string outDir,
        Action<Progress>? progress = null, Action<ImpRound>? roundDone = null, CancellationToken cancellation = default)
    {
        config.Validate();
        if (rounds < 1) throw new ArgumentOutOfRangeException(nameof(rounds), rounds, $"--rounds ({rounds}) must be at least 1");
        if (!(rate > 0 && rate < 1)) throw new ArgumentOutOfRangeException(nameof(rate), rate, $"--rate ({rate}) must be in (0, 1): the fraction of the remaining weights pruned per round");
        if (rewindStep < 0 || rewindStep >= config.MaxIters)
            throw new ArgumentOutOfRangeException(nameof(rewindStep), rewindStep, $"--rewind-step ({rewindStep}) must be in [0, max_iters = {config.MaxIters})");
        if (config.PruneSchedule != "none")
            throw new ArgumentException($"config: prune_schedule ('{config.PruneSchedule}') must be 'none' for imp, which prunes between rounds");
        if (config.InitFrom != "scratch")
            throw new ArgumentException($"config: init_from ('{config.InitFrom}') must be 'scratch' for imp, which trains every round itself");
        if (config.Sparsity > 0 || !string.IsNullOrEmpty(config.Nm))
            throw new ArgumentException("config: imp prunes a dense model; sparsity and nm must be unset");

        var results = new List<ImpRound>();
        RewindPoint? rewind = null;
        List<float[]>? masks = null;
        for (int round = 0; round <= rounds; round++)
        {
            var cfg = config.Clone();
            cfg.OutDir = Path.Combine(outDir, $"round-{round}");
            using var trainer = new Trainer(cfg);
            if (round == 0)
                trainer.IterationStarting = t => { if (t.Step == rewindStep) rewind ??= t.CaptureRewindPoint(); };
            else
            {
                trainer.RewindTo(rewind!);
                trainer.SetPruningMasks(masks!);
            }
            int r = round;
            trainer.StepCompleted = s => progress?.Invoke(new Progress(r, rounds, s));
            var summary = trainer.Run(cancellation);
            trainer.SaveCheckpoint(cfg.OutDir);
            var result = new ImpRound(round, trainer.ZeroFraction(), summary.LastEval?.ValLoss ?? float.NaN, summary.BestValLoss,
                summary.MeanMsPerIter, trainer.Pruning?.Switched == true, cfg.OutDir);
            results.Add(result);
            roundDone?.Invoke(result);
            if (round == rounds) break;

            // Next round's mask: magnitudes of this round's final weights; pruned positions stay pruned.
            var names = trainer.Pruning?.Names ?? GradualPruning.PrunableIndices(trainer.Model).Select(i => trainer.Model.Parameters[i].Name).ToArray();
            var byName = trainer.Model.Parameters.ToDictionary(p => p.Name);
            var weights = names.Select(n => GradualPruning.DenseValues(byName[n])).ToList();
            masks ??= weights.Select(w => { var m = new float[w.Length]; m.AsSpan().Fill(1f); return m; }).ToList();
            MagnitudeMask.Prune(weights, masks, 1 - Math.Pow(1 - rate, round + 1), cfg.PruneScope == "global");
        }
        return results;
    }
}
