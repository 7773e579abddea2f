using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

public class GeluTanhTests
{
    // GPT-2's gelu_new written as its definition, in double: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    static double Reference(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    [Fact]
    public void ForwardMatchesTheTanhFormulaInDouble()
    {
        var r = new Random(5);
        var x = GradCheck.RandomArray(r, 1000, 6);   // not a multiple of 16: the scalar tail runs too
        x[0] = 30f; x[1] = -30f; x[2] = 0f; x[3] = -12f;  // saturation: exp(-2u) overflows / underflows
        var o = new float[x.Length];
        GeluTanh.Forward(o, x);
        GradCheck.AssertClose(o, x.Select(v => Reference(v)).ToArray(), 5e-7, "gelu_tanh");
        Assert.Equal(30f, o[0]);
        Assert.Equal(0f, o[2]);
        Assert.True(Math.Abs(o[1]) < 1e-30, $"gelu_tanh(-30) = {o[1]}");   // exactly ~ -30·e^-85; no NaN from inf/inf
        // The vector body and the scalar tail agree on the same inputs.
        var tail = new float[3];
        GeluTanh.Forward(tail, x.AsSpan(0, 3));
        for (int i = 0; i < 3; i++) Assert.Equal(o[i], tail[i], 6);
    }

    [Fact]
    public void DiffersFromExactGelu()
    {
        // The approximation is close to erf GELU but not equal (max gap about 2e-4 near |x| = 2): a model must use the right one.
        var x = new float[] { -2f, -1f, 1f, 2f, 3f };
        var tanh = new float[5];
        var erf = new float[5];
        GeluTanh.Forward(tanh, x);
        Gelu.Forward(erf, x);
        Assert.Contains(Enumerable.Range(0, 5), i => Math.Abs(tanh[i] - erf[i]) > 1e-5);
        Assert.All(Enumerable.Range(0, 5), i => Assert.True(Math.Abs(tanh[i] - erf[i]) < 1e-3));
    }

    [Theory]
    [InlineData(37)]    // scalar tail only
    [InlineData(1000)]  // vector body and tail
    public void BackwardMatchesFiniteDifferences(int n)
    {
        var r = new Random(6 + n);
        var x = GradCheck.RandomArray(r, n, 4);
        var dout = GradCheck.RandomArray(r, n);
        var o = new float[n];
        double Loss()
        {
            GeluTanh.Forward(o, x);
            return GradCheck.WeightedSum(o, dout);
        }
        var dx = new float[n];
        GeluTanh.Backward(dx, x, dout);
        GradCheck.Assert("gelu_tanh dinp", x, dx, Loss, eps: 1e-3);
        // In place (dinp aliasing dout) gives the same result.
        var inPlace = (float[])dout.Clone();
        GeluTanh.Backward(inPlace, x, inPlace);
        Assert.Equal(dx, inPlace);
    }

    [Fact]
    public void ForwardWithDerivativeMatchesTheFormulaAndItsDerivativeInDouble()
    {
        var r = new Random(8);
        var x = GradCheck.RandomArray(r, 1000, 6);   // vector body and scalar tail
        x[0] = 30f; x[1] = -30f; x[2] = 0f;
        var o = new float[x.Length];
        var d = (float[])x.Clone();
        GeluTanh.ForwardWithDerivative(o, d);
        static double Derivative(double v)
        {
            double c = Math.Sqrt(2 / Math.PI), th = Math.Tanh(c * (v + 0.044715 * v * v * v));
            return 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * 0.044715 * v * v);
        }
        GradCheck.AssertClose(o, x.Select(v => Reference(v)).ToArray(), 5e-7, "gelu_tanh");
        GradCheck.AssertClose(d, x.Select(v => Derivative(v)).ToArray(), 1e-6, "gelu_tanh'");
    }
}
