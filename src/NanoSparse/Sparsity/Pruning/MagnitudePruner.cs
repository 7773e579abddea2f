namespace NanoSparse.Sparsity.Pruning;

/// <summary>Magnitude pruning: score |W_ij|, the lowest removed across the whole layer (or per N:M group).</summary>
public sealed class MagnitudePruner : IScoredPruner
{
    public string Name => "magnitude";
    public bool NeedsCalibration => false;
    public bool NeedsGram => false;
    public bool ComparesWithinRows => false;

    public void Score(LayerPruneRequest request, Span<double> scores)
    {
        var w = request.Weight;
        for (int i = 0; i < w.Length; i++) scores[i] = Math.Abs(w[i]);
    }

    public void Prune(LayerPruneRequest request)
    {
        var scores = new double[request.Weight.Length];
        Score(request, scores);
        MaskSelection.PruneByScore(request, scores, ComparesWithinRows);
    }
}
