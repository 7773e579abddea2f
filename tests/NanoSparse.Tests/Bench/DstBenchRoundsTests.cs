using NanoSparse.Bench;

namespace NanoSparse.Tests.Bench;

public sealed class DstBenchRoundsTests
{
    [Fact]
    public void AmortisedAddsTheUpdatesExtraCostOverTheInterval()
    {
        // medians: steps 110 (of 100, 110, 130), updates 310 (of 310): 110 + (310 − 110) / 100 = 112
        Assert.Equal(112.0, DstBench.Amortised([100, 130, 110], [310], 100), 12);
    }

    [Fact]
    public void EachRoundsSpeedupComparesThatRoundOnly()
    {
        // Round 1: dense median 2000; RigL steps median 1000, update 2000 → 1000 + 1000 / 100 = 1010 → 1.980…x.
        // Round 2, a slower host: dense 3000; RigL 1400, update 2400 → 1410 → 2.127…x. The all-rounds median would
        // pair dense's 2500 with RigL's 1200 + (2200 − 1200) / 100 = 1210: 2.07x, a ratio neither round saw.
        var dense = new List<double[]> { new double[] { 1900, 2000, 2100 }, new double[] { 3000, 2900, 3100 } };
        var rigl = new List<(double[] Steps, double[] Updates)> { ([1000, 990, 1010], [2000]), ([1400, 1390, 1410], [2400]) };
        var perRound = DstBench.RoundSpeedups(dense, rigl, 100);
        Assert.Equal(2, perRound.Length);
        Assert.Equal(2000.0 / 1010.0, perRound[0], 12);
        Assert.Equal(3000.0 / 1410.0, perRound[1], 12);
    }

    [Fact]
    public void RoundCountsMustAgree() =>
        Assert.Throws<ArgumentException>(() => DstBench.RoundSpeedups([new double[] { 1 }], [], 100));
}
