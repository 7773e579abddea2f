using NanoSparse.Tests.Cli;

namespace NanoSparse.Tests.Bench;

public sealed class DstBenchOptionsTests
{
    [Fact]
    public void DecodeDensitiesWithNoValueParsesAsNone()
    {
        // The parse must succeed (an empty list), so the run reaches the options' own check, which names the bad density;
        // before, the bare option was refused as a missing argument.
        var r = CliRun.RunCli("bench", "dst", "--densities", "2", "--decode-densities");
        Assert.DoesNotContain("Required argument missing", r.Out + r.Err);
        CliRun.OneLineError(r, "2 is not a density");
    }

    [Fact]
    public void ABadDecodeDensityIsNamed() =>
        CliRun.OneLineError(CliRun.RunCli("bench", "dst", "--densities", "0.1", "--decode-densities", "1.5"), "1.5 is not a density");
}
