namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models"): the score of W_ij is
/// |W_ij| · ‖X_j‖₂, the weight's magnitude times the L2 norm of input feature j over the calibration tokens, and
/// weights are compared within each output row (the paper's per-output comparison group): every row loses the same
/// number, int(In · sparsity). N:M keeps the N highest scores of every group of M inputs in a row. No weight update.
/// </summary>
public sealed class WandaPruner : IScoredPruner
{
    public string Name => "wanda";
    public bool NeedsCalibration => true;
    public bool NeedsGram => false;
    public bool ComparesWithinRows => true;

    public void Score(LayerPruneRequest request, Span<double> scores)
    {
        var stats = request.Stats ?? throw new ArgumentException($"{request.Name}: wanda needs the calibration statistics of the layer's input");
        if (stats.Features != request.InFeatures)
            throw new ArgumentException($"{request.Name}: input statistics have {stats.Features} features, the weight takes {request.InFeatures}");
        Score(request.Weight, request.OutFeatures, request.InFeatures, stats.SumSquares, scores);
    }

    /// <summary>scores (Out, In) = |W| · ‖X_j‖₂ with ‖X_j‖₂² = <paramref name="sumSquares"/>[j].</summary>
    public static void Score(ReadOnlySpan<float> weight, int outFeatures, int inFeatures, ReadOnlySpan<double> sumSquares, Span<double> scores)
    {
        Span<double> norm = inFeatures <= 4096 ? stackalloc double[inFeatures] : new double[inFeatures];
        for (int j = 0; j < inFeatures; j++) norm[j] = Math.Sqrt(sumSquares[j]);
        for (int r = 0; r < outFeatures; r++)
            for (int j = 0; j < inFeatures; j++)
                scores[r * inFeatures + j] = Math.Abs((double)weight[r * inFeatures + j]) * norm[j];
    }

    public void Prune(LayerPruneRequest request)
    {
        var scores = new double[request.Weight.Length];
        Score(request, scores);
        MaskSelection.PruneByScore(request, scores, ComparesWithinRows);
    }
}
