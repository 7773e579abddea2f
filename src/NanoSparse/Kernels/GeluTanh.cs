using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// tanh-approximated GELU (Hendrycks and Gimpel 2016), GPT-2's activation (Hugging Face "gelu_new", PyTorch
/// nn.GELU(approximate="tanh")): gelu(x) = 0.5 · x · (1 + tanh(u)), u = √(2/π) · (x + 0.044715 · x³).
/// Computed as x · σ(2u), since 0.5 · (1 + tanh(u)) = σ(2u) = 1 / (1 + exp(−2u)), which saturates cleanly to 0 and 1.
/// Derivative: gelu'(x) = s + x · s · (1 − s) · 2u', with s = σ(2u) and u' = √(2/π) · (1 + 3 · 0.044715 · x²).
/// </summary>
public static unsafe class GeluTanh
{
    const float SqrtTwoOverPi = 0.79788456080286536f;
    const float Cubic = 0.044715f;
    const int Block = Elementwise.Block;

    static float Sigmoid2U(float x)
    {
        float u = SqrtTwoOverPi * (x + Cubic * x * x * x);
        return 1f / (1f + MathF.Exp(-2f * u));
    }

    public static float Forward(float x) => x * Sigmoid2U(x);

    public static float Derivative(float x)
    {
        float e = MathF.Exp(-2f * SqrtTwoOverPi * (x + Cubic * x * x * x));
        float s = 1f / (1f + e);
        float oneMinusS = s > 0.5f ? e * s : 1f - s;   // 1 − s as e·s near 1, where the subtraction cancels
        return s + x * s * oneMinusS * 2f * SqrtTwoOverPi * (1f + 3f * Cubic * x * x);
    }

    /// <summary>out (N) = gelu_tanh(inp (N)). out may alias inp (in place).</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input) =>
        Elementwise.Forward(output, input, 20, &ForwardBody);

    /// <summary>dinp (N) = dout (N) · gelu_tanh'(inp (N)); written, not accumulated. dinp may alias dout (in place).</summary>
    public static void Backward(Span<float> dinp, ReadOnlySpan<float> input, ReadOnlySpan<float> dout) =>
        Elementwise.Backward(dinp, input, dout, 30, &BackwardBody);

    // σ(2u) for 16 lanes; exp(−2u) overflows to +inf for very negative x, giving exactly 0.
    static Vector512<float> Sigmoid2U(Vector512<float> x)
    {
        var u = Vector512.Create(SqrtTwoOverPi) * (x + Vector512.Create(Cubic) * x * x * x);
        return Vector512<float>.One / (Vector512<float>.One + VectorExp.Exp(Vector512.Create(-2f) * u));
    }

    /// <summary>out (N) = gelu_tanh(x) and x (N) overwritten with gelu_tanh'(x), from one sigmoid evaluation.</summary>
    public static void ForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative) =>
        Elementwise.ForwardWithDerivative(output, inputThenDerivative, 26, &ForwardWithDerivativeBody);

    // s = σ(2u) and gelu_tanh'(x) = s + x · s · (1 − s) · 2u' for 16 lanes, from one exp.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> SigmoidAndDerivative(Vector512<float> v, out Vector512<float> derivative)
    {
        var one = Vector512<float>.One;
        var e = VectorExp.Exp(Vector512.Create(-2f * SqrtTwoOverPi) * (v + Vector512.Create(Cubic) * v * v * v));
        var s = one / (one + e);
        // 1 − s as e·s where s is near 1: the subtraction would cancel (x·(1 − s) is not small there).
        var oneMinusS = Vector512.ConditionalSelect(Vector512.GreaterThan(s, Vector512.Create(0.5f)), e * s, one - s);
        var du2 = Vector512.Create(2f * SqrtTwoOverPi) * (one + Vector512.Create(3f * Cubic) * v * v);
        derivative = s + v * s * oneMinusS * du2;
        return s;
    }

    static void ForwardWithDerivativeBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        for (; i + 16 <= end; i += 16)
        {
            var v = Vector512.Load(x + i);
            (v * SigmoidAndDerivative(v, out var derivative)).Store(o + i);
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
            (v * Sigmoid2U(v)).Store(o + i);
        }
        for (; i < end; i++) o[i] = Forward(x[i]);
    }

    static void BackwardBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* d = a.Out, x = a.Inp, g = a.Dout;
        for (; i + 16 <= end; i += 16)
        {
            // in the forward pass this was: out = x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x^3)
            SigmoidAndDerivative(Vector512.Load(x + i), out var derivative);
            (derivative * Vector512.Load(g + i)).Store(d + i);
        }
        for (; i < end; i++) d[i] = Derivative(x[i]) * g[i];
    }
}
