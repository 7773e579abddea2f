using NanoSparse.Bench;

namespace NanoSparse.Tests.Bench;

/// <summary>Benches write their PNGs into the results folder (bench-results/, as bench sparse-kernels does), not the current folder.</summary>
public class BenchPlotPathTests
{
    [Fact]
    public void GemvPlotDefaultsToTheResultsFolder()
    {
        var command = GemvBench.CreateCommand();
        var parsed = command.Parse([]);
        Assert.Empty(parsed.Errors);
        var plot = (string?)parsed.GetValue<string>("--plot");
        Assert.Equal(Path.Combine("bench-results", "gemv.png"), plot);
        Assert.NotEqual("", Path.GetDirectoryName(plot));
        Assert.Equal("elsewhere.png", command.Parse(["--plot", "elsewhere.png"]).GetValue<string>("--plot"));
    }

    [Fact]
    public void SparseModelPlotsGoBesideTheJsonElseIntoTheResultsFolder()
    {
        Assert.Equal(Path.Combine("bench-results", "sparse-model"), SparseModelBench.PlotPrefix(null, null));
        string json = Path.Combine(Path.GetTempPath(), "runs", "sm.json");
        Assert.Equal(Path.Combine(Path.GetTempPath(), "runs", "sm"), SparseModelBench.PlotPrefix(null, new FileInfo(json)));
        Assert.Equal("mine", SparseModelBench.PlotPrefix("mine", new FileInfo(json)));
        Assert.Equal(Path.Combine("out", "x"), SparseModelBench.PlotPrefix(Path.Combine("out", "x.png"), null));   // not out/x.png_decode.png
        Assert.Equal("x", SparseModelBench.PlotPrefix("x.PNG", null));
        // The command's help names the default.
        var plot = SparseModelBench.CreateCommand().Options.Single(o => o.Name == "--plot");
        Assert.Contains("bench-results/sparse-model", plot.Description);
    }
}
