using NanoSparse.Numerics;

namespace NanoSparse.Tests.Numerics;

public class CholeskyTests
{
    static double[] RandomSpd(int n, ulong seed)
    {
        var rng = new Rng(seed);
        var b = new double[n * n];
        for (int i = 0; i < b.Length; i++) b[i] = rng.NextGaussian();
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = i == j ? 0.5 : 0;
                for (int k = 0; k < n; k++) s += b[i * n + k] * b[j * n + k];
                a[i * n + j] = s;
            }
        return a;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(40)]
    public void LowerFactorTimesItsTransposeIsTheMatrix(int n)
    {
        var a = RandomSpd(n, 3);
        var l = (double[])a.Clone();
        Cholesky.FactorLower(l, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                if (j > i) Assert.Equal(0, l[i * n + j]);
                double s = 0;
                for (int k = 0; k < n; k++) s += l[i * n + k] * l[j * n + k];
                Assert.Equal(a[i * n + j], s, 1e-9 * n);
            }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(9)]
    [InlineData(50)]
    public void UpperFactorOfTheInverseSatisfiesUtUTimesHIsIdentity(int n)
    {
        var h = RandomSpd(n, 5);
        var u = new double[n * n];
        Cholesky.UpperFactorOfInverse(h, n, u);
        var hinv = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                if (j < i) Assert.Equal(0, u[i * n + j]);
                if (i == j) Assert.True(u[i * n + i] > 0);
                double s = 0;
                for (int k = 0; k < n; k++) s += u[k * n + i] * u[k * n + j];
                hinv[i * n + j] = s;
            }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += hinv[i * n + k] * h[k * n + j];
                Assert.Equal(i == j ? 1 : 0, s, 1e-8);
            }
    }

    [Fact]
    public void ANonPositiveDefiniteMatrixThrowsNamingThePivot()
    {
        double[] a = [1, 2, 2, 1];
        var e = Assert.Throws<ArithmeticException>(() => Cholesky.FactorLower(a, 2));
        Assert.Contains("pivot 1", e.Message);
    }
}
