using System.Diagnostics;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Bench;

// The predictor (Deja Vu) and controller (per-input gates) rows of `bench activation`'s decode table.
public static partial class ActivationBench
{
    public const string PredictorMethod = "predictor";
    public const string ControllerMethod = "controller";

    // MLP neuron sparsity s: random rank-64 predictors choose the top (1 - s)·H neurons per token (cost, not quality:
    // the weights are random); the predictor's multiply-adds are in the decode time.
    static IEnumerable<ActivationMode> PredictorModes(Options options)
    {
        if (options.Checkpoint is not null || !options.Methods.Contains(PredictorMethod)) yield break;
        foreach (double s in options.Sparsities)
            yield return new ActivationMode($"{PredictorMethod} {s * 100:0.#}%", PredictorMethod, s, (dense, _) =>
            {
                long t0 = Stopwatch.GetTimestamp();
                var model = CopyOf(dense, dense.Config);
                double cost = ActivationPredictorBench.PreparePredicted(model, s, rank: 64, seed: 7);
                return new PreparedMode(model, Stopwatch.GetElapsedTime(t0).TotalSeconds,
                    $"random rank-64 predictors ({cost:P1} of a dense MLP's multiply-adds), MLP neurons only");
            });
    }

    // Activation sparsity s = 1 - the fraction of heads and MLP groups (64 neurons) each gate keeps, on average; every
    // head still computes its k and v rows. The gates' bias is set for that fraction (see ActivationControllerBench).
    static IEnumerable<ActivationMode> ControllerModes(Options options)
    {
        if (options.Checkpoint is not null || !options.Methods.Contains(ControllerMethod)) yield break;
        foreach (double s in options.Sparsities)
            yield return new ActivationMode($"{ControllerMethod} {s * 100:0.#}%", ControllerMethod, s, (dense, _) =>
            {
                long t0 = Stopwatch.GetTimestamp();
                var model = CopyOf(dense, dense.Config with { Gate = "both", GateGroup = 64 });
                ActivationControllerBench.SetGates(model, 1 - s, seed: 1);
                return new PreparedMode(model, Stopwatch.GetElapsedTime(t0).TotalSeconds,
                    "gates over heads and 64-neuron MLP groups set to keep 1 - s on average; k/v of every head computed");
            });
    }

    // A new model of the given config with the dense model's parameters copied by name (a gated config adds the
    // gates' parameters, which the caller sets), held for inference.
    static Gpt CopyOf(Gpt dense, GptConfig config)
    {
        var model = new Gpt(config, dense.BatchSize, dense.SeqLen);
        var source = dense.Parameters.ToDictionary(p => p.Name);
        foreach (var p in model.Parameters)
            if (source.TryGetValue(p.Name, out var d)) d.Value.Span.CopyTo(p.Value.Span);
        model.PrepareForInference();
        return model;
    }

    // The decode counters of whatever a mode installed: TEAL/WINA's zeroed inputs, the gates' kept units.
    static void ResetModeCounts(Gpt gpt)
    {
        ActivationSparsity.ResetCounts(gpt);
        foreach (var (_, _, gate) in ControllerTraining.Gates(gpt)) gate.ResetDecodeCounts();
    }

    // The activation sparsity a mode reached while decoding: TEAL/WINA's share of zeroed Linear inputs; the share of
    // gated units (heads and MLP groups, each gate's fraction averaged) skipped; a predictor's share of MLP neurons not
    // computed (exact: top-k per token); NaN when the model has none of these.
    static double ModeSparsity(Gpt gpt)
    {
        if (ActivationSparsity.Weights(gpt).Count > 0) return ActivationSparsity.MeasuredSparsity(gpt);
        var gates = ControllerTraining.Gates(gpt);
        if (gates.Count > 0) return 1 - gates.Average(g => (double)g.Gate.DecodeKept / Math.Max(1, g.Gate.DecodeSeen));
        var predicted = gpt.Blocks.Select(b => b.FeedForward).OfType<PredictedMlp>().ToList();
        if (predicted.Count > 0 && predicted.All(p => p.Keep >= 0)) return 1 - predicted.Average(p => (double)p.Keep / p.Hidden);
        return double.NaN;
    }
}
