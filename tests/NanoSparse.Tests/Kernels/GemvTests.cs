using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public sealed class GemvTests
{
    /// <summary>out = inp · Wᵀ + bias + residual in double, straight from the definition.</summary>
    static double[] Reference(float[] x, float[] w, float[] bias, float[] residual, int N, int C, int OC)
    {
        var result = new double[N * OC];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
            {
                double s = (bias.Length > 0 ? bias[o] : 0) + (residual.Length > 0 ? residual[n * OC + o] : 0);
                for (int c = 0; c < C; c++) s += (double)x[n * C + c] * w[o * C + c];
                result[n * OC + o] = s;
            }
        return result;
    }

    static float[] Run(float[] x, float[] w, float[] bias, float[] residual, int N, int C, int OC, int threads)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var output = new float[N * OC];
            Gemv.Forward(output, x, w, bias, N, C, OC, residual);
            return output;
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(1, 1, 1, false, false)]
    [InlineData(1, 37, 13, true, false)]      // C below one vector with a tail, OC not a multiple of 4
    [InlineData(1, 48, 8, false, true)]       // C = 32 + 16: the unrolled loop and one single step
    [InlineData(1, 300, 517, true, true)]     // enough work for two threads
    [InlineData(2, 50, 9, true, false)]
    [InlineData(3, 33, 7, false, true)]
    [InlineData(4, 129, 70, true, true)]
    [InlineData(4, 768, 301, true, true)]
    public void MatchesTheDoubleReferenceOnOneAndTwoThreads(int N, int C, int OC, bool bias, bool residual)
    {
        var r = new Random(N * 1000 + C * 7 + OC);
        var x = GradCheck.RandomArray(r, N * C);
        var w = GradCheck.RandomArray(r, OC * C);
        var b = bias ? GradCheck.RandomArray(r, OC) : [];
        var res = residual ? GradCheck.RandomArray(r, N * OC) : [];
        var expected = Reference(x, w, b, res, N, C, OC);
        // Each sum of C products of numbers in [-1, 1] in float: error grows about like √C ulps of the terms.
        double atol = 1e-6 * (C + 2);
        var one = Run(x, w, b, res, N, C, OC, threads: 1);
        var two = Run(x, w, b, res, N, C, OC, threads: 2);
        GradCheck.AssertClose(one, expected, atol, "gemv 1 thread");
        // Each output is summed by one thread in a fixed order: the thread count does not change a bit.
        Assert.Equal(one, two);
    }

    [Fact]
    public void AddsTheResidualInPlaceWhenItIsTheOutput()
    {
        const int N = 2, C = 70, OC = 33;
        var r = new Random(5);
        var x = GradCheck.RandomArray(r, N * C);
        var w = GradCheck.RandomArray(r, OC * C);
        var b = GradCheck.RandomArray(r, OC);
        var y = GradCheck.RandomArray(r, N * OC);
        var expected = Reference(x, w, b, (float[])y.Clone(), N, C, OC);
        Gemv.Forward(y, x, w, b, N, C, OC, residual: y);
        GradCheck.AssertClose(y, expected, 1e-6 * (C + 2), "gemv residual in place");
    }

    [Fact]
    public void RejectsMoreRowsThanItTakesAndShortBuffers()
    {
        var x = new float[5 * 8];
        var w = new float[3 * 8];
        var y = new float[5 * 3];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Gemv.Forward(y, x, w, default, 5, 8, 3));
        Assert.Contains("1 to 4 rows", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => Gemv.Forward(y, x, w.AsSpan(0, 23), default, 1, 8, 3));
        Assert.Contains("weight", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => Gemv.Forward(y, x, w, new float[2], 1, 8, 3));
        Assert.Contains("bias", e3.Message);
    }
}
