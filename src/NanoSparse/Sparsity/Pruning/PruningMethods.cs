using System.Collections.Concurrent;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// The pruning methods by name (--method) and the mask refiners (--dsnot): a new method is one class implementing
/// <see cref="ILayerPruner"/> (or <see cref="IMaskRefiner"/>) plus one line in the static constructor below.
/// </summary>
public static class PruningMethods
{
    static readonly ConcurrentDictionary<string, ILayerPruner> Pruners = new(StringComparer.Ordinal);
    static readonly ConcurrentDictionary<string, IMaskRefiner> Refiners = new(StringComparer.Ordinal);

    static PruningMethods()
    {
        Register(new MagnitudePruner());
        Register(new RandomPruner());
        Register(new WandaPruner());
        Register(new SparseGptPruner());
        Register(new Dsnot());
    }

    /// <summary>Adds (or replaces) a method under its <see cref="ILayerPruner.Name"/>.</summary>
    public static void Register(ILayerPruner pruner) => Pruners[pruner.Name] = pruner;

    /// <summary>Adds (or replaces) a refiner under its <see cref="IMaskRefiner.Name"/>.</summary>
    public static void Register(IMaskRefiner refiner) => Refiners[refiner.Name] = refiner;

    public static IReadOnlyList<string> PrunerNames => Pruners.Keys.Order(StringComparer.Ordinal).ToArray();
    public static IReadOnlyList<string> RefinerNames => Refiners.Keys.Order(StringComparer.Ordinal).ToArray();

    /// <summary>The method named <paramref name="name"/>; an ArgumentException naming the known ones otherwise.</summary>
    public static ILayerPruner Pruner(string name) =>
        Pruners.TryGetValue(name, out var p) ? p
            : throw new ArgumentException($"--method: unknown method '{name}'; known methods: {string.Join(", ", PrunerNames)}");

    /// <summary>The refiner named <paramref name="name"/>; an ArgumentException naming the known ones otherwise.</summary>
    public static IMaskRefiner Refiner(string name) =>
        Refiners.TryGetValue(name, out var r) ? r
            : throw new ArgumentException($"unknown mask refiner '{name}'; known refiners: {(Refiners.IsEmpty ? "none registered" : string.Join(", ", RefinerNames))}");
}
