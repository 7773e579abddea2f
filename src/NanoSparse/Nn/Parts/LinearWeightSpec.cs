using NanoSparse.Numerics;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// What a Linear weight layout is built from: its shape (Out, In) and where its stored positions come from, either
///   a pattern: a dense (Out, In) matrix whose nonzeros are the positions to store (e.g. a pruned dense weight), or
///   a density: the fraction of the Out·In positions to store, drawn with <see cref="Rng"/> (sparse from scratch).
/// The layout's own parameters (N and M of N:M, a block shape, a density) come from the layout string a config names,
/// "name:arg:arg" ("csr:0.1", "nm:2:4", "bsr:4x4:0.25"): <see cref="Arguments"/>. The dense layout stores every
/// position whatever the spec says.
/// </summary>
public sealed record LinearWeightSpec
{
    public int OutFeatures { get; init; }
    public int InFeatures { get; init; }
    /// <summary>(Out, In) row-major, zeros not stored; empty when the pattern is drawn from <see cref="Density"/>.</summary>
    public ReadOnlyMemory<float> Pattern { get; init; }
    /// <summary>Fraction of positions stored, in (0, 1]; used when <see cref="Pattern"/> is empty.</summary>
    public double Density { get; init; } = 1.0;
    /// <summary>Draws the positions when they are drawn (a density, or a layout's own random pattern).</summary>
    public Rng? Rng { get; init; }
    /// <summary>The layout string's parameters after its name: "nm:2:4" gives ["2", "4"]; empty for a bare name.</summary>
    public IReadOnlyList<string> Arguments { get; init; } = [];

    public bool HasPattern => !Pattern.IsEmpty;

    /// <summary>Every position stored.</summary>
    public static LinearWeightSpec Full(int outFeatures, int inFeatures) =>
        Checked(new LinearWeightSpec { OutFeatures = outFeatures, InFeatures = inFeatures });

    /// <summary>The positions where <paramref name="dense"/> (Out, In) is not zero.</summary>
    public static LinearWeightSpec FromPattern(int outFeatures, int inFeatures, ReadOnlyMemory<float> dense)
    {
        if (dense.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"pattern has {dense.Length} values, expected out ({outFeatures}) × in ({inFeatures}) = {(long)outFeatures * inFeatures}", nameof(dense));
        return Checked(new LinearWeightSpec { OutFeatures = outFeatures, InFeatures = inFeatures, Pattern = dense });
    }

    /// <summary>About density·Out·In positions drawn with rng (how they are spread is the layout's choice).</summary>
    public static LinearWeightSpec Random(int outFeatures, int inFeatures, double density, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (!(density > 0 && density <= 1))
            throw new ArgumentOutOfRangeException(nameof(density), density, "density must lie in (0, 1]");
        return Checked(new LinearWeightSpec { OutFeatures = outFeatures, InFeatures = inFeatures, Density = density, Rng = rng });
    }

    static LinearWeightSpec Checked(LinearWeightSpec spec)
    {
        if (spec.OutFeatures <= 0 || spec.InFeatures <= 0)
            throw new ArgumentException($"a Linear weight needs positive out and in features, got ({spec.OutFeatures}, {spec.InFeatures})");
        return spec;
    }
}
