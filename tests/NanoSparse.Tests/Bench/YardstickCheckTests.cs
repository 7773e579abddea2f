using NanoSparse.Bench;

namespace NanoSparse.Tests.Bench;

public class YardstickCheckTests
{
    [Theory]
    [InlineData(1.00, 1.00, true)]
    [InlineData(1.09, 1.00, true)]
    [InlineData(0.91, 1.00, true)]
    [InlineData(1.11, 1.00, false)]
    [InlineData(0.89, 1.00, false)]
    [InlineData(0.34, 0.065, false)]   // sgemm at N = 1 against NumPy's sgemv: the ~5x the check exists to catch
    [InlineData(0.0, 1.0, false)]
    [InlineData(1.0, 0.0, false)]
    [InlineData(double.NaN, 1.0, false)]
    [InlineData(1.0, double.PositiveInfinity, false)]
    public void WithinMeansAtMostTenPercentOfNumPysTimeApart(double inProcessMs, double numPyMs, bool expected) =>
        Assert.Equal(expected, YardstickCheck.IsWithin(inProcessMs, numPyMs));

    [Fact]
    public void TheToleranceIsRelativeToNumPysTime()
    {
        // 10% of NumPy's 2.0 ms is 0.2 ms: 2.19 passes, 2.21 does not, whatever the absolute size.
        Assert.True(YardstickCheck.IsWithin(2.19, 2.0));
        Assert.False(YardstickCheck.IsWithin(2.21, 2.0));
        Assert.True(YardstickCheck.IsWithin(2.21, 2.0, tolerance: 0.2));
    }

    [Theory]
    [InlineData("S·X", 1, "sgemv")]
    [InlineData("Sᵀ·X", 1, "sgemv")]
    [InlineData("SDDMM", 1, "sger")]
    [InlineData("S·X", 16, "sgemm")]
    [InlineData("Sᵀ·X", 128, "sgemm")]
    [InlineData("SDDMM", 512, "sgemm")]
    public void NEqualsOneUsesTheMatrixVectorRoutines(string kernel, int n, string routine) =>
        Assert.Equal(routine, YardstickCheck.Routine(kernel, n));

    [Fact]
    public void AnUnknownKernelIsRejectedByName()
    {
        var e = Assert.Throws<ArgumentException>(() => YardstickCheck.NumPyKey("BSR"));
        Assert.Contains("'BSR'", e.Message);
    }

    [Fact]
    public void CompareKeepsOneComparisonPerShapeNAndKernelAndSkipsCasesWithoutBothTimes()
    {
        var peers = new Dictionary<string, double>
        {
            ["numpy_dense"] = 0.070, ["numpy_dense_min"] = 0.066, ["numpy_dense_sddmm"] = 0.50, ["scipy_csr"] = 0.02,
        };
        var cases = new YardstickCheck.Case[]
        {
            new(3072, 768, 1, "S·X", 0.065, 0.0627, peers),   // CSR row
            new(3072, 768, 1, "S·X", 0.065, 0.0627, peers),   // SELL row of the same case: no second comparison
            new(3072, 768, 1, "SDDMM", 0.80, 0.6, peers),     // 1.6x slower than NumPy: outside; no NumPy minimum sent
            new(3072, 768, 1, "Sᵀ·X", 0.07, 0.07, peers),     // the peer sent no numpy_dense_t: left out
            new(768, 768, 1, "S·X", null, null, peers),       // no in-process time: left out
            new(768, 768, 16, "S·X", 0.2, 0.2, null),         // peers off: left out
        };
        var checks = YardstickCheck.Compare(cases);
        Assert.Equal(2, checks.Count);
        var sx = checks[0];
        Assert.Equal(("S·X", "sgemv", 0.065, 0.070), (sx.Kernel, sx.Routine, sx.InProcessMs, sx.NumPyMs));
        Assert.True(sx.Within);
        Assert.Equal(0.065 / 0.070, sx.Ratio, 12);
        Assert.Equal(0.95, sx.MinRatio!.Value, 12);
        var sddmm = checks[1];
        Assert.Equal("sger", sddmm.Routine);
        Assert.False(sddmm.Within);
        Assert.Null(sddmm.MinRatio);
        Assert.StartsWith("WARNING:", sddmm.Warning);
        Assert.Contains("3072x768 N=1 SDDMM (sger)", sddmm.Warning);
        Assert.EndsWith("ratio 1.60, outside the 10% allowed", sddmm.Warning);
        Assert.EndsWith("(fastest samples: ratio 0.95)", (sx with { InProcessMs = 1 }).Warning);
    }
}
