using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

/// <summary>
/// <see cref="FlashAttention"/> against causal attention written out in double precision: the output, lse, and the
/// analytic gradients dQ, dK, dV (softmax backward dS = P ∘ (dP − Σ P·dP)), with the dropout mask read from
/// <see cref="Dropout.Keep"/>. Lengths straddle the 64-row blocks (1, 63, 65, 130, 200), head sizes 16 to 128
/// (48 and 80 leave a single-vector column tile), one and two threads.
/// </summary>
[Collection("KernelThreads")]   // sets KernelThreads.Max: must not run beside tests that need a fixed thread count
public class FlashAttentionTests
{
    sealed record Reference(double[] Y, double[] Lse, double[] Dqkv);

    static Reference Compute(float[] qkv, float[] dout, int B, int T, int C, int NH, float p, ulong seed)
    {
        int hs = C / NH, C3 = 3 * C;
        double scale = 1 / Math.Sqrt(hs);
        var y = new double[B * T * C];
        var lse = new double[B * NH * T];
        var d = new double[B * T * C3];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++)
        {
            int bh = b * NH + h;
            double Q(int i) => qkv[(b * T + t) * C3 + h * hs + i];
            double K(int j, int i) => qkv[(b * T + j) * C3 + C + h * hs + i];
            double V(int j, int i) => qkv[(b * T + j) * C3 + 2 * C + h * hs + i];
            var s = new double[t + 1];
            double max = double.NegativeInfinity;
            for (int j = 0; j <= t; j++)
            {
                double dot = 0;
                for (int i = 0; i < hs; i++) dot += Q(i) * K(j, i);
                s[j] = dot * scale;
                max = Math.Max(max, s[j]);
            }
            double sum = 0;
            for (int j = 0; j <= t; j++) sum += Math.Exp(s[j] - max);
            lse[bh * T + t] = max + Math.Log(sum);
            var P = new double[t + 1];
            var keep = new double[t + 1];
            for (int j = 0; j <= t; j++)
            {
                P[j] = Math.Exp(s[j] - max) / sum;
                keep[j] = p == 0 ? 1 : Dropout.Keep(seed, ((long)bh * T + t) * T + j, p) ? 1 / (1 - (double)p) : 0;
            }
            var dp = new double[t + 1];
            double rowTerm = 0;
            for (int j = 0; j <= t; j++)
            {
                double dpd = 0;
                for (int i = 0; i < hs; i++)
                {
                    y[(b * T + t) * C + h * hs + i] += keep[j] * P[j] * V(j, i);
                    double g = dout[(b * T + t) * C + h * hs + i];
                    dpd += g * V(j, i);
                    d[(b * T + j) * C3 + 2 * C + h * hs + i] += keep[j] * P[j] * g;   // dV
                }
                dp[j] = keep[j] * dpd;
                rowTerm += P[j] * dp[j];
            }
            for (int j = 0; j <= t; j++)
            {
                double ds = P[j] * (dp[j] - rowTerm) * scale;
                for (int i = 0; i < hs; i++)
                {
                    d[(b * T + t) * C3 + h * hs + i] += ds * K(j, i);       // dQ
                    d[(b * T + j) * C3 + C + h * hs + i] += ds * Q(i);      // dK
                }
            }
        }
        return new Reference(y, lse, d);
    }

    /// <summary>Absolute tolerance: a relative 2e-5 of the largest reference value (float rounding over sums of up to T·hs terms).</summary>
    static double Tolerance(double[] reference) => 2e-5 * Math.Max(1, reference.Max(Math.Abs));

    [Theory]
    [InlineData(1, 1, 16, 1, 0f, 1)]      // one token
    [InlineData(2, 5, 32, 2, 0f, 2)]      // head size 16, two sequences
    [InlineData(1, 63, 64, 2, 0f, 1)]     // one block, one row short
    [InlineData(1, 65, 64, 1, 0f, 2)]     // one row into the second block
    [InlineData(2, 130, 128, 1, 0f, 2)]   // head size 128, three blocks, the last of 2 rows
    [InlineData(1, 97, 48, 1, 0f, 1)]     // head size 48: 32 + 16 columns
    [InlineData(1, 200, 192, 3, 0.2f, 2)] // head size 64 with dropout, four blocks
    [InlineData(1, 129, 80, 1, 0.1f, 1)]  // head size 80 with dropout
    public void ForwardAndGradientsMatchTheDoubleReference(int B, int T, int C, int NH, float dropout, int threads)
    {
        if (!FlashAttention.Supports(C / NH)) return;   // no AVX-512: Attention runs its other kernels (tested in AttentionTests)
        var r = new Random(T * 31 + C);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.5);
        var dout = GradCheck.RandomArray(r, B * T * C);
        const ulong seed = 4242;
        var reference = Compute(qkv, dout, B, T, C, NH, dropout, seed);
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var y = new float[B * T * C];
            var lse = new float[B * NH * T];
            FlashAttention.Forward(y, lse, qkv, B, T, C, NH, dropout, seed);
            GradCheck.AssertClose(y, reference.Y, Tolerance(reference.Y), "y");
            GradCheck.AssertClose(lse, reference.Lse, Tolerance(reference.Lse), "lse");

            var dqkv = new float[qkv.Length];
            dqkv.AsSpan().Fill(float.NaN);   // every element must be written
            FlashAttention.Backward(dqkv, dout, qkv, y, lse, B, T, C, NH, dropout, seed);
            GradCheck.AssertClose(dqkv, reference.Dqkv, Tolerance(reference.Dqkv), "dqkv");

            // without the forward's output each head recomputes it: the same gradients
            var recomputed = new float[qkv.Length];
            recomputed.AsSpan().Fill(float.NaN);
            FlashAttention.Backward(recomputed, dout, qkv, default, lse, B, T, C, NH, dropout, seed);
            GradCheck.AssertClose(recomputed, reference.Dqkv, Tolerance(reference.Dqkv), "dqkv (y recomputed)");
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void ABatchSliceDrawsTheWholeBatchsDropoutMask()
    {
        if (!FlashAttention.Supports(16)) return;
        int B = 3, T = 70, C = 32, NH = 2;
        var r = new Random(5);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.5);
        var whole = new float[B * T * C];
        FlashAttention.Forward(whole, new float[B * NH * T], qkv, B, T, C, NH, 0.3f, 77);
        var slice = new float[T * C];
        FlashAttention.Forward(slice, new float[NH * T], qkv.AsSpan(2 * T * 3 * C, T * 3 * C), 1, T, C, NH, 0.3f, 77, batchOffset: 2);
        Assert.Equal(whole.AsSpan(2 * T * C, T * C).ToArray(), slice);
    }

    [Fact]
    public void HeadSizesItCannotRunAreRefusedInOneLine()
    {
        var e = Assert.Throws<ArgumentException>(() => FlashAttention.Forward(new float[24], new float[6], new float[72], 1, 2, 12, 3));
        Assert.Contains("multiple of 16", e.Message);
        Assert.Contains("C = 12, NH = 3", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
