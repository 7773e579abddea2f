using NanoSparse.Nn.Parts;

namespace NanoSparse.Nn;

// A model held for inference only: sampling, evaluation, the decode and prefill benchmarks.
public sealed partial class Gpt
{
    /// <summary>True after <see cref="PrepareForInference"/>: Forward and ForwardCached work, Backward throws.</summary>
    public bool IsInferenceOnly { get; private set; }

    /// <summary>
    /// Makes the model small for inference: every Linear layout that holds structures only training needs drops them
    /// (<see cref="IInferenceLayout.ReleaseTrainingStructures"/>: CSR keeps its 16-bit structure, N:M its packed
    /// indices), and the Linear workspaces shrink to what a forward pass needs. Forward (evaluation) and ForwardCached
    /// (decoding) give the same logits as before; Backward throws InvalidOperationException from then on (this is not
    /// undone: load the model again to train it). The gradient buffer (as large as the parameters) goes too:
    /// <see cref="GradientData"/> and every Parameter.Grad are empty after. Call it once the values are final (after loading).
    /// With <paramref name="keepSellCopy"/> the layouts then build their decode copies for rows = 1 (<see cref="IDecodeCopyLayout"/>:
    /// CSR in <paramref name="decodeCopy"/>, a faster SpMV for 3-7 more bytes per stored value; N:M its values on 64-byte lines).
    /// </summary>
    public void PrepareForInference(bool keepSellCopy = false, DecodeCopyFormat decodeCopy = DecodeCopyFormat.Auto)
    {
        foreach (var p in _parameters) p.ReleaseGradient();
        _grads = [];
        foreach (var w in _linearWeights)
            if (w is IInferenceLayout l) l.ReleaseTrainingStructures();
        if (keepSellCopy)
            foreach (var p in _parameters)
                if (p.Layout is IDecodeCopyLayout l) l.PrepareDecodeCopy(p.Value.Span, decodeCopy);
        _workspaces = [WorkspaceFor(BatchSize * SeqLen)];
        _workspaceShards = 1;
        _shardGrads = [];
        IsInferenceOnly = true;
        Kernels.HugePages.CollapsePending();   // the decode copies' extents, now that all of them are built
    }

    /// <summary>
    /// Bytes the blocks' Linear weights hold in memory: their stored values (4 each) plus every array their layouts
    /// hold (<see cref="IInferenceLayout.HeldBytes"/>; a dense layout holds none).
    /// </summary>
    public long LinearWeightBytes
    {
        get
        {
            long bytes = 0;
            foreach (var w in _linearWeights) bytes += 4L * w.StoredCount + (w is IInferenceLayout l ? l.HeldBytes : 0);
            return bytes;
        }
    }
}
