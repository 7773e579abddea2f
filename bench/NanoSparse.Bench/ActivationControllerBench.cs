using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Bench;

/// <summary>One row of the controller mode: the fraction of units the gates were set to keep, the fraction they
/// kept while decoding, decode tokens/s by CPU time and by wall time, and the speed-up over dense (CPU time).</summary>
public sealed record ControllerBenchRow(string Model, double TargetKept, double Kept, double CpuTokensPerSecond, double WallTokensPerSecond, double Speedup);

/// <summary>
/// `bench activation` controller mode: batch-1 decode tokens/s of the GPT-2-shaped model (char vocabulary) with a
/// per-input controller (Parts.Gated) over heads and MLP neuron groups, against the same model dense, in interleaved
/// rounds. The weights are random (speed does not depend on them); each gate's bias is set so that its logit, about
/// N(0, 1) on LayerNorm'd inputs with weights N(0, 1/C), is positive with probability equal to the kept fraction:
/// each token runs a different random subset of about that fraction of heads and groups. The gate's own cost (a
/// (heads + groups) × C product per half) is in every figure; a skipped head still computes its k and v rows (the KV
/// cache stays the dense model's), so attention's part of the saving is at most 1/3 of c_attn plus c_proj and the
/// attention itself. Entry point for the lead to wire into `bench activation --mode controller`.
/// </summary>
public static class ActivationControllerBench
{
    public static IReadOnlyList<ControllerBenchRow> Run(TextWriter output, double[] keptFractions, int layers = 12, int vocab = ModelPreset.BrownCharVocab,
        string gate = "both", int group = 64, int prompt = 64, int tokens = 64, int rounds = 3, ulong seed = 1)
    {
        foreach (double f in keptFractions)
            if (!(f > 0 && f <= 1)) throw new ArgumentException($"kept fraction ({f.ToString(CultureInfo.InvariantCulture)}) must lie in (0, 1] (activation sparsity 1 − kept in [0, 1))");
        var dense = ModelPreset.Gpt2Small.ToConfig(vocab) with { NLayer = layers };
        var models = new List<Gpt> { new(dense, 1, 1) };
        models[0].InitializeWeights(seed);
        foreach (double f in keptFractions)
        {
            var gated = new Gpt(dense with { Gate = gate, GateGroup = group }, 1, 1);
            gated.InitializeWeights(seed);
            SetGates(gated, f, seed);
            models.Add(gated);
        }
        var rng = new NanoSparse.Numerics.Rng(seed ^ 0x5EEDUL);
        var speeds = ControllerDecodeSpeed.Measure(models, window =>
        {
            for (int i = 0; i < window.Length; i++) window[i] = (int)(rng.NextUInt64() % (ulong)vocab);
        }, prompt, tokens, rounds, (r, n) => output.WriteLine($"controller decode: round {r}/{n}"));
        var rows = new List<ControllerBenchRow> { new("dense", 1, 1, speeds[0].CpuTokensPerSecond, speeds[0].WallTokensPerSecond, 1) };
        for (int i = 0; i < keptFractions.Length; i++)
        {
            var s = speeds[i + 1];
            rows.Add(new($"controller {gate} (group {group})", keptFractions[i], s.Kept.Overall, s.CpuTokensPerSecond, s.WallTokensPerSecond,
                s.CpuTokensPerSecond / speeds[0].CpuTokensPerSecond));
        }
        output.WriteLine($"gpt2 shape L={layers} V={vocab}, batch-1 decode, prompt {prompt}, {tokens} tokens, {rounds} interleaved rounds (median; CPU time of the process)");
        output.WriteLine("model                              target kept  kept  tok/s CPU  tok/s wall  speed-up (CPU)");
        foreach (var r in rows)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{r.Model,-34} {r.TargetKept,11:F2} {r.Kept,5:F2} {r.CpuTokensPerSecond,10:F1} {r.WallTokensPerSecond,11:F1} {r.Speedup,14:F2}x"));
        return rows;
    }

    // Gate weights N(0, 1/C) and every bias Φ⁻¹(kept): on unit-variance inputs z ~ N(Φ⁻¹(kept), 1), so P(z > 0) = kept.
    internal static void SetGates(Gpt gated, double kept, ulong seed)
    {
        var rng = new NanoSparse.Numerics.Rng(seed ^ 0x6761746573UL);
        double bias = InverseNormal(kept);
        foreach (var p in gated.Parameters)
        {
            var v = p.Value.Span;
            if (p.Name.EndsWith(".gate.bias")) v.Fill((float)bias);
            else if (p.Name.EndsWith(".gate.weight"))
                for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextGaussian() / Math.Sqrt(p.Shape[1]));
        }
    }

    // Φ⁻¹ by bisection on Φ(x) = (1 + erf(x/√2)) / 2; kept = 1 opens every gate (a large bias).
    static double InverseNormal(double p)
    {
        if (p >= 1) return 40;
        double lo = -10, hi = 10;
        for (int i = 0; i < 100; i++)
        {
            double mid = (lo + hi) / 2;
            if (0.5 * (1 + NanoSparse.Kernels.Erf.Evaluate((float)(mid / Math.Sqrt(2)))) < p) lo = mid; else hi = mid;
        }
        return (lo + hi) / 2;
    }
}
