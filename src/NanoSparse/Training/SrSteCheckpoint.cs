using NanoSparse.Nn;
using NanoSparse.Optim;
using NanoSparse.Sparsity;

namespace NanoSparse.Training;

/// <summary>Reading an SR-STE run's checkpoint (an N:M model plus the dense weights and moments) back into its dense run.</summary>
public static class SrSteCheckpoint
{
    /// <summary>
    /// Loads the checkpoint in <paramref name="dir"/> (state <paramref name="state"/>) into the dense
    /// <paramref name="model"/> and <paramref name="optimizer"/> of a resumed SR-STE run (see <see cref="SrSte.Load"/>).
    /// </summary>
    public static void Load(string dir, CheckpointState state, SrSte srste, Gpt model, AdamW optimizer)
    {
        var nmConfig = state.Model.ToConfig();
        var nm = new Gpt(nmConfig, 1, 1, Checkpoint.ReadLinearWeights(dir, nmConfig));
        Checkpoint.LoadWeights(dir, nm, state);
        var nmOptimizer = new AdamW(nm.ParameterData.Length,
            nm.Parameters.Select(p => AdamW.SegmentOf(nm.ParameterData, p.Value.Span, p.Decay)),
            optimizer.Beta1, optimizer.Beta2, optimizer.Eps, optimizer.WeightDecay);
        Checkpoint.LoadOptimizer(dir, nm, nmOptimizer, state);
        srste.Load(Path.Combine(dir, Checkpoint.OptimizerFile), nm, nmOptimizer, model, optimizer);
    }
}
