using System.Text.Json.Nodes;
using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public class DatasetMetaTests
{
    static DatasetMeta Sample() => new()
    {
        VocabSize = 3, Dtype = TokenDtype.UInt16, Tokenizer = "char", Symbols = ["\n", "a", "b"], Corpus = "test",
        TrainTokens = 10, ValTokens = 4,
        Documents = [new DocumentInfo("x.txt", null, "train", 0, 10), new DocumentInfo("y.txt", "humor", "val", 0, 4)],
    };

    [Fact]
    public void Save_then_load_round_trips_every_field()
    {
        using var dir = new TempDir();
        string path = dir["meta.json"];
        Sample().Save(path);
        var m = DatasetMeta.Load(path);
        Assert.Equal(3, m.VocabSize);
        Assert.Equal(TokenDtype.UInt16, m.Dtype);
        Assert.Equal(["\n", "a", "b"], m.Symbols);
        Assert.Equal("test", m.Corpus);
        Assert.Equal(10, m.TrainTokens);
        Assert.Equal(4, m.ValTokens);
        Assert.Equal(Sample().Documents, m.Documents);
        Assert.Equal(["humor"], m.Genres);
        Assert.Equal("ab\n", m.CreateTokenizer().Decode([1, 2, 0]));
        Assert.Single(Directory.GetFiles(dir.Path)); // no temporary file left behind
    }

    static string SaveAndEdit(TempDir dir, Action<JsonObject> edit)
    {
        var json = Sample().ToJson();
        edit(json);
        return dir.Write("meta.json", json.ToJsonString());
    }

    [Fact]
    public void Wrong_dtype_is_rejected_naming_file_field_value_and_expected()
    {
        using var dir = new TempDir();
        string path = SaveAndEdit(dir, j => j["dtype"] = "float32");
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("\"dtype\"", e.Message);
        Assert.Contains("float32", e.Message);
        Assert.Contains("uint16", e.Message);
    }

    [Theory]
    [InlineData("vocab_size")]
    [InlineData("dtype")]
    [InlineData("tokenizer")]
    [InlineData("train_tokens")]
    [InlineData("documents")]
    public void Missing_field_is_rejected_naming_it(string field)
    {
        using var dir = new TempDir();
        string path = SaveAndEdit(dir, j => j.Remove(field));
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains($"\"{field}\" is missing", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Missing_document_field_is_named_with_its_index()
    {
        using var dir = new TempDir();
        string path = SaveAndEdit(dir, j => ((JsonObject)j["documents"]![1]!).Remove("count"));
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains("documents[1].count", e.Message);
    }

    [Fact]
    public void Vocab_size_disagreeing_with_symbols_is_rejected()
    {
        using var dir = new TempDir();
        string path = SaveAndEdit(dir, j => j["vocab_size"] = 4);
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains("vocab_size", e.Message);
        Assert.Contains("4", e.Message);
        Assert.Contains("3, the number of tokenizer.symbols", e.Message);
    }

    [Fact]
    public void Vocab_above_65536_with_uint16_is_rejected()
    {
        using var dir = new TempDir();
        string path = SaveAndEdit(dir, j =>
        {
            j["vocab_size"] = 70000;
            var syms = new JsonArray();
            foreach (string s in BigVocabulary(70000)) syms.Add(s);
            ((JsonObject)j["tokenizer"]!)["symbols"] = syms;
        });
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains("70000", e.Message);
        Assert.Contains("uint32", e.Message);
    }

    [Fact]
    public void Document_beyond_its_split_is_rejected()
    {
        using var dir = new TempDir();
        string path = SaveAndEdit(dir, j => ((JsonObject)j["documents"]![1]!)["count"] = 5);
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains("val_tokens (4)", e.Message);
    }

    [Fact]
    public void Invalid_json_names_the_file()
    {
        using var dir = new TempDir();
        string path = dir.Write("meta.json", "{ \"vocab_size\": ");
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(path));
        Assert.Contains(path, e.Message);
    }

    /// <summary>n distinct single-character strings (BMP without surrogates, then astral code points).</summary>
    internal static List<string> BigVocabulary(int n)
    {
        var list = new List<string>(n);
        for (int cp = 0x20; list.Count < n; cp++)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) continue;
            list.Add(char.ConvertFromUtf32(cp));
        }
        return list;
    }
}
