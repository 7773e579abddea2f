using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;

namespace NanoSparse.Nn.Parts.Gated;

/// <summary>
/// nanoGPT's MLP with a per-token controller over groups of S = gate_group hidden neurons (config gate "mlp" or "both"):
///   a = gelu(c_fc(x))                     // (N, H)
///   g = gate(x)                           // (N, H / S), see UnitGate
///   out = residual + dropout(c_proj(a ⊙ g))   // neuron j scaled by g[:, j / S]
/// At batch-1 decode a skipped group computes no c_fc rows and reads no c_proj columns: c_proj is read from a
/// neuron-major (H, C) copy (made at the first decode after a forward pass), one contiguous row per kept neuron.
/// </summary>
public sealed class GatedMlp : IFeedForward
{
    readonly int _channels, _hidden, _group;
    readonly bool _geluTanh;
    readonly ILinearWeight _cFc, _cProj;
    readonly ParameterSlot _cFcWeight, _cFcBias, _cProjWeight, _cProjBias;
    readonly ActivationSlot _h, _a, _ag;        // kept (N, H): gelu'(c_fc output), gelu output, gated gelu output
    readonly ActivationSlot _dmasked, _dag;     // scratch: (N, C) when dropout, (N, H)
    readonly int _residualSeed;
    readonly object _copyLock = new();
    float[]? _projByNeuron;   // c_proj (C, H) as (H, C)

    public GatedMlp(GptConfig config, string name, ILinearWeight cFc, ILinearWeight cProj, BufferLayout layout)
    {
        int C = config.NEmbd, H = cFc.OutFeatures, S = GateSettings.Group(config);
        if (cFc.InFeatures != C)
            throw new ArgumentException($"{name}.c_fc must take {C} features, got ({cFc.OutFeatures}, {cFc.InFeatures})", nameof(cFc));
        if (cProj.OutFeatures != C || cProj.InFeatures != H)
            throw new ArgumentException($"{name}.c_proj must be ({C}, {H}), got ({cProj.OutFeatures}, {cProj.InFeatures})", nameof(cProj));
        if (H % S != 0)
            throw new ArgumentException($"gate_group ({S}) must divide the MLP hidden width of {name} ({H})");
        GateSettings.RequireDense(cFc, name + ".c_fc");
        GateSettings.RequireDense(cProj, name + ".c_proj");
        (_channels, _hidden, _group) = (C, H, S);
        _geluTanh = config.Activation == GptConfig.GeluTanh;
        _cFc = cFc;
        _cProj = cProj;
        _cFcWeight = layout.LinearWeight(name + ".c_fc.weight", cFc);
        _cFcBias = layout.OptionalParameter(config.Bias, name + ".c_fc.bias", H);
        _cProjWeight = layout.LinearWeight(name + ".c_proj.weight", cProj);
        _cProjBias = layout.OptionalParameter(config.Bias, name + ".c_proj.bias", C);
        Gate = new UnitGate(name, H / S, C, layout);
        _h = layout.Activation(H);
        _a = layout.Activation(H);
        _ag = layout.Activation(H);
        var scratch = layout.Scratch(config.Dropout > 0 ? C : 0, H, H / S, C);
        _dmasked = scratch[0];
        _dag = scratch[1];
        Gate.UseScratch(scratch[2], scratch[3]);
        _residualSeed = layout.DropoutSeed();
    }

    /// <summary>The controller over this layer's neuron groups.</summary>
    public UnitGate Gate { get; }
    public int Hidden => _hidden;
    public int Group => _group;

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        _projByNeuron = null;   // the weights may change after a training pass: decode copies c_proj again
        int N = pass.Rows, H = _hidden, S = _group, G = H / S;
        var h = pass.Act(_h);
        var a = pass.Act(_a);
        var ag = pass.Act(_ag);
        _cFc.Forward(h, input, pass.Param(_cFcWeight), pass.Param(_cFcBias), default, N, pass.Workspace);
        if (_geluTanh) GeluTanh.ForwardWithDerivative(a, h);   // h now holds gelu'(c_fc output)
        else Gelu.ForwardWithDerivative(a, h);
        var g = Gate.Forward(input, pass);
        // ag[n, k·S + j] = a[n, k·S + j] · g[n, k]
        for (int n = 0; n < N; n++)
            for (int k = 0; k < G; k++)
                TensorPrimitives.Multiply(a.Slice(n * H + k * S, S), g[n * G + k], ag.Slice(n * H + k * S, S));
        ResidualProjection.Forward(_cProj, _cProjWeight, _cProjBias, output, ag, residual, _residualSeed, _channels, pass);
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows, H = _hidden, S = _group, G = H / S;
        // in the forward pass this was: out = residual + dropout(c_proj(ag))
        var dproj = ResidualProjection.DropoutBackward(doutput, _dmasked, _residualSeed, _channels, pass);
        var dag = pass.Act(_dag);
        _cProj.Backward(dag, pass.Grad(_cProjWeight), pass.Grad(_cProjBias), dproj, pass.Act(_ag), pass.Param(_cProjWeight), default, N,
            pass.Workspace);
        // in the forward pass this was: ag = a ⊙ g, a = gelu(h)   → dg[n, k] = Σ_j dag·a over the group; dh = dag ⊙ g ⊙ gelu'(h)
        var a = pass.Act(_a);
        var dgelu = pass.Act(_h);
        var g = pass.Act(Gate.Values);
        var dg = Gate.GradientBuffer(pass);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < G; k++)
            {
                var d = dag.Slice(n * H + k * S, S);
                dg[n * G + k] = TensorPrimitives.Dot(d, a.Slice(n * H + k * S, S));
                TensorPrimitives.Multiply(d, g[n * G + k], d);
            }
        TensorPrimitives.Multiply(dag, dgelu, dag);
        _cFc.Backward(dinput, pass.Grad(_cFcWeight), pass.Grad(_cFcBias), dag, input, pass.Param(_cFcWeight), default, N, pass.Workspace);
        Gate.Backward(dinput, input, pass);   // dinput += d gate(input)
    }

    /// <summary>What c_proj saw: the gated GELU output a ⊙ g.</summary>
    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => pass.Act(_ag);

    // h (rows, H), gates (rows, H / S); at one row, the kept neurons' indices (H ints) after h and gates
    public long DecodeScratchFloats(int rows) => (long)rows * _hidden + (long)rows * (_hidden / _group) + _hidden;

    public void Decode(Span<float> output, ReadOnlySpan<float> input, in Decoding decoding)
    {
        int n = decoding.Rows, H = _hidden, S = _group, G = H / S, C = _channels;
        var h = decoding.Scratch.Slice(0, n * H);
        var gates = decoding.Scratch.Slice(n * H, n * G);
        Gate.Decide(gates, input, n, decoding);
        var wFc = decoding.Param(_cFcWeight);
        var bFc = decoding.Param(_cFcBias);
        if (n == 1)
        {
            // The kept groups' neurons in one list, then one neuron-sparse up-projection (c_fc rows), GELU and one
            // down-projection over the neuron-major c_proj: two products that split over the kernel threads, instead
            // of a product and a serial row combination per run of kept groups.
            var kept = MemoryMarshal.Cast<float, int>(decoding.Scratch.Slice(H + G, H));
            int k = 0;
            for (int g = 0; g < G; g++)
                if (gates[g] != 0f)
                    for (int j = g * S; j < g * S + S; j++) kept[k++] = j;
            var hk = h.Slice(0, k);
            NeuronSparseMlp.UpProject(hk, input.Slice(0, C), wFc, bFc, kept.Slice(0, k), C, H);
            if (_geluTanh) GeluTanh.Forward(hk, hk);
            else Gelu.Forward(hk, hk);
            NeuronSparseMlp.DownProject(output.Slice(0, C), hk, ProjectionByNeuron(decoding), decoding.Param(_cProjBias), kept.Slice(0, k), C, H);
            return;
        }
        // Prefill: the dense computation, the skipped groups' outputs zeroed
        _cFc.Forward(h, input, wFc, bFc, default, n, decoding.Workspace);
        if (_geluTanh) GeluTanh.Forward(h, h);
        else Gelu.Forward(h, h);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < G; k++)
                if (gates[i * G + k] == 0f) h.Slice(i * H + k * S, S).Clear();
        _cProj.Forward(output, h, decoding.Param(_cProjWeight), decoding.Param(_cProjBias), default, n, decoding.Workspace);
    }

    float[] ProjectionByNeuron(in Decoding decoding)
    {
        var copy = _projByNeuron;
        if (copy is not null) return copy;
        lock (_copyLock)
        {
            if (_projByNeuron is not null) return _projByNeuron;
            copy = new float[_channels * _hidden];
            RowCombination.Transpose(copy, decoding.Param(_cProjWeight), _channels, _hidden);
            _projByNeuron = copy;
            return copy;
        }
    }

    /// <summary>Drops the decode copy of c_proj; call it after changing the weights other than through a forward pass.</summary>
    public void InvalidateDecodeCopy() => _projByNeuron = null;
}
