using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Exact GELU as PyTorch's nn.GELU(): gelu(x) = 0.5 · x · (1 + erf(x / √2)).
/// Derivative: gelu'(x) = 0.5 · (1 + erf(x / √2)) + x · φ(x), with φ(x) = exp(−x²/2) / √(2π).
/// </summary>
public static unsafe class Gelu
{
    const float InvSqrt2 = 0.70710678118654752f;
    const float InvSqrt2Pi = 0.39894228040143268f;
    const int Block = Elementwise.Block;

    public static float Forward(float x) => 0.5f * x * (1f + Erf.Evaluate(x * InvSqrt2));

    public static float Derivative(float x) =>
        0.5f * (1f + Erf.Evaluate(x * InvSqrt2)) + x * InvSqrt2Pi * MathF.Exp(-0.5f * x * x);

    /// <summary>out (N) = gelu(inp (N)). out may alias inp (in place).</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input) =>
        Elementwise.Forward(output, input, 20, &ForwardBody);

    /// <summary>dinp (N) = dout (N) · gelu'(inp (N)); written, not accumulated. dinp may alias dout (in place).</summary>
    public static void Backward(Span<float> dinp, ReadOnlySpan<float> input, ReadOnlySpan<float> dout) =>
        Elementwise.Backward(dinp, input, dout, 30, &BackwardBody);

    /// <summary>
    /// out (N) = gelu(x) and x (N) overwritten with gelu'(x): one evaluation of erf and exp serves both, and the
    /// backward pass becomes dx = dout · gelu'(x) (<see cref="Elementwise.MultiplyByDerivative"/>).
    /// </summary>
    public static void ForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative) =>
        Elementwise.ForwardWithDerivative(output, inputThenDerivative, 24, &ForwardWithDerivativeBody);

    // Φ(x) = 0.5 · (1 + erf(x/√2)) and gelu'(x) = Φ(x) + x · φ(x) for 16 lanes; exp(−x²/2) serves erf and φ.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> CdfAndDerivative(Vector512<float> v, out Vector512<float> derivative)
    {
        var half = Vector512.Create(0.5f);
        var e = VectorExp.Exp(-(half * v * v));
        var cdf = half * (Vector512<float>.One + Erf.Evaluate(v * Vector512.Create(InvSqrt2), e));
        derivative = Vector512.FusedMultiplyAdd(v * Vector512.Create(InvSqrt2Pi), e, cdf);
        return cdf;
    }

    static void ForwardWithDerivativeBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        for (; i + 16 <= end; i += 16)
        {
            var v = Vector512.Load(x + i);
            (v * CdfAndDerivative(v, out var derivative)).Store(o + i);
            derivative.Store(x + i);
        }
        for (; i < end; i++)
        {
            float v = x[i];
            o[i] = Forward(v);
            x[i] = Derivative(v);
        }
    }

    static void ForwardBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        var half = Vector512.Create(0.5f);
        var c = Vector512.Create(InvSqrt2);
        for (; i + 16 <= end; i += 16)
        {
            var v = Vector512.Load(x + i);
            (half * v * (Vector512<float>.One + Erf.Evaluate(v * c))).Store(o + i);
        }
        for (; i < end; i++) o[i] = Forward(x[i]);
    }

    static void BackwardBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* d = a.Out, x = a.Inp, g = a.Dout;
        for (; i + 16 <= end; i += 16)
        {
            // in the forward pass this was: out = 0.5 * x * (1 + erf(x / sqrt 2))
            CdfAndDerivative(Vector512.Load(x + i), out var derivative);
            (derivative * Vector512.Load(g + i)).Store(d + i);
        }
        for (; i < end; i++) d[i] = Derivative(x[i]) * g[i];
    }
}
