namespace NanoSparse.Sparsity;

/// <summary>One weight matrix in a density allocation: its (out, in) shape and how many such matrices share the density.</summary>
public readonly record struct WeightShape(string Name, int OutFeatures, int InFeatures, int Count = 1)
{
    public long Cells => (long)OutFeatures * InFeatures * Count;
}

/// <summary>
/// Per-layer densities for a global density target, as in RigL (Evci et al. 2020, sparse_utils.get_mask_random /
/// "erdos_renyi" and "erdos_renyi_kernel"):
///   Erdős–Rényi (Mocanu et al. 2018): density of an (out, in) matrix  d = ε · (out + in) / (out · in)
///   ERK adds the kernel dimensions to both sums, (out + in + kh + kw) / (out · in · kh · kw); a Linear weight has no
///   kernel dimensions, so for the 2-D weights of a GPT ERK is exactly ER.
/// ε is chosen so that Σ d·cells = density · Σ cells. A layer whose d would exceed 1 is made dense (the one with the
/// largest raw (out + in)/(out · in) first, as RigL's loop does), its cells taken from the budget, and ε solved again
/// for the rest until no d exceeds 1.
/// </summary>
public static class ErdosRenyi
{
    /// <summary>The density of each weight (same order as <paramref name="weights"/>) for the global <paramref name="density"/> in (0, 1].</summary>
    public static double[] Densities(IReadOnlyList<WeightShape> weights, double density)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (!(density > 0 && density <= 1)) throw new ArgumentOutOfRangeException(nameof(density), density, "density must be in (0, 1]");
        int count = weights.Count;
        var raw = new double[count];
        for (int i = 0; i < count; i++)
            raw[i] = ((double)weights[i].OutFeatures + weights[i].InFeatures) / ((double)weights[i].OutFeatures * weights[i].InFeatures);
        var dense = new bool[count];
        double total = 0;
        foreach (var w in weights) total += w.Cells;
        while (true)
        {
            // Σ_{sparse} ε·raw·cells = density·total − Σ_{dense} cells
            double budget = density * total, divisor = 0;
            for (int i = 0; i < count; i++)
                if (dense[i]) budget -= weights[i].Cells; else divisor += raw[i] * weights[i].Cells;
            if (divisor == 0) return Enumerable.Repeat(1.0, count).ToArray();
            double eps = budget / divisor;
            double maxRaw = 0;
            for (int i = 0; i < count; i++)
                if (!dense[i] && raw[i] * eps > 1) maxRaw = Math.Max(maxRaw, raw[i]);
            if (maxRaw == 0)
            {
                var result = new double[count];
                for (int i = 0; i < count; i++) result[i] = dense[i] ? 1.0 : eps * raw[i];
                return result;
            }
            for (int i = 0; i < count; i++)
                if (!dense[i] && raw[i] == maxRaw) dense[i] = true;
        }
    }
}
