using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// An L1 penalty on the MLP hidden activations a_l = act(c_fc(x)) (B·T, H_l) of every layer, the regulariser of
/// ProSparse (Song et al. 2024) that pushes a ReLU-fied model's activations to exact zeros:
///   penalty(step) = λ(step) · Σ_l mean_{positions, neurons} |a_l|,
/// added to the mean cross-entropy (the logged loss stays the cross-entropy alone). Its gradient per element of a_l is
/// λ / (B·T·H_l) · sign(a), which each Mlp adds in its backward pass (Mlp.L1Coefficient).
/// λ(step) ramps linearly from λ/warmup at the run's first step to λ after <c>warmup</c> steps (ProSparse raises its
/// factor progressively so the model can follow; 0: the full λ from the start).
/// </summary>
public sealed class ActivationL1
{
    readonly Mlp[] _mlps;
    readonly int _rows;

    /// <param name="lambda">λ ≥ 0 (act_l1).</param>
    /// <param name="warmup">steps of the linear ramp (act_l1_warmup); 0: none.</param>
    /// <param name="startStep">the run's first step (the ramp starts there).</param>
    public ActivationL1(Gpt model, float lambda, int warmup, int startStep)
    {
        if (!(lambda >= 0 && float.IsFinite(lambda))) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "act_l1 must be finite and >= 0");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "act_l1_warmup must be >= 0");
        _mlps = Mlps(model);
        if (_mlps.Length != model.Blocks.Count)
            throw new ArgumentException($"act_l1 needs every block's feed-forward to be an MLP; {model.Blocks.Count - _mlps.Length} of {model.Blocks.Count} are not");
        _rows = model.BatchSize * model.SeqLen;
        Lambda = lambda;
        Warmup = warmup;
        StartStep = startStep;
    }

    public float Lambda { get; }
    public int Warmup { get; }
    public int StartStep { get; }

    /// <summary>λ(step): the linear ramp over act_l1_warmup steps from the run's first step, then λ.</summary>
    public float LambdaAt(int step)
    {
        if (Warmup == 0) return Lambda;
        double done = Math.Clamp((double)(step - StartStep + 1) / Warmup, 0, 1);
        return (float)(Lambda * done);
    }

    /// <summary>Sets every Mlp's per-element coefficient for the step about to run.</summary>
    public void Apply(int step)
    {
        float lambda = LambdaAt(step);
        foreach (var mlp in _mlps) mlp.L1Coefficient = lambda / ((float)_rows * mlp.Hidden);
    }

    /// <summary>The penalty of the last forward pass at λ(step) (for reporting; the kept activations must be this model's).</summary>
    public double Penalty(Gpt model, int step)
    {
        double sum = 0;
        foreach (var mlp in _mlps)
        {
            var a = model.KeptActivation(mlp.GeluOutputs);
            sum += (double)System.Numerics.Tensors.TensorPrimitives.SumOfMagnitudes(a) / a.Length;
        }
        return LambdaAt(step) * sum;
    }

    internal static Mlp[] Mlps(Gpt model) => model.Blocks.Select(b => b.FeedForward).OfType<Mlp>().ToArray();
}
