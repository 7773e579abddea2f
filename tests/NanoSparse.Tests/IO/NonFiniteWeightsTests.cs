using NanoSparse.Cli;
using NanoSparse.IO;

namespace NanoSparse.Tests.IO;

/// <summary>import and export refuse NaN and infinite weights (and values an export dtype cannot hold), naming file and tensor.</summary>
public sealed class NonFiniteWeightsTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-nonfinite-" + Guid.NewGuid().ToString("N"));
    public NonFiniteWeightsTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }
    string P(params string[] parts) => Path.Combine([_dir, .. parts]);

    /// <summary>A copy of the nanogpt_bias fixture with one value of one tensor replaced.</summary>
    string WeightsWith(string tensor, int index, float value)
    {
        string source = ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors");
        var list = new List<SafeTensor>();
        using (var f = SafeTensorsFile.Open(source))
            foreach (var info in f.Tensors)
            {
                var d = f.ReadFloat32Array(info.Name);
                if (info.Name == tensor) d[index] = value;
                list.Add(new SafeTensor(info.Name, info.Shape, d));
            }
        Directory.CreateDirectory(P("src"));
        string path = P("src", "model.safetensors");
        SafeTensors.Write(path, list);
        File.Copy(ModelImporterTests.Fixture("nanogpt_bias", "config.json"), P("src", "config.json"), overwrite: true);
        return path;
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "Infinity")]
    [InlineData(float.NegativeInfinity, "-Infinity")]
    public void ImportRefusesNonFiniteWeightsNamingFileAndTensor(float value, string shown)
    {
        string weights = WeightsWith("transformer.h.1.mlp.c_fc.weight", 7, value);
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Import(ModelFormat.NanoGpt, weights, null, P("out")));
        Assert.Contains(weights, e.Message);
        Assert.Contains("'transformer.h.1.mlp.c_fc.weight'", e.Message);
        Assert.Contains($"holds {shown} at element 7", e.Message);
        Assert.False(Directory.Exists(P("out")));
    }

    [Fact]
    public void ImportCliPrintsOneLine()
    {
        string weights = WeightsWith("transformer.wpe.weight", 0, float.NaN);
        var o = new StringWriter();
        var e = new StringWriter();
        Assert.Equal(1, Program.Run(["import", "--format", "nanogpt", weights, "--out", P("out")], o, e));
        var lines = e.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains("'transformer.wpe.weight' holds NaN", lines[0]);
    }

    [Fact]
    public void ExportRefusesACheckpointHoldingNonFiniteWeights()
    {
        // A checkpoint directory written by hand (as a crashed or edited run might leave it), not by import.
        string weights = WeightsWith("transformer.ln_f.bias", 3, float.PositiveInfinity);
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Export(ModelFormat.Gpt2, P("src"), P("hf")));
        Assert.Contains(weights, e.Message);
        Assert.Contains("'transformer.ln_f.bias' holds Infinity at element 3", e.Message);
        Assert.False(Directory.Exists(P("hf")));
    }

    [Theory]
    [InlineData(SafeTensorsDtype.F16, 70000f)]      // above Half.MaxValue (65504): rounds to infinity
    [InlineData(SafeTensorsDtype.BF16, 3.4e38f)]    // rounds up past float's largest finite value
    public void ExportRefusesValuesTheNarrowDtypeCannotHold(SafeTensorsDtype dtype, float value)
    {
        WeightsWith("transformer.h.0.attn.c_attn.weight", 11, value);
        ModelImporter.Import(ModelFormat.NanoGpt, P("src", "model.safetensors"), null, P("ck"));
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Export(ModelFormat.NanoGpt, P("ck"), P("out"), dtype));
        Assert.Contains(P("out", "model.safetensors"), e.Message);
        Assert.Contains("'transformer.h.0.attn.c_attn.weight'", e.Message);
        Assert.Contains($"beyond the range of {dtype}", e.Message);
        Assert.False(File.Exists(P("out", "model.safetensors")));
        // The same weights export as F32, and a finite value within range exports as the narrow type.
        ModelImporter.Export(ModelFormat.NanoGpt, P("ck"), P("out32"), SafeTensorsDtype.F32);
        WeightsWith("transformer.h.0.attn.c_attn.weight", 11, 60000f);
        ModelImporter.Import(ModelFormat.NanoGpt, P("src", "model.safetensors"), null, P("ck2"));
        ModelImporter.Export(ModelFormat.NanoGpt, P("ck2"), P("out16"), dtype);
    }
}
