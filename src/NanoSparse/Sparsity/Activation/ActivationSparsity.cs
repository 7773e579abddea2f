using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// Puts calibrated TEAL / WINA thresholds on a model: every block Linear weight becomes a
/// <see cref="ThresholdedLinearWeight"/> around its own layout, in a new model with the same configuration and
/// parameter values (the parts are built once, so the thresholded weights go in at construction). Inference only.
/// </summary>
public static class ActivationSparsity
{
    /// <summary>
    /// A copy of <paramref name="model"/> (same config, batch, seq_len and values) whose block Linear weights zero the
    /// inputs below their thresholds, held for inference. With <paramref name="decodeCopies"/> every weight also keeps
    /// Wᵀ for the sparse-input decode kernel (4 bytes per weight more): for sampling and decode benchmarks, not for
    /// evaluation, whose many-row products go through the layouts' own kernels.
    /// </summary>
    public static Gpt Apply(Gpt model, ActivationThresholds thresholds, bool decodeCopies, string source = "thresholds",
        SparseInputSplit split = SparseInputSplit.Inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(thresholds);
        thresholds.CheckMatches(model, source);
        var byName = thresholds.Weights.ToDictionary(w => w.Name);
        var wrapped = new Dictionary<string, ILinearWeight>();
        foreach (var (name, _, _, weight, values) in TealCalibration.BlockWeights(model))
        {
            var inner = weight is ThresholdedLinearWeight t ? t.Inner : weight;
            var tau = TealCalibration.InputThresholds(thresholds.Method, byName[name].Threshold, inner, values.Span);
            wrapped[name] = new ThresholdedLinearWeight(inner, tau) { Split = split };
        }
        var result = new Gpt(model.Config, model.BatchSize, model.SeqLen, wrapped);
        model.ParameterData.CopyTo(result.ParameterData);
        if (decodeCopies)
            foreach (var p in result.Parameters)
                if (p.Layout is ThresholdedLinearWeight t) t.BuildDecodeCopy(p.Value.Span);
        result.PrepareForInference();
        return result;
    }

    /// <summary>The thresholded weights of a model, by parameter name (empty when none).</summary>
    public static IReadOnlyList<(string Name, ThresholdedLinearWeight Weight)> Weights(Gpt model) =>
        model.Parameters.Where(p => p.Layout is ThresholdedLinearWeight).Select(p => (p.Name, (ThresholdedLinearWeight)p.Layout!)).ToList();

    /// <summary>Fraction of the block Linear weights' input entries zeroed since the counts were last reset (NaN when none seen).</summary>
    public static double MeasuredSparsity(Gpt model)
    {
        long kept = 0, seen = 0;
        foreach (var (_, w) in Weights(model))
        {
            var (k, s) = w.Counts;
            kept += k;
            seen += s;
        }
        return seen == 0 ? double.NaN : 1.0 - (double)kept / seen;
    }

    /// <summary>
    /// The same, with each weight's inputs counted by the weights each one lets a decode skip (Out per input entry): the
    /// fraction of block weight reads a sparse-input product saves, Σ zeroed·Out / Σ seen·Out (NaN when none seen).
    /// </summary>
    public static double MeasuredWeightSparsity(Gpt model)
    {
        double kept = 0, seen = 0;
        foreach (var (_, w) in Weights(model))
        {
            var (k, s) = w.Counts;
            kept += (double)k * w.OutFeatures;
            seen += (double)s * w.OutFeatures;
        }
        return seen == 0 ? double.NaN : 1.0 - kept / seen;
    }

    public static void ResetCounts(Gpt model)
    {
        foreach (var (_, w) in Weights(model)) w.ResetCounts();
    }
}
