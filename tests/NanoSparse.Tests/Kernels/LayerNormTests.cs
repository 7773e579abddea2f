using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

public class LayerNormTests
{
    [Theory]
    [InlineData(5, 7, true)]
    [InlineData(3, 32, false)]
    [InlineData(70, 40, true)]
    public void ForwardMatchesDoubleReference(int N, int C, bool bias)
    {
        var r = new Random(N * 100 + C);
        var x = GradCheck.RandomArray(r, N * C, 3);
        var w = GradCheck.RandomArray(r, C);
        var b = bias ? GradCheck.RandomArray(r, C) : [];
        var o = new float[N * C];
        var mean = new float[N];
        var rstd = new float[N];
        LayerNorm.Forward(o, mean, rstd, x, w, b, N, C);
        var expected = new double[N * C];
        for (int n = 0; n < N; n++)
        {
            double m = 0, v = 0;
            for (int c = 0; c < C; c++) m += x[n * C + c];
            m /= C;
            for (int c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
            v /= C;
            double s = 1 / Math.Sqrt(v + 1e-5);
            for (int c = 0; c < C; c++) expected[n * C + c] = (x[n * C + c] - m) * s * w[c] + (bias ? b[c] : 0);
        }
        GradCheck.AssertClose(o, expected, 2e-5, "layernorm out");
    }

    [Theory]
    [InlineData(4, 7, true)]
    [InlineData(3, 32, false)]
    [InlineData(6, 20, true)]
    [InlineData(2, 2100, true)]   // wider than the stack scratch
    public void BackwardMatchesFiniteDifferences(int N, int C, bool bias)
    {
        var r = new Random(N + C);
        var x = GradCheck.RandomArray(r, N * C, 2);
        var w = GradCheck.RandomArray(r, C);
        var b = bias ? GradCheck.RandomArray(r, C) : [];
        var dout = GradCheck.RandomArray(r, N * C);
        var o = new float[N * C];
        var mean = new float[N];
        var rstd = new float[N];
        double Loss()
        {
            LayerNorm.Forward(o, mean, rstd, x, w, b, N, C);
            return GradCheck.WeightedSum(o, dout);
        }
        Loss();
        // dinp and parameter gradients accumulate: start from known values and subtract them afterwards.
        var dx = GradCheck.RandomArray(r, N * C);
        var dx0 = (float[])dx.Clone();
        var dw = new float[C];
        dw.AsSpan().Fill(0.5f);
        var db = bias ? new float[C] : [];
        LayerNorm.Backward(dx, dw, db, dout, x, w, mean, rstd, N, C);
        for (int i = 0; i < dx.Length; i++) dx[i] -= dx0[i];
        for (int i = 0; i < C; i++) dw[i] -= 0.5f;
        GradCheck.Assert("dinp", x, dx, Loss, eps: 1e-3);
        GradCheck.Assert("dweight", w, dw, Loss, eps: 1e-3);
        if (bias) GradCheck.Assert("dbias", b, db, Loss, eps: 1e-3);
    }
}
