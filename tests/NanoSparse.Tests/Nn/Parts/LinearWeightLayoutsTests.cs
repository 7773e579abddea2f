using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Nn.Parts;

public class LinearWeightLayoutsTests
{
    [Fact]
    public void DenseIsRegisteredAndBuildsTheSpecShape()
    {
        Assert.Contains("dense", LinearWeightLayouts.Names);
        var w = LinearWeightLayouts.Create("dense", LinearWeightSpec.Full(12, 4));
        Assert.IsType<DenseLinearWeight>(w);
        Assert.Equal((12, 4, 48), (w.OutFeatures, w.InFeatures, w.StoredCount));
    }

    [Fact]
    public void UnknownLayoutIsRejectedNamingItAndTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => LinearWeightLayouts.Create("no-such-layout", LinearWeightSpec.Full(2, 2)));
        Assert.Contains("no-such-layout", e.Message);
        Assert.Contains("dense", e.Message);
        Assert.False(LinearWeightLayouts.IsRegistered("no-such-layout"));
        Assert.Throws<ArgumentException>(() => LinearWeightLayouts.Register("dense", spec => new DenseLinearWeight(spec.OutFeatures, spec.InFeatures)));
    }

    [Fact]
    public void ARegisteredLayoutIsBuiltFromAPatternOrADensity()
    {
        MaskedLinearWeight.EnsureRegistered();
        float[] pattern = [1, 0, 0, 2, 0, 3];   // (2, 3): three nonzeros
        var fromPattern = LinearWeightLayouts.Create(MaskedLinearWeight.Name, LinearWeightSpec.FromPattern(2, 3, pattern));
        Assert.Equal(3, fromPattern.StoredCount);
        var dense = new float[6];
        fromPattern.ToDense([4, 5, 6], dense);
        Assert.Equal([4f, 0, 0, 5, 0, 6], dense);
        var fromDensity = LinearWeightLayouts.Create(MaskedLinearWeight.Name, LinearWeightSpec.Random(8, 8, 0.75, new Rng(1)));
        Assert.InRange(fromDensity.StoredCount, 1, 63);
    }

    [Fact]
    public void SpecsRejectMismatchedPatternsAndDensitiesOutsideTheUnitInterval()
    {
        Assert.Contains("pattern has 5 values", Assert.Throws<ArgumentException>(() => LinearWeightSpec.FromPattern(2, 3, new float[5])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => LinearWeightSpec.Random(2, 3, 0, new Rng(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => LinearWeightSpec.Random(2, 3, 1.5, new Rng(1)));
        Assert.Throws<ArgumentException>(() => LinearWeightSpec.Full(0, 3));
        Assert.Equal(1.0, LinearWeightSpec.Full(2, 3).Density);
    }

    [Fact]
    public void ALayoutStringIsTheNameThenTheLayoutsParameters()
    {
        var (name, arguments) = LinearWeightLayouts.Parse("nm:2:4");
        Assert.Equal("nm", name);
        Assert.Equal(["2", "4"], arguments);
        (name, arguments) = LinearWeightLayouts.Parse("dense");
        Assert.Equal("dense", name);
        Assert.Empty(arguments);
        Assert.True(LinearWeightLayouts.IsRegistered("dense"));
        MaskedLinearWeight.EnsureRegistered();
        Assert.True(LinearWeightLayouts.IsRegistered("test-masked:2"));
        int half = LinearWeightLayouts.Create("test-masked:2", LinearWeightSpec.Full(8, 8)).StoredCount;
        int threeQuarters = LinearWeightLayouts.Create("test-masked", LinearWeightSpec.Full(8, 8)).StoredCount;
        Assert.Equal((32, 48), (half, threeQuarters));
        Assert.Contains("takes no parameters", Assert.Throws<ArgumentException>(() => LinearWeightLayouts.Create("dense:1", LinearWeightSpec.Full(2, 2))).Message);
        Assert.Throws<ArgumentException>(() => LinearWeightLayouts.Register("a:b", spec => new DenseLinearWeight(spec.OutFeatures, spec.InFeatures)));
    }
}
