using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Fully connected layer as torch.nn.Linear: out = inp · weightᵀ + bias, weight stored (OC, C) like PyTorch.
/// The products go through <c>Gemm.Multiply</c>; only the bias work is done here.
/// </summary>
public static unsafe class Linear
{
    const int ColumnBlock = 64;

    struct Args { public float* Out, Bias, Dout, Dbias; public int N, OC; }

    /// <summary>
    /// out (N, OC) = inp (N, C) · weight (OC, C)ᵀ + bias (OC, or empty without bias) + residual (N, OC, or empty). The
    /// residual is added to each tile of the product while it is in cache (x + proj(...) without a pass of its own);
    /// it must not overlap out.
    /// </summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int C, int OC, ReadOnlySpan<float> residual = default)
    {
        Check.Length(input, (long)N * C, nameof(input));
        Check.Length(weight, (long)OC * C, nameof(weight));
        Check.Length(output, (long)N * OC, nameof(output));
        if (residual.IsEmpty) Gemm.Multiply(false, true, N, OC, C, 1f, input, C, weight, C, 0f, output, OC);
        else
        {
            Check.Length(residual, (long)N * OC, nameof(residual));
            Gemm.MultiplyAdd(false, true, N, OC, C, 1f, input, C, weight, C, residual, OC, output, OC);
        }
        if (bias.IsEmpty) return;
        Check.Length(bias, OC, nameof(bias));
        fixed (float* o = output, b = bias)
        {
            var a = new Args { Out = o, Bias = b, N = N, OC = OC };
            RowParallel.For(N, OC, ref a, &AddBiasRows);
        }
    }

    static void AddBiasRows(ref Args a, int start, int end)
    {
        var b = new ReadOnlySpan<float>(a.Bias, a.OC);
        for (int n = start; n < end; n++)
        {
            var row = new Span<float>(a.Out + (long)n * a.OC, a.OC);
            TensorPrimitives.Add(row, b, row);
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>, given dout (N, OC):
    ///   dweight (OC, C) += doutᵀ · inp        (accumulated)
    ///   dbias (OC)      += Σ_n dout[n, :]     (accumulated; skipped when dbias is empty)
    ///   dinp (N, C)      = dout · weight       (written; skipped when dinp is empty)
    ///                      ⊙ dinpScale (N, C)  when given: the derivative of the activation that produced inp, applied
    ///                                          to each tile while in cache (it must not overlap dinp)
    /// dinp may alias inp (the activation is no longer needed after): the weight gradient is then formed first.
    /// On exactly two threads, non-aliased dW and dinp run concurrently, one whole product per thread.
    /// </summary>
    public static void Backward(Span<float> dinp, Span<float> dweight, Span<float> dbias, ReadOnlySpan<float> dout,
        ReadOnlySpan<float> input, ReadOnlySpan<float> weight, int N, int C, int OC, ReadOnlySpan<float> dinpScale = default)
    {
        if (!dinpScale.IsEmpty)
        {
            if (dinp.IsEmpty) throw new ArgumentException("dinpScale needs dinp", nameof(dinpScale));
            Check.Length(dinpScale, (long)N * C, nameof(dinpScale));
            if (dinpScale.Overlaps(dinp)) throw new ArgumentException("dinpScale must not overlap dinp", nameof(dinpScale));
        }
        Check.Length(dout, (long)N * OC, nameof(dout));
        Check.Length(input, (long)N * C, nameof(input));
        Check.Length(weight, (long)OC * C, nameof(weight));
        Check.Length(dweight, (long)OC * C, nameof(dweight));
        if (!dinp.IsEmpty) Check.Length(dinp, (long)N * C, nameof(dinp));
        fixed (float* di = dinp, dw = dweight, g = dout, x = input, w = weight, sc = dinpScale)
        {
            var pair = new PairArgs { Dinp = di, Dweight = dw, Dout = g, Input = x, Weight = w, DinpScale = sc, N = N, C = C, OC = OC };
            if (!dinp.IsEmpty && KernelThreads.Max == 2 && !KernelThreads.InsideRegion && !dinp.Overlaps(input))
            {
                // Two threads: dW and dX are independent products of the same size (OC·C·N multiply-adds each), so
                // each runs whole on its own thread: one parallel region instead of two split GEMMs (each with a
                // shared pack and a join), and neither thread waits for the other's half of a small product.
                KernelThreads.For(2, ref pair, &BackwardPair);
            }
            else
            {
                BackwardPair(ref pair, 0);                       // dW first: dinp may overwrite inp
                if (!dinp.IsEmpty) BackwardPair(ref pair, 1);
            }
        }
        if (!dbias.IsEmpty) BiasGrad(dbias, dout, N, OC);
    }

    /// <summary>dbias[oc] += Σ_n dout[n, oc] for a block of columns, so tasks never share an output.</summary>
    struct PairArgs { public float* Dinp, Dweight, Dout, Input, Weight, DinpScale; public int N, C, OC; }

    static void BackwardPair(ref PairArgs a, int item)
    {
        if (item == 0)   // dW (OC, C) += doutᵀ · input
            Gemm.Multiply(true, false, a.OC, a.C, a.N, 1f, new ReadOnlySpan<float>(a.Dout, a.N * a.OC), a.OC,
                new ReadOnlySpan<float>(a.Input, a.N * a.C), a.C, 1f, new Span<float>(a.Dweight, a.OC * a.C), a.C);
        else if (a.DinpScale == null)   // dinp (N, C) = dout · W
            Gemm.Multiply(false, false, a.N, a.C, a.OC, 1f, new ReadOnlySpan<float>(a.Dout, a.N * a.OC), a.OC,
                new ReadOnlySpan<float>(a.Weight, a.OC * a.C), a.C, 0f, new Span<float>(a.Dinp, a.N * a.C), a.C);
        else                            // dinp (N, C) = (dout · W) ⊙ scale
            Gemm.MultiplyScaled(false, false, a.N, a.C, a.OC, 1f, new ReadOnlySpan<float>(a.Dout, a.N * a.OC), a.OC,
                new ReadOnlySpan<float>(a.Weight, a.OC * a.C), a.C, new ReadOnlySpan<float>(a.DinpScale, a.N * a.C), a.C,
                new Span<float>(a.Dinp, a.N * a.C), a.C);
    }

    static void BiasGrad(Span<float> dbias, ReadOnlySpan<float> dout, int N, int OC)
    {
        Check.Length(dbias, OC, nameof(dbias));
        fixed (float* g = dout, db = dbias)
        {
            var a = new Args { Dout = g, Dbias = db, N = N, OC = OC };
            RowParallel.For((OC + ColumnBlock - 1) / ColumnBlock, (long)N * ColumnBlock, ref a, &BiasGradColumns);
        }
    }

    static void BiasGradColumns(ref Args a, int startBlock, int endBlock)
    {
        Span<float> acc = stackalloc float[ColumnBlock];
        for (int blk = startBlock; blk < endBlock; blk++)
        {
            int c0 = blk * ColumnBlock, c1 = Math.Min(a.OC, c0 + ColumnBlock);
            acc.Clear();
            fixed (float* s = acc)
            {
                for (int n = 0; n < a.N; n++)
                {
                    float* g = a.Dout + (long)n * a.OC;
                    int c = c0;
                    for (; c + 16 <= c1; c += 16)
                        (Vector512.Load(s + c - c0) + Vector512.Load(g + c)).Store(s + c - c0);
                    for (; c < c1; c++) s[c - c0] += g[c];
                }
            }
            for (int c = c0; c < c1; c++) a.Dbias[c] += acc[c - c0];
        }
    }
}
