using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Nn;

// Data-parallel shards. With more than one thread, Forward and Backward split the batch into one slice of whole
// sequences per thread and run each slice's entire pass on its own thread, the kernels inside running
// single-threaded. A step then opens three parallel regions instead of one per kernel call (about 150 for the
// baby preset), and no thread waits for another in the middle of a pass. Every activation buffer is laid out
// row by row over the batch, so a slice's activations are contiguous ranges of the same workspace. Slice s > 0
// accumulates parameter gradients into a buffer of its own; the Reduce phase adds those into the gradients in
// slice order (and zeroes them for the next Backward), so a given thread count gives the same bits every run.
// Dropout masks are indexed over the whole batch, so they do not depend on the slicing.
public sealed partial class Gpt
{
    enum ShardPhase { Forward, Backward, Reduce }

    const int ReduceChunk = 16384;

    int _shards = 1;                    // slices of the last Forward
    double[] _shardLoss = new double[1];
    float[][] _shardGrads = [];
    float[][] _workspaces;              // per slice: scratch for the Linear weights' calls (empty for dense ones)
    int _workspaceShards = 1;

    // The pass over slice s of shards (sequences [B·s/shards, B·(s+1)/shards)), accumulating gradients into grads.
    Pass SlicePass(int s, int shards, float[] grads)
    {
        int b0 = (int)((long)BatchSize * s / shards), b1 = (int)((long)BatchSize * (s + 1) / shards);
        return new Pass(_params, grads, _acts, _scratch, _scratchWidth, _workspaces[s], _seeds, _dropoutActive ? Config.Dropout : 0f, b0, b1 - b0, SeqLen);
    }

    // Scratch the Linear weights need for a call over rows positions (they run one at a time within a slice).
    float[] WorkspaceFor(int rows)
    {
        long floats = 0;
        foreach (var w in _linearWeights) floats = Math.Max(floats, w.WorkspaceFloats(rows));
        return floats == 0 ? [] : new float[floats];
    }

    void EnsureWorkspaces(int shards)
    {
        if (shards == _workspaceShards) return;
        var grown = new float[Math.Max(shards, _workspaces.Length)][];
        for (int s = 0; s < grown.Length; s++)
        {
            int rows = s < shards ? (int)(((long)BatchSize * (s + 1) / shards) - ((long)BatchSize * s / shards)) * SeqLen : 0;
            var have = s < _workspaces.Length ? _workspaces[s] : [];
            var need = WorkspaceFor(rows);
            grown[s] = need.Length > have.Length ? need : have;
        }
        _workspaces = grown;
        _workspaceShards = shards;
    }

    struct ShardArgs { public IntPtr Model; public ShardPhase Phase; public int Shards; }

    unsafe void RunShards(ShardPhase phase, int shards)
    {
        int count = phase == ShardPhase.Reduce ? (_grads.Length + ReduceChunk - 1) / ReduceChunk : shards;
        var handle = GCHandle.Alloc(this);
        try
        {
            var a = new ShardArgs { Model = GCHandle.ToIntPtr(handle), Phase = phase, Shards = shards };
            KernelThreads.For(count, ref a, &ShardItem);
        }
        finally { handle.Free(); }
    }

    static void ShardItem(ref ShardArgs a, int item)
    {
        var model = (Gpt)GCHandle.FromIntPtr(a.Model).Target!;
        switch (a.Phase)
        {
            case ShardPhase.Forward:
                model._shardLoss[item] = model.ForwardSlice(model.SlicePass(item, a.Shards, model._grads));
                break;
            case ShardPhase.Backward:
                model.BackwardSlice(model.SlicePass(item, a.Shards, item == 0 ? model._grads : model._shardGrads[item - 1]));
                break;
            default:
                int start = item * ReduceChunk, length = Math.Min(ReduceChunk, model._grads.Length - start);
                var sum = model._grads.AsSpan(start, length);
                for (int s = 0; s < a.Shards - 1; s++)
                {
                    var part = model._shardGrads[s].AsSpan(start, length);
                    System.Numerics.Tensors.TensorPrimitives.Add(sum, part, sum);
                    part.Clear();
                }
                break;
        }
    }
}
