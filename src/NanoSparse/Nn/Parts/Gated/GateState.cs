namespace NanoSparse.Nn.Parts.Gated;

/// <summary>
/// How a controller's gates act at the moment: soft, g = sigmoid(z / τ) (training, early), or hard, g = 1[z &gt; 0]
/// with the straight-through estimator in backward (dz = dg · σ'(z/τ) / τ). A model built from a config starts hard:
/// evaluation, sampling and decoding run the 0/1 decisions. The sparsity regulariser lives here too, since its
/// gradient is added in the gate's backward:
///   R = gate_l1 · max(0, mean(sigmoid(z/τ)) − gate_budget)     per gated half of a block, mean over tokens and units
/// (the mean over the pass's rows: with data-parallel shards each shard's own mean; the loss the trainer reports
/// excludes R).
/// </summary>
public sealed class GateState
{
    public float Temperature { get; set; } = 1f;
    public bool Hard { get; set; } = true;
    /// <summary>gate_l1: weight of the budget penalty (0: none).</summary>
    public float L1 { get; set; }
    /// <summary>gate_budget: the fraction of units kept on average above which the penalty acts.</summary>
    public float Budget { get; set; } = 1f;
    /// <summary>Decode keeps every unit whatever the gate decides (the gate still runs): the skipping path's own cost,
    /// as a control for speed figures.</summary>
    public bool AllOpen { get; set; }
}
