namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// Random pruning, the naive baseline: every weight gets a uniform score from the request's Rng (drawn in row-major
/// order), the lowest removed across the layer (or per N:M group). The same seed gives the same mask.
/// </summary>
public sealed class RandomPruner : IScoredPruner
{
    public string Name => "random";
    public bool NeedsCalibration => false;
    public bool NeedsGram => false;
    public bool ComparesWithinRows => false;

    public void Score(LayerPruneRequest request, Span<double> scores)
    {
        for (int i = 0; i < request.Weight.Length; i++) scores[i] = request.Rng.NextDouble();
    }

    public void Prune(LayerPruneRequest request)
    {
        var scores = new double[request.Weight.Length];
        Score(request, scores);
        MaskSelection.PruneByScore(request, scores, ComparesWithinRows);
    }
}
