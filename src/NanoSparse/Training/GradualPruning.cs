using System.Numerics.Tensors;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Optim;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Training;

/// <summary>
/// Pruning while training, over the blocks' Linear weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj of every
/// layer; embeddings, LayerNorms and biases are never pruned). Two phases:
/// <list type="bullet">
/// <item>masked dense: the model is dense and a mask (1 kept, 0 pruned) per weight says which positions are pruned.
/// A pruned position's weight and AdamW moments are set to 0 when it is pruned, and its gradient is zeroed before
/// clipping at every step, so m, v and w stay exactly 0 (what torch.nn.utils.prune computes: w_orig ⊙ mask).</item>
/// <item>sparse: once the sparsity reaches <see cref="SwitchSparsity"/>, the weights move to the CSR layout holding
/// exactly the kept positions (values and AdamW moments carried over bit for bit); the rest of training runs on the
/// sparse kernels. A later pruning step removes stored entries by rebuilding the model with the smaller structure
/// (allocates, on pruning steps only; the training step in between allocates nothing).</item>
/// </list>
/// Before the switch the masks are written into the checkpoint's optimizer.safetensors ({name}.prune_mask, U8);
/// after it the structure is the model's own (weight_layouts csr), so a resumed run continues bit-identically.
/// </summary>
public sealed class GradualPruning
{
    public const string MaskSuffix = ".prune_mask";

    int[] _indices;                 // positions of the prunable weights in Gpt.Parameters
    float[][]? _masks;              // (Out·In) each, row-major; null: nothing pruned yet

    /// <param name="model">the model to prune (its prunable weights may already be CSR: a resumed sparse run)</param>
    /// <param name="schedule">the cubic schedule; null when the masks are set from outside (IMP)</param>
    /// <param name="global">one magnitude threshold over all prunable weights instead of one per weight</param>
    /// <param name="switchSparsity">sparsity from which the weights move to CSR (above 1: never)</param>
    public GradualPruning(Gpt model, CubicSchedule? schedule, bool global, double switchSparsity)
    {
        Schedule = schedule;
        Global = global;
        SwitchSparsity = switchSparsity;
        _indices = PrunableIndices(model);
        Names = _indices.Select(i => model.Parameters[i].Name).ToArray();
        int sparse = _indices.Count(i => model.Parameters[i].Layout is ISparseLinearStructure);
        if (sparse > 0)
        {
            Switched = true;
            _masks = _indices.Select(i => StructureMask(model.Parameters[i])).ToArray();
        }
    }

    public CubicSchedule? Schedule { get; }
    public bool Global { get; }
    public double SwitchSparsity { get; }
    /// <summary>The prunable weights' parameter names, in model order.</summary>
    public IReadOnlyList<string> Names { get; }
    /// <summary>Whether the prunable weights are in the CSR layout.</summary>
    public bool Switched { get; private set; }
    /// <summary>The step at which this session switched to CSR (null: it did not).</summary>
    public int? SwitchStep { get; private set; }
    /// <summary>The masks (1 kept, 0 pruned) by <see cref="Names"/>; null before the first pruning.</summary>
    public IReadOnlyList<float[]>? Masks => _masks;
    /// <summary>Fraction of pruned positions over the prunable weights (0 before the first pruning).</summary>
    public double Sparsity { get; private set; }

    /// <summary>The blocks' Linear weights: every parameter with a layout.</summary>
    public static int[] PrunableIndices(Gpt model) =>
        Enumerable.Range(0, model.Parameters.Count).Where(i => model.Parameters[i].Layout is not null).ToArray();

    /// <summary>Masked phase: zeroes the gradient at pruned positions (before clipping). Allocates nothing.</summary>
    public void MaskGradients(Gpt model)
    {
        if (Switched || _masks is null) return;
        var parameters = model.Parameters;
        for (int k = 0; k < _indices.Length; k++)
        {
            var g = parameters[_indices[k]].Grad.Span;
            TensorPrimitives.Multiply(g, _masks[k], g);
        }
    }

    /// <summary>
    /// Prunes by magnitude to <paramref name="sparsity"/> (previously pruned positions stay pruned) and applies the
    /// masks (see <see cref="Apply"/>). Returns the model and optimizer to train on: new ones after a switch or rebuild.
    /// </summary>
    public (Gpt Model, AdamW Optimizer) PruneTo(Gpt model, AdamW optimizer, double sparsity, int step)
    {
        var dense = _indices.Select(i => DenseValues(model.Parameters[i])).ToArray();
        _masks ??= dense.Select(d => Ones(d.Length)).ToArray();
        MagnitudeMask.Prune(dense, _masks, sparsity, Global);
        return Apply(model, optimizer, step);
    }

    /// <summary>Sets the masks (by <see cref="Names"/>; IMP's rounds) and applies them.</summary>
    public (Gpt Model, AdamW Optimizer) SetMasks(Gpt model, AdamW optimizer, IReadOnlyList<float[]> masks, int step)
    {
        if (masks.Count != _indices.Length) throw new ArgumentException($"{masks.Count} masks given, expected {_indices.Length} (one per prunable weight)");
        for (int k = 0; k < masks.Count; k++)
            if (masks[k].Length != model.Parameters[_indices[k]].LogicalLength)
                throw new ArgumentException($"mask of {Names[k]} has {masks[k].Length} values, expected {model.Parameters[_indices[k]].LogicalLength}");
        _masks = masks.Select(m => (float[])m.Clone()).ToArray();
        return Apply(model, optimizer, step);
    }

    /// <summary>
    /// Masked phase: w, m and v set to 0 at the pruned positions. At or above the switch sparsity (and after the
    /// switch, at every call): the model rebuilt with CSR structures of exactly the kept positions.
    /// </summary>
    (Gpt Model, AdamW Optimizer) Apply(Gpt model, AdamW optimizer, int step)
    {
        var masks = _masks!;
        Sparsity = MagnitudeMask.Sparsity(masks);
        if (Switched || Sparsity >= SwitchSparsity)
        {
            if (!Switched) SwitchStep = step;
            Switched = true;
            var rebuilt = ToSparse(model, optimizer, Names, masks);
            _indices = PrunableIndices(rebuilt.Model);
            return rebuilt;
        }
        for (int k = 0; k < _indices.Length; k++)
        {
            var p = model.Parameters[_indices[k]];
            TensorPrimitives.Multiply(p.Value.Span, masks[k], p.Value.Span);
            TensorPrimitives.Multiply(optimizer.M.Slice(p.Offset, p.Length), masks[k], optimizer.M.Slice(p.Offset, p.Length));
            TensorPrimitives.Multiply(optimizer.V.Slice(p.Offset, p.Length), masks[k], optimizer.V.Slice(p.Offset, p.Length));
        }
        return (model, optimizer);
    }

    /// <summary>
    /// The model with the named weights in CSR layouts storing exactly the positions their masks keep: every value and
    /// AdamW moment copied bit for bit (the stored ones gathered from the dense view), the step count and dropout RNG
    /// state carried over. The config records the layouts (weight_layouts "csr"), so checkpoints rebuild it.
    /// </summary>
    public static (Gpt Model, AdamW Optimizer) ToSparse(Gpt model, AdamW optimizer, IReadOnlyList<string> names, IReadOnlyList<float[]> masks)
    {
        var layouts = new Dictionary<string, ILinearWeight>(StringComparer.Ordinal);
        var weightLayouts = model.Config.WeightLayouts is null ? new Dictionary<string, string>() : new Dictionary<string, string>(model.Config.WeightLayouts);
        var byName = model.Parameters.ToDictionary(p => p.Name);
        for (int k = 0; k < names.Count; k++)
        {
            var p = byName[names[k]];
            layouts[names[k]] = CsrLinearWeight.FromDense(p.Shape[0], p.Shape[1], masks[k]).Weight;
            weightLayouts[names[k]["transformer.".Length..^".weight".Length]] = LinearWeightLayouts.Csr;
        }
        var config = model.Config with { WeightLayouts = weightLayouts };
        var sparse = new Gpt(config, model.BatchSize, model.SeqLen, layouts);
        var next = new AdamW(sparse.ParameterData.Length,
            sparse.Parameters.Select(p => AdamW.SegmentOf(sparse.ParameterData, p.Value.Span, p.Decay)),
            optimizer.Beta1, optimizer.Beta2, optimizer.Eps, optimizer.WeightDecay) { StepCount = optimizer.StepCount };
        foreach (var p in sparse.Parameters)
        {
            var q = byName[p.Name];
            Move(q, model.ParameterData.Slice(q.Offset, q.Length), p, sparse.ParameterData.Slice(p.Offset, p.Length));
            Move(q, optimizer.M.Slice(q.Offset, q.Length), p, next.M.Slice(p.Offset, p.Length));
            Move(q, optimizer.V.Slice(q.Offset, q.Length), p, next.V.Slice(p.Offset, p.Length));
        }
        sparse.DropoutRng.State = model.DropoutRng.State;
        return (sparse, next);
    }

    // A parameter's stored values (or moments) from the source layout to the target's: copied when both store the
    // same positions, else through the dense view (gathered at the target's positions).
    static void Move(Parameter from, ReadOnlySpan<float> source, Parameter to, Span<float> target)
    {
        if (to.Layout is ISparseLinearStructure s)
        {
            var dense = new float[from.LogicalLength];
            if (from.Layout is null) source.CopyTo(dense);
            else from.Layout.ToDense(source, dense);
            s.Gather(dense, target);
        }
        else source.CopyTo(target);
    }

    /// <summary>The weight as a dense (Out, In) array (zeros where a sparse layout stores nothing).</summary>
    public static float[] DenseValues(Parameter p)
    {
        var dense = new float[p.LogicalLength];
        if (p.Layout is null) p.Value.Span.CopyTo(dense);
        else p.Layout.ToDense(p.Value.Span, dense);
        return dense;
    }

    /// <summary>1 at the positions a layout stores, 0 elsewhere.</summary>
    public static float[] StructureMask(Parameter p)
    {
        var ones = Ones(p.Length);
        var mask = new float[p.LogicalLength];
        p.Layout!.ToDense(ones, mask);
        return mask;
    }

    static float[] Ones(long length)
    {
        var a = new float[length];
        a.AsSpan().Fill(1f);
        return a;
    }

    /// <summary>The masks as checkpoint tensors ({name}.prune_mask, U8, Out·In values, row-major); none after the switch or before pruning.</summary>
    public IReadOnlyList<SafeTensor> CheckpointTensors()
    {
        if (Switched || _masks is null) return [];
        var tensors = new List<SafeTensor>();
        for (int k = 0; k < _masks.Length; k++)
        {
            var values = new int[_masks[k].Length];
            for (int j = 0; j < values.Length; j++) values[j] = _masks[k][j] == 0 ? 0 : 1;
            tensors.Add(SafeTensor.Integers(Names[k] + MaskSuffix, SafeTensorsDtype.U8, values));
        }
        return tensors;
    }

    /// <summary>
    /// Reads the masks a checkpoint's optimizer.safetensors holds (a resumed run before the switch). A file without them
    /// (nothing pruned yet) leaves the masks unset; a mask of the wrong size or with a value other than 0 and 1 is refused.
    /// </summary>
    public void LoadMasks(string dir, Gpt model)
    {
        if (Switched) return;
        string path = Path.Combine(dir, Checkpoint.OptimizerFile);
        if (!File.Exists(path)) return;
        using var file = SafeTensorsFile.Open(path);
        if (!file.Contains(Names[0] + MaskSuffix)) return;
        var masks = new float[Names.Count][];
        for (int k = 0; k < Names.Count; k++)
        {
            string name = Names[k] + MaskSuffix;
            if (!file.TryGet(name, out var info))
                throw new InvalidDataException($"{path} is missing tensor '{name}' (the other weights have pruning masks)");
            long expected = model.Parameters[_indices[k]].LogicalLength;
            if (info.Dtype != SafeTensorsDtype.U8 || info.ElementCount != expected)
                throw new InvalidDataException($"{path}: tensor '{name}' is {info.Dtype} with {info.ElementCount} elements, expected U8 with {expected}");
            var bytes = file.GetBytes(info);
            masks[k] = new float[expected];
            for (int j = 0; j < bytes.Length; j++)
            {
                if (bytes[j] > 1) throw new InvalidDataException($"{path}: tensor '{name}' holds {bytes[j]} at element {j}, expected 0 or 1");
                masks[k][j] = bytes[j];
            }
        }
        _masks = masks;
        Sparsity = MagnitudeMask.Sparsity(masks);
    }
}
