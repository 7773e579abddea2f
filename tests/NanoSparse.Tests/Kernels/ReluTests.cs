using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

/// <summary>ReLU, FATReLU, squared ReLU and the activation-sparsity helpers against double references.</summary>
public class ReluTests
{
    // odd lengths: the 16-lane body and the scalar remainder both run; 5000 spans several 1024-element blocks
    public static TheoryData<int> Lengths => new() { 1, 15, 17, 1029, 5000 };

    static float[] Inputs(int n, int seed)
    {
        var x = GradCheck.RandomArray(new Random(seed), n, 2.0);
        // exact values at the kinks, so the threshold comparison is tested where it matters
        for (int i = 0; i < n; i += 7) x[i] = 0f;
        for (int i = 3; i < n; i += 11) x[i] = 0.25f;
        for (int i = 5; i < n; i += 13) x[i] = -0f;
        return x;
    }

    static double FatRelu(double x, double t) => x > t ? x : 0.0;
    static double Relu2(double x) => x > 0 ? x * x : 0.0;

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ReluAndFatReluMatchTheirDefinition(int n)
    {
        foreach (float t in new[] { 0f, 0.25f, 1f })
        {
            var x = Inputs(n, n);
            var output = new float[n];
            Relu.Forward(output, x, t);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(FatRelu(x[i], t), output[i]);
                if (x[i] <= t) Assert.Equal(0, BitConverter.SingleToInt32Bits(output[i]));   // +0 exactly, not −0
            }
            var derivative = (float[])x.Clone();
            var output2 = new float[n];
            Relu.ForwardWithDerivative(output2, derivative, t);
            Assert.Equal(output, output2);
            for (int i = 0; i < n; i++) Assert.Equal(x[i] > t ? 1f : 0f, derivative[i]);

            var dout = GradCheck.RandomArray(new Random(n + 1), n);
            var dinp = new float[n];
            Relu.Backward(dinp, x, dout, t);
            for (int i = 0; i < n; i++) Assert.Equal(x[i] > t ? dout[i] : 0f, dinp[i]);

            var inPlace = (float[])x.Clone();
            Relu.Forward(inPlace, inPlace, t);
            Assert.Equal(output, inPlace);
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SquaredReluMatchesDoubleReferenceAndFiniteDifferences(int n)
    {
        var x = Inputs(n, 100 + n);
        var output = new float[n];
        SquaredRelu.Forward(output, x);
        GradCheck.AssertClose(output, x.Select(v => Relu2(v)).ToArray(), 1e-6, "relu2");
        var derivative = (float[])x.Clone();
        var output2 = new float[n];
        SquaredRelu.ForwardWithDerivative(output2, derivative);
        Assert.Equal(output, output2);
        // derivative against central differences of the double reference (exact for a quadratic away from 0)
        const double h = 1e-4;
        var numeric = x.Select(v => (Relu2(v + h) - Relu2(v - h)) / (2 * h)).ToArray();
        for (int i = 0; i < n; i++)
            if (Math.Abs(x[i]) > 2 * h) Assert.True(Math.Abs(derivative[i] - numeric[i]) < 1e-5, $"relu2'({x[i]}) = {derivative[i]}, numeric {numeric[i]}");
            else Assert.Equal(0f, derivative[i]);
        var dout = GradCheck.RandomArray(new Random(n + 2), n);
        var dinp = new float[n];
        SquaredRelu.Backward(dinp, x, dout);
        GradCheck.AssertClose(dinp, x.Select((v, i) => (v > 0 ? 2.0 * v : 0.0) * dout[i]).ToArray(), 1e-6, "relu2 backward");
    }

    [Fact]
    public void FatReluRefusesANegativeOrNonFiniteThreshold()
    {
        var a = new float[4];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Relu.Forward(a, a, -0.1f));
        Assert.Contains("threshold", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Relu.ForwardWithDerivative(a, a, float.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => Relu.Backward(a, a, a, float.PositiveInfinity));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ZeroAndNearZeroCountsMatchBruteForce(int n)
    {
        var x = Inputs(n, 200 + n);
        Relu.Forward(x, x, 0f);   // about half zeros
        for (int i = 1; i < n; i += 9) x[i] = 0.004f * (i % 3 - 1);   // small values on both sides
        long zeros = x.LongCount(v => v == 0f);
        Assert.Equal(zeros, NanoSparse.Kernels.ActivationZeros.CountZeros(x));
        Assert.Equal(x.LongCount(v => Math.Abs(v) < 0.01f), NanoSparse.Kernels.ActivationZeros.CountBelow(x, 0.01f));
        Assert.Throws<ArgumentOutOfRangeException>(() => NanoSparse.Kernels.ActivationZeros.CountBelow(x, 0f));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void L1GradientIsCoefficientTimesSignTimesDerivative(int n)
    {
        var a = GradCheck.RandomArray(new Random(300 + n), n);
        for (int i = 0; i < n; i += 5) a[i] = 0f;
        var f = GradCheck.RandomArray(new Random(301 + n), n);
        var dh = GradCheck.RandomArray(new Random(302 + n), n);
        var expected = dh.Select((d, i) => d + 0.37 * Math.Sign(a[i]) * f[i]).ToArray();
        NanoSparse.Kernels.ActivationZeros.AddL1Gradient(dh, a, f, 0.37f);
        GradCheck.AssertClose(dh, expected, 1e-6, "dh");
    }
}
