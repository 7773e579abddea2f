using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// ReLU and FATReLU (Kurtz et al. 2020, "Inducing and exploiting activation sparsity"): with threshold t ≥ 0,
///   fatrelu(x) = x if x &gt; t else 0,   fatrelu'(x) = 1 if x &gt; t else 0,
/// and relu = fatrelu with t = 0. Values at or below t become exact zeros (the point of both). At x = t the derivative
/// is taken as 0 (PyTorch's relu backward at 0 is 0 too).
/// </summary>
public static unsafe class Relu
{
    const int Block = Elementwise.Block;

    public static float Forward(float x, float threshold = 0f) => x > threshold ? x : 0f;

    public static float Derivative(float x, float threshold = 0f) => x > threshold ? 1f : 0f;

    /// <summary>out (N) = fatrelu_t(inp (N)); out may alias inp (in place).</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input, float threshold = 0f)
    {
        CheckThreshold(threshold);
        Check.Length(output, input.Length, nameof(output));
        fixed (float* o = output, i = input)
        {
            var a = new ThresholdArgs { Out = o, Inp = i, N = input.Length, Threshold = threshold };
            RowParallel.For(Blocks(input.Length), Block, ref a, &ForwardBody);
        }
    }

    /// <summary>
    /// out (N) = fatrelu_t(x) and x (N) overwritten with fatrelu_t'(x) ∈ {0, 1}: the backward pass is then
    /// dx = dout · that mask (see <see cref="Linear.Backward"/>'s dinpScale).
    /// </summary>
    public static void ForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative, float threshold = 0f)
    {
        CheckThreshold(threshold);
        Check.Length(output, inputThenDerivative.Length, nameof(output));
        fixed (float* o = output, i = inputThenDerivative)
        {
            var a = new ThresholdArgs { Out = o, Inp = i, N = inputThenDerivative.Length, Threshold = threshold };
            RowParallel.For(Blocks(inputThenDerivative.Length), Block, ref a, &ForwardWithDerivativeBody);
        }
    }

    /// <summary>dinp (N) = dout (N) · fatrelu_t'(inp (N)); written, not accumulated. dinp may alias dout.</summary>
    public static void Backward(Span<float> dinp, ReadOnlySpan<float> input, ReadOnlySpan<float> dout, float threshold = 0f)
    {
        CheckThreshold(threshold);
        Check.Length(dinp, input.Length, nameof(dinp));
        Check.Length(dout, input.Length, nameof(dout));
        fixed (float* d = dinp, i = input, g = dout)
        {
            var a = new ThresholdArgs { Out = d, Inp = i, Dout = g, N = input.Length, Threshold = threshold };
            RowParallel.For(Blocks(input.Length), Block, ref a, &BackwardBody);
        }
    }

    internal static int Blocks(int n) => (n + Block - 1) / Block;

    static void CheckThreshold(float threshold)
    {
        if (!(threshold >= 0f && float.IsFinite(threshold)))
            throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the FATReLU threshold must be finite and >= 0");
    }

    static void ForwardBody(ref ThresholdArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        var t = Vector512.Create(a.Threshold);
        for (; i + 16 <= end; i += 16)
        {
            var v = Vector512.Load(x + i);
            (v & Vector512.GreaterThan(v, t)).Store(o + i);
        }
        for (; i < end; i++) o[i] = Forward(x[i], a.Threshold);
    }

    static void ForwardWithDerivativeBody(ref ThresholdArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* o = a.Out, x = a.Inp;
        var t = Vector512.Create(a.Threshold);
        var one = Vector512<float>.One;
        for (; i + 16 <= end; i += 16)
        {
            var v = Vector512.Load(x + i);
            var active = Vector512.GreaterThan(v, t);
            (v & active).Store(o + i);
            (one & active).Store(x + i);
        }
        for (; i < end; i++)
        {
            float v = x[i];
            o[i] = Forward(v, a.Threshold);
            x[i] = Derivative(v, a.Threshold);
        }
    }

    static void BackwardBody(ref ThresholdArgs a, int startBlock, int endBlock)
    {
        int i = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        float* d = a.Out, x = a.Inp, g = a.Dout;
        var t = Vector512.Create(a.Threshold);
        for (; i + 16 <= end; i += 16)
        {
            // in the forward pass this was: out = x > t ? x : 0
            (Vector512.Load(g + i) & Vector512.GreaterThan(Vector512.Load(x + i), t)).Store(d + i);
        }
        for (; i < end; i++) d[i] = x[i] > a.Threshold ? g[i] : 0f;
    }
}

/// <summary>Buffers of a thresholded elementwise kernel (FATReLU) as raw pointers for RowParallel.</summary>
internal unsafe struct ThresholdArgs
{
    public float* Out;   // forward: output; backward: dinp
    public float* Inp;   // the activation's input
    public float* Dout;  // backward only
    public int N;
    public float Threshold;
}
