using System.Security.Cryptography;
using NanoSparse.Cli;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>A small trained two-block checkpoint for the activation-sparsity commands (its model files never modified).</summary>
public sealed class TealCliFixture : IDisposable
{
    public TinyDataset Data { get; } = new();
    public string Checkpoint { get; }

    public TealCliFixture()
    {
        var c = Data.Config("trained", maxIters: 4);
        c.NLayer = 2;
        c.Dropout = 0;
        using (var t = new Trainer(c)) t.Run();
        Checkpoint = c.OutDir;
    }

    public void Dispose() => Data.Dispose();
}

[Collection("KernelThreads")]
public sealed class TealCliTests(TealCliFixture fixture) : IClassFixture<TealCliFixture>
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static void AssertOneLineError(string err, params string[] fragments)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    string ModelHash() => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(fixture.Checkpoint, NanoSparse.Training.Checkpoint.ModelFile))));

    string NewFile(string name) => Path.Combine(fixture.Data.Root, $"{name}-{Guid.NewGuid():N}.json");

    [Fact]
    public void CalibrateThenEvalAndSampleWithTheThresholds()
    {
        string before = ModelHash();
        string file = NewFile("teal");
        var (code, stdout, err) = Run("teal", "calibrate", "--checkpoint", fixture.Checkpoint, "--sparsity", "0.4", "--windows", "4", "--out", file);
        Assert.True(code == 0, err);
        Assert.Contains("transformer.h.1.mlp.c_proj.weight", stdout);
        Assert.True(File.Exists(file));

        (code, stdout, err) = Run("eval", "--checkpoint", fixture.Checkpoint, "--iters", "2", "--act-sparsity", "teal:" + file);
        Assert.True(code == 0, err);
        Assert.Contains("activation sparsity: teal calibrated to 0.4; measured", stdout);

        (code, stdout, err) = Run("sample", "--checkpoint", fixture.Checkpoint, "--tokens", "8", "--act-sparsity", "teal:" + file);
        Assert.True(code == 0, err);

        string wina = NewFile("wina");
        (code, _, err) = Run("teal", "calibrate", "--checkpoint", fixture.Checkpoint, "--sparsity", "0.5", "--wina", "--windows", "2", "--out", wina);
        Assert.True(code == 0, err);
        (code, _, err) = Run("eval", "--checkpoint", fixture.Checkpoint, "--iters", "1", "--act-sparsity", "teal:" + wina);
        Assert.NotEqual(0, code);
        AssertOneLineError(err, wina, "holds wina thresholds, not teal");
        Assert.Equal(before, ModelHash());
    }

    [Theory]
    [InlineData("1")]
    [InlineData("-0.2")]
    public void CalibrateRefusesASparsityOutsideTheUnitInterval(string sparsity)
    {
        var (code, _, err) = Run("teal", "calibrate", "--checkpoint", fixture.Checkpoint, "--sparsity", sparsity, "--out", NewFile("x"));
        Assert.NotEqual(0, code);
        AssertOneLineError(err, "--sparsity", sparsity, "[0, 1)");
    }

    [Fact]
    public void GreedyCalibrationWritesOneFilePerSparsity()
    {
        string before = ModelHash();
        string file = NewFile("greedy");
        var (code, stdout, err) = Run("teal", "calibrate", "--checkpoint", fixture.Checkpoint, "--sparsity", "0.3", "0.5", "--allocation", "greedy",
            "--windows", "2", "--split", "val", "--out", file);
        Assert.True(code == 0, err);
        Assert.Contains("block averages (by weights read)", stdout);
        foreach (var s in new[] { "0.3", "0.5" })
        {
            string path = file.Replace(".json", "-" + s + ".json");
            var t = NanoSparse.Sparsity.Activation.ActivationThresholds.Load(path);
            Assert.Equal("greedy", t.Allocation);
            Assert.Equal(double.Parse(s, System.Globalization.CultureInfo.InvariantCulture), t.TargetSparsity);
            Assert.Contains("(val)", t.CalibrationData);
        }
        Assert.Equal(before, ModelHash());
    }

    [Theory]
    [InlineData("--allocation", "best", "--allocation \"best\"", "uniform or greedy")]
    [InlineData("--step", "0.7", "--step (0.7)", "(0, 0.5]")]
    [InlineData("--split", "test", "--split \"test\"", "train or val")]
    [InlineData("--greedy-windows", "-1", "--greedy-windows (-1)", ">= 0")]
    public void BadAllocationOptionsAreOneLineErrors(string option, string value, string named, string expected)
    {
        var (code, _, err) = Run("teal", "calibrate", "--checkpoint", fixture.Checkpoint, "--sparsity", "0.4", option, value, "--out", NewFile("x"));
        Assert.NotEqual(0, code);
        AssertOneLineError(err, named, expected);
    }

    [Fact]
    public void AMissingThresholdsFileIsAOneLineError()
    {
        string missing = Path.Combine(fixture.Data.Root, "absent.json");
        var (code, _, err) = Run("eval", "--checkpoint", fixture.Checkpoint, "--iters", "1", "--act-sparsity", "teal:" + missing);
        Assert.NotEqual(0, code);
        AssertOneLineError(err, missing, "does not exist");
        (code, _, err) = Run("sample", "--checkpoint", fixture.Checkpoint, "--tokens", "2", "--act-sparsity", "relu");
        Assert.NotEqual(0, code);
        AssertOneLineError(err, "--act-sparsity 'relu'", "teal[:FILE]");
    }

    [Fact]
    public void ThresholdsOfAnotherModelAreAOneLineError()
    {
        string file = NewFile("other");
        var (code, _, err) = Run("teal", "calibrate", "--checkpoint", fixture.Checkpoint, "--sparsity", "0.3", "--windows", "1", "--out", file);
        Assert.True(code == 0, err);
        File.WriteAllText(file, File.ReadAllText(file).Replace("\"n_layer\": 2", "\"n_layer\": 3"));
        (code, _, err) = Run("sample", "--checkpoint", fixture.Checkpoint, "--tokens", "2", "--act-sparsity", "teal:" + file);
        Assert.NotEqual(0, code);
        AssertOneLineError(err, file, "n_layer 3", "n_layer 2");
    }
}
