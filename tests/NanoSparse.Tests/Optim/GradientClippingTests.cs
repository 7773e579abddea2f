using NanoSparse.Optim;

namespace NanoSparse.Tests.Optim;

public sealed class GradientClippingTests
{
    static float[] Random(int n, int seed, double scale)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale)).ToArray();
    }

    static double ReferenceNorm(float[] g) => Math.Sqrt(g.Sum(x => (double)x * x));

    [Theory]
    [InlineData(1, 1.0)]
    [InlineData(4095, 0.01)]
    [InlineData(100_000, 1.0)]
    public void GlobalNormMatchesDoubleReference(int n, double scale)
    {
        var g = Random(n, n, scale);
        double expected = ReferenceNorm(g);
        Assert.True(Math.Abs(GradientClipping.GlobalNorm(g) - expected) <= 1e-6 * expected, $"{GradientClipping.GlobalNorm(g)} vs {expected}");
    }

    [Fact]
    public void ClipsToMaxNormAndReturnsTheNormBefore()
    {
        var g = Random(10_000, 3, 1.0);
        var original = (float[])g.Clone();
        double norm = ReferenceNorm(g);
        Assert.True(norm > 1);
        double returned = GradientClipping.ClipByGlobalNorm(g, 1.0);
        Assert.Equal(norm, returned, 1e-6 * norm);
        double coeff = 1.0 / (norm + 1e-6);   // torch: max_norm / (total_norm + 1e-6)
        for (int i = 0; i < g.Length; i++) Assert.Equal(original[i] * coeff, g[i], 1e-7);
        Assert.Equal(1.0, ReferenceNorm(g), 1e-5);
    }

    [Fact]
    public void LeavesSmallGradientsAndDisabledClippingAlone()
    {
        var g = Random(100, 4, 0.01);
        var original = (float[])g.Clone();
        GradientClipping.ClipByGlobalNorm(g, 1.0);
        Assert.Equal(original, g);
        var big = Random(100, 5, 100);
        var bigOriginal = (float[])big.Clone();
        GradientClipping.ClipByGlobalNorm(big, 0);
        Assert.Equal(bigOriginal, big);
    }

    [Fact]
    public void NonFiniteNormIsReportedNotApplied()
    {
        var g = new float[] { 1, float.NaN, 2 };
        Assert.True(double.IsNaN(GradientClipping.ClipByGlobalNorm(g, 1.0)));
        Assert.Equal(1f, g[0]);
    }
}
