namespace NanoSparse.Nn.Parts;

/// <summary>Builds the layout object of one Linear weight from its spec (shape and pattern or density).</summary>
public delegate ILinearWeight LinearWeightFactory(LinearWeightSpec spec);

/// <summary>
/// The registry of Linear weight layouts by name, the names configs use (GptConfig.WeightLayouts). A new layout is
/// one class implementing <see cref="ILinearWeight"/> plus one line in <see cref="Factories"/>; code outside the
/// library (and tests) can add one with <see cref="Register"/>.
/// </summary>
public static class LinearWeightLayouts
{
    public const string Dense = "dense";

    static readonly Dictionary<string, LinearWeightFactory> Factories = new()
    {
        [Dense] = spec => new DenseLinearWeight(spec.OutFeatures, spec.InFeatures),
    };

    /// <summary>The registered names, in registration order.</summary>
    public static IReadOnlyList<string> Names
    {
        get { lock (Factories) return Factories.Keys.ToArray(); }
    }

    public static bool IsRegistered(string name)
    {
        if (name is null) return false;
        lock (Factories) return Factories.ContainsKey(name);
    }

    /// <summary>Adds a layout under a new name (a name already registered is refused).</summary>
    public static void Register(string name, LinearWeightFactory factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        lock (Factories)
            if (!Factories.TryAdd(name, factory))
                throw new ArgumentException($"weight layout \"{name}\" is already registered", nameof(name));
    }

    /// <summary>The layout <paramref name="name"/> built from <paramref name="spec"/>.</summary>
    public static ILinearWeight Create(string name, LinearWeightSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        LinearWeightFactory? factory;
        lock (Factories)
            if (name is null || !Factories.TryGetValue(name, out factory))
                throw new ArgumentException($"weight layout \"{name}\" is not one of: {string.Join(", ", Factories.Keys)}", nameof(name));
        var weight = factory(spec);
        if (weight.OutFeatures != spec.OutFeatures || weight.InFeatures != spec.InFeatures)
            throw new InvalidOperationException($"layout \"{name}\" built a ({weight.OutFeatures}, {weight.InFeatures}) weight for a ({spec.OutFeatures}, {spec.InFeatures}) spec");
        return weight;
    }
}
