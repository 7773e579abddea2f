using NanoSparse.Kernels;

namespace NanoSparse.Training;

/// <summary>
/// A loss restricted to a set of target tokens (the <c>loss_targets</c> key): a position whose next token is not in
/// the set carries no loss and no gradient (its target becomes <see cref="CrossEntropy.IgnoreTarget"/>), and the
/// loss is the mean over the positions that remain. MQAR (Zoology, Arora et al. 2023) trains on the answers only;
/// on an associative-recall stream the set is the value alphabet, whose tokens are either a record's value (not
/// predictable: the same for every model) or a query's answer.
///
/// Written as comma-separated token ids and inclusive ranges, e.g. "129-192" or "3,7,10-12"; empty: every position.
/// </summary>
public sealed class LossTargets
{
    readonly bool[] _selected;

    /// <summary>The spec as given.</summary>
    public string Spec { get; }

    /// <summary>How many token ids are in the set.</summary>
    public int Count { get; }

    LossTargets(string spec, bool[] selected)
    {
        Spec = spec;
        _selected = selected;
        foreach (bool b in selected) if (b) Count++;
    }

    public bool Contains(int token) => (uint)token < (uint)_selected.Length && _selected[token];

    /// <summary>
    /// The set a spec names for a vocabulary of <paramref name="vocabSize"/> tokens; null for an empty spec (every
    /// position carries loss). Throws a one-line error naming <paramref name="field"/>, the value found and what was
    /// expected.
    /// </summary>
    public static LossTargets? Parse(string? spec, int vocabSize, string field = "loss_targets")
    {
        if (string.IsNullOrWhiteSpace(spec)) return null;
        if (vocabSize < 1) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocab_size must be positive");
        var selected = new bool[vocabSize];
        foreach (string rawPart in spec.Split(','))
        {
            string part = rawPart.Trim();
            int dash = part.IndexOf('-', 1 < part.Length ? 1 : 0);
            string loText = dash > 0 ? part[..dash] : part, hiText = dash > 0 ? part[(dash + 1)..] : part;
            if (!int.TryParse(loText, out int lo) || !int.TryParse(hiText, out int hi))
                throw new ArgumentException($"config: {field} '{spec}' has the part '{part}'; expected token ids and inclusive ranges separated by commas, e.g. 129-192 or 3,7,10-12");
            if (lo < 0 || hi >= vocabSize || lo > hi)
                throw new ArgumentException($"config: {field} '{spec}' has the part '{part}'; expected ids in [0, {vocabSize - 1}] (vocab_size {vocabSize}) with the lower end first");
            for (int t = lo; t <= hi; t++) selected[t] = true;
        }
        return new LossTargets(spec, selected);
    }

    /// <summary>Sets every target that is not in the set to <see cref="CrossEntropy.IgnoreTarget"/>; returns how many remain.</summary>
    public int Apply(Span<int> targets)
    {
        int kept = 0;
        for (int i = 0; i < targets.Length; i++)
        {
            if (Contains(targets[i])) kept++;
            else targets[i] = CrossEntropy.IgnoreTarget;
        }
        return kept;
    }
}
