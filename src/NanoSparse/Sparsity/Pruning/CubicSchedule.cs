namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// The gradual pruning schedule of Zhu &amp; Gupta 2017 ("To prune, or not to prune"), eq. (1):
///   s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n·Δt))³    for t0 ≤ t ≤ t0 + n·Δt
/// with s_i the initial and s_f the final sparsity, t0 = <see cref="Start"/>, t0 + n·Δt = <see cref="End"/> and
/// Δt = <see cref="Frequency"/>. Before t0 the model is dense (0); after the end it stays at s_f. Pruning happens at
/// t0, t0 + Δt, t0 + 2Δt, ... and at the end step (so s_f is reached even when Δt does not divide the span).
/// </summary>
public sealed record CubicSchedule
{
    public CubicSchedule(double initialSparsity, double finalSparsity, int start, int end, int frequency)
    {
        if (!(initialSparsity >= 0 && initialSparsity < 1)) throw new ArgumentOutOfRangeException(nameof(initialSparsity), initialSparsity, "initial sparsity must be in [0, 1)");
        if (!(finalSparsity >= 0 && finalSparsity < 1)) throw new ArgumentOutOfRangeException(nameof(finalSparsity), finalSparsity, "final sparsity must be in [0, 1)");
        if (initialSparsity > finalSparsity) throw new ArgumentOutOfRangeException(nameof(initialSparsity), initialSparsity, $"initial sparsity must not exceed the final sparsity {finalSparsity}");
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, "start step must be >= 0");
        if (end <= start) throw new ArgumentOutOfRangeException(nameof(end), end, $"end step must be greater than the start step {start}");
        if (frequency <= 0) throw new ArgumentOutOfRangeException(nameof(frequency), frequency, "frequency must be positive");
        (InitialSparsity, FinalSparsity, Start, End, Frequency) = (initialSparsity, finalSparsity, start, end, frequency);
    }

    public double InitialSparsity { get; }
    public double FinalSparsity { get; }
    public int Start { get; }
    public int End { get; }
    public int Frequency { get; }

    /// <summary>s_t after <paramref name="step"/> updates.</summary>
    public double SparsityAt(int step)
    {
        if (step < Start) return 0;
        if (step >= End) return FinalSparsity;
        double progress = (double)(step - Start) / (End - Start);
        double remaining = 1 - progress;
        return FinalSparsity + (InitialSparsity - FinalSparsity) * remaining * remaining * remaining;
    }

    /// <summary>Whether the weights are pruned (to <see cref="SparsityAt"/>) before the update at <paramref name="step"/>.</summary>
    public bool IsPruningStep(int step) => step >= Start && step <= End && ((step - Start) % Frequency == 0 || step == End);
}
