using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Optim;

namespace NanoSparse.Training;

/// <summary>One Linear weight after <see cref="Sparsify.Run"/>: its layout, density and bytes (file; values + indices in memory).</summary>
public sealed record SparsifiedWeight(string Name, string Layout, double Density, long FileBytes, long MemoryBytes, long DenseBytes);

/// <summary>
/// `nanosparse sparsify`: a checkpoint whose Linear weights contain zeros (trained, pruned or imported from any tool)
/// → the same model with those weights in sparse layouts that store exactly the nonzeros (see
/// <see cref="SparseLayoutChoice"/>). Embeddings, LayerNorms and biases stay as they are. A training checkpoint keeps
/// its state (step, RNGs, sampler) and its AdamW moments at the stored positions; an imported one stays a
/// model.safetensors + config.json. The output is written by the checkpoint's journaled save, so an existing
/// output folder holds either its previous checkpoint or the new one, never a mix.
/// </summary>
public static class Sparsify
{
    public static IReadOnlyList<SparsifiedWeight> Run(string dir, string outDir, string format, IReadOnlyList<string>? weights = null)
    {
        SparseLayoutChoice.Validate(format);
        CheckOutDir(dir, outDir);
        var source = Checkpoint.LoadAnyModel(dir, 1, 1, out var state);
        var target = Convert(source, format, Select(source.Config, weights));
        Write(dir, source, state, target, outDir);
        return target.Parameters.Where(p => p.Layout is not null).Select(p => Describe(p.Name, p.Layout!)).ToList();
    }

    /// <summary>Refuses an output folder that is the input checkpoint itself.</summary>
    public static void CheckOutDir(string dir, string outDir)
    {
        if (Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar) == Path.GetFullPath(outDir).TrimEnd(Path.DirectorySeparatorChar))
            throw new ArgumentException($"--out {outDir} is the checkpoint itself; write the sparse copy to another folder");
    }

    /// <summary>
    /// A new model (batch 1 × 1 position) holding <paramref name="source"/>'s values, the Linear weights named in
    /// <paramref name="selected"/> (state_dict names) in the layout <paramref name="format"/> gives their zeros, the
    /// others in their current layout.
    /// </summary>
    public static Gpt Convert(Gpt source, string format, IReadOnlySet<string> selected)
    {
        SparseLayoutChoice.Validate(format);
        var layouts = new Dictionary<string, ILinearWeight>(StringComparer.Ordinal);
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        var denseOf = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var p in source.Parameters)
        {
            if (p.Layout is null) continue;
            var dense = new float[p.LogicalLength];
            p.Layout.ToDense(p.Value.Span, dense);
            denseOf[p.Name] = dense;
            ILinearWeight layout = p.Layout;
            if (selected.Contains(p.Name))
            {
                var (chosen, _) = SparseLayoutChoice.Choose(format, p.Name, p.Shape[0], p.Shape[1], dense);
                layout = chosen ?? (ILinearWeight)new DenseLinearWeight(p.Shape[0], p.Shape[1]);
            }
            layouts[p.Name] = layout;
            if (layout is ISparseLinearStructure s) names[KeyOf(p.Name)] = s.LayoutString;
        }
        var sparseConfig = source.Config with { WeightLayouts = names.Count == 0 ? null : names, WeightDensities = null };
        var target = new Gpt(sparseConfig, 1, 1, layouts);
        var byName = source.Parameters.ToDictionary(p => p.Name);
        foreach (var p in target.Parameters)
            Place(p, byName[p.Name].Value.Span, denseOf);
        return target;
    }

    /// <summary>
    /// Writes <paramref name="target"/> to <paramref name="outDir"/> as the checkpoint in <paramref name="dir"/> was
    /// written (its <paramref name="state"/> and AdamW moments, gathered at the target's stored positions, or a
    /// model.safetensors + config.json), with <paramref name="extraFiles"/> in the same journaled commit.
    /// <paramref name="source"/> is the model as loaded from <paramref name="dir"/> (its layouts match the moments).
    /// </summary>
    public static void Write(string dir, Gpt source, CheckpointState? state, Gpt target, string outDir,
        IReadOnlyDictionary<string, byte[]>? extraFiles = null)
    {
        string meta = Path.Combine(dir, Checkpoint.MetaFile);
        if (state is null) Checkpoint.SaveModel(outDir, target, meta, extraFiles);
        else
        {
            AdamW? optimizer = null;
            if (File.Exists(Path.Combine(dir, Checkpoint.OptimizerFile)))
            {
                var from = NewOptimizer(source, state.Config);
                Checkpoint.LoadOptimizer(dir, source, from, state);
                optimizer = NewOptimizer(target, state.Config);
                optimizer.StepCount = from.StepCount;
                CopyMoments(source, from.M, target, optimizer.M);
                CopyMoments(source, from.V, target, optimizer.V);
            }
            state.Model = ModelArgs.From(target.Config);
            state.SaveId = null;
            state.Files = null;
            Checkpoint.Save(outDir, target, optimizer, state, meta, extraFiles: extraFiles);
        }
    }

    /// <summary>A layout's density and bytes: file tensors, and values plus the index arrays it holds in memory.</summary>
    public static SparsifiedWeight Describe(string name, ILinearWeight layout)
    {
        long dense = 4L * layout.OutFeatures * layout.InFeatures;
        return layout is ISparseLinearStructure s
            ? new(name, s.Layout, SparseWeightFiles.Density(s), SparseLayoutChoice.FileBytes(s), 4L * s.StoredCount + s.IndexBytesInMemory, dense)
            : new(name, layout.Layout, 1.0, dense, dense, dense);
    }

    static AdamW NewOptimizer(Gpt gpt, TrainConfig c) =>
        new(gpt.ParameterData.Length, gpt.Parameters.Select(p => AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay)).ToArray(),
            c.Beta1, c.Beta2, 1e-8f, c.WeightDecay);

    /// <summary>Target parameter values from the source's: dense copied, sparse gathered at its stored positions.</summary>
    static void Place(Parameter p, ReadOnlySpan<float> sourceValues, Dictionary<string, float[]> denseOf)
    {
        if (p.Layout is ISparseLinearStructure sparse) sparse.Gather(denseOf[p.Name], p.Value.Span);
        else if (p.Layout is not null) denseOf[p.Name].CopyTo(p.Value.Span);
        else sourceValues.CopyTo(p.Value.Span);
    }

    /// <summary>An AdamW moment buffer moved to the target's layouts (moments at positions no longer stored are dropped).</summary>
    static void CopyMoments(Gpt source, Span<float> from, Gpt target, Span<float> to)
    {
        var sourceParams = source.Parameters.ToDictionary(p => p.Name);
        foreach (var p in target.Parameters)
        {
            var q = sourceParams[p.Name];
            var fromSeg = AdamW.SegmentOf(source.ParameterData, q.Value.Span, q.Decay);
            var toSeg = AdamW.SegmentOf(target.ParameterData, p.Value.Span, p.Decay);
            var src = from.Slice(fromSeg.Offset, fromSeg.Length);
            var dst = to.Slice(toSeg.Offset, toSeg.Length);
            if (q.Layout is null) { src.CopyTo(dst); continue; }
            var dense = new float[q.LogicalLength];
            q.Layout.ToDense(src, dense);
            if (p.Layout is ISparseLinearStructure sparse) sparse.Gather(dense, dst);
            else dense.CopyTo(dst);
        }
    }

    /// <summary>
    /// The state_dict names the --weights list selects: entries "mlp.c_fc" (every layer) or "h.3.mlp.c_fc" (one
    /// layer); null or empty selects all four Linear weights of every block.
    /// </summary>
    public static HashSet<string> Select(GptConfig config, IReadOnlyList<string>? weights)
    {
        var all = SparseWeightFiles.LinearWeights(config).Select(w => w.Name).ToList();
        if (weights is null || weights.Count == 0) return all.ToHashSet();
        var result = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in weights)
        {
            var matched = all.Where(n => KeyOf(n) == entry || KeyOf(n).EndsWith("." + entry, StringComparison.Ordinal) && GptConfig.BlockWeights.Contains(entry)).ToList();
            if (matched.Count == 0)
                throw new ArgumentException($"--weights entry '{entry}' names no Linear weight; expected one of {string.Join(", ", GptConfig.BlockWeights)}, optionally prefixed h.<layer>. with layer in [0, {config.NLayer})");
            result.UnionWith(matched);
        }
        return result;
    }

    /// <summary>transformer.h.3.mlp.c_fc.weight → h.3.mlp.c_fc (the weight_layouts key).</summary>
    static string KeyOf(string name) => name["transformer.".Length..^".weight".Length];
}
