namespace NanoSparse.Optim;

/// <summary>
/// nanoGPT's learning-rate schedule (train.py get_lr): linear warm-up, then a cosine decay to a floor.
///   it &lt; warmup:        lr = max_lr · (it + 1) / (warmup + 1)
///   it &gt; decay_iters:   lr = min_lr
///   otherwise:          ratio = (it − warmup) / (decay_iters − warmup)
///                       lr = min_lr + ½(1 + cos(π · ratio)) · (max_lr − min_lr)
/// With decay disabled the rate is constant.
/// </summary>
public sealed class CosineSchedule
{
    public double MaxLearningRate { get; }
    public double MinLearningRate { get; }
    public int WarmupIters { get; }
    public int DecayIters { get; }
    public bool Decay { get; }

    public CosineSchedule(double maxLearningRate, double minLearningRate, int warmupIters, int decayIters, bool decay = true)
    {
        if (!(maxLearningRate >= 0) || double.IsInfinity(maxLearningRate))
            throw new ArgumentOutOfRangeException(nameof(maxLearningRate), maxLearningRate, "learning_rate must be a finite non-negative number");
        if (!(minLearningRate >= 0) || double.IsInfinity(minLearningRate))
            throw new ArgumentOutOfRangeException(nameof(minLearningRate), minLearningRate, "min_lr must be a finite non-negative number");
        if (warmupIters < 0) throw new ArgumentOutOfRangeException(nameof(warmupIters), warmupIters, "warmup_iters must be >= 0");
        if (decay && decayIters <= warmupIters)
            throw new ArgumentOutOfRangeException(nameof(decayIters), decayIters, $"lr_decay_iters ({decayIters}) must be greater than warmup_iters ({warmupIters})");
        (MaxLearningRate, MinLearningRate, WarmupIters, DecayIters, Decay) = (maxLearningRate, minLearningRate, warmupIters, decayIters, decay);
    }

    /// <summary>The learning rate for iteration <paramref name="iter"/> (0-based), in double as nanoGPT computes it.</summary>
    public double At(int iter)
    {
        if (!Decay) return MaxLearningRate;
        if (iter < WarmupIters) return MaxLearningRate * (iter + 1) / (WarmupIters + 1);
        if (iter > DecayIters) return MinLearningRate;
        double ratio = (double)(iter - WarmupIters) / (DecayIters - WarmupIters);
        double coeff = 0.5 * (1.0 + Math.Cos(Math.PI * ratio));
        return MinLearningRate + coeff * (MaxLearningRate - MinLearningRate);
    }
}
