using System.Globalization;
using NanoSparse.Numerics;

namespace NanoSparse.Nn.Parts;

/// <summary>Builds the layout object of one Linear weight from its spec (shape, the layout's arguments, pattern or density).</summary>
public delegate ILinearWeight LinearWeightFactory(LinearWeightSpec spec);

/// <summary>
/// The registry of Linear weight layouts by name, the names configs use (GptConfig.WeightLayouts). A layout string is
/// the registered name followed by the layout's structural arguments, colon-separated:
///   "dense"          every position stored
///   "csr"            unstructured sparse (CSR, 16-bit indices when they fit)
///   "nm:N:M"         N stored positions in every group of M consecutive inputs (the reduction dimension), e.g. nm:2:4
///   "bsr:RxC"        R×C blocks, e.g. bsr:4x4
/// How many positions a weight stores (its density) or which ones (a pattern) is not part of the string: it comes in
/// the <see cref="LinearWeightSpec"/> (GptConfig.WeightDensities for models built from scratch). A new layout is one
/// class implementing <see cref="ILinearWeight"/> plus one line in <see cref="Factories"/>; code outside the library
/// (and tests) can add one with <see cref="Register"/>.
/// </summary>
public static class LinearWeightLayouts
{
    public const string Dense = "dense";
    public const string Csr = "csr";
    public const string Nm = "nm";
    public const string Bsr = "bsr";

    static readonly Dictionary<string, LinearWeightFactory> Factories = new()
    {
        [Dense] = spec => { spec.ExpectArguments(0, "dense"); return new DenseLinearWeight(spec.OutFeatures, spec.InFeatures); },
        [Csr] = spec =>
        {
            spec.ExpectArguments(0, "csr");
            return spec.HasPattern
                ? CsrLinearWeight.FromDense(spec.OutFeatures, spec.InFeatures, spec.Pattern.Span).Weight
                : CsrLinearWeight.Random(spec.OutFeatures, spec.InFeatures, spec.Density, spec.Rng ?? new Rng(0));
        },
        [Nm] = spec =>
        {
            spec.ExpectArguments(2, "nm:N:M (e.g. nm:2:4)");
            int n = spec.IntArgument(0, "nm:N:M"), m = spec.IntArgument(1, "nm:N:M");
            return spec.HasPattern
                ? NmLinearWeight.FromDense(spec.OutFeatures, spec.InFeatures, n, m, spec.Pattern.Span).Weight
                : NmLinearWeight.Random(spec.OutFeatures, spec.InFeatures, n, m, spec.Rng ?? new Rng(0));
        },
        [Bsr] = spec =>
        {
            spec.ExpectArguments(1, "bsr:RxC (e.g. bsr:4x4)");
            var (r, c) = spec.BlockArgument(0, "bsr:RxC");
            return spec.HasPattern
                ? BsrLinearWeight.FromDense(spec.OutFeatures, spec.InFeatures, r, c, spec.Pattern.Span).Weight
                : BsrLinearWeight.Random(spec.OutFeatures, spec.InFeatures, r, c, spec.Density, spec.Rng ?? new Rng(0));
        },
    };

    /// <summary>The registered names, in registration order.</summary>
    public static IReadOnlyList<string> Names
    {
        get { lock (Factories) return Factories.Keys.ToArray(); }
    }

    /// <summary>The registered name of a layout string: the part before the first ':'.</summary>
    public static string NameOf(string layout) => layout.Split(':')[0];

    /// <summary>Whether the name of <paramref name="layout"/> (a layout string, arguments allowed) is registered.</summary>
    public static bool IsRegistered(string layout)
    {
        if (layout is null) return false;
        lock (Factories) return Factories.ContainsKey(NameOf(layout));
    }

    /// <summary>Adds a layout under a new name (a name already registered, or one containing ':', is refused).</summary>
    public static void Register(string name, LinearWeightFactory factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (name.Contains(':')) throw new ArgumentException($"weight layout name \"{name}\" must not contain ':' (it separates the arguments)", nameof(name));
        lock (Factories)
            if (!Factories.TryAdd(name, factory))
                throw new ArgumentException($"weight layout \"{name}\" is already registered", nameof(name));
    }

    /// <summary>
    /// The layout that <paramref name="layout"/> ("csr", "nm:2:4", "bsr:4x4", ...) names, built from
    /// <paramref name="spec"/> (whose own arguments are replaced by the string's).
    /// </summary>
    public static ILinearWeight Create(string layout, LinearWeightSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        LinearWeightFactory? factory;
        string[] parts = layout?.Split(':') ?? [""];
        lock (Factories)
            if (layout is null || !Factories.TryGetValue(parts[0], out factory))
                throw new ArgumentException($"weight layout \"{layout}\" is not one of: {string.Join(", ", Factories.Keys)}", nameof(layout));
        var weight = factory(spec with { Layout = layout, Arguments = parts[1..] });
        if (weight.OutFeatures != spec.OutFeatures || weight.InFeatures != spec.InFeatures)
            throw new InvalidOperationException($"layout \"{layout}\" built a ({weight.OutFeatures}, {weight.InFeatures}) weight for a ({spec.OutFeatures}, {spec.InFeatures}) spec");
        return weight;
    }
}
