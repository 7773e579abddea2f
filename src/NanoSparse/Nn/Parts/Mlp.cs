using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// nanoGPT's MLP:
///   h = c_fc(x)                                      // (N, H): H = 4C, or the layer's width after structured pruning
///   out = residual + dropout(c_proj(gelu(h)))        // (N, C)
/// GELU is the exact erf form (nanoGPT's nn.GELU()) or GPT-2's tanh approximation (config.Activation); relu, relu2
/// and fatrelu make exact zeros (activation sparsity). With <see cref="L1Coefficient"/> &gt; 0 the backward pass adds
/// the gradient of an L1 penalty on the activation output, c · Σ|act(h)| (ProSparse's regulariser).
/// </summary>
public sealed class Mlp : IFeedForward
{
    readonly int _channels;
    readonly string _activation;
    readonly float _fatreluThreshold;
    readonly ILinearWeight _cFc, _cProj;
    readonly ParameterSlot _cFcWeight, _cFcBias, _cProjWeight, _cProjBias;
    readonly ActivationSlot _h, _g;             // kept: (N, 4C) c_fc output, overwritten by GELU'(it); (N, 4C) GELU output
    readonly ActivationSlot _dmasked, _dg;      // scratch: (N, C) when dropout, (N, 4C)
    readonly int _residualSeed;

    // name: the state_dict prefix, e.g. transformer.h.0.mlp
    public Mlp(GptConfig config, string name, ILinearWeight cFc, ILinearWeight cProj, BufferLayout layout)
    {
        int C = config.NEmbd, H = cFc.OutFeatures;
        if (cFc.InFeatures != C)
            throw new ArgumentException($"{name}.c_fc must take {C} features, got ({cFc.OutFeatures}, {cFc.InFeatures})", nameof(cFc));
        if (cProj.OutFeatures != C || cProj.InFeatures != H)
            throw new ArgumentException($"{name}.c_proj must be ({C}, {H}), got ({cProj.OutFeatures}, {cProj.InFeatures})", nameof(cProj));
        _channels = C;
        _activation = config.Activation;
        _fatreluThreshold = config.FatreluThreshold;
        _cFc = cFc;
        _cProj = cProj;
        _cFcWeight = layout.LinearWeight(name + ".c_fc.weight", cFc);
        _cFcBias = layout.OptionalParameter(config.Bias, name + ".c_fc.bias", H);
        _cProjWeight = layout.LinearWeight(name + ".c_proj.weight", cProj);
        _cProjBias = layout.OptionalParameter(config.Bias, name + ".c_proj.bias", C);
        _h = layout.Activation(H);
        _g = layout.Activation(H);
        var scratch = layout.Scratch(config.Dropout > 0 ? C : 0, H);
        _dmasked = scratch[0];
        _dg = scratch[1];
        _residualSeed = layout.DropoutSeed();
    }

    public ILinearWeight CFc => _cFc;
    public ILinearWeight CProj => _cProj;
    /// <summary>The hidden width H (4C unless structured pruning removed neurons).</summary>
    public int Hidden => _cFc.OutFeatures;
    /// <summary>gelu(c_fc(x)) (B·T, H) of the last forward pass (read it with <see cref="Gpt.KeptActivation"/>).</summary>
    public ActivationSlot GeluOutputs => _g;
    /// <summary>The activation's config name (GptConfig.Activation).</summary>
    public string Activation => _activation;
    /// <summary>
    /// Gradient of the L1 penalty per element and unit |a|: the backward pass adds L1Coefficient · sign(a) · act'(h) to
    /// d h (0, the default: no penalty). Set between steps (see Sparsity.Activation.ActivationL1).
    /// </summary>
    public float L1Coefficient { get; set; }

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        int N = pass.Rows;
        var h = pass.Act(_h);
        var g = pass.Act(_g);
        _cFc.Forward(h, input, pass.Param(_cFcWeight), pass.Param(_cFcBias), default, N, pass.Workspace);
        ActivationForwardWithDerivative(g, h);   // h now holds GELU'(c_fc output) for the backward pass
        ResidualProjection.Forward(_cProj, _cProjWeight, _cProjBias, output, g, residual, _residualSeed, _channels, pass);
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows;
        // in the forward pass this was: out = residual + dropout(c_proj(gelu(h)))
        var dproj = ResidualProjection.DropoutBackward(doutput, _dmasked, _residualSeed, _channels, pass);
        // d h = (dproj · W) ⊙ GELU'(h), the derivative the forward pass left in h
        var dh = pass.Act(_dg);
        _cProj.Backward(dh, pass.Grad(_cProjWeight), pass.Grad(_cProjBias), dproj, pass.Act(_g), pass.Param(_cProjWeight), pass.Act(_h), N,
            pass.Workspace);
        // the L1 penalty's term: d/dh of c · Σ|act(h)| = c · sign(act(h)) · act'(h)
        if (L1Coefficient != 0f) Kernels.ActivationZeros.AddL1Gradient(dh, pass.Act(_g), pass.Act(_h), L1Coefficient);
        _cFc.Backward(dinput, pass.Grad(_cFcWeight), pass.Grad(_cFcBias), dh, input, pass.Param(_cFcWeight), default, N, pass.Workspace);
    }

    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => pass.Act(_g);

    // h (rows, 4C)
    public long DecodeScratchFloats(int rows) => (long)rows * Hidden;

    public void Decode(Span<float> output, ReadOnlySpan<float> input, in Decoding decoding)
    {
        int n = decoding.Rows;
        var h = decoding.Scratch.Slice(0, n * Hidden);
        _cFc.Forward(h, input, decoding.Param(_cFcWeight), decoding.Param(_cFcBias), default, n, decoding.Workspace);
        ActivationForward(h);
        _cProj.Forward(output, h, decoding.Param(_cProjWeight), decoding.Param(_cProjBias), default, n, decoding.Workspace);
    }

    // out = act(x), and x overwritten with act'(x)
    void ActivationForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative)
    {
        switch (_activation)
        {
            case GptConfig.GeluTanh: GeluTanh.ForwardWithDerivative(output, inputThenDerivative); break;
            case GptConfig.Relu: Relu.ForwardWithDerivative(output, inputThenDerivative); break;
            case GptConfig.FatRelu: Relu.ForwardWithDerivative(output, inputThenDerivative, _fatreluThreshold); break;
            case GptConfig.Relu2: SquaredRelu.ForwardWithDerivative(output, inputThenDerivative); break;
            default: Gelu.ForwardWithDerivative(output, inputThenDerivative); break;
        }
    }

    // x = act(x) in place (decode)
    void ActivationForward(Span<float> x)
    {
        switch (_activation)
        {
            case GptConfig.GeluTanh: GeluTanh.Forward(x, x); break;
            case GptConfig.Relu: Relu.Forward(x, x); break;
            case GptConfig.FatRelu: Relu.Forward(x, x, _fatreluThreshold); break;
            case GptConfig.Relu2: SquaredRelu.Forward(x, x); break;
            default: Gelu.Forward(x, x); break;
        }
    }
}
