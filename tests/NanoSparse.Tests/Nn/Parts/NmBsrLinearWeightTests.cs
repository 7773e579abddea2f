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
    [InlineData("csr", 0.25, "csr", 0.25)]
    [InlineData("nm:2:4", 0.25, "nm", 0.5)]     // N:M fixes the density; the spec's is ignored
    [InlineData("nm:1:4", 1.0, "nm", 0.25)]
    [InlineData("bsr:4x8", 0.5, "bsr", 0.5)]
    public void RegisteredLayoutStringsBuildTheirLayoutAtTheirDensity(string layout, double specDensity, string name, double density)
    {
        var w = LinearWeightLayouts.Create(layout, LinearWeightSpec.Random(48, 64, specDensity, new Rng(7)));
        Assert.Equal(name, w.Layout);
        Assert.Equal((int)Math.Round(density * 48 * 64), w.StoredCount);
    }

    [Theory]
    [InlineData("coo", "is not one of")]
    [InlineData("csr:0.5", "expected csr, got 1 argument(s)")]
    [InlineData("nm:2", "expected nm:N:M")]
    [InlineData("bsr", "expected bsr:RxC")]
    [InlineData("bsr:4by4", "is not RxC")]
    [InlineData("dense:2", "expected dense")]
    public void BadLayoutStringsAreRejected(string layout, string message)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => LinearWeightLayouts.Create(layout, LinearWeightSpec.Random(48, 64, 0.5, new Rng(7))));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void RegisteredLayoutsBuiltFromAPatternStoreExactlyItsNonzeros()
    {
        var r = new Random(3);
        var pattern = new float[8 * 16];
        for (int o = 0; o < 8; o++)
            for (int g = 0; g < 4; g++)
                pattern[o * 16 + g * 4 + r.Next(4)] = 1 + r.Next(5);   // one nonzero per group of 4: fits nm:2:4
        foreach (var layout in new[] { "csr", "nm:2:4" })
        {
            var w = LinearWeightLayouts.Create(layout, LinearWeightSpec.FromPattern(8, 16, pattern));
            var ones = new float[w.StoredCount];
            Array.Fill(ones, 1f);
            var mask = new float[8 * 16];
            w.ToDense(ones, mask);
            for (int k = 0; k < mask.Length; k++)
                if (pattern[k] != 0) Assert.Equal(1f, mask[k]);
            if (layout == "csr") Assert.Equal(pattern.Count(v => v != 0), w.StoredCount);
            else Assert.Equal(8 * 16 / 2, w.StoredCount);
        }
    }
}
