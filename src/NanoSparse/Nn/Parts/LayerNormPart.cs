using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// A LayerNorm of the model (ln_1, ln_2, ln_f): its weight and optional bias, and the output, mean and rstd it keeps
/// for the backward pass.
/// </summary>
public sealed class LayerNormPart
{
    readonly int _channels;
    readonly ParameterSlot _weight, _bias;
    readonly ActivationSlot _output, _mean, _rstd;

    // name: the state_dict prefix, e.g. transformer.h.0.ln_1
    public LayerNormPart(string name, int channels, bool bias, BufferLayout layout)
    {
        _channels = channels;
        _weight = layout.Parameter(name + ".weight", channels);
        _bias = layout.OptionalParameter(bias, name + ".bias", channels);
        _output = layout.Activation(channels);
        _mean = layout.Activation(1);
        _rstd = layout.Activation(1);
    }

    /// <summary>Returns the output (N, C) = layernorm(x (N, C)), kept with its mean and rstd.</summary>
    public Span<float> Forward(ReadOnlySpan<float> x, scoped in Pass pass)
    {
        var output = pass.Act(_output);
        LayerNorm.Forward(output, pass.Act(_mean), pass.Act(_rstd), x, pass.Param(_weight), pass.Param(_bias), pass.Rows, _channels);
        return output;
    }

    /// <summary>The output of the last Forward (N, C).</summary>
    public Span<float> Output(scoped in Pass pass) => pass.Act(_output);

    /// <summary>dx (N, C) += d x given doutput (N, C); x as in Forward. Weight and bias gradients accumulated.</summary>
    public void Backward(Span<float> dx, ReadOnlySpan<float> doutput, ReadOnlySpan<float> x, in Pass pass) =>
        LayerNorm.Backward(dx, pass.Grad(_weight), pass.Grad(_bias), doutput, x, pass.Param(_weight), pass.Act(_mean), pass.Act(_rstd),
            pass.Rows, _channels);

    /// <summary>Returns output (rows, C) = layernorm(x (rows, C)), with mean and rstd (rows) as scratch.</summary>
    public Span<float> Decode(Span<float> output, Span<float> mean, Span<float> rstd, ReadOnlySpan<float> x, int rows, scoped in Decoding decoding)
    {
        LayerNorm.Forward(output, mean, rstd, x, decoding.Param(_weight), decoding.Param(_bias), rows, _channels);
        return output;
    }
}
