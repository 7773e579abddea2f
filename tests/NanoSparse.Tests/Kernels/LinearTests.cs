using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

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
}
