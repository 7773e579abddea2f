namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// A pruner whose mask is "remove the lowest scores" of one score per weight (magnitude, random, Wanda). The driver
/// can then compare scores across layers (--scope global) when the method compares across a whole layer.
/// </summary>
public interface IScoredPruner : ILayerPruner
{
    /// <summary>
    /// True when unstructured pruning compares scores only within each output row (Wanda); false when across the
    /// whole layer (magnitude, random), which is what makes a global comparison meaningful.
    /// </summary>
    bool ComparesWithinRows { get; }

    /// <summary>Writes the score of every weight of the request (Out·In, row-major); higher is kept first.</summary>
    void Score(LayerPruneRequest request, Span<double> scores);
}
