using System.Text.Json;
using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public sealed class TiktokenTokenizerTests
{
    private static List<(string Text, int[] Ids)> Cases(string encoding)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tiktoken", "tiktoken_cases.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("encodings").GetProperty(encoding).EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray()))
            .ToList();
    }

    [Theory]
    [InlineData("cl100k_base", 100277, 100257)]
    [InlineData("o200k_base", 200019, 199999)]
    public void IdsEqualJsTiktokenAndRoundTrip(string encoding, int vocabSize, int endOfText)
    {
        var tok = TiktokenTokenizer.Create(encoding);
        Assert.Equal(vocabSize, tok.VocabSize);
        Assert.Equal(encoding, tok.Kind);
        var cases = Cases(encoding);
        Assert.True(cases.Sum(c => c.Text.Length) > 4000);
        foreach (var (text, ids) in cases)
        {
            Assert.Equal(text, tok.Decode(ids));
            var mine = tok.Encode(text);
            Assert.Equal(text, tok.Decode(mine));
            if (text.Contains("<|endoftext|>")) continue; // the fixture encodes specials as plain text; we map them to their id
            Assert.Equal(ids, mine);
        }
        Assert.Equal(new[] { endOfText }, tok.Encode("<|endoftext|>"));
        Assert.NotEmpty(tok.Decode([encoding == "cl100k_base" ? 100255 : 199997])); // the last ordinary token
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([vocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void UnknownEncodingIsNamed()
    {
        var e = Assert.Throws<ArgumentException>(() => TiktokenTokenizer.Create("p50k_base"));
        Assert.Contains("p50k_base", e.Message);
    }
}
