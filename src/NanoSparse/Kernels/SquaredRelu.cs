using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Squared ReLU (So et al. 2021, Primer; Zhang et al. 2024, "ReLU² wins"):
///   relu2(x) = max(x, 0)²,   relu2'(x) = 2 · max(x, 0).
/// Zero (exactly) wherever x ≤ 0, like ReLU, but smooth at 0.
/// </summary>
public static unsafe class SquaredRelu
{
    const int Block = Elementwise.Block;

    public static float Forward(float x) => x > 0f ? x * x : 0f;

    public static float Derivative(float x) => x > 0f ? 2f * x : 0f;

    /// <summary>out (N) = relu2(inp (N)); out may alias inp (in place).</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input) =>
        Elementwise.Forward(output, input, 1, &ForwardBody);

    /// <summary>dinp (N) = dout (N) · relu2'(inp (N)); written, not accumulated. dinp may alias dout.</summary>
    public static void Backward(Span<float> dinp, ReadOnlySpan<float> input, ReadOnlySpan<float> dout) =>
        Elementwise.Backward(dinp, input, dout, 1, &BackwardBody);

    /// <summary>out (N) = relu2(x) and x (N) overwritten with relu2'(x) = 2·max(x, 0).</summary>
    public static void ForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative) =>
        Elementwise.ForwardWithDerivative(output, inputThenDerivative, 1, &ForwardWithDerivativeBody);

    static void ForwardBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        for (; i + 16 <= end; i += 16)
        {
            var r = Vector512.Max(Vector512.Load(x + i), Vector512<float>.Zero);
            (r * r).Store(o + i);
        }
        for (; i < end; i++) o[i] = Forward(x[i]);
    }

    static void ForwardWithDerivativeBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        for (; i + 16 <= end; i += 16)
        {
            var r = Vector512.Max(Vector512.Load(x + i), Vector512<float>.Zero);
            (r * r).Store(o + i);
            (r + r).Store(x + i);
        }
        for (; i < end; i++)
        {
            float v = x[i];
            o[i] = Forward(v);
            x[i] = Derivative(v);
        }
    }

    static void BackwardBody(ref ElementwiseArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* d = a.Out, x = a.Inp, g = a.Dout;
        for (; i + 16 <= end; i += 16)
        {
            // in the forward pass this was: out = max(x, 0)²
            var r = Vector512.Max(Vector512.Load(x + i), Vector512<float>.Zero);
            ((r + r) * Vector512.Load(g + i)).Store(d + i);
        }
        for (; i < end; i++) d[i] = Derivative(x[i]) * g[i];
    }
}
