namespace NanoSparse.Nn.Parts;

/// <summary>Builds the layout object of one Linear weight from its spec (shape and pattern or density).</summary>
public delegate ILinearWeight LinearWeightFactory(LinearWeightSpec spec);

/// <summary>
/// The registry of Linear weight layouts by name. Configs (GptConfig.WeightLayouts) name a layout with a layout
/// string, its registered name optionally followed by the layout's own parameters: "dense", "csr:0.1", "nm:2:4";
/// the factory receives them as <see cref="LinearWeightSpec.Arguments"/>. A new layout is one class implementing
/// <see cref="ILinearWeight"/> plus one line in <see cref="Factories"/>; code outside the library (and tests) can add
/// one with <see cref="Register"/>.
/// </summary>
public static class LinearWeightLayouts
{
    public const string Dense = "dense";

    static readonly Dictionary<string, LinearWeightFactory> Factories = new()
    {
        [Dense] = spec => spec.Arguments.Count == 0
            ? new DenseLinearWeight(spec.OutFeatures, spec.InFeatures)
            : throw new ArgumentException($"weight layout \"dense\" takes no parameters, got \"{string.Join(':', spec.Arguments)}\""),
    };

    /// <summary>Splits a layout string into its registered name and its parameters: "nm:2:4" → ("nm", ["2", "4"]).</summary>
    public static (string Name, string[] Arguments) Parse(string layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        int colon = layout.IndexOf(':');
        return colon < 0 ? (layout, []) : (layout[..colon], layout[(colon + 1)..].Split(':'));
    }

    /// <summary>The registered names, in registration order.</summary>
    public static IReadOnlyList<string> Names
    {
        get { lock (Factories) return Factories.Keys.ToArray(); }
    }

    /// <summary>Whether the name of a layout string ("csr" of "csr:0.1") is registered.</summary>
    public static bool IsRegistered(string layout)
    {
        if (layout is null) return false;
        string name = Parse(layout).Name;
        lock (Factories) return Factories.ContainsKey(name);
    }

    /// <summary>Adds a layout under a new name (a name already registered, or one with a ':', is refused).</summary>
    public static void Register(string name, LinearWeightFactory factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.Contains(':')) throw new ArgumentException($"weight layout name \"{name}\" must not contain ':' (it separates the parameters)", nameof(name));
        ArgumentNullException.ThrowIfNull(factory);
        lock (Factories)
            if (!Factories.TryAdd(name, factory))
                throw new ArgumentException($"weight layout \"{name}\" is already registered", nameof(name));
    }

    /// <summary>
    /// The layout a layout string names ("dense", "csr:0.1", ...) built from <paramref name="spec"/>; the string's
    /// parameters, when it has any, replace the spec's <see cref="LinearWeightSpec.Arguments"/>.
    /// </summary>
    public static ILinearWeight Create(string layout, LinearWeightSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (layout is null) throw new ArgumentNullException(nameof(layout));
        var (name, arguments) = Parse(layout);
        LinearWeightFactory? factory;
        lock (Factories)
            if (!Factories.TryGetValue(name, out factory))
                throw new ArgumentException($"weight layout \"{layout}\": \"{name}\" is not one of: {string.Join(", ", Factories.Keys)}", nameof(layout));
        var weight = factory(arguments.Length > 0 ? spec with { Arguments = arguments } : spec);
        if (weight.OutFeatures != spec.OutFeatures || weight.InFeatures != spec.InFeatures)
            throw new InvalidOperationException($"layout \"{name}\" built a ({weight.OutFeatures}, {weight.InFeatures}) weight for a ({spec.OutFeatures}, {spec.InFeatures}) spec");
        return weight;
    }
}
