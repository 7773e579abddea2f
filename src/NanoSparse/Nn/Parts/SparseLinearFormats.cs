namespace NanoSparse.Nn.Parts;

/// <summary>Rebuilds a sparse Linear layout from the structure a file stores (see <see cref="ISparseLinearStructure"/>).</summary>
public delegate ISparseLinearStructure SparseStructureReader(SparseStructure structure);

/// <summary>
/// The sparse layouts a checkpoint can hold, by the format name written to its metadata (the layout's name). A new
/// layout that implements <see cref="ISparseLinearStructure"/> is one line here (or a <see cref="Register"/> call).
/// </summary>
public static class SparseLinearFormats
{
    static readonly Dictionary<string, SparseStructureReader> Readers = new()
    {
        ["csr"] = CsrLinearWeight.FromStructure,
        ["nm"] = NmLinearWeight.FromStructure,
        ["bsr"] = BsrLinearWeight.FromStructure,
    };

    public static IReadOnlyList<string> Names
    {
        get { lock (Readers) return Readers.Keys.ToArray(); }
    }

    public static bool IsRegistered(string name)
    {
        if (name is null) return false;
        lock (Readers) return Readers.ContainsKey(name);
    }

    public static void Register(string name, SparseStructureReader reader)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(reader);
        lock (Readers)
            if (!Readers.TryAdd(name, reader))
                throw new ArgumentException($"sparse format \"{name}\" is already registered", nameof(name));
    }

    /// <summary>The layout the structure describes; an unknown format or a broken structure throws InvalidDataException naming the tensor.</summary>
    public static ISparseLinearStructure FromStructure(SparseStructure structure)
    {
        ArgumentNullException.ThrowIfNull(structure);
        SparseStructureReader? reader;
        lock (Readers)
            if (!Readers.TryGetValue(structure.Format, out reader))
                throw new InvalidDataException($"metadata '{structure.Name}.format' is '{structure.Format}', an unknown format; expected one of {string.Join(", ", Readers.Keys)}");
        var weight = reader(structure);
        if (weight.OutFeatures != structure.OutFeatures || weight.InFeatures != structure.InFeatures || weight.Layout != structure.Format)
            throw new InvalidOperationException($"format {structure.Format} rebuilt a {weight.Layout} ({weight.OutFeatures}, {weight.InFeatures}) weight for '{structure.Name}' ({structure.OutFeatures}, {structure.InFeatures})");
        return weight;
    }
}
