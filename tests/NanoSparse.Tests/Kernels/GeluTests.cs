using System.Runtime.Intrinsics;
using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

public class GeluTests
{
    /// <summary>erf in double: Maclaurin series for |x| ≤ 2.5 (cancellation below 1e-12), beyond it
    /// erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) (Laplace's continued fraction).</summary>
    internal static double ErfReference(double x)
    {
        double ax = Math.Abs(x);
        if (ax > 2.5)
        {
            double k = ax;
            for (int n = 200; n >= 1; n--) k = ax + n / 2.0 / k;
            return Math.Sign(x) * (1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / k);
        }
        double sum = 0, term = ax;   // term_n = (-1)^n x^(2n+1) / n!
        for (int n = 0; n < 200; n++)
        {
            double contribution = term / (2 * n + 1);
            sum += contribution;
            if (Math.Abs(contribution) < 1e-17 * Math.Abs(sum)) break;
            term *= -ax * ax / (n + 1);
        }
        return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
    }

    [Fact]
    public void ErfReferenceKnowsItsValues()
    {
        // Values from tables (Abramowitz & Stegun 7.1): erf(0.5), erf(1), erf(2), erf(3).
        Assert.Equal(0.5204998778130465, ErfReference(0.5), 12);
        Assert.Equal(0.8427007929497149, ErfReference(1.0), 12);
        Assert.Equal(0.9953222650189527, ErfReference(2.0), 12);
        Assert.Equal(0.9999779095030014, ErfReference(3.0), 14);
        Assert.Equal(0.9999999845827421, ErfReference(4.0), 14);
    }

    [Fact]
    public void ErfIsAccurateTo2e7Everywhere()
    {
        double worst = 0, worstVector = 0;
        var lanes = new float[16];
        for (int i = -600000; i <= 600000; i += 16)
        {
            for (int j = 0; j < 16; j++) lanes[j] = (i + j) * 1e-5f;
            var v = Erf.Evaluate(Vector512.Create(lanes));
            for (int j = 0; j < 16; j++)
            {
                double reference = ErfReference(lanes[j]);
                worst = Math.Max(worst, Math.Abs(Erf.Evaluate(lanes[j]) - reference));
                worstVector = Math.Max(worstVector, Math.Abs(v[j] - reference));
            }
        }
        Assert.True(worst < 2e-7, $"scalar erf max error {worst:g3}");
        Assert.True(worstVector < 2e-7, $"vector erf max error {worstVector:g3}");
        Assert.Equal(1f, Erf.Evaluate(10f));
        Assert.Equal(-1f, Erf.Evaluate(-10f));
    }

    [Fact]
    public void VectorExpIsAccurateToAFewUlp()
    {
        var lanes = new float[16];
        double worst = 0;
        for (int i = -86992; i + 15 <= 88000; i += 16)   // inside the clamp range [-87, 88]
        {
            for (int j = 0; j < 16; j++) lanes[j] = (i + j) * 1e-3f;
            var v = VectorExp.Exp(Vector512.Create(lanes));
            for (int j = 0; j < 16; j++)
                worst = Math.Max(worst, Math.Abs(v[j] - Math.Exp(lanes[j])) / Math.Exp(lanes[j]));
        }
        Assert.True(worst < 5e-7, $"relative error {worst:g3}");
    }

    [Fact]
    public void ForwardMatchesExactGeluInDouble()
    {
        var r = new Random(3);
        var x = GradCheck.RandomArray(r, 1000, 6);   // not a multiple of 16: the scalar tail runs too
        var o = new float[x.Length];
        Gelu.Forward(o, x);
        var expected = x.Select(v => 0.5 * v * (1 + ErfReference(v / Math.Sqrt(2)))).ToArray();
        GradCheck.AssertClose(o, expected, 5e-7, "gelu");
    }

    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var r = new Random(4);
        var x = GradCheck.RandomArray(r, 37, 4);
        var dout = GradCheck.RandomArray(r, 37);
        var o = new float[37];
        double Loss()
        {
            Gelu.Forward(o, x);
            return GradCheck.WeightedSum(o, dout);
        }
        var dx = new float[37];
        Gelu.Backward(dx, x, dout);
        GradCheck.Assert("gelu dinp", x, dx, Loss, eps: 1e-3);
        // In place (dinp aliasing dout) gives the same result.
        var inPlace = (float[])dout.Clone();
        Gelu.Backward(inPlace, x, inPlace);
        Assert.Equal(dx, inPlace);
    }

    [Fact]
    public void ForwardWithDerivativeMatchesGeluAndItsDerivativeInDouble()
    {
        var r = new Random(5);
        var x = GradCheck.RandomArray(r, 1000, 6);   // vector body and scalar tail
        var o = new float[x.Length];
        var d = (float[])x.Clone();
        Gelu.ForwardWithDerivative(o, d);
        var expected = x.Select(v => 0.5 * v * (1 + ErfReference(v / Math.Sqrt(2)))).ToArray();
        var expectedDerivative = x.Select(v =>
            0.5 * (1 + ErfReference(v / Math.Sqrt(2))) + v * Math.Exp(-0.5 * v * v) / Math.Sqrt(2 * Math.PI)).ToArray();
        GradCheck.AssertClose(o, expected, 5e-7, "gelu");
        GradCheck.AssertClose(d, expectedDerivative, 1e-6, "gelu'");
        // The stored derivative times dout equals the backward pass from x.
        var dout = GradCheck.RandomArray(r, x.Length);
        var viaBackward = new float[x.Length];
        Gelu.Backward(viaBackward, x, dout);
        GradCheck.AssertClose(d.Zip(dout, (a, b) => a * b).ToArray(), viaBackward.Select(v => (double)v).ToArray(), 1e-6, "dout·gelu'");
    }

    [Fact]
    public void LargeInputsSaturateWithoutNaN()
    {
        // 16 lanes (the vector body): far tails on both sides, where exp(−x²/2) underflows to the clamp.
        float[] x = [-1000f, -100f, -30f, -12f, -9f, -6.5f, -0.001f, 0f, 0.001f, 6.5f, 9f, 12f, 30f, 100f, 1000f, 3.5f];
        var o = new float[x.Length];
        var d = (float[])x.Clone();
        Gelu.ForwardWithDerivative(o, d);
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i], phi = 0.5 * (1 + ErfReference(v / Math.Sqrt(2)));
            Assert.True(Math.Abs(o[i] - v * phi) <= 5e-7 * Math.Max(1, Math.Abs(v)), $"gelu({v}) = {o[i]}, expected {v * phi}");
            double dRef = phi + v * Math.Exp(-0.5 * v * v) / Math.Sqrt(2 * Math.PI);
            Assert.True(Math.Abs(d[i] - dRef) <= 1e-6, $"gelu'({v}) = {d[i]}, expected {dRef}");
        }
    }
}
