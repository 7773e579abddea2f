using NanoSparse.Data;
using NanoSparse.Nn;

namespace NanoSparse.Training;

/// <summary>
/// Mean cross-entropy over a fixed set of random batches (nanoGPT's estimate_loss), in eval mode (no dropout).
/// Each split has its own sampler, reseeded on every call, so every evaluation sees the same batches (losses are
/// comparable across steps) and evaluation never perturbs the training batch stream or the dropout generator.
/// </summary>
public static class Evaluator
{
    /// <summary>The seed of a split's evaluation sampler, derived from the run seed.</summary>
    public static ulong SplitSeed(ulong seed, string split) => split switch
    {
        "train" => seed ^ 0x7261696E_5F657631UL,
        "val" => seed ^ 0x76616C5F_5F657631UL,
        _ => throw new ArgumentException($"unknown split '{split}', expected train or val"),
    };

    /// <summary>Mean loss over <paramref name="batches"/> batches of (gpt.BatchSize, gpt.SeqLen) drawn from <paramref name="file"/>,
    /// on the positions that <paramref name="lossTargets"/> selects (all when null), as in training.</summary>
    public static float MeanLoss(Gpt gpt, TokenFile file, int batches, ulong seed, Span<int> x, Span<int> y, LossTargets? lossTargets = null)
    {
        if (batches <= 0) throw new ArgumentOutOfRangeException(nameof(batches), batches, "eval_iters must be positive");
        var sampler = new BatchSampler(file, gpt.BatchSize, gpt.SeqLen, seed);
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            sampler.Next(x, y);
            lossTargets?.Apply(y);
            sum += gpt.Forward(x, y, training: false);
        }
        return (float)(sum / batches);
    }
}
