namespace NanoSparse.Sparsity.Dst;

/// <summary>How a dynamic sparse training run changes its weights' positions (config key <c>dst</c>).</summary>
public enum DstMethod
{
    /// <summary>No updates: the random layout drawn at the start (the baseline).</summary>
    Static,
    /// <summary>SET (Mocanu et al. 2018): drop the smallest magnitudes, regrow uniformly at random.</summary>
    Set,
    /// <summary>RigL (Evci et al. 2020): drop the smallest magnitudes, regrow where |dL/dW| is largest among the positions not kept (just-dropped ones included).</summary>
    RigL,
    /// <summary>SRigL (Lasby et al. 2023): RigL with constant fan-in per output neuron and neuron ablation.</summary>
    SRigL,
}

public static class DstMethods
{
    public static readonly IReadOnlyList<string> Names = ["static", "set", "rigl", "srigl"];

    /// <summary>The method named by the config key dst; throws naming the key and the allowed values.</summary>
    public static DstMethod Parse(string? name) => name switch
    {
        "static" => DstMethod.Static,
        "set" => DstMethod.Set,
        "rigl" => DstMethod.RigL,
        "srigl" => DstMethod.SRigL,
        _ => throw new ArgumentException($"dst ('{name}') must be one of {string.Join(", ", Names)}"),
    };

    public static string Name(this DstMethod method) => Names[(int)method];

    /// <summary>Whether the method ranks regrowth by the dense gradient (computed on update steps only).</summary>
    public static bool NeedsDenseGradient(this DstMethod method) => method is DstMethod.RigL or DstMethod.SRigL;
}

/// <summary>
/// RigL's update schedule: an update at step t when t &gt; 0, t mod ΔT = 0 and t &lt; T_end, dropping the fraction
///   f(t) = α/2 · (1 + cos(π · t / T_end))
/// of each layer's active weights (cosine annealing from α towards 0 at T_end).
/// </summary>
public sealed record DstSchedule(int Interval, double DropFraction, int Stop)
{
    public bool IsUpdateStep(int step) => step > 0 && step % Interval == 0 && step < Stop;

    public double DropFractionAt(int step) => step >= Stop ? 0 : DropFraction / 2 * (1 + Math.Cos(Math.PI * step / Stop));
}
