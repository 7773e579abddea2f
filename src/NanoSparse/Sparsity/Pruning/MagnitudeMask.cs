namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// Magnitude pruning of masked weights, as gradual pruning and IMP use it: the weights already pruned (mask 0) stay
/// pruned and are counted first; then the kept weights of smallest |w| are pruned until the target count is reached.
/// Ties in |w| go to the lower index (global scope: the earlier weight in the list), so the choice is deterministic.
/// Counts follow <see cref="SparsityTarget.PrunedCount"/>: ⌊s·n⌋ per weight (layer-wise) or ⌊s·Σn⌋ over all (global).
/// </summary>
public static class MagnitudeMask
{
    /// <summary>
    /// Updates <paramref name="masks"/> (1 kept, 0 pruned; each the length of its weight, row-major (Out, In)) so that
    /// a fraction <paramref name="sparsity"/> is pruned, layer-wise or over all weights together. Never un-prunes: a
    /// target below the count already pruned leaves that weight's mask as it is.
    /// </summary>
    public static void Prune(IReadOnlyList<float[]> weights, IReadOnlyList<float[]> masks, double sparsity, bool global)
    {
        if (weights.Count != masks.Count) throw new ArgumentException($"{weights.Count} weights but {masks.Count} masks");
        if (!(sparsity >= 0 && sparsity < 1)) throw new ArgumentOutOfRangeException(nameof(sparsity), sparsity, "sparsity must be in [0, 1)");
        for (int i = 0; i < weights.Count; i++)
            if (weights[i].Length != masks[i].Length)
                throw new ArgumentException($"weight {i} has {weights[i].Length} values but its mask {masks[i].Length}");
        if (!global)
        {
            for (int i = 0; i < weights.Count; i++)
                PruneSmallest([weights[i]], [masks[i]], new SparsityTarget(sparsity).PrunedCount(weights[i].Length));
            return;
        }
        long total = weights.Sum(w => (long)w.Length);
        PruneSmallest(weights, masks, new SparsityTarget(sparsity).PrunedCount(total));
    }

    /// <summary>Prunes weights in order of (already pruned first, then |w|, then position) until <paramref name="count"/> are pruned.</summary>
    static void PruneSmallest(IReadOnlyList<float[]> weights, IReadOnlyList<float[]> masks, long count)
    {
        long total = weights.Sum(w => (long)w.Length);
        if (count <= 0) return;
        if (total > uint.MaxValue) throw new ArgumentException($"{total} weights pruned together; at most {uint.MaxValue}");
        // Key: high 32 bits 0 for pruned, else |w|'s IEEE bits + 1 (non-negative floats order as their bits); low 32
        // bits the position in the weights' concatenation (list order), so ties go to the earlier position.
        var keys = new ulong[total];
        var starts = new long[weights.Count + 1];
        long k = 0;
        for (int wi = 0; wi < weights.Count; wi++)
        {
            var w = weights[wi];
            var m = masks[wi];
            starts[wi] = k;
            for (int j = 0; j < w.Length; j++, k++)
            {
                ulong magnitude = m[j] == 0 ? 0UL : (ulong)(BitConverter.SingleToUInt32Bits(w[j]) & 0x7FFF_FFFFu) + 1;
                keys[k] = magnitude << 32 | (uint)k;
            }
        }
        starts[weights.Count] = k;
        Array.Sort(keys);
        long pruneCount = Math.Min(count, total);
        for (long p = 0; p < pruneCount; p++)
        {
            long flat = (uint)keys[p];
            int owner = Array.BinarySearch(starts, flat);
            if (owner < 0) owner = ~owner - 1;
            while (starts[owner + 1] <= flat) owner++;   // empty weights share a start
            masks[owner][(int)(flat - starts[owner])] = 0;
        }
    }

    /// <summary>Fraction of zeros in the masks together.</summary>
    public static double Sparsity(IReadOnlyList<float[]> masks)
    {
        long zeros = 0, total = 0;
        foreach (var m in masks)
        {
            total += m.Length;
            foreach (float v in m) if (v == 0) zeros++;
        }
        return total == 0 ? 0 : (double)zeros / total;
    }
}
