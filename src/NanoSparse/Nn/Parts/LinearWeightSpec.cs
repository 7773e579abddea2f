using System.Globalization;
using NanoSparse.Numerics;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// What a Linear weight layout is built from: its shape (Out, In) and where its stored positions come from, either
///   a pattern: a dense (Out, In) matrix whose nonzeros are the positions to store (e.g. a pruned dense weight), or
///   a density: the fraction of the Out·In positions to store, drawn with <see cref="Rng"/> (sparse from scratch).
/// The dense layout stores every position whatever the spec says.
/// </summary>
public sealed record LinearWeightSpec
{
    public int OutFeatures { get; init; }
    public int InFeatures { get; init; }
    /// <summary>(Out, In) row-major, zeros not stored; empty when the pattern is drawn from <see cref="Density"/>.</summary>
    public ReadOnlyMemory<float> Pattern { get; init; }
    /// <summary>Fraction of positions stored, in (0, 1]; used when <see cref="Pattern"/> is empty.</summary>
    public double Density { get; init; } = 1.0;
    /// <summary>Draws the positions when built from a density below 1.</summary>
    public Rng? Rng { get; init; }

    /// <summary>The layout string being built ("nm:2:4"), set by LinearWeightLayouts.Create; for messages.</summary>
    public string Layout { get; init; } = "";
    /// <summary>The layout string's arguments after its name ("nm:2:4" → ["2", "4"]), set by LinearWeightLayouts.Create.</summary>
    public IReadOnlyList<string> Arguments { get; init; } = [];

    public bool HasPattern => !Pattern.IsEmpty;

    /// <summary>Throws unless the layout string has exactly <paramref name="count"/> arguments (<paramref name="form"/> names the expected form).</summary>
    public void ExpectArguments(int count, string form)
    {
        if (Arguments.Count != count)
            throw new ArgumentException($"weight layout \"{Layout}\": expected {form}, got {Arguments.Count} argument(s) after the name");
    }

    /// <summary>Argument <paramref name="index"/> as an integer.</summary>
    public int IntArgument(int index, string form)
    {
        string v = Arguments[index];
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n)
            ? n : throw new ArgumentException($"weight layout \"{Layout}\" ({form}): '{v}' is not an integer");
    }

    /// <summary>Argument <paramref name="index"/> as a block shape RxC.</summary>
    public (int Rows, int Cols) BlockArgument(int index, string form)
    {
        var p = Arguments[index].Split('x');
        return p.Length == 2 && int.TryParse(p[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int r)
            && int.TryParse(p[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int c)
            ? (r, c) : throw new ArgumentException($"weight layout \"{Layout}\" ({form}): block '{Arguments[index]}' is not RxC");
    }

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
