using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn.Parts;

[Collection(nameof(GemmCollection))]   // its forward passes go parallel; keeps them off tests that set KernelThreads.Max
public class CsrLinearWeightTests
{
    [Theory]
    [InlineData(48, 64, 0.1)]
    [InlineData(7, 5, 0.5)]
    [InlineData(30, 20, 1.0)]
    public void RandomPatternHasExactlyRoundedDensityTimesCellsDistinctEntries(int outFeatures, int inFeatures, double density)
    {
        var w = CsrLinearWeight.Random(outFeatures, inFeatures, density, new Rng(3));
        Assert.Equal((int)Math.Round(density * outFeatures * inFeatures), w.StoredCount);
        w.Structure.Validate();   // sorted, unique, in range
        var ones = new float[w.StoredCount];
        Array.Fill(ones, 1f);
        var dense = new float[outFeatures * inFeatures];
        w.ToDense(ones, dense);
        Assert.Equal(w.StoredCount, dense.Count(v => v == 1));
    }

    [Fact]
    public void RandomPatternsDifferBySeedAndRepeatForTheSameSeed()
    {
        var a = CsrLinearWeight.Random(40, 50, 0.2, new Rng(1)).Structure;
        var b = CsrLinearWeight.Random(40, 50, 0.2, new Rng(1)).Structure;
        var c = CsrLinearWeight.Random(40, 50, 0.2, new Rng(2)).Structure;
        Assert.Equal(a.RowPointers, b.RowPointers);
        Assert.Equal(a.ColumnIndices16, b.ColumnIndices16);
        Assert.NotEqual(a.ColumnIndices16, c.ColumnIndices16);
    }

    [Theory]
    [InlineData(new[] { 0, 2, 3 }, new[] { 1, 0, 2 }, "sorted unique")]    // row 0: 1 then 0
    [InlineData(new[] { 0, 2, 3 }, new[] { 1, 1, 2 }, "sorted unique")]    // duplicate
    [InlineData(new[] { 0, 1, 2 }, new[] { 0, 4 }, "in range")]            // column 4 of 4
    [InlineData(new[] { 0, 1, 2 }, new[] { 0, -1 }, "in range")]
    [InlineData(new[] { 0, 2 }, new[] { 0, 1 }, "row pointer length")]
    [InlineData(new[] { 0, 2, 1 }, new[] { 0 }, "monotone")]
    [InlineData(new[] { 0, 1, 3 }, new[] { 0, 1 }, "column index count")]
    public void BrokenStructureIsRejectedNamingTheInvariant(int[] rowPointers, int[] columns, string invariant)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new CsrLinearWeight(2, 4, rowPointers, columns));
        Assert.Contains(invariant, e.Message);
    }

    [Fact]
    public void BadShapesAndDensitiesAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CsrLinearWeight.Random(0, 4, 0.5, new Rng(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => CsrLinearWeight.Random(4, 4, 0, new Rng(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => CsrLinearWeight.Random(4, 4, 1.5, new Rng(1)));
        var e = Assert.ThrowsAny<ArgumentException>(() => CsrLinearWeight.FromDense(4, 4, new float[15]));
        Assert.Contains("15", e.Message);
    }

    [Fact]
    public void GatherTakesTheDenseValuesAtTheStoredPositions()
    {
        var w = CsrLinearWeight.Random(20, 30, 0.25, new Rng(9));
        var rng = new Rng(4);
        var dense = new float[600];
        for (int i = 0; i < dense.Length; i++) dense[i] = (float)rng.NextGaussian();
        var values = new float[w.StoredCount];
        w.Gather(dense, values);
        var back = new float[600];
        w.ToDense(values, back);
        for (int i = 0; i < 600; i++) Assert.True(back[i] == 0 || back[i] == dense[i]);
        Assert.Equal(w.StoredCount, back.Count(v => v != 0));
    }

    /// <summary>The SELL decode copy gives the CSR result, and is not used once the values differ from the ones it was made from.</summary>
    [Fact]
    public void DecodeAfterPrepareForInferenceFollowsTheValues()
    {
        var (w, values, dense) = SparseLinearWeightTests.Make("csr", 100, 70, 41);
        var csr = (CsrLinearWeight)w;
        var rng = new Rng(8);
        var x = new float[70];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextGaussian();
        var workspace = new float[w.WorkspaceFloats(1)];
        var expected = new float[100];
        w.Forward(expected, x, values, [], [], 1, workspace);
        csr.PrepareForInference(values);
        var y = new float[100];
        w.Forward(y, x, values, [], [], 1, workspace);
        for (int o = 0; o < 100; o++) Assert.Equal(expected[o], y[o], 1e-4f);
        // Every value doubled (an optimizer step would change all of them): the result doubles too.
        for (int p = 0; p < values.Length; p++) values[p] *= 2;
        w.Forward(y, x, values, [], [], 1, workspace);
        for (int o = 0; o < 100; o++) Assert.Equal(2 * expected[o], y[o], 1e-4f);
        _ = dense;
    }
}
