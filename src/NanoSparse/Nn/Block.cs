using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Nn;

/// <summary>
/// One transformer block (pre-LN), nanoGPT's Block:
///   x = x + attn(ln_1(x))
///   x = x + mlp(ln_2(x))
/// The data flow is written here once; what attention and the feed-forward do, and how their Linear weights are
/// stored, is the parts' business. Every buffer is (N, C) with N the rows (positions) of the pass.
/// </summary>
public sealed class Block
{
    readonly LayerNormPart _ln1, _ln2;
    readonly ActivationSlot _h, _y;   // (N, C): x after the attention half, then after the MLP half (the block's output)

    internal Block(GptConfig config, int layer, BufferLayout layout, IReadOnlyDictionary<string, ILinearWeight>? weights = null)
    {
        int C = config.NEmbd, A = config.AttentionWidth(layer);   // A = heads·hs
        string p = $"transformer.h.{layer}.";
        Layer = layer;
        // Built in data order, so the parameters come in nanoGPT's state_dict order.
        _ln1 = new LayerNormPart(p + "ln_1", C, config.Bias, layout);
        Attention = Parts.AttentionPatterns.AttentionPatternRegistry.Create(config, p + "attn",
            Weight(config, layer, "attn.c_attn", 3 * A, C, weights), Weight(config, layer, "attn.c_proj", C, A, weights), layout);
        _h = layout.Activation(C);
        _ln2 = new LayerNormPart(p + "ln_2", C, config.Bias, layout);
        FeedForward = Parts.FeedForwards.FeedForwardRegistry.Create(config, layer, p + "mlp",
            (weight, outFeatures, inFeatures) => Weight(config, layer, weight, outFeatures, inFeatures, weights), layout);
        _y = layout.Activation(C);
    }

    // A layout that draws its positions (from a density, or its own random pattern) gets an Rng seeded from the
    // config's sparsity_seed and the weight's name, so one config always builds the same structure (resume, eval, sample).
    // A layout given in weights (e.g. rebuilt from a checkpoint's stored structure) is used as it is.
    static ILinearWeight Weight(GptConfig config, int layer, string name, int outFeatures, int inFeatures,
        IReadOnlyDictionary<string, ILinearWeight>? weights)
    {
        string parameter = $"transformer.h.{layer}.{name}.weight", layout = config.WeightLayout(layer, name);
        if (weights is not null && weights.TryGetValue(parameter, out var given))
        {
            if (given.OutFeatures != outFeatures || given.InFeatures != inFeatures)
                throw new ArgumentException($"weight '{parameter}' is ({given.OutFeatures}, {given.InFeatures}), expected ({outFeatures}, {inFeatures})");
            return given;
        }
        try
        {
            var spec = layout == LinearWeightLayouts.Dense
                ? LinearWeightSpec.Full(outFeatures, inFeatures)
                : LinearWeightSpec.Random(outFeatures, inFeatures, config.WeightDensity(layer, name), new Rng(config.WeightSeed(layer, name)));
            return LinearWeightLayouts.Create(layout, spec);
        }
        catch (ArgumentException e)
        {
            // One line: the layouts' own messages may carry a parameter name and a second line.
            string why = e.Message;
            int cut = why.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (cut >= 0) why = why[..cut];
            cut = why.IndexOf('\n');
            if (cut >= 0) why = why[..cut].TrimEnd();
            throw new ArgumentException($"weight_layouts: {parameter} ({outFeatures}, {inFeatures}) as \"{layout}\": {why}", e);
        }
    }

    public int Layer { get; }
    public IAttention Attention { get; internal set; }       // set by Gpt.ReplaceAttention (inference-time variants)
    public IFeedForward FeedForward { get; internal set; }   // set by Gpt.ReplaceFeedForward (inference-time variants)

    /// <summary>Runs the block on x (N, C) and returns its output (N, C), kept for the backward pass.</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<float> x, scoped in Pass pass)
    {
        var h = pass.Act(_h);
        var y = pass.Act(_y);
        Attention.Forward(h, _ln1.Forward(x, pass), x, pass);      // x = x + attn(ln_1(x))
        FeedForward.Forward(y, _ln2.Forward(h, pass), h, pass);    // x = x + mlp(ln_2(x))
        return y;
    }

    /// <summary>
    /// The input (N, In) that Linear weight <paramref name="weight"/> (one of <see cref="GptConfig.BlockWeights"/>) saw in
    /// the last Forward: ln_1's output for attn.c_attn, the attention output for attn.c_proj, ln_2's output for
    /// mlp.c_fc, the GELU output for mlp.c_proj. All are kept for the backward pass anyway.
    /// </summary>
    public ReadOnlySpan<float> LinearInput(string weight, scoped in Pass pass) => weight switch
    {
        "attn.c_attn" => _ln1.Output(pass),
        "attn.c_proj" => Attention.ProjectionInput(pass),
        "mlp.c_fc" => _ln2.Output(pass),
        "mlp.c_proj" => FeedForward.ProjectionInput(pass),
        _ => throw new ArgumentException($"'{weight}' is not a Linear weight of a block; expected one of {string.Join(", ", GptConfig.BlockWeights)}", nameof(weight)),
    };

    /// <summary>The output of the last Forward (N, C).</summary>
    public ReadOnlySpan<float> Output(scoped in Pass pass) => pass.Act(_y);

    /// <summary>
    /// dx (N, C) holds d output on entry and d x on exit (the residual stream's gradient, updated in place);
    /// dbranch (N, C) is scratch for the gradient entering each half's branch. x as in Forward.
    /// </summary>
    public void Backward(Span<float> dx, Span<float> dbranch, ReadOnlySpan<float> x, in Pass pass)
    {
        var h = pass.Act(_h);
        // in the forward pass this was: y = h + mlp(ln_2(h)); dx carries dy and, unchanged, the direct path into dh
        FeedForward.Backward(dbranch, dx, _ln2.Output(pass), pass);
        _ln2.Backward(dx, dbranch, h, pass);
        // in the forward pass this was: h = x + attn(ln_1(x))
        Attention.Backward(dbranch, dx, _ln1.Output(pass), pass);
        _ln1.Backward(dx, dbranch, x, pass);
    }

    /// <summary>
    /// Incremental decoding: x (n, C), the residual stream of n new positions, updated in place; ln (n, C), mean and
    /// rstd (n) and branch (n, C) are scratch; the attention half appends the positions to cache.
    /// </summary>
    public void Decode(Span<float> x, Span<float> ln, Span<float> mean, Span<float> rstd, Span<float> branch, IKvCache cache,
        in Decoding decoding)
    {
        int n = decoding.Rows;
        Attention.Decode(branch, _ln1.Decode(ln, mean, rstd, x, n, decoding), cache, decoding);   // x = x + attn(ln_1(x))
        Residual.Add(x, branch, x);
        FeedForward.Decode(branch, _ln2.Decode(ln, mean, rstd, x, n, decoding), decoding);      // x = x + mlp(ln_2(x))
        Residual.Add(x, branch, x);
    }
}
