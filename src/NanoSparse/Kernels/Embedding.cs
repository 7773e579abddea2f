using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>The GPT input encoder: token embedding plus learned position embedding.</summary>
public static unsafe class Embedding
{
    struct Args { public float* Out, Wte, Wpe; public int* Tokens; public int T, C, V; }

    /// <summary>out (B, T, C) = wte (V, C)[tokens (B, T)] + wpe (maxT, C)[t]. Tokens must lie in [0, V).</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<int> tokens, ReadOnlySpan<float> wte,
        ReadOnlySpan<float> wpe, int B, int T, int C)
    {
        Check.Length(tokens, (long)B * T, nameof(tokens));
        Check.Length(output, (long)B * T * C, nameof(output));
        Check.Length(wpe, (long)T * C, nameof(wpe));
        int V = wte.Length / C;
        for (int i = 0; i < B * T; i++)
            if ((uint)tokens[i] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[i], $"token at index {i} must lie in [0, {V}) (vocab_size)");
        fixed (float* o = output, e = wte, p = wpe)
        fixed (int* t = tokens)
        {
            var a = new Args { Out = o, Wte = e, Wpe = p, Tokens = t, T = T, C = C, V = V };
            RowParallel.For(B * T, 2L * C, ref a, &ForwardRows);
        }
    }

    static void ForwardRows(ref Args a, int start, int end)
    {
        int C = a.C;
        for (int n = start; n < end; n++)
            TensorPrimitives.Add(new ReadOnlySpan<float>(a.Wte + (long)a.Tokens[n] * C, C),
                new ReadOnlySpan<float>(a.Wpe + (long)(n % a.T) * C, C), new Span<float>(a.Out + (long)n * C, C));
    }

    /// <summary>
    /// dwte (V, C) += scatter of dout (B, T, C) by token; dwpe (T, C) += Σ_b dout[b, t]. Serial: two rows with the
    /// same token add into the same place, and this costs one pass over dout.
    /// </summary>
    public static void Backward(Span<float> dwte, Span<float> dwpe, ReadOnlySpan<float> dout, ReadOnlySpan<int> tokens,
        int B, int T, int C)
    {
        Check.Length(dout, (long)B * T * C, nameof(dout));
        for (int n = 0; n < B * T; n++)
        {
            var g = dout.Slice(n * C, C);
            var we = dwte.Slice(tokens[n] * C, C);
            var wp = dwpe.Slice((n % T) * C, C);
            TensorPrimitives.Add(we, g, we);
            TensorPrimitives.Add(wp, g, wp);
        }
    }
}
