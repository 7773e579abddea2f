using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Nn.Parts;

public class NmBsrLinearWeightTests
{
    [Theory]
    [InlineData(2, 4)]
    [InlineData(1, 4)]
    [InlineData(2, 8)]
    [InlineData(4, 8)]
    public void RandomNmPatternKeepsExactlyNOfEveryGroupOfM(int n, int m)
    {
        var w = NmLinearWeight.Random(12, 32, n, m, new Rng(5));
        Assert.Equal(12 * 32 / m * n, w.StoredCount);
        var ones = new float[w.StoredCount];
        Array.Fill(ones, 1f);
        var dense = new float[12 * 32];
        w.ToDense(ones, dense);
        for (int g0 = 0; g0 < dense.Length; g0 += m)
            Assert.Equal(n, dense.AsSpan(g0, m).ToArray().Count(v => v == 1));
    }

    [Theory]
    [InlineData(2, 4, 30, "must divide the in features")]   // 30 % 4 != 0
    [InlineData(4, 4, 32, "N must be in [1, M - 1]")]
    [InlineData(0, 4, 32, "N must be in [1, M - 1]")]
    [InlineData(1, 1, 32, "M must be in [2, 256]")]
    public void BadNmPatternsAreRejectedNamingTheProblem(int n, int m, int inFeatures, string message)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => NmLinearWeight.Random(8, inFeatures, n, m, new Rng(1)));
        Assert.Contains(message, e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => NmLinearWeight.FromDense(8, inFeatures, n, m, new float[8 * inFeatures]));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void DenseWithMoreThanNNonzerosInAGroupIsNotNm()
    {
        var dense = new float[4 * 8];
        dense[0] = dense[1] = dense[2] = 1;   // three in the first group of four
        var e = Assert.ThrowsAny<ArgumentException>(() => NmLinearWeight.FromDense(4, 8, 2, 4, dense));
        Assert.Contains("at most N nonzeros", e.Message);
    }

    [Theory]
    [InlineData(4, 8, 0.25)]
    [InlineData(1, 16, 0.5)]
    [InlineData(16, 4, 1.0)]
    public void RandomBsrPatternStoresExactlyRoundedDensityTimesBlocks(int r, int c, double density)
    {
        var w = BsrLinearWeight.Random(48, 64, r, c, density, new Rng(2));
        int blocks = 48 / r * (64 / c);
        int stored = (int)Math.Round(density * blocks);
        Assert.Equal(stored * r * c, w.StoredCount);
        var ones = new float[w.StoredCount];
        Array.Fill(ones, 1f);
        var dense = new float[48 * 64];
        w.ToDense(ones, dense);
        Assert.Equal(w.StoredCount, dense.Count(v => v == 1));
        // Whole blocks: every block is all ones or all zeros.
        for (int b = 0; b < 48 / r; b++)
            for (int k = 0; k < 64 / c; k++)
            {
                float first = dense[b * r * 64 + k * c];
                for (int i = 0; i < r; i++)
                    for (int j = 0; j < c; j++)
                        Assert.Equal(first, dense[(b * r + i) * 64 + k * c + j]);
            }
    }

    [Theory]
    [InlineData(5, 8, "block rows")]   // 5 does not divide 48
    [InlineData(4, 7, "block cols")]   // 7 does not divide 64
    [InlineData(0, 8, "block rows")]
    public void BlocksThatDoNotDivideTheShapeAreRejected(int r, int c, string message)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => BsrLinearWeight.Random(48, 64, r, c, 0.5, new Rng(1)));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("csr:0.25", "csr", 0.25)]
    [InlineData("nm:2:4", "nm", 0.5)]
    [InlineData("nm:1:4", "nm", 0.25)]
    [InlineData("bsr:4x8:0.5", "bsr", 0.5)]
    public void LayoutSpecsBuildTheirLayoutAtTheirDensity(string spec, string name, double density)
    {
        var w = LinearWeightLayoutsSparse.Create(spec, 48, 64, new Rng(7));
        Assert.Equal(name, w.Layout);
        Assert.Equal((int)Math.Round(density * 48 * 64), w.StoredCount);
    }

    [Theory]
    [InlineData("coo:0.5", "unknown layout 'coo'")]
    [InlineData("csr:1.5", "not a number in (0, 1]")]
    [InlineData("csr", "expected csr:DENSITY")]
    [InlineData("bsr:4by4:0.5", "is not RxC")]
    public void BadLayoutSpecsAreRejected(string spec, string message)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => LinearWeightLayoutsSparse.Create(spec, 48, 64, new Rng(7)));
        Assert.Contains(message, e.Message);
    }
}
