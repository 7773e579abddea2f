using System.Text.Json.Nodes;
using NanoSparse.IO;

namespace NanoSparse.Tests.IO;

public sealed class ModelImporterTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-interop-" + Guid.NewGuid().ToString("N"));
    public ModelImporterTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    internal static string Fixture(string model, string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "interop", model, file);
    private string P(params string[] parts) => Path.Combine([_dir, .. parts]);

    private static Dictionary<string, (int[] Shape, float[] Data)> ReadAll(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.Tensors.Where(t => t.Dtype is SafeTensorsDtype.F32 or SafeTensorsDtype.F16 or SafeTensorsDtype.BF16)
            .ToDictionary(t => t.Name, t => (t.Shape, f.ReadFloat32Array(t.Name)));
    }

    private static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length} vs {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what}[{i}]: {actual[i]} vs {expected[i]}");
    }

    /// <summary>Writes a copy of a fixture's weights after editing its tensor list.</summary>
    private string Edit(string model, Func<List<SafeTensor>, IEnumerable<SafeTensor>> edit, string name = "edited.safetensors")
    {
        var all = ReadAll(Fixture(model, "model.safetensors"));
        using var f = SafeTensorsFile.Open(Fixture(model, "model.safetensors"));
        var list = f.Tensors.Select(t => new SafeTensor(t.Name, t.Shape, all[t.Name].Data)).ToList();
        string path = P(name);
        SafeTensors.Write(path, edit(list).ToList());
        return path;
    }

    [Theory]
    [InlineData("nanogpt_bias", true)]
    [InlineData("nanogpt_nobias", false)]
    public void NanoGptImportWritesCheckpointAndExportRoundTripsByteForByte(string model, bool bias)
    {
        var dims = ModelImporter.Import(ModelFormat.NanoGpt, Fixture(model, "model.safetensors"), Fixture(model, "config.json"), P("ckpt"));
        Assert.Equal(new GptDims(2, 2, 16, 16, 37, bias), dims);

        var source = ReadAll(Fixture(model, "model.safetensors"));
        var ckpt = ReadAll(P("ckpt", "model.safetensors"));
        Assert.False(ckpt.ContainsKey("lm_head.weight"));        // tied: not a separate parameter
        Assert.Equal(source.Count - 1, ckpt.Count);
        foreach (var (name, (shape, data)) in ckpt)
        {
            Assert.Equal(source[name].Shape, shape);
            AssertBitEqual(source[name].Data, data, name);
        }
        var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(P("ckpt", "config.json")))!;
        Assert.Equal(2, (int)cfg["n_layer"]!);
        Assert.Equal(16, (int)cfg["block_size"]!);
        Assert.Equal(37, (int)cfg["vocab_size"]!);
        Assert.Equal(bias, (bool)cfg["bias"]!);

        ModelImporter.Export(ModelFormat.NanoGpt, P("ckpt"), P("out"));
        Assert.Equal(File.ReadAllBytes(Fixture(model, "model.safetensors")), File.ReadAllBytes(P("out", "model.safetensors")));
        var back = GptDims.ReadNanoGptConfig(P("out", "config.json"));
        Assert.Equal(dims, back);
    }

    [Fact]
    public void Gpt2ImportTransposesConv1DAndExportRoundTripsBitExactly()
    {
        var dims = ModelImporter.Import(ModelFormat.Gpt2, Fixture("gpt2", "model.safetensors"), Fixture("gpt2", "config.json"), P("ckpt"));
        Assert.Equal(new GptDims(2, 2, 16, 16, 37, true, GptDims.GeluTanh), dims);
        var source = ReadAll(Fixture("gpt2", "model.safetensors"));
        var ckpt = ReadAll(P("ckpt", "model.safetensors"));
        // Conv1D (in, out) becomes Linear (out, in): element [i, o] of the source is [o, i] in the checkpoint.
        var conv = source["h.1.mlp.c_fc.weight"];
        var lin = ckpt["transformer.h.1.mlp.c_fc.weight"];
        Assert.Equal(new[] { 16, 64 }, conv.Shape);
        Assert.Equal(new[] { 64, 16 }, lin.Shape);
        for (int i = 0; i < 16; i++)
            for (int o = 0; o < 64; o++)
                Assert.Equal(conv.Data[i * 64 + o], lin.Data[o * 16 + i]);
        AssertBitEqual(source["wte.weight"].Data, ckpt["transformer.wte.weight"].Data, "wte");
        Assert.Equal("gelu_new", (string?)JsonNode.Parse(File.ReadAllText(P("ckpt", "config.json")))!["activation"]);

        ModelImporter.Export(ModelFormat.Gpt2, P("ckpt"), P("out"));
        var exported = ReadAll(P("out", "model.safetensors"));
        var weights = source.Where(kv => !kv.Key.EndsWith(".attn.bias") && !kv.Key.EndsWith(".attn.masked_bias")).ToList();
        Assert.Equal(weights.Count, exported.Count);
        foreach (var (name, (shape, data)) in weights)
        {
            Assert.Equal(shape, exported[name].Shape);
            AssertBitEqual(data, exported[name].Data, name);
        }
        Assert.Equal(dims, GptDims.ReadGpt2Config(P("out", "config.json")));
        using var f = SafeTensorsFile.Open(P("out", "model.safetensors"));
        Assert.Equal("pt", f.Metadata["format"]);
    }

    [Fact]
    public void Gpt2WithTransformerPrefixAndTiedLmHeadImports()
    {
        string path = Edit("gpt2", list =>
        {
            var renamed = list.Select(t => t with { Name = "transformer." + t.Name }).ToList();
            renamed.Add(renamed.First(t => t.Name == "transformer.wte.weight") with { Name = "lm_head.weight" });
            return renamed;
        });
        var (_, a) = ModelImporter.Read(ModelFormat.Gpt2, path, Fixture("gpt2", "config.json"));
        var (_, b) = ModelImporter.Read(ModelFormat.Gpt2, Fixture("gpt2", "model.safetensors"));
        Assert.Equal(b.Select(t => t.Name), a.Select(t => t.Name));
        for (int i = 0; i < a.Count; i++) AssertBitEqual(b[i].Data.ToArray(), a[i].Data.ToArray(), a[i].Name);
    }

    [Fact]
    public void NanoGptCompiledPrefixAndMaskBuffersAreAccepted()
    {
        string path = Edit("nanogpt_bias", list =>
            list.Select(t => t with { Name = "_orig_mod." + t.Name })
                .Append(new SafeTensor("_orig_mod.transformer.h.0.attn.bias", [1, 1, 16, 16], new float[256])));
        var (_, a) = ModelImporter.Read(ModelFormat.NanoGpt, path, Fixture("nanogpt_bias", "config.json"));
        Assert.Equal(NanoGptFormat.Layout(new GptDims(2, 2, 16, 16, 37, true)).Select(s => s.Name), a.Select(t => t.Name));
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        string path = Edit("nanogpt_bias", list => list.Where(t => t.Name != "transformer.h.1.mlp.c_fc.weight"));
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Read(ModelFormat.NanoGpt, path, Fixture("nanogpt_bias", "config.json")));
        Assert.Contains("missing", e.Message);
        Assert.Contains("'transformer.h.1.mlp.c_fc.weight'", e.Message);
    }

    [Fact]
    public void BiasConfigMismatchesAreExplained()
    {
        var e = Assert.Throws<InvalidDataException>(() =>
            ModelImporter.Read(ModelFormat.NanoGpt, Fixture("nanogpt_nobias", "model.safetensors"), Fixture("nanogpt_bias", "config.json")));
        Assert.Contains("transformer.h.0.ln_1.bias", e.Message);
        Assert.Contains("bias=true", e.Message);
        var e2 = Assert.Throws<InvalidDataException>(() =>
            ModelImporter.Read(ModelFormat.NanoGpt, Fixture("nanogpt_bias", "model.safetensors"), Fixture("nanogpt_nobias", "config.json")));
        Assert.Contains("unexpected", e2.Message);
        Assert.Contains("bias=false", e2.Message);
    }

    [Fact]
    public void ExtraTensorIsNamed()
    {
        string path = Edit("nanogpt_nobias", list => list.Append(new SafeTensor("transformer.h.2.ln_1.weight", [16], new float[16])));
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Read(ModelFormat.NanoGpt, path, Fixture("nanogpt_nobias", "config.json")));
        Assert.Contains("unexpected", e.Message);
        Assert.Contains("'transformer.h.2.ln_1.weight'", e.Message);
    }

    [Fact]
    public void ShapeMismatchIsNamed()
    {
        string path = Edit("nanogpt_nobias", list => list.Select(t => t.Name == "transformer.h.0.attn.c_proj.weight"
            ? t with { Shape = [8, 32] } : t));
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Read(ModelFormat.NanoGpt, path, Fixture("nanogpt_nobias", "config.json")));
        Assert.Contains("'transformer.h.0.attn.c_proj.weight'", e.Message);
        Assert.Contains("[8, 32]", e.Message);
        Assert.Contains("[16, 16]", e.Message);
    }

    [Fact]
    public void UntiedLmHeadIsRejected()
    {
        string path = Edit("nanogpt_nobias", list => list.Select(t => t.Name == "lm_head.weight"
            ? t with { Data = t.Data.ToArray().Select(v => v + 1).ToArray() } : t));
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Read(ModelFormat.NanoGpt, path, Fixture("nanogpt_nobias", "config.json")));
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Contains("tied", e.Message);
    }

    [Fact]
    public void BadConfigIsNamed()
    {
        File.WriteAllText(P("cfg.json"), """{"n_layer": 2, "n_head": 3, "n_embd": 16, "block_size": 16, "vocab_size": 37, "bias": true}""");
        var e = Assert.Throws<InvalidDataException>(() => GptDims.ReadNanoGptConfig(P("cfg.json")));
        Assert.Contains("n_embd (16) must be divisible by n_head (3)", e.Message);
        File.WriteAllText(P("cfg2.json"), """{"n_layer": 2, "n_embd": 16, "block_size": 16, "vocab_size": 37}""");
        var e2 = Assert.Throws<InvalidDataException>(() => GptDims.ReadNanoGptConfig(P("cfg2.json")));
        Assert.Contains("'n_head'", e2.Message);
        Assert.Contains("cfg2.json", e2.Message);
    }

    [Fact]
    public void HalfPrecisionExportReimportsWidened()
    {
        ModelImporter.Import(ModelFormat.NanoGpt, Fixture("nanogpt_bias", "model.safetensors"), null, P("ckpt"));
        ModelImporter.Export(ModelFormat.NanoGpt, P("ckpt"), P("bf16"), SafeTensorsDtype.BF16);
        var (_, t) = ModelImporter.Read(ModelFormat.NanoGpt, P("bf16", "model.safetensors"));
        var src = ReadAll(Fixture("nanogpt_bias", "model.safetensors"));
        foreach (var x in t)
        {
            var s = src[x.Name].Data;
            var d = x.Data.Span;
            for (int i = 0; i < s.Length; i++) Assert.True(Math.Abs(s[i] - d[i]) <= Math.Abs(s[i]) * (1.0 / 256) + 1e-30, x.Name);
        }
    }
}
