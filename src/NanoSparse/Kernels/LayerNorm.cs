using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Layer normalisation over the last dimension, as torch.nn.functional.layer_norm with eps 1e-5:
/// out = (x − mean) · rstd · weight + bias, rstd = 1 / sqrt(var + eps), var the biased (1/C) variance.
/// </summary>
public static unsafe class LayerNorm
{
    public const float Eps = 1e-5f;
    // Columns of the weight/bias gradient handled by one task (a multiple of 16 keeps rows cache-line aligned).
    const int ColumnBlock = 64;

    struct Args
    {
        public float* Out, Mean, Rstd, Inp, Weight, Bias, Dout, Dinp, Dweight, Dbias;
        public int N, C;
    }

    /// <summary>
    /// out (N, C), mean (N), rstd (N) from inp (N, C), weight (C), bias (C) or empty when the model has no bias.
    /// mean and rstd are kept for the backward pass.
    /// </summary>
    public static void Forward(Span<float> output, Span<float> mean, Span<float> rstd, ReadOnlySpan<float> input,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int N, int C)
    {
        Check.Length(input, (long)N * C, nameof(input));
        Check.Length(output, (long)N * C, nameof(output));
        Check.Length(mean, N, nameof(mean));
        Check.Length(rstd, N, nameof(rstd));
        Check.Length(weight, C, nameof(weight));
        fixed (float* o = output, m = mean, r = rstd, x = input, w = weight, b = bias)
        {
            var a = new Args { Out = o, Mean = m, Rstd = r, Inp = x, Weight = w, Bias = bias.IsEmpty ? null : b, N = N, C = C };
            RowParallel.For(N, 6L * C, ref a, &ForwardRows);
        }
    }

    // Rows are short (C = 128..1024 in GPT-2 sizes): one loop of 16-lane vectors per pass (scalar tail for C not a
    // multiple of 16) instead of a library call per step, whose per-call cost is comparable to a 128-float row's work.
    static void ForwardRows(ref Args a, int start, int end)
    {
        int C = a.C, cv = C & ~15;
        float* w = a.Weight, b = a.Bias;
        for (int n = start; n < end; n++)
        {
            float* x = a.Inp + (long)n * C, o = a.Out + (long)n * C;
            var acc = Vector512<float>.Zero;
            int c = 0;
            for (; c < cv; c += 16) acc += Vector512.Load(x + c);
            float sum = Vector512.Sum(acc);
            for (; c < C; c++) sum += x[c];
            float m = sum / C;
            var mv = Vector512.Create(m);
            acc = Vector512<float>.Zero;
            for (c = 0; c < cv; c += 16)
            {
                var d = Vector512.Load(x + c) - mv;
                acc = Vector512.FusedMultiplyAdd(d, d, acc);
            }
            float sq = Vector512.Sum(acc);
            for (; c < C; c++) sq += (x[c] - m) * (x[c] - m);
            float s = 1f / MathF.Sqrt(sq / C + Eps);                     // two-pass variance: no cancellation
            var sv = Vector512.Create(s);
            for (c = 0; c < cv; c += 16)
            {
                var y = (Vector512.Load(x + c) - mv) * sv * Vector512.Load(w + c);
                if (b != null) y += Vector512.Load(b + c);
                y.Store(o + c);
            }
            for (; c < C; c++) o[c] = (x[c] - m) * s * w[c] + (b != null ? b[c] : 0f);
            a.Mean[n] = m;
            a.Rstd[n] = s;
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>. dinp (N, C) is ACCUMULATED into (+=: the residual stream's gradient
    /// arrives from two places), and so are dweight (C) and dbias (C, or empty without bias).
    /// dout (N, C); inp, weight, mean, rstd as in the forward pass.
    /// </summary>
    public static void Backward(Span<float> dinp, Span<float> dweight, Span<float> dbias, ReadOnlySpan<float> dout,
        ReadOnlySpan<float> input, ReadOnlySpan<float> weight, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int N, int C)
    {
        Check.Length(dinp, (long)N * C, nameof(dinp));
        Check.Length(dout, (long)N * C, nameof(dout));
        Check.Length(input, (long)N * C, nameof(input));
        Check.Length(dweight, C, nameof(dweight));
        fixed (float* di = dinp, dw = dweight, db = dbias, g = dout, x = input, w = weight, m = mean, r = rstd)
        {
            var a = new Args
            {
                Dinp = di, Dweight = dw, Dbias = dbias.IsEmpty ? null : db, Dout = g, Inp = x, Weight = w, Mean = m,
                Rstd = r, N = N, C = C,
            };
            RowParallel.For(N, 10L * C, ref a, &BackwardRows);
            // The parameter gradients sum over rows; split by columns instead so no two tasks write the same place.
            RowParallel.For((C + ColumnBlock - 1) / ColumnBlock, 3L * N * ColumnBlock, ref a, &ParameterGradColumns);
        }
    }

    static void BackwardRows(ref Args a, int start, int end)
    {
        int C = a.C, cv = C & ~15;
        float* w = a.Weight;
        for (int n = start; n < end; n++)
        {
            float* x = a.Inp + (long)n * C, g = a.Dout + (long)n * C, dx = a.Dinp + (long)n * C;
            float m = a.Mean[n], s = a.Rstd[n];
            var mv = Vector512.Create(m);
            var sv = Vector512.Create(s);
            // in the forward pass this was: out = xhat * w + b, xhat = (x - mean) * rstd; dnorm = dL/dxhat = g * w
            var accN = Vector512<float>.Zero;
            var accNX = Vector512<float>.Zero;
            int c = 0;
            for (; c < cv; c += 16)
            {
                var xhat = (Vector512.Load(x + c) - mv) * sv;
                var dnorm = Vector512.Load(g + c) * Vector512.Load(w + c);
                accN += dnorm;
                accNX = Vector512.FusedMultiplyAdd(dnorm, xhat, accNX);
            }
            float sumN = Vector512.Sum(accN), sumNX = Vector512.Sum(accNX);
            for (; c < C; c++)
            {
                float dnorm = g[c] * w[c];
                sumN += dnorm;
                sumNX += dnorm * (x[c] - m) * s;
            }
            float meanN = sumN / C, meanNX = sumNX / C;
            // dx += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd
            var mN = Vector512.Create(meanN);
            var mNX = Vector512.Create(meanNX);
            for (c = 0; c < cv; c += 16)
            {
                var xhat = (Vector512.Load(x + c) - mv) * sv;
                var dnorm = Vector512.Load(g + c) * Vector512.Load(w + c);
                var t = dnorm - mN - xhat * mNX;
                Vector512.FusedMultiplyAdd(t, sv, Vector512.Load(dx + c)).Store(dx + c);
            }
            for (; c < C; c++)
            {
                float xhat = (x[c] - m) * s;
                dx[c] += (g[c] * w[c] - meanN - xhat * meanNX) * s;
            }
        }
    }

    static void ParameterGradColumns(ref Args a, int startBlock, int endBlock)
    {
        int C = a.C, N = a.N;
        Span<float> accW = stackalloc float[ColumnBlock];
        Span<float> accB = stackalloc float[ColumnBlock];
        for (int blk = startBlock; blk < endBlock; blk++)
        {
            int c0 = blk * ColumnBlock, c1 = Math.Min(C, c0 + ColumnBlock), width = c1 - c0;
            accW.Clear();
            accB.Clear();
            fixed (float* aw = accW, ab = accB)
            {
                for (int n = 0; n < N; n++)
                {
                    float* x = a.Inp + (long)n * C, g = a.Dout + (long)n * C;
                    var m = Vector512.Create(a.Mean[n]);
                    var s = Vector512.Create(a.Rstd[n]);
                    int c = c0;
                    for (; c + 16 <= c1; c += 16)
                    {
                        var gv = Vector512.Load(g + c);
                        var xh = (Vector512.Load(x + c) - m) * s;
                        (Vector512.Load(aw + c - c0) + gv * xh).Store(aw + c - c0);
                        (Vector512.Load(ab + c - c0) + gv).Store(ab + c - c0);
                    }
                    float ms = a.Mean[n], ss = a.Rstd[n];
                    for (; c < c1; c++)
                    {
                        aw[c - c0] += g[c] * (x[c] - ms) * ss;
                        ab[c - c0] += g[c];
                    }
                }
            }
            for (int c = 0; c < width; c++)
            {
                a.Dweight[c0 + c] += accW[c];
                if (a.Dbias != null) a.Dbias[c0 + c] += accB[c];
            }
        }
    }
}
