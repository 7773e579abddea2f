using NanoSparse.Nn;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>One Linear weight of a block: its layer and its name within the block ("mlp.c_fc").</summary>
public readonly record struct WeightRef(int Layer, string Weight)
{
    /// <summary>The state_dict name, transformer.h.{layer}.{weight}.weight.</summary>
    public string ParameterName => $"transformer.h.{Layer}.{Weight}.weight";
    public override string ToString() => $"h.{Layer}.{Weight}";
}

/// <summary>Which Linear weights --targets and --ignore select.</summary>
public static class PruneTargets
{
    /// <summary>
    /// The weights to prune, in block order: <paramref name="targets"/> (all four of every block when empty) minus
    /// <paramref name="ignore"/>. An entry is a weight of every block ("mlp.c_fc"), of one block ("h.3.mlp.c_fc") or a
    /// whole block ("h.3"); an entry that names nothing, or an --ignore that leaves nothing, is an ArgumentException
    /// naming it and the forms expected.
    /// </summary>
    public static IReadOnlyList<WeightRef> Resolve(GptConfig config, IReadOnlyList<string>? targets, IReadOnlyList<string>? ignore)
    {
        var all = Enumerable.Range(0, config.NLayer).SelectMany(l => GptConfig.BlockWeights.Select(w => new WeightRef(l, w))).ToList();
        var chosen = targets is null || targets.Count == 0 ? all.ToHashSet() : Match(all, targets, "--targets", config);
        if (ignore is not null && ignore.Count > 0) chosen.ExceptWith(Match(all, ignore, "--ignore", config));
        if (chosen.Count == 0)
            throw new ArgumentException($"--ignore ({string.Join(",", ignore!)}) leaves none of the weights --targets selects ({(targets is null || targets.Count == 0 ? "all" : string.Join(",", targets))}): nothing to prune");
        return all.Where(chosen.Contains).ToList();
    }

    static HashSet<WeightRef> Match(List<WeightRef> all, IReadOnlyList<string> entries, string option, GptConfig config)
    {
        var result = new HashSet<WeightRef>();
        foreach (string raw in entries)
        {
            string entry = raw.Trim();
            var matched = all.Where(w => entry == w.Weight || entry == w.ToString() || entry == $"h.{w.Layer}").ToList();
            if (matched.Count == 0)
                throw new ArgumentException($"{option} entry '{entry}' names no Linear weight of this {config.NLayer}-layer model; expected one of {string.Join(", ", GptConfig.BlockWeights)}, h.<layer>.<weight> or h.<layer>, with layer in [0, {config.NLayer})");
            result.UnionWith(matched);
        }
        return result;
    }
}
