using System.Diagnostics;
using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts.Gated;
using NanoSparse.Numerics;
using NanoSparse.Optim;

namespace NanoSparse.Sparsity.Activation;

/// <summary>One fine-tune iteration: the LM loss (without the penalty), the fraction of units kept (soft: mean of
/// sigmoid(z/τ); hard: of z &gt; 0) over heads and MLP groups of every block, and the gate schedule's state.</summary>
public readonly record struct ControllerStep(int Iter, int MaxIters, float Loss, double KeptSoft, double KeptHard, double Temperature,
    bool Hard, double LearningRate, double SecondsPerIter);

/// <summary>Fraction of units kept: of attention heads, of MLP groups, and of both halves' units (each half weighted alike).</summary>
public readonly record struct KeptFraction(double Heads, double Mlp, double Overall);

/// <summary>
/// Adds a per-input controller to a trained model and fine-tunes it (Parts.Gated): per block a gate network on
/// each half's input decides, per token, which attention heads and which groups of MLP neurons run.
/// Schedule: for gate_anneal_iters iterations the gates are soft, g = sigmoid(z/τ), with τ going geometrically from
/// gate_temperature to gate_temperature_min; then hard, g = 1[z &gt; 0], trained through the straight-through
/// estimator. Loss = LM cross-entropy + Σ over gated halves of gate_l1 · max(0, mean_tokens,units sigmoid(z/τ) −
/// gate_budget). The model is fine-tuned with the gates (AdamW, cosine learning rate; gates at gate_lr_scale × the
/// rate, no weight decay on them), or frozen with freeze=true.
/// </summary>
public static class ControllerTraining
{
    /// <summary>The dense model's config with the controller's keys.</summary>
    public static GptConfig GatedConfig(GptConfig dense, ControllerConfig c) => dense with { Gate = c.Gate, GateGroup = c.GateGroup };

    /// <summary>
    /// A gated copy of <paramref name="dense"/> for batches of (batch, seqLen): every parameter the dense model has is
    /// copied by name; gate weights are drawn N(0, 0.02) and gate biases set to gate_bias_init (units open).
    /// </summary>
    public static Gpt AddController(Gpt dense, ControllerConfig c, int batch, int seqLen)
    {
        var config = GatedConfig(dense.Config, c);
        config.Validate();
        var gated = new Gpt(config, batch, seqLen);
        var byName = dense.Parameters.ToDictionary(p => p.Name);
        var rng = new Rng(c.Seed ^ 0x6761746573UL);
        foreach (var p in gated.Parameters)
        {
            if (byName.TryGetValue(p.Name, out var source))
            {
                if (source.Length != p.Length) throw new ArgumentException($"parameter {p.Name} has {source.Length} values in the dense model but {p.Length} in the gated one");
                source.Value.Span.CopyTo(p.Value.Span);
            }
            else if (p.Name.EndsWith(".gate.bias")) p.Value.Span.Fill((float)c.GateBiasInit);
            else if (p.Name.EndsWith(".gate.weight"))
            {
                var v = p.Value.Span;
                for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextGaussian() * 0.02);
            }
            else throw new ArgumentException($"parameter {p.Name} of the gated model has no counterpart in the dense model");
        }
        return gated;
    }

    /// <summary>Every gate of the model with whether it gates heads (true) or MLP groups (false).</summary>
    public static IReadOnlyList<(int Layer, bool Heads, UnitGate Gate)> Gates(Gpt model)
    {
        var gates = new List<(int, bool, UnitGate)>();
        foreach (var block in model.Blocks)
        {
            if (block.Attention is GatedSelfAttention a) gates.Add((block.Layer, true, a.Gate));
            if (block.FeedForward is GatedMlp m) gates.Add((block.Layer, false, m.Gate));
        }
        return gates;
    }

    /// <summary>Sets every gate's schedule state.</summary>
    public static void SetState(Gpt model, double temperature, bool hard, double l1, double budget)
    {
        foreach (var (_, _, gate) in Gates(model))
        {
            gate.State.Temperature = (float)temperature;
            gate.State.Hard = hard;
            gate.State.L1 = (float)l1;
            gate.State.Budget = (float)budget;
        }
    }

    /// <summary>τ at iteration <paramref name="iter"/>: geometric from gate_temperature to gate_temperature_min over the anneal; hard after it.</summary>
    public static (double Temperature, bool Hard) Schedule(ControllerConfig c, int iter)
    {
        int anneal = c.ResolvedAnnealIters;
        if (iter >= anneal) return (c.GateTemperatureMin, true);
        double f = anneal <= 1 ? 1 : (double)iter / (anneal - 1);
        return (c.GateTemperature * Math.Pow(c.GateTemperatureMin / c.GateTemperature, f), false);
    }

    /// <summary>Fractions kept in the last forward pass (all B·T rows): soft (sigmoid(z/τ)) or hard (z &gt; 0).</summary>
    public static KeptFraction Kept(Gpt model, bool hard, double temperature)
    {
        double heads = 0, mlp = 0;
        int nh = 0, nm = 0;
        foreach (var (_, isHeads, gate) in Gates(model))
        {
            var z = model.KeptActivation(gate.Logits);
            double sum = 0;
            float invT = (float)(1 / temperature);
            for (int i = 0; i < z.Length; i++) sum += hard ? (z[i] > 0 ? 1 : 0) : UnitGate.Sigmoid(z[i] * invT);
            double f = sum / z.Length;
            if (isHeads) { heads += f; nh++; } else { mlp += f; nm++; }
        }
        double h = nh == 0 ? double.NaN : heads / nh, m = nm == 0 ? double.NaN : mlp / nm;
        return new KeptFraction(h, m, (heads + mlp) / Math.Max(1, nh + nm));
    }

    /// <summary>The fine-tune. Returns every iteration's report (also passed to <paramref name="progress"/>).</summary>
    public static List<ControllerStep> Train(Gpt gated, TokenFile train, ControllerConfig c, Action<ControllerStep>? progress = null)
    {
        c.Validate();
        var gateNames = new HashSet<string>(gated.Parameters.Where(p => p.Name.Contains(".gate.")).Select(p => p.Name));
        var segments = new List<AdamW.Segment>();
        foreach (var p in gated.Parameters)
        {
            bool isGate = gateNames.Contains(p.Name);
            var seg = AdamW.SegmentOf(gated.ParameterData, p.Value.Span, p.Decay && !isGate);
            segments.Add(seg with { LrScale = isGate ? (float)c.GateLrScale : c.Freeze ? 0f : 1f });
        }
        var adam = new AdamW(gated.ParameterData.Length, segments, 0.9f, 0.99f, 1e-8f, (float)c.WeightDecay);
        var schedule = new CosineSchedule(c.LearningRate, c.MinLr, c.WarmupIters, Math.Max(c.MaxIters, c.WarmupIters + 1), true);
        var sampler = new BatchSampler(train, gated.BatchSize, gated.SeqLen, c.Seed);
        var x = new int[gated.BatchSize * gated.SeqLen];
        var y = new int[x.Length];
        var steps = new List<ControllerStep>(c.MaxIters);
        var clock = Stopwatch.StartNew();
        for (int it = 0; it < c.MaxIters; it++)
        {
            var (temperature, hard) = Schedule(c, it);
            SetState(gated, temperature, hard, c.GateL1, c.BudgetAt(it));
            double lr = schedule.At(it);
            sampler.Next(x, y);
            gated.ZeroGrad();
            float loss = gated.Forward(x, y, training: true);
            if (!float.IsFinite(loss)) throw new InvalidOperationException($"controller fine-tune: loss became {loss} at iteration {it}; lower learning_rate or gate_lr_scale");
            var soft = Kept(gated, false, temperature);
            var hardKept = Kept(gated, true, temperature);
            gated.Backward();
            if (c.GradClip > 0) GradientClipping.ClipByGlobalNorm(gated.GradientData, c.GradClip);
            adam.Step(gated.ParameterData, gated.GradientData, (float)lr);
            var step = new ControllerStep(it, c.MaxIters, loss, soft.Overall, hardKept.Overall, temperature, hard, lr, clock.Elapsed.TotalSeconds / (it + 1));
            steps.Add(step);
            progress?.Invoke(step);
        }
        SetState(gated, c.GateTemperatureMin, true, 0, 1);   // inference: hard decisions
        return steps;
    }

    /// <summary>
    /// Mean val loss over <paramref name="batches"/> batches (Evaluator's val batches for <paramref name="seed"/>) and, for a
    /// gated model, the fraction of units its hard gates kept on them.
    /// </summary>
    public static (float Loss, KeptFraction Kept) Evaluate(Gpt model, TokenFile val, int batches, ulong seed)
    {
        var sampler = new BatchSampler(val, model.BatchSize, model.SeqLen, Training.Evaluator.SplitSeed(seed, "val"));
        var x = new int[model.BatchSize * model.SeqLen];
        var y = new int[x.Length];
        double sum = 0, heads = 0, mlp = 0, all = 0;
        bool gated = Gates(model).Count > 0;
        for (int i = 0; i < batches; i++)
        {
            sampler.Next(x, y);
            sum += model.Forward(x, y, training: false);
            if (!gated) continue;
            var k = Kept(model, true, 1);
            heads += k.Heads; mlp += k.Mlp; all += k.Overall;
        }
        return ((float)(sum / batches), gated ? new KeptFraction(heads / batches, mlp / batches, all / batches) : new KeptFraction(1, 1, 1));
    }
}
