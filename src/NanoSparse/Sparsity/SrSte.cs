using System.Globalization;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Optim;

namespace NanoSparse.Sparsity;

/// <summary>
/// SR-STE: N:M sparse training from scratch (Zhou et al. 2021, "Learning N:M Fine-grained Structured Sparse Neural
/// Networks From Scratch"). The dense weights W are the parameter that AdamW updates; every forward pass runs on their
/// N:M projection W̃ = ε ⊙ W, where the mask ε keeps, in every group of M consecutive inputs of an output row (the
/// reduction dimension), the N weights of largest |w|, recomputed after every update. The gradient is the
/// straight-through one plus the sparse-refined term (eq. 7 of the paper):
///   W ← W − lr · ( ∂L/∂W̃  +  λ_W · (ε̄ ⊙ W) )      ε̄ = 1 − ε
/// which decays the pruned weights so that the mask settles. With AdamW the refined gradient enters the moments
/// (before clipping), as the paper's own AdamW runs (DeiT) do.
/// <para>
/// Between steps the model's values hold W̃ (so evaluation and sampling see the sparse model) and this object holds W.
/// <see cref="BeforeOptimizerStep"/> puts W back and refines the gradient; <see cref="Project"/> after the update
/// saves the new W and writes its projection. Masked dense: SR-STE needs ∂L/∂W̃ at every position (the STE passes it to
/// pruned weights too), so dW and dx are dense products; only the forward product could run on the N:M kernel.
/// </para>
/// <para>
/// Checkpoints hold the model in the N:M layout (<see cref="ToNmModel"/>: weight_layouts "nm:N:M", the projected values
/// and their moments), so eval, sample, prune and inspect run it on the N:M kernels; optimizer.safetensors also holds W
/// and its dense moments ({name}.srste_weight, .srste_exp_avg, .srste_exp_avg_sq) for resuming (<see cref="Load"/>).
/// </para>
/// </summary>
public sealed class SrSte
{
    public const string WeightSuffix = ".srste_weight";
    public const string ExpAvgSuffix = ".srste_exp_avg";
    public const string ExpAvgSqSuffix = ".srste_exp_avg_sq";
    /// <summary>λ_W of the paper's experiments.</summary>
    public const float DefaultLambda = 2e-4f;

    readonly int[] _indices;    // positions of the SR-STE weights in Gpt.Parameters
    readonly float[][] _dense;  // W (Out·In, row-major) of each: the parameter
    readonly float[][] _masks;  // ε of each (1 kept, 0 pruned): the projection of _dense

    /// <param name="model">a model whose <paramref name="weights"/> are dense</param>
    /// <param name="n">N: weights kept in every group</param>
    /// <param name="m">M: the group size along the reduction dimension (must divide each weight's in features)</param>
    /// <param name="lambda">λ_W of the sparse-refined term (≥ 0)</param>
    /// <param name="weights">block weight names trained this way (e.g. "mlp.c_fc"), as sparse_weights</param>
    public SrSte(Gpt model, int n, int m, float lambda, IReadOnlyList<string> weights)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (n < 1 || n >= m) throw new ArgumentException($"nm ('{n}:{m}'): N must be at least 1 and less than M");
        if (!(lambda >= 0) || !float.IsFinite(lambda)) throw new ArgumentException($"srste_lambda ({lambda.ToString(CultureInfo.InvariantCulture)}) must be a finite number >= 0");
        (N, M, Lambda) = (n, m, lambda);
        var indices = new List<int>();
        for (int i = 0; i < model.Parameters.Count; i++)
        {
            var p = model.Parameters[i];
            if (p.Layout is null || !weights.Any(w => p.Name.EndsWith("." + w + ".weight", StringComparison.Ordinal))) continue;
            if (p.Layout is not DenseLinearWeight)
                throw new ArgumentException($"srste: weight '{p.Name}' is held as {p.Layout.Layout}, expected dense (SR-STE keeps the dense weights and projects them)");
            if (p.Shape[1] % m != 0)
                throw new ArgumentException($"nm ('{n}:{m}'): M = {m} must divide the in features (the reduction dimension) of '{p.Name}', which has {p.Shape[1]}");
            indices.Add(i);
        }
        if (indices.Count == 0) throw new ArgumentException($"srste: none of the weights {string.Join(", ", weights)} is a Linear weight of this model");
        _indices = indices.ToArray();
        Names = _indices.Select(i => model.Parameters[i].Name).ToArray();
        _dense = _indices.Select(i => new float[model.Parameters[i].Length]).ToArray();
        _masks = _indices.Select(i => new float[model.Parameters[i].Length]).ToArray();
    }

    public int N { get; }
    public int M { get; }
    public float Lambda { get; }
    /// <summary>The SR-STE weights' parameter names, in model order.</summary>
    public IReadOnlyList<string> Names { get; }
    /// <summary>The dense weights W by <see cref="Names"/> (valid after <see cref="Project"/>).</summary>
    public IReadOnlyList<float[]> DenseWeights => _dense;
    /// <summary>The masks ε by <see cref="Names"/> (1 kept, 0 pruned).</summary>
    public IReadOnlyList<float[]> Masks => _masks;
    /// <summary>Whether parameter <paramref name="name"/> is trained by SR-STE.</summary>
    public bool Covers(string name) => Names.Contains(name);

    /// <summary>
    /// ε for W (rows × cols, row-major): in every group of M consecutive values of a row, 1 at the N of largest |w|
    /// (of equal magnitudes the lower index wins), 0 elsewhere. M must divide cols.
    /// </summary>
    public static void ProjectMask(ReadOnlySpan<float> w, Span<float> mask, int n, int m)
    {
        if (w.Length % m != 0) throw new ArgumentException($"{w.Length} weights do not split into groups of M = {m}");
        if (mask.Length != w.Length) throw new ArgumentException($"mask has {mask.Length} values, expected {w.Length}");
        for (int g = 0; g < w.Length; g += m)
        {
            var group = w.Slice(g, m);
            for (int i = 0; i < m; i++)
            {
                // rank of i: how many of the group come before it (larger, or equal with a lower index)
                float a = MathF.Abs(group[i]);
                int rank = 0;
                for (int j = 0; j < m; j++)
                {
                    float b = MathF.Abs(group[j]);
                    if (b > a || (b == a && j < i)) rank++;
                }
                mask[g + i] = rank < n ? 1f : 0f;
            }
        }
    }

    /// <summary>
    /// Takes the model's current values as W, recomputes ε and writes W̃ = ε ⊙ W into the model. Call after
    /// initialisation and after every optimizer step. Allocates nothing.
    /// </summary>
    public void Project(Gpt model)
    {
        for (int k = 0; k < _indices.Length; k++)
        {
            var values = model.Parameters[_indices[k]].Value.Span;
            values.CopyTo(_dense[k]);
            ProjectMask(_dense[k], _masks[k], N, M);
            System.Numerics.Tensors.TensorPrimitives.Multiply(_dense[k], _masks[k], values);
        }
    }

    /// <summary>
    /// After the backward pass (the model's gradient is ∂L/∂W̃), before clipping and the update: puts W back into the
    /// model and adds λ_W · (ε̄ ⊙ W) to the gradient. Allocates nothing.
    /// </summary>
    public void BeforeOptimizerStep(Gpt model)
    {
        float lambda = Lambda;
        for (int k = 0; k < _indices.Length; k++)
        {
            var p = model.Parameters[_indices[k]];
            var w = _dense[k];
            var mask = _masks[k];
            w.CopyTo(p.Value.Span);
            var g = p.Grad.Span;
            for (int i = 0; i < g.Length; i++)
                if (mask[i] == 0) g[i] += lambda * w[i];
        }
    }

    /// <summary>
    /// The model as the N:M model it runs (weight_layouts "nm:N:M" for the SR-STE weights, values W̃ at the kept
    /// positions) with an AdamW whose moments are the dense ones gathered there (same step count), plus the tensors that
    /// let a run resume: W and its dense moments. Call between steps (the model holds W̃).
    /// </summary>
    public (Gpt Model, AdamW Optimizer, IReadOnlyList<SafeTensor> Extras) ToNmModel(Gpt model, AdamW optimizer)
    {
        var layouts = new Dictionary<string, ILinearWeight>(StringComparer.Ordinal);
        var weightLayouts = model.Config.WeightLayouts is null ? new Dictionary<string, string>() : new Dictionary<string, string>(model.Config.WeightLayouts);
        var byName = model.Parameters.ToDictionary(p => p.Name);
        for (int k = 0; k < Names.Count; k++)
        {
            var p = byName[Names[k]];
            layouts[Names[k]] = NmLinearWeight.FromDense(p.Shape[0], p.Shape[1], N, M, _masks[k]).Weight;
            weightLayouts[Names[k]["transformer.".Length..^".weight".Length]] = $"{LinearWeightLayouts.Nm}:{N}:{M}";
        }
        var nm = new Gpt(model.Config with { WeightLayouts = weightLayouts }, 1, 1, layouts);
        var next = new AdamW(nm.ParameterData.Length,
            nm.Parameters.Select(p => AdamW.SegmentOf(nm.ParameterData, p.Value.Span, p.Decay)),
            optimizer.Beta1, optimizer.Beta2, optimizer.Eps, optimizer.WeightDecay) { StepCount = optimizer.StepCount };
        foreach (var p in nm.Parameters)
        {
            var q = byName[p.Name];
            Gather(model.ParameterData.Slice(q.Offset, q.Length), p, nm.ParameterData.Slice(p.Offset, p.Length));
            Gather(optimizer.M.Slice(q.Offset, q.Length), p, next.M.Slice(p.Offset, p.Length));
            Gather(optimizer.V.Slice(q.Offset, q.Length), p, next.V.Slice(p.Offset, p.Length));
        }
        nm.DropoutRng.State = model.DropoutRng.State;
        var extras = new List<SafeTensor>();
        for (int k = 0; k < Names.Count; k++)
        {
            var p = byName[Names[k]];
            var shape = (int[])p.Shape.Clone();
            extras.Add(new SafeTensor(Names[k] + WeightSuffix, shape, _dense[k]));
            extras.Add(new SafeTensor(Names[k] + ExpAvgSuffix, shape, optimizer.M.Slice(p.Offset, p.Length).ToArray()));
            extras.Add(new SafeTensor(Names[k] + ExpAvgSqSuffix, shape, optimizer.V.Slice(p.Offset, p.Length).ToArray()));
        }
        return (nm, next, extras);
    }

    static void Gather(ReadOnlySpan<float> dense, Parameter to, Span<float> target)
    {
        if (to.Layout is ISparseLinearStructure s) s.Gather(dense, target);
        else dense.CopyTo(target);
    }

    /// <summary>
    /// <paramref name="config"/> (a checkpoint's N:M model) with the SR-STE weights dense again: the model a resumed
    /// run trains. The N:M layouts of <paramref name="weights"/> are removed; other layouts stay.
    /// </summary>
    public static GptConfig DenseConfig(GptConfig config, IReadOnlyList<string> weights)
    {
        if (config.WeightLayouts is null) return config;
        var kept = config.WeightLayouts.Where(kv => !weights.Any(w => kv.Key == w || kv.Key.EndsWith("." + w, StringComparison.Ordinal)))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        return config with { WeightLayouts = kept.Count == 0 ? null : kept, SparsitySeed = kept.Count == 0 ? 0 : config.SparsitySeed };
    }

    /// <summary>
    /// Resumes from a checkpoint written with <see cref="ToNmModel"/>: given its N:M model and optimizer (read and
    /// checked as usual), the other parameters and their moments are copied into <paramref name="model"/> (dense) and
    /// <paramref name="optimizer"/>, the SR-STE weights and their moments come from the srste tensors of
    /// <paramref name="optimizerFile"/>; then <see cref="Project"/>. A file without them (not an SR-STE run) is
    /// refused, naming the tensor.
    /// </summary>
    public void Load(string optimizerFile, Gpt nm, AdamW nmOptimizer, Gpt model, AdamW optimizer)
    {
        var byName = nm.Parameters.ToDictionary(p => p.Name);
        using var file = SafeTensorsFile.Open(optimizerFile);
        foreach (var p in model.Parameters)
        {
            if (Covers(p.Name))
            {
                Read(file, optimizerFile, p.Name + WeightSuffix, p, p.Value.Span);
                Read(file, optimizerFile, p.Name + ExpAvgSuffix, p, optimizer.M.Slice(p.Offset, p.Length));
                Read(file, optimizerFile, p.Name + ExpAvgSqSuffix, p, optimizer.V.Slice(p.Offset, p.Length));
                continue;
            }
            if (!byName.TryGetValue(p.Name, out var q) || q.Length != p.Length || q.Layout is ISparseLinearStructure)
                throw new InvalidDataException($"{optimizerFile}: parameter '{p.Name}' of the checkpoint does not match the SR-STE run's dense [{string.Join(", ", p.Shape)}]");
            nm.ParameterData.Slice(q.Offset, q.Length).CopyTo(p.Value.Span);
            nmOptimizer.M.Slice(q.Offset, q.Length).CopyTo(optimizer.M.Slice(p.Offset, p.Length));
            nmOptimizer.V.Slice(q.Offset, q.Length).CopyTo(optimizer.V.Slice(p.Offset, p.Length));
        }
        optimizer.StepCount = nmOptimizer.StepCount;
        Project(model);
    }

    static void Read(SafeTensorsFile file, string path, string name, Parameter p, Span<float> target)
    {
        if (!file.TryGet(name, out var info))
            throw new InvalidDataException($"{path} is missing tensor '{name}' (an SR-STE run's checkpoint keeps its dense weights and moments there)");
        if (info.Dtype != SafeTensorsDtype.F32 || !info.Shape.AsSpan().SequenceEqual(p.Shape))
            throw new InvalidDataException($"{path}: tensor '{name}' is {info.Dtype} [{string.Join(", ", info.Shape)}], expected F32 [{string.Join(", ", p.Shape)}]");
        file.ReadInto(name, target);
        for (int i = 0; i < target.Length; i++)
            if (!float.IsFinite(target[i]) || (name.EndsWith(ExpAvgSqSuffix, StringComparison.Ordinal) && target[i] < 0))
                throw new InvalidDataException($"{path}: tensor '{name}' holds {target[i].ToString(CultureInfo.InvariantCulture)} at index {i}; expected finite values{(name.EndsWith(ExpAvgSqSuffix, StringComparison.Ordinal) ? " >= 0" : "")}");
    }
}
