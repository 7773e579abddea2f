using System.Globalization;
using NanoSparse.Nn;

namespace NanoSparse.Sparsity.Pruning.Structured;

/// <summary>Whether the lowest-scoring units are removed in every layer alike or ranked across the whole model.</summary>
public enum StructuredScope
{
    /// <summary>Each layer loses floor(fraction · its units) of its own lowest-scoring heads (neurons).</summary>
    Layer,
    /// <summary>
    /// floor(fraction · all units of the model) of the lowest-scoring heads (neurons) anywhere, so layers end up with
    /// different widths; a layer's last head (neuron) is never removed.
    /// </summary>
    Global,
}

/// <summary>The units that survive: per layer the kept heads' and neurons' indices, ascending.</summary>
public sealed record StructuredPlan(int[][] KeptHeads, int[][] KeptNeurons)
{
    public int Layers => KeptHeads.Length;
}

/// <summary>
/// Structured pruning: whole attention heads and MLP neurons are removed, so the model becomes a smaller dense model
/// (per-layer n_head and MLP width, GptConfig.NHeadPerLayer / MlpHiddenPerLayer) that runs through the same dense
/// kernels, only narrower. A removed head takes its q, k, v rows of c_attn (and their biases) and its columns of
/// attn.c_proj with it; a removed neuron its row of mlp.c_fc (and bias) and its column of mlp.c_proj. Everything else
/// is copied. The result computes exactly what the original computes with those c_proj columns zeroed.
/// </summary>
public static class StructuredPruner
{
    /// <summary>Throws unless <paramref name="fraction"/> lies in [0, 1), naming <paramref name="option"/>.</summary>
    public static void CheckFraction(double fraction, string option)
    {
        if (!(fraction >= 0 && fraction < 1))
            throw new ArgumentException($"{option} ({fraction.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1): the fraction of units to remove (a layer keeps at least one)");
    }

    /// <summary>
    /// Chooses the units to keep: the lowest scores go first (ties: the earlier layer, then the lower index).
    /// Layer scope removes floor(fraction · n) units of each layer's n; global scope removes floor(fraction · total)
    /// units ranked over all layers, skipping any that would leave its layer empty.
    /// </summary>
    public static StructuredPlan Select(UnitScores scores, double headFraction, double neuronFraction, StructuredScope scope)
    {
        ArgumentNullException.ThrowIfNull(scores);
        CheckFraction(headFraction, "heads fraction");
        CheckFraction(neuronFraction, "neurons fraction");
        if (scores.Heads.Length != scores.Neurons.Length)
            throw new ArgumentException($"scores cover {scores.Heads.Length} layers of heads but {scores.Neurons.Length} of neurons");
        return new StructuredPlan(Keep(scores.Heads, headFraction, scope, "heads"), Keep(scores.Neurons, neuronFraction, scope, "neurons"));
    }

    static int[][] Keep(double[][] scores, double fraction, StructuredScope scope, string what)
    {
        int L = scores.Length;
        for (int l = 0; l < L; l++)
        {
            if (scores[l].Length == 0) throw new ArgumentException($"layer {l} has no {what} to score");
            for (int i = 0; i < scores[l].Length; i++)
                if (!double.IsFinite(scores[l][i]))
                    throw new ArgumentException($"the score of {what} {i} of layer {l} is {scores[l][i].ToString(CultureInfo.InvariantCulture)}; expected a finite number (are the weights or the calibration activations finite?)");
        }
        var removed = new bool[L][];
        for (int l = 0; l < L; l++) removed[l] = new bool[scores[l].Length];
        if (scope == StructuredScope.Layer)
        {
            for (int l = 0; l < L; l++)
            {
                int n = scores[l].Length, drop = (int)Math.Floor(fraction * n);   // < n for fraction < 1
                foreach (int i in Enumerable.Range(0, n).OrderBy(i => scores[l][i]).ThenBy(i => i).Take(drop)) removed[l][i] = true;
            }
        }
        else
        {
            long total = scores.Sum(s => (long)s.Length);
            long drop = (long)Math.Floor(fraction * total);
            var left = scores.Select(s => s.Length).ToArray();
            var order = Enumerable.Range(0, L).SelectMany(l => Enumerable.Range(0, scores[l].Length).Select(i => (Layer: l, Index: i)))
                .OrderBy(u => scores[u.Layer][u.Index]).ThenBy(u => u.Layer).ThenBy(u => u.Index);
            foreach (var (l, i) in order)
            {
                if (drop == 0) break;
                if (left[l] == 1) continue;   // a layer keeps at least one unit
                removed[l][i] = true;
                left[l]--;
                drop--;
            }
        }
        return removed.Select(r => Enumerable.Range(0, r.Length).Where(i => !r[i]).ToArray()).ToArray();
    }

    /// <summary>
    /// The config of the pruned model: per-layer head counts and MLP widths of <paramref name="plan"/> (absent when they
    /// are nanoGPT's n_head and 4·n_embd everywhere), every Linear weight dense.
    /// </summary>
    public static GptConfig PrunedConfig(GptConfig config, StructuredPlan plan)
    {
        ArgumentNullException.ThrowIfNull(config);
        CheckPlan(config, plan);
        var pruned = config with
        {
            NHeadPerLayer = plan.KeptHeads.Select(k => k.Length).ToArray(),
            MlpHiddenPerLayer = plan.KeptNeurons.Select(k => k.Length).ToArray(),
            WeightLayouts = null,
            WeightDensities = null,
            SparsitySeed = 0,
        };
        if (pruned.HasStandardWidths) pruned = pruned with { NHeadPerLayer = null, MlpHiddenPerLayer = null };
        pruned.Validate();
        return pruned;
    }

    /// <summary>The smaller model for (<paramref name="batchSize"/>, <paramref name="seqLen"/>) with the kept units' weights copied from <paramref name="source"/>.</summary>
    public static Gpt Build(Gpt source, StructuredPlan plan, int batchSize, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(source);
        var target = new Gpt(PrunedConfig(source.Config, plan), batchSize, seqLen);
        Transfer(source, p => p.Value.Span, target, p => p.Value.Span, plan);
        return target;
    }

    /// <summary>
    /// Copies per-parameter buffers (values, or an optimizer's moments laid out like them) from the source model's
    /// parameters to the pruned model's, keeping the rows and columns of the kept units. A sparse source weight is read
    /// through its dense view.
    /// </summary>
    public static void Transfer(Gpt source, SourceBuffer sourceOf, Gpt target, TargetBuffer targetOf, StructuredPlan plan)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        CheckPlan(source.Config, plan);
        var byName = source.Parameters.ToDictionary(p => p.Name, StringComparer.Ordinal);
        int hs = source.Config.HeadSize;
        foreach (var p in target.Parameters)
        {
            if (!byName.TryGetValue(p.Name, out var q))
                throw new ArgumentException($"the pruned model's parameter '{p.Name}' is not in the source model");
            if (p.Layout is not null && p.IsSparse) throw new ArgumentException($"the pruned model's weight '{p.Name}' must be dense");
            ReadOnlySpan<float> from = sourceOf(q);
            float[]? dense = null;
            if (q.Layout is not null && q.IsSparse)
            {
                dense = new float[q.LogicalLength];
                q.Layout.ToDense(from, dense);
                from = dense;
            }
            var to = targetOf(p);
            var (rows, cols) = Selection(p.Name, plan, source.Config, hs);
            int sourceCols = q.Shape.Length == 2 ? q.Shape[1] : q.Shape[0];
            if (q.Shape.Length == 1)
            {
                // a bias or LayerNorm vector: one row, the kept entries (rows select them for c_attn/c_fc biases)
                Gather(from, sourceCols, null, rows, to);
            }
            else Gather(from, sourceCols, rows, cols, to);
        }
    }

    /// <summary>A parameter's buffer in the source model (its values, or a moment buffer's segment for it).</summary>
    public delegate ReadOnlySpan<float> SourceBuffer(Parameter p);
    /// <summary>A parameter's buffer in the pruned model.</summary>
    public delegate Span<float> TargetBuffer(Parameter p);

    // Rows and columns of a source parameter that the pruned model keeps (null: all).
    static (int[]? Rows, int[]? Cols) Selection(string name, StructuredPlan plan, GptConfig config, int hs)
    {
        const string prefix = "transformer.h.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return (null, null);
        int dot = name.IndexOf('.', prefix.Length);
        int l = int.Parse(name.AsSpan(prefix.Length, dot - prefix.Length), CultureInfo.InvariantCulture);
        string rest = name[(dot + 1)..];
        int A = config.AttentionWidth(l);
        return rest switch
        {
            // q, k and v rows of each kept head: p·A + h·hs + d
            "attn.c_attn.weight" or "attn.c_attn.bias" => (QkvRows(plan.KeptHeads[l], A, hs), null),
            "attn.c_proj.weight" => (null, HeadColumns(plan.KeptHeads[l], hs)),
            "mlp.c_fc.weight" or "mlp.c_fc.bias" => (plan.KeptNeurons[l], null),
            "mlp.c_proj.weight" => (null, plan.KeptNeurons[l]),
            _ => (null, null),
        };
    }

    static int[] HeadColumns(int[] heads, int hs) => heads.SelectMany(h => Enumerable.Range(h * hs, hs)).ToArray();

    static int[] QkvRows(int[] heads, int A, int hs) =>
        Enumerable.Range(0, 3).SelectMany(p => HeadColumns(heads, hs).Select(i => p * A + i)).ToArray();

    // dst = src[rows, cols] of a row-major matrix with sourceCols columns (null: every row / column)
    static void Gather(ReadOnlySpan<float> src, int sourceCols, int[]? rows, int[]? cols, Span<float> dst)
    {
        int sourceRows = src.Length / sourceCols;
        int nr = rows?.Length ?? sourceRows, nc = cols?.Length ?? sourceCols;
        if (dst.Length != (long)nr * nc)
            throw new ArgumentException($"the pruned parameter holds {dst.Length} values, expected {nr}×{nc}");
        for (int r = 0; r < nr; r++)
        {
            var row = src.Slice((rows?[r] ?? r) * sourceCols, sourceCols);
            var outRow = dst.Slice(r * nc, nc);
            if (cols is null) row.CopyTo(outRow);
            else for (int c = 0; c < nc; c++) outRow[c] = row[cols[c]];
        }
    }

    static void CheckPlan(GptConfig config, StructuredPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.KeptHeads.Length != config.NLayer || plan.KeptNeurons.Length != config.NLayer)
            throw new ArgumentException($"the plan covers {plan.KeptHeads.Length} layers of heads and {plan.KeptNeurons.Length} of neurons, but the model has n_layer {config.NLayer}");
        for (int l = 0; l < config.NLayer; l++)
        {
            CheckKept(plan.KeptHeads[l], config.Heads(l), l, "head");
            CheckKept(plan.KeptNeurons[l], config.MlpHidden(l), l, "neuron");
        }
    }

    static void CheckKept(int[] kept, int count, int layer, string what)
    {
        if (kept.Length == 0)
            throw new ArgumentException($"layer {layer} would keep no {what}; at least one {what} per layer must remain");
        for (int i = 0; i < kept.Length; i++)
            if (kept[i] < 0 || kept[i] >= count || i > 0 && kept[i] <= kept[i - 1])
                throw new ArgumentException($"layer {layer}: kept {what} indices must be ascending and in [0, {count}), found {kept[i]} at position {i}");
    }
}
