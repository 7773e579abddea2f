namespace NanoSparse.Kernels;

/// <summary>Buffers of an elementwise kernel pair (activation forward and backward), as raw pointers for RowParallel.</summary>
internal unsafe struct ElementwiseArgs
{
    public float* Out;   // forward: output; backward: dinp
    public float* Inp;   // the activation's input
    public float* Dout;  // backward only: gradient of the output
    public int N;
}

/// <summary>
/// The one parallel skeleton of elementwise activations (Gelu, GeluTanh): the N elements are split into blocks of
/// <see cref="Block"/> so RowParallel can hand out coarse chunks; each kernel supplies only its block body.
/// </summary>
internal static unsafe class Elementwise
{
    public const int Block = 1024;

    /// <summary>out (N) = f(inp (N)); out may alias inp. <paramref name="workPerElement"/> is the body's relative cost.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input, int workPerElement,
        delegate*<ref ElementwiseArgs, int, int, void> body)
    {
        Check.Length(output, input.Length, nameof(output));
        fixed (float* o = output, i = input)
        {
            var a = new ElementwiseArgs { Out = o, Inp = i, N = input.Length };
            RowParallel.For((input.Length + Block - 1) / Block, Block * workPerElement, ref a, body);
        }
    }

    /// <summary>dinp (N) = dout (N) · f'(inp (N)), written, not accumulated; dinp may alias dout.</summary>
    public static void Backward(Span<float> dinp, ReadOnlySpan<float> input, ReadOnlySpan<float> dout, int workPerElement,
        delegate*<ref ElementwiseArgs, int, int, void> body)
    {
        Check.Length(dinp, input.Length, nameof(dinp));
        Check.Length(dout, input.Length, nameof(dout));
        fixed (float* d = dinp, i = input, g = dout)
        {
            var a = new ElementwiseArgs { Out = d, Inp = i, Dout = g, N = input.Length };
            RowParallel.For((input.Length + Block - 1) / Block, Block * workPerElement, ref a, body);
        }
    }

    /// <summary>
    /// out (N) = f(x) and, in place of x, f'(x) (N): the training forward pass keeps the derivative so the backward
    /// pass is one multiply instead of a second evaluation.
    /// </summary>
    public static void ForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative, int workPerElement,
        delegate*<ref ElementwiseArgs, int, int, void> body) =>
        Forward(output, inputThenDerivative, workPerElement, body);   // the body writes f' back through Inp
}
