using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// The end of a block's residual branch, shared by the attention and feed-forward parts:
/// out = residual + dropout(c_proj(x)), with the residual add fused into c_proj when no dropout runs.
/// </summary>
internal static class ResidualProjection
{
    /// <summary>output (N, C) = residual + dropout(proj(x)) for the pass's N rows.</summary>
    public static void Forward(ILinearWeight proj, ParameterSlot weight, ParameterSlot bias, Span<float> output, ReadOnlySpan<float> x,
        ReadOnlySpan<float> residual, int dropoutSeed, int channels, in Pass pass)
    {
        int N = pass.Rows;
        if (pass.DropoutActive)
        {
            proj.Forward(output, x, pass.Param(weight), pass.Param(bias), default, N, pass.Workspace);
            Dropout.Apply(output, pass.Dropout, pass.Seed(dropoutSeed), pass.MaskOffset(channels));
            Residual.Add(output, output, residual);
        }
        else proj.Forward(output, x, pass.Param(weight), pass.Param(bias), residual, N, pass.Workspace);
    }

    /// <summary>
    /// d proj(x) given d output: d output through the residual dropout's mask (written to <paramref name="dmasked"/>),
    /// or d output itself when no dropout ran.
    /// </summary>
    public static ReadOnlySpan<float> DropoutBackward(ReadOnlySpan<float> doutput, ActivationSlot dmasked, int dropoutSeed, int channels, in Pass pass)
    {
        if (!pass.DropoutActive) return doutput;
        var masked = pass.Act(dmasked);
        doutput.CopyTo(masked);
        Dropout.Apply(masked, pass.Dropout, pass.Seed(dropoutSeed), pass.MaskOffset(channels));
        return masked;
    }
}
