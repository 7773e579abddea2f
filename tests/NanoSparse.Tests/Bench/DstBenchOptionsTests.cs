using System.Text.Json.Nodes;
using NanoSparse.Bench;
using NanoSparse.Tests.Cli;

namespace NanoSparse.Tests.Bench;

public sealed class DstBenchOptionsTests
{
    /// <summary>The options `bench dst` would run with for <paramref name="args"/> (nothing is measured).</summary>
    static DstBench.Options Parsed(params string[] args)
    {
        DstBench.Options? seen = null;
        int code = DstBench.CreateCommand(o => { seen = o; return new JsonObject(); }).Parse([.. args, "--plot", "none"]).Invoke();
        Assert.Equal(0, code);
        return seen!;
    }

    [Fact]
    public void DecodeDensitiesWithNoValueMeanNone()
    {
        Assert.Empty(Parsed("--decode-densities").DecodeDensities);
        Assert.Empty(Parsed("--decode-densities", "--densities", "0.1").DecodeDensities);
        Assert.Equal([0.1], Parsed("--densities", "0.1").DecodeDensities);
        Assert.Equal([0.2, 0.05], Parsed("--decode-densities", "0.2", "0.05").DecodeDensities);
    }

    [Fact]
    public void ABadDecodeDensityIsNamed() =>
        CliRun.OneLineError(CliRun.RunCli("bench", "dst", "--densities", "0.1", "--decode-densities", "1.5"), "1.5 is not a density");
}
