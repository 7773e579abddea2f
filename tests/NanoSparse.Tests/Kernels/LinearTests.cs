using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class LinearTests
{
    [Theory]
    [InlineData(4, 6, 5, true)]
    [InlineData(3, 7, 80, false)]
    public void ForwardAndBackwardMatchReferences(int N, int C, int OC, bool bias)
    {
        var r = new Random(N * C * OC);
        var x = GradCheck.RandomArray(r, N * C);
        var w = GradCheck.RandomArray(r, OC * C);
        var b = bias ? GradCheck.RandomArray(r, OC) : [];
        var dout = GradCheck.RandomArray(r, N * OC);
        var o = new float[N * OC];
        Linear.Forward(o, x, w, b, N, C, OC);
        var expected = new double[N * OC];
        for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
        {
            double s = bias ? b[oc] : 0;
            for (int c = 0; c < C; c++) s += (double)x[n * C + c] * w[oc * C + c];
            expected[n * OC + oc] = s;
        }
        GradCheck.AssertClose(o, expected, 1e-5, "linear out");

        double Loss()
        {
            Linear.Forward(o, x, w, b, N, C, OC);
            return GradCheck.WeightedSum(o, dout);
        }
        var dx = new float[N * C];
        var dw = new float[OC * C];
        var db = bias ? new float[OC] : [];
        Linear.Backward(dx, dw, db, dout, x, w, N, C, OC);
        GradCheck.Assert("dinp", x, dx, Loss);
        GradCheck.Assert("dweight", w, dw, Loss);
        if (bias) GradCheck.Assert("dbias", b, db, Loss);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]   // two threads: dW and dinp run concurrently, one whole product each
    [InlineData(3)]
    public void BackwardGivesTheSameBitsOnAnyThreadCountAndWhenDinpAliasesInp(int threads)
    {
        const int N = 200, C = 48, OC = 96;
        var r = new Random(11);
        var x = GradCheck.RandomArray(r, N * C);
        var w = GradCheck.RandomArray(r, OC * C);
        var dout = GradCheck.RandomArray(r, N * OC);
        var dw0 = GradCheck.RandomArray(r, OC * C);   // dW accumulates onto what is there
        (float[] Dx, float[] Dw, float[] Db) Run(int t, bool alias)
        {
            int saved = KernelThreads.Max;
            try
            {
                KernelThreads.Max = t;
                var dw = (float[])dw0.Clone();
                var db = new float[OC];
                var input = (float[])x.Clone();
                var dx = alias ? input : new float[N * C];
                Linear.Backward(dx, dw, db, dout, input, w, N, C, OC);
                return (dx, dw, db);
            }
            finally { KernelThreads.Max = saved; }
        }
        var reference = Run(1, false);
        // dinp and dW against a double-precision reference
        var expectedDx = new double[N * C];
        var expectedDw = new double[OC * C];
        for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
        {
            expectedDx[n * C + c] += (double)dout[n * OC + oc] * w[oc * C + c];
            expectedDw[oc * C + c] += (double)dout[n * OC + oc] * x[n * C + c];
        }
        for (int i = 0; i < expectedDw.Length; i++) expectedDw[i] += dw0[i];
        GradCheck.AssertClose(reference.Dx, expectedDx, 1e-4, "dinp");
        GradCheck.AssertClose(reference.Dw, expectedDw, 1e-3, "dweight");
        foreach (bool alias in new[] { false, true })
        {
            var got = Run(threads, alias);
            Assert.Equal(reference.Dx, got.Dx);
            Assert.Equal(reference.Dw, got.Dw);
            Assert.Equal(reference.Db, got.Db);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ResidualAndDinpScaleEqualTheSeparatePasses(int threads)
    {
        const int N = 150, C = 40, OC = 70;
        var r = new Random(21);
        var x = GradCheck.RandomArray(r, N * C);
        var w = GradCheck.RandomArray(r, OC * C);
        var b = GradCheck.RandomArray(r, OC);
        var residual = GradCheck.RandomArray(r, N * OC);
        var dout = GradCheck.RandomArray(r, N * OC);
        var scale = GradCheck.RandomArray(r, N * C);
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            // out = x·Wᵀ + b + residual
            var fused = new float[N * OC];
            Linear.Forward(fused, x, w, b, N, C, OC, residual);
            var separate = new float[N * OC];
            Linear.Forward(separate, x, w, b, N, C, OC);
            GradCheck.AssertClose(fused, separate.Zip(residual, (p, q) => (double)p + q).ToArray(), 2e-6, "out + residual");

            // dinp = (dout·W) ⊙ scale; dW and dbias as without the scale
            var dx = new float[N * C];
            var dw = new float[OC * C];
            var db = new float[OC];
            Linear.Backward(dx, dw, db, dout, x, w, N, C, OC, scale);
            var dxPlain = new float[N * C];
            var dwPlain = new float[OC * C];
            var dbPlain = new float[OC];
            Linear.Backward(dxPlain, dwPlain, dbPlain, dout, x, w, N, C, OC);
            GradCheck.AssertClose(dx, dxPlain.Zip(scale, (p, q) => (double)p * q).ToArray(), 2e-6, "dinp ⊙ scale");
            Assert.Equal(dwPlain, dw);
            Assert.Equal(dbPlain, db);
        }
        finally { KernelThreads.Max = saved; }
        Assert.Throws<ArgumentException>(() => Linear.Backward(default, new float[OC * C], default, dout, x, w, N, C, OC, scale));
    }
}
