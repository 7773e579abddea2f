using NanoSparse.Cli;

namespace NanoSparse.Tests.Bench;

public sealed class DstBenchOptionsTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void DecodeDensitiesWithNoValueParsesAsNone()
    {
        // The parse must succeed (an empty list), so the run reaches the options' own check, which names the bad density.
        var (code, output, error) = Run("bench", "dst", "--densities", "2", "--decode-densities");
        Assert.NotEqual(0, code);
        string all = output + error;
        Assert.DoesNotContain("Required argument missing", all);
        Assert.Contains("is not a density", all);
    }

    [Fact]
    public void ABadDecodeDensityIsNamed()
    {
        var (code, output, error) = Run("bench", "dst", "--densities", "0.1", "--decode-densities", "1.5");
        Assert.NotEqual(0, code);
        Assert.Contains("1.5 is not a density", output + error);
    }
}
