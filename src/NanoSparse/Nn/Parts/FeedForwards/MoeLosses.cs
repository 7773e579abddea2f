namespace NanoSparse.Nn.Parts.FeedForwards;

/// <summary>A model's mixture-of-experts layers seen together: their losses, load and parameter counts.</summary>
public static class MoeLosses
{
    /// <summary>The model's MoE feed-forward parts, in block order (empty for a dense model).</summary>
    public static IEnumerable<MoeFeedForward> Layers(Gpt model) => model.Blocks.Select(b => b.FeedForward).OfType<MoeFeedForward>();

    /// <summary>
    /// Σ over MoE layers of moe_aux_loss · balance + moe_z_loss · z for the last forward pass: what the trainer adds to the
    /// cross-entropy to form the training loss (0 without MoE). Allocates nothing.
    /// </summary>
    public static double Weighted(Gpt model)
    {
        double sum = 0;
        var blocks = model.Blocks;
        for (int l = 0; l < blocks.Count; l++)   // indexed: a foreach over the interface would allocate an enumerator per step
            if (blocks[l].FeedForward is MoeFeedForward moe) sum += moe.WeightedLoss;
        return sum;
    }

    /// <summary>
    /// Parameters a token uses (active: embeddings, attention, norms, dense MLPs, each MoE layer's router and top_k experts;
    /// for expert_choice, capacity_factor·top_k experts on average) and all parameters (total).
    /// </summary>
    public static (double Active, long Total) ParameterCounts(Gpt model)
    {
        long total = model.ParameterCount;
        double inactive = 0;
        foreach (var moe in Layers(model))
        {
            long perExpert = 0;
            string prefix = moe.Name + ".experts.0.";
            foreach (var p in model.Parameters)
                if (p.Name.StartsWith(prefix, StringComparison.Ordinal)) perExpert += p.Length;
            double used = moe.ExpertChoice ? Math.Min(moe.Experts, MoeSettings.Capacity(model.Config)!.Value * moe.TopK) : moe.TopK;
            inactive += (moe.Experts - used) * perExpert;
        }
        return (total - inactive, total);
    }
}
