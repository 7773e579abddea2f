namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// OWL, outlier-weighed layerwise sparsity (Yin et al. 2023): blocks with more outliers keep more weights.
///   D_l  = share of block l's Wanda scores |W_ij|·‖X_j‖₂ (over all its pruned Linear weights, dense model) above
///          M · mean(those scores)                                                     (M = --owl-threshold, 5)
///   r_l  = (D_l − min D) / (max D − min D)                                            (in [0, 1]; 0 when all equal)
///   S_l  = S − 2λ · (r_l − mean r)                                                    (λ = --owl-lambda, 0.08)
/// so the block sparsities spread over a width of 2λ, follow the outlier ratios inversely, and average to the target
/// S (the paper's code: ratios scaled to [0, 2λ], centred on the target density 1 − S).
/// </summary>
public static class OwlProfile
{
    /// <summary>D_l for one block: the fraction of its scores above <paramref name="threshold"/> times their mean.</summary>
    public static double OutlierRatio(IReadOnlyList<double[]> scoresOfBlock, double threshold)
    {
        double sum = 0;
        long count = 0;
        foreach (var s in scoresOfBlock)
        {
            foreach (double v in s) sum += v;
            count += s.Length;
        }
        if (count == 0) return 0;
        double limit = threshold * (sum / count);
        long above = 0;
        foreach (var s in scoresOfBlock)
            foreach (double v in s)
                if (v > limit) above++;
        return (double)above / count;
    }

    /// <summary>The per-block sparsities for outlier ratios <paramref name="ratios"/> (see the class comment).</summary>
    public static double[] Sparsities(IReadOnlyList<double> ratios, double target, double lambda)
    {
        if (ratios.Count == 0) return [];
        double min = ratios.Min(), max = ratios.Max();
        var r = ratios.Select(d => max > min ? (d - min) / (max - min) : 0.0).ToArray();
        double mean = r.Average();
        var result = r.Select(v => target - 2 * lambda * (v - mean)).ToArray();
        for (int l = 0; l < result.Length; l++)
            if (!(result[l] >= 0 && result[l] < 1))
                throw new ArgumentException($"--profile owl: block {l}'s sparsity would be {result[l]:0.####}, outside [0, 1) (target {target}, --owl-lambda {lambda}); give a smaller --owl-lambda");
        return result;
    }
}
