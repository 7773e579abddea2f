using NanoSparse.Cli;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Tests.IO;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

public sealed class InteropCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-interop-cli-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }
    private string P(string name) => Path.Combine(_dir, name);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void ImportThenExportNanoGptReproducesTheFile()
    {
        string weights = ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors");
        var r = Run("import", "--format", "nanogpt", weights, "--config", ModelImporterTests.Fixture("nanogpt_bias", "config.json"), "--out", P("ck"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("imported", r.Out);
        Assert.True(File.Exists(P("ck/model.safetensors")) && File.Exists(P("ck/config.json")));
        r = Run("export", "--format", "nanogpt", P("ck"), "--out", P("out"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(File.ReadAllBytes(weights), File.ReadAllBytes(P("out/model.safetensors")));
    }

    [Fact]
    public void ImportErrorsNameTheTensor()
    {
        var r = Run("import", "--format", "nanogpt", ModelImporterTests.Fixture("nanogpt_nobias", "model.safetensors"),
            "--config", ModelImporterTests.Fixture("nanogpt_bias", "config.json"), "--out", P("ck"));
        Assert.Equal(1, r.Code);
        Assert.StartsWith("error: ", r.Err);
        Assert.Contains("transformer.h.0.ln_1.bias", r.Err);
        Assert.False(File.Exists(P("ck/model.safetensors")));
        Assert.Equal(2, Run("import", "--format", "onnx", "x.safetensors", "--out", P("ck")).Code);
    }

    [Fact]
    public void TrainerCheckpointExportsAsGpt2()
    {
        var config = new GptConfig { NLayer = 1, NHead = 2, NEmbd = 8, BlockSize = 8, VocabSize = 13, Bias = true };
        var gpt = new Gpt(config, 1, 8);
        gpt.InitializeWeights(3);
        Checkpoint.Save(P("run"), gpt, null, new CheckpointState { Model = ModelArgs.From(config) }, null);
        var r = Run("export", "--format", "gpt2", P("run"), "--out", P("hf"), "--dtype", "f32");
        Assert.True(r.Code == 0, r.Err);
        var back = GptInterop.Load(ModelFormat.Gpt2, P("hf/model.safetensors"), null, 1, 8);
        Assert.True(back.ParameterData.SequenceEqual(gpt.ParameterData));
    }
}
