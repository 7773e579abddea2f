using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts.Gated;

/// <summary>
/// A controller gate over U units (attention heads, or groups of MLP neurons) of one half of a block:
///   z = u · Wgᵀ + bg                 // (N, U): u the half's input (ln_1(x) or ln_2(x), (N, C)); Wg (U, C), bg (U)
///   g = sigmoid(z / τ)  or  1[z > 0]   // (N, U): soft, or hard with the straight-through estimator (GateState)
/// The part multiplies unit k's output by g[:, k]. Parameters: {name}.gate.weight (U, C), {name}.gate.bias (U), the
/// bias always present (it is what opens the gates when the controller is added to a trained model).
/// </summary>
public sealed class UnitGate
{
    readonly int _units, _channels;
    readonly long _allRows;   // B·T: the loss is a mean over every row of the batch
    readonly ParameterSlot _weight, _bias;
    readonly ActivationSlot _z, _g;   // kept (N, U) each
    ActivationSlot _dz, _dx;          // the owning part's scratch: (N, U), (N, C)

    internal UnitGate(string name, int units, int channels, BufferLayout layout)
    {
        _units = units;
        _channels = channels;
        _allRows = layout.Rows;
        _weight = layout.Parameter(name + ".gate.weight", units, channels);
        _bias = layout.Parameter(name + ".gate.bias", units);
        _z = layout.Activation(units);
        _g = layout.Activation(units);
    }

    /// <summary>The part hands its scratch slots (N, U) and (N, C), allocated with its own (they must not overlap them).</summary>
    internal void UseScratch(ActivationSlot dz, ActivationSlot dx)
    {
        _dz = dz;
        _dx = dx;
    }

    public GateState State { get; } = new();
    public int Units => _units;
    /// <summary>z (B·T, U) of the last forward pass: the gate logits (read with Gpt.KeptActivation).</summary>
    public ActivationSlot Logits => _z;
    /// <summary>g (B·T, U) of the last forward pass: the multipliers applied.</summary>
    public ActivationSlot Values => _g;
    public ParameterSlot Weight => _weight;
    public ParameterSlot Bias => _bias;

    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>g (N, U) for the pass's input u (N, C); z and g are kept for backward.</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<float> u, in Pass pass)
    {
        int N = pass.Rows;
        var z = pass.Act(_z);
        var g = pass.Act(_g);
        Linear.Forward(z, u, pass.Param(_weight), pass.Param(_bias), N, _channels, _units);
        float invT = 1f / State.Temperature;
        if (State.Hard)
            for (int i = 0; i < z.Length; i++) g[i] = z[i] > 0f ? 1f : 0f;
        else
            for (int i = 0; i < z.Length; i++) g[i] = Sigmoid(z[i] * invT);
        return g;
    }

    /// <summary>Scratch (N, U) where the part writes d g before calling <see cref="Backward"/>.</summary>
    public Span<float> GradientBuffer(in Pass pass) => pass.Act(_dz);

    /// <summary>
    /// Given d g in <see cref="GradientBuffer"/>: accumulates the gate's parameter gradients and adds d u into dinput
    /// (N, C). dz = (dg + dR/ds) · s(1 − s) / τ with s = sigmoid(z/τ) (the straight-through estimator when hard).
    /// </summary>
    public void Backward(Span<float> dinput, ReadOnlySpan<float> u, in Pass pass)
    {
        int N = pass.Rows, U = _units;
        var z = pass.Act(_z);
        var dz = pass.Act(_dz);
        float invT = 1f / State.Temperature;
        // R = L1 · max(0, mean(s) − budget): dR/ds = L1 / (B·T·U) for every s while the mean is above the budget
        float dR = 0f;
        if (State.L1 > 0)
        {
            double sum = 0;
            for (int i = 0; i < z.Length; i++) sum += Sigmoid(z[i] * invT);
            if (sum / z.Length > State.Budget) dR = (float)(State.L1 / ((double)_allRows * U));
        }
        for (int i = 0; i < z.Length; i++)
        {
            float s = Sigmoid(z[i] * invT);
            dz[i] = (dz[i] + dR) * s * (1f - s) * invT;
        }
        // in the forward pass this was: z = u · Wgᵀ + bg
        var dx = pass.Act(_dx);
        Linear.Backward(dx, pass.Grad(_weight), pass.Grad(_bias), dz, u, pass.Param(_weight), N, _channels, U);
        Residual.Add(dinput, dinput, dx);
    }

    /// <summary>
    /// Decode: the hard decisions for the rows' input u (n, C), written to gates (n, U) as 1 (run the unit) or 0
    /// (skip it); returns the units kept. The gate's own cost (a U × C product) is part of every decode step.
    /// </summary>
    public int Decide(Span<float> gates, ReadOnlySpan<float> u, int n, in Decoding decoding)
    {
        var z = gates.Slice(0, n * _units);
        if (n <= Gemv.MaxRows) Gemv.Forward(z, u, decoding.Param(_weight), decoding.Param(_bias), n, _channels, _units);
        else Linear.Forward(z, u, decoding.Param(_weight), decoding.Param(_bias), n, _channels, _units);
        int kept = 0;
        for (int i = 0; i < z.Length; i++)
        {
            z[i] = z[i] > 0f || State.AllOpen ? 1f : 0f;
            kept += (int)z[i];
        }
        DecodeKept += kept;
        DecodeSeen += z.Length;
        return kept;
    }

    /// <summary>Units kept and units decided by <see cref="Decide"/> since the last <see cref="ResetDecodeCounts"/>.</summary>
    public long DecodeKept { get; private set; }
    public long DecodeSeen { get; private set; }
    public void ResetDecodeCounts() => (DecodeKept, DecodeSeen) = (0, 0);
}
