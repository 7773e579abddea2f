using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using NanoSparse.Data;
using NanoSparse.IO;
using NanoSparse.Training;

namespace NanoSparse.Tests.IO;

/// <summary>Every JSON file NanoSparse reads refuses invalid UTF-8 and lone surrogate escapes with one line naming the file.</summary>
public sealed class JsonTextTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-json-" + Guid.NewGuid().ToString("N"));
    public JsonTextTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    string P(string name) => Path.Combine(_dir, name);

    static void AssertOneLine(Exception e, params string[] fragments)
    {
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Fact]
    public void InvalidByteIsNamedWithItsValueOffsetAndLine()
    {
        byte[] bytes = [.. "{\n  \"a\": \"é"u8, 0xFF, .. "\"\n}"u8];   // é is two valid bytes; 0xFF at offset 12
        var e = Assert.Throws<InvalidDataException>(() => JsonText.Check(bytes, "x.json"));
        AssertOneLine(e, "x.json", "not valid UTF-8", "0xFF", "offset 12", "line 2");
    }

    [Fact]
    public void Utf8VerdictAgreesWithAStrictDecoder()
    {
        // Reference: .NET's UTF8Encoding with throwOnInvalidBytes, which reports the first bad byte's index.
        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        var rng = new Random(5);
        byte[][] pieces = ["a"u8.ToArray(), "é"u8.ToArray(), "€"u8.ToArray(), "😀"u8.ToArray(), [0xC3], [0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF], [0xFF]];
        int invalid = 0;
        for (int trial = 0; trial < 2000; trial++)
        {
            var bytes = Enumerable.Range(0, rng.Next(1, 8)).SelectMany(_ => pieces[rng.Next(pieces.Length)]).ToArray();
            int? expected = null;
            try { strict.GetString(bytes); }
            catch (DecoderFallbackException d) { expected = d.Index; }
            var e = Record.Exception(() => JsonText.CheckUtf8(bytes, "f"));
            Assert.Equal(expected is null, e is null);
            if (expected is int index)
            {
                invalid++;
                Assert.Contains($"offset {index} ", e!.Message);
            }
        }
        Assert.InRange(invalid, 200, 1900);   // both outcomes were exercised
    }

    [Theory]
    [InlineData("\"\\ud800\"", "\\ud800")]           // high surrogate at the end of a string
    [InlineData("\"\\udc00x\"", "\\udc00")]          // low surrogate alone
    [InlineData("\"\\uD83D\\u0041\"", "\\uD83D")]    // high surrogate followed by a non-surrogate escape
    [InlineData("{\"k\\udfff\": 1}", "\\udfff")]     // in a key
    public void LoneSurrogateEscapeIsNamed(string json, string escape)
    {
        var e = Assert.Throws<InvalidDataException>(() => JsonText.Check(Encoding.UTF8.GetBytes(json), "c.json"));
        AssertOneLine(e, "c.json", escape, "lone UTF-16 surrogate", "line 1");
    }

    [Theory]
    [InlineData("\"\\ud83d\\ude00\"")]   // a valid pair (😀)
    [InlineData("\"\\\\udc00\"")]        // an escaped backslash, then the letters udc00
    [InlineData("\"a\\\"\\udc00\"")]    // after an escaped quote the string goes on, so this \udc00 is inside it (and lone)
    [InlineData("[\"\\u00e9\", 1, true, null]")]
    public void SurrogateVerdictAgreesWithSystemTextJson(string json)
    {
        // Reference: reading every string with System.Text.Json, which throws on an invalid UTF-16 result.
        bool referenceFails = false;
        try
        {
            using var doc = JsonDocument.Parse(json);
            void Walk(JsonElement el)
            {
                if (el.ValueKind == JsonValueKind.String) el.GetString();
                else if (el.ValueKind == JsonValueKind.Array) foreach (var x in el.EnumerateArray()) Walk(x);
                else if (el.ValueKind == JsonValueKind.Object) foreach (var p in el.EnumerateObject()) { _ = p.Name; Walk(p.Value); }
            }
            Walk(doc.RootElement);
        }
        catch (InvalidOperationException) { referenceFails = true; }
        var e = Record.Exception(() => JsonText.Check(Encoding.UTF8.GetBytes(json), "c.json"));
        Assert.Equal(referenceFails, e is InvalidDataException);
    }

    [Fact]
    public void ByteOrderMarkIsAcceptedAndStripped()
    {
        File.WriteAllBytes(P("bom.json"), [0xEF, 0xBB, 0xBF, .. "{\"a\": 1}"u8]);
        Assert.Equal("{\"a\": 1}"u8.ToArray(), JsonText.ReadFile(P("bom.json")));
    }

    // ---- each reader ----

    [Fact]
    public void SafeTensorsHeaderWithInvalidUtf8NamesTheFile()
    {
        SafeTensors.Write(P("m.safetensors"), [new SafeTensor("weight", [2], new float[] { 1, 2 })]);
        byte[] file = File.ReadAllBytes(P("m.safetensors"));
        int at = file.AsSpan().IndexOf("weight"u8);
        file[at + 2] = 0xFE;   // the tensor name now holds an invalid byte
        File.WriteAllBytes(P("m.safetensors"), file);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(P("m.safetensors")));
        AssertOneLine(e, P("m.safetensors"), "header", "not valid UTF-8", "0xFE", $"offset {at + 2 - 8}");
    }

    [Fact]
    public void SafeTensorsHeaderWithLoneSurrogateNamesTheFile()
    {
        byte[] header = "{\"w\\udc00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}    "u8.ToArray();
        var bytes = new byte[8 + header.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        File.WriteAllBytes(P("s.safetensors"), bytes);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(P("s.safetensors")));
        AssertOneLine(e, P("s.safetensors"), "\\udc00");
    }

    [Fact]
    public void MetaJsonWithInvalidUtf8NamesTheFile()
    {
        var meta = new DatasetMeta { VocabSize = 2, Dtype = TokenDtype.UInt16, Symbols = ["a", "b"], Corpus = "c" };
        meta.Save(P("meta.json"));
        byte[] bytes = File.ReadAllBytes(P("meta.json"));
        int at = bytes.AsSpan().IndexOf("\"c\""u8) + 1;
        bytes[at] = 0xC3;   // a lead byte followed by '"': an incomplete sequence
        File.WriteAllBytes(P("meta.json"), bytes);
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(P("meta.json")));
        AssertOneLine(e, P("meta.json"), "0xC3", $"offset {at}");
    }

    [Fact]
    public void TrainConfigFileWithInvalidUtf8NamesTheFileInsteadOfReplacingTheByte()
    {
        File.WriteAllBytes(P("train.json"), [.. "{\"out_dir\": \"r"u8, 0xFF, .. "n\"}"u8]);
        var e = Assert.Throws<InvalidDataException>(() => TrainConfig.Load(P("train.json")));
        AssertOneLine(e, P("train.json"), "0xFF", "offset 14");
    }

    [Fact]
    public void ImportedCheckpointConfigWithInvalidUtf8NamesTheFile()
    {
        string dir = P("imported");
        ModelImporter.Import(ModelFormat.NanoGpt, ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors"),
            ModelImporterTests.Fixture("nanogpt_bias", "config.json"), dir);
        string cfg = Path.Combine(dir, "config.json");
        byte[] original = File.ReadAllBytes(cfg);
        int close = Array.LastIndexOf(original, (byte)'}');
        File.WriteAllBytes(cfg, [.. original[..close], .. ", \"note\": \""u8, 0xC3, .. "\"}"u8]);   // a lead byte without its continuation
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadAnyModel(dir, 1, 1, out _));
        AssertOneLine(e, cfg, "not valid UTF-8", "0xC3");
    }

    [Fact]
    public void ImportConfigWithInvalidUtf8NamesTheFile()
    {
        File.WriteAllBytes(P("model_args.json"), [.. "{\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, \"block_size\": 16, \"vocab_size\": 37, \"bias\": true, \"note\": \""u8, 0x80, .. "\"}"u8]);
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Import(ModelFormat.NanoGpt,
            ModelImporterTests.Fixture("nanogpt_bias", "model.safetensors"), P("model_args.json"), P("out")));
        AssertOneLine(e, P("model_args.json"), "0x80");
        Assert.False(Directory.Exists(P("out")));
    }

    [Fact]
    public void Gpt2VocabularyFilesWithInvalidUtf8NameTheFile()
    {
        File.WriteAllBytes(P("encoder.json"), [.. "{\"a\": 0, \"b"u8, 0xFF, .. "\": 1}"u8]);
        File.WriteAllText(P("vocab.bpe"), "#version: 0.2\na b\n");
        var e = Assert.Throws<InvalidDataException>(() => Gpt2BpeTokenizer.FromFiles(P("encoder.json"), P("vocab.bpe")));
        AssertOneLine(e, P("encoder.json"), "0xFF");

        File.WriteAllText(P("encoder.json"), "{\"a\": 0, \"b\": 1, \"ab\": 2}");
        File.WriteAllBytes(P("vocab.bpe"), [.. "#version: 0.2\na b\n"u8, 0xE2, 0x82, .. "\n"u8]);
        e = Assert.Throws<InvalidDataException>(() => Gpt2BpeTokenizer.FromFiles(P("encoder.json"), P("vocab.bpe")));
        AssertOneLine(e, P("vocab.bpe"), "0xE2", "line 3");
    }
}
