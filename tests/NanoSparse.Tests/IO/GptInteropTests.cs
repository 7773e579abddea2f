using NanoSparse.IO;
using NanoSparse.Nn;

namespace NanoSparse.Tests.IO;

/// <summary>NanoSparse's Gpt on imported weights reproduces the PyTorch reference logits and loss (tools/make_interop_fixture.py).</summary>
public sealed class GptInteropTests
{
    private static (int[] Tokens, int[] Targets, float[] Logits, double Loss) Reference(string model, string suffix = "")
    {
        using var f = SafeTensorsFile.Open(ModelImporterTests.Fixture(model, "reference.safetensors"));
        int[] Ints(string n) => f.ReadFloat32Array(n).Select(v => (int)v).ToArray();
        return (Ints("tokens"), Ints("targets"), f.ReadFloat32Array("logits" + suffix),
            double.Parse(f.Metadata["loss" + suffix], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static void AssertMatchesReference(Gpt gpt, string model, string suffix = "")
    {
        var (tokens, targets, logits, loss) = Reference(model, suffix);
        Assert.Equal(2 * 16, tokens.Length);
        float got = gpt.Forward(tokens, targets, training: false);
        var mine = gpt.Logits;
        Assert.Equal(logits.Length, mine.Length);
        double maxDiff = 0;
        for (int i = 0; i < logits.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(logits[i] - mine[i]));
        Assert.True(maxDiff <= 1e-4, $"{model}: max |logit diff| = {maxDiff:E3}");
        Assert.True(Math.Abs(got - loss) <= 1e-5 * Math.Abs(loss), $"{model}: loss {got} vs reference {loss}");
        // The reference is informative: logits vary well beyond the tolerance.
        Assert.True(logits.Max() - logits.Min() > 1);
    }

    [Theory]
    [InlineData("nanogpt_bias")]
    [InlineData("nanogpt_nobias")]
    public void ImportedNanoGptMatchesPyTorchLogitsAndLoss(string model)
    {
        var gpt = GptInterop.Load(ModelFormat.NanoGpt, ModelImporterTests.Fixture(model, "model.safetensors"), null, batchSize: 2, seqLen: 16);
        AssertMatchesReference(gpt, model);
    }

    [Fact]
    public void CheckpointDirectoryLoadsAndSavesTheSameModel()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-gptio-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelImporter.Import(ModelFormat.NanoGpt, ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors"), null, Path.Combine(dir, "a"));
            var gpt = GptInterop.LoadCheckpoint(Path.Combine(dir, "a"), 2, 16);
            AssertMatchesReference(gpt, "nanogpt_bias");
            GptInterop.SaveCheckpoint(gpt, Path.Combine(dir, "b"));
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "a", "model.safetensors")), File.ReadAllBytes(Path.Combine(dir, "b", "model.safetensors")));
        }
        finally { try { Directory.Delete(dir, true); } catch { } }
    }

    [Fact]
    public void RandomModelSurvivesExportAndImportInBothFormats()
    {
        var config = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = 8, VocabSize = 11, Bias = true };
        var gpt = new Gpt(config, 1, 8);
        gpt.InitializeWeights(7);
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-gptio-" + Guid.NewGuid().ToString("N"));
        try
        {
            GptInterop.SaveCheckpoint(gpt, Path.Combine(dir, "ck"));
            foreach (var format in new[] { ModelFormat.NanoGpt, ModelFormat.Gpt2 })
            {
                ModelImporter.Export(format, Path.Combine(dir, "ck"), Path.Combine(dir, format.ToString()));
                var back = GptInterop.Load(format, Path.Combine(dir, format.ToString(), "model.safetensors"), null, 1, 8);
                Assert.True(back.ParameterData.SequenceEqual(gpt.ParameterData), format.ToString());
                Assert.Equal(config, back.Config);
            }
        }
        finally { try { Directory.Delete(dir, true); } catch { } }
    }

    [Fact]
    public void ImportedGpt2WeightsMatchPyTorchWhenBothUseExactGelu()
    {
        // Checks names and Conv1D transposes end to end; the fixture also holds the same weights' logits under exact GELU.
        var (dims, tensors) = ModelImporter.Read(ModelFormat.Gpt2, ModelImporterTests.Fixture("gpt2", "model.safetensors"));
        Assert.Equal(GptDims.GeluTanh, dims.Activation);
        var gpt = new Gpt(GptInterop.ToConfig(dims with { Activation = GptDims.GeluExact }), 2, 16);
        GptInterop.LoadInto(gpt, tensors);
        AssertMatchesReference(gpt, "gpt2", "_gelu_exact");
    }

    [Fact]
    public void ImportedGpt2MatchesPyTorchLogitsAndLoss()
    {
        var gpt = GptInterop.Load(ModelFormat.Gpt2, ModelImporterTests.Fixture("gpt2", "model.safetensors"), null, 2, 16);
        Assert.Equal(GptConfig.GeluTanh, gpt.Config.Activation);
        AssertMatchesReference(gpt, "gpt2");
    }

    [Fact]
    public void ImportedGpt2CheckpointDirectoryKeepsTheTanhGelu()
    {
        // import writes "activation": "gelu_tanh" into config.json; the trainer's loader (used by sample, eval,
        // inspect) builds the same model from it.
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-gptio-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelImporter.Import(ModelFormat.Gpt2, ModelImporterTests.Fixture("gpt2", "model.safetensors"), null, dir);
            var gpt = NanoSparse.Training.Checkpoint.LoadAnyModel(dir, 2, 16, out var state);
            Assert.Null(state);
            Assert.Equal(GptConfig.GeluTanh, gpt.Config.Activation);
            AssertMatchesReference(gpt, "gpt2");
            Assert.Equal(GptDims.GeluTanh, GptInterop.ToDims(gpt.Config).Activation);
        }
        finally { try { Directory.Delete(dir, true); } catch { } }
    }
}
