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
    /// backward pass becomes dx = dout · gelu'(x) (Gpt applies it to the tiles of the product that makes dout, see
    /// <see cref="Linear.Backward"/>'s dinpScale).
    /// </summary>
    public static void ForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative) =>
        Elementwise.ForwardWithDerivative(output, inputThenDerivative, 24, &ForwardWithDerivativeBody);

    // R(z), z = 1 / (1 + u/2): erfcx(u) = erfc(u) · exp(u²) for u ≥ 0 to 4.6e-8 relative (tools/fit_erf.py, piece R).
    const float R0 = -0.00010100513463839889f, R1 = 0.28399968147277832f, R2 = 0.26676693558692932f,
        R3 = 0.3150535523891449f, R4 = -0.0038842258509248495f, R5 = 0.35670557618141174f, R6 = -0.18221214413642883f,
        R7 = -0.14188337326049805f, R8 = 0.13746638596057892f, R9 = -0.031911406666040421f;

    // Φ(x) = ½ · erfc(−x/√2) for 16 lanes, and gelu'(x) = Φ(x) + x · φ(x). One piece for every x: with u = |x|/√2,
    // ½ erfc(u) = ½ · exp(−u²) · R(1 / (1 + u/2)), and Φ is that or 1 minus it by the sign of x. exp(−u²) = exp(−x²/2)
    // also gives φ. (The erf of Erf.Evaluate needs two polynomials and a select for the same result.)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> CdfAndDerivative(Vector512<float> v, out Vector512<float> derivative)
    {
        var one = Vector512<float>.One;
        var u = Vector512.Abs(v) * Vector512.Create(InvSqrt2);
        var e = VectorExp.Exp(-(u * u));
        var z = one / Vector512.FusedMultiplyAdd(u, Vector512.Create(0.5f), one);
        var r = Vector512.Create(R9);
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R8));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R7));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R6));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R5));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R4));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R3));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R2));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R1));
        r = Vector512.FusedMultiplyAdd(r, z, Vector512.Create(R0));
        var halfErfc = Vector512.Create(0.5f) * e * r;
        var cdf = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(v, Vector512<float>.Zero), one - halfErfc, halfErfc);
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
        for (; i + 16 <= end; i += 16)
        {
            var v = Vector512.Load(x + i);
            (v * CdfAndDerivative(v, out _)).Store(o + i);   // the unused derivative costs two operations
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
