using System.Text.Json;
using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public sealed class Gpt2BpeTokenizerTests
{
    private static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gpt2");
    private static readonly Lazy<Gpt2BpeTokenizer> Tok = new(() => Gpt2BpeTokenizer.FromDirectory(Dir));

    public sealed record Case(string Text, int[] Ids);

    private static List<Case> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "bpe_cases.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new Case(c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray()))
            .ToList();
    }

    [Fact]
    public void VocabularyIsGpt2s()
    {
        Assert.Equal(50257, Tok.Value.VocabSize);
        Assert.Equal(50256, Tok.Value.EndOfTextId);
        Assert.Equal("gpt2", Tok.Value.Kind);
    }

    [Fact]
    public void IdsEqualTheNpmGpt3EncoderPackage()
    {
        var cases = Cases();
        Assert.True(cases.Sum(c => c.Text.Length) > 4000);
        foreach (var c in cases)
        {
            var ids = Tok.Value.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids))
            {
                int i = 0;
                while (i < Math.Min(ids.Length, c.Ids.Length) && ids[i] == c.Ids[i]) i++;
                string context = Tok.Value.Decode(c.Ids.AsSpan(Math.Max(0, i - 3), Math.Min(6, c.Ids.Length - Math.Max(0, i - 3))));
                Assert.Fail($"text '{c.Text[..Math.Min(30, c.Text.Length)]}...': first difference at token {i} (got {(i < ids.Length ? ids[i] : -1)}, expected {(i < c.Ids.Length ? c.Ids[i] : -1)}) near '{context}'");
            }
        }
    }

    [Fact]
    public void DecodeInvertsEncode()
    {
        foreach (var c in Cases())
        {
            Assert.Equal(c.Text, Tok.Value.Decode(c.Ids));
            Assert.Equal(c.Text, Tok.Value.Decode(Tok.Value.Encode(c.Text)));
        }
        // Text the fixture does not hold: rare scripts, lone combining marks, control characters, astral letters.
        const string odd = "\u0000\u0001 x\u0301 \u200d\u200d 𝔘𝔫𝔦𝔠𝔬𝔡𝔢  \t\t\u3000全角　スペース ℌ𝔢𝔩𝔩𝔬 '''s 'S 'LL";
        Assert.Equal(odd, Tok.Value.Decode(Tok.Value.Encode(odd)));
    }

    [Fact]
    public void KnownIds()
    {
        Assert.Equal(new[] { 15496, 995 }, Tok.Value.Encode("Hello world"));
        Assert.Equal("<|endoftext|>", Tok.Value.Decode([50256]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok.Value.Decode([50257]));
    }

    [Theory]
    [InlineData("Hello  world", new[] { "Hello", " ", " world" })]
    [InlineData("it's they'll", new[] { "it", "'s", " they", "'ll" })]
    [InlineData("a\n\n b", new[] { "a", "\n\n", " b" })]
    [InlineData("x   ", new[] { "x", "   " })]
    [InlineData("42abc!? ", new[] { "42", "abc", "!?", " " })]
    [InlineData("\tx", new[] { "\t", "x" })]
    public void PreTokenizationFollowsGpt2Pattern(string text, string[] pieces)
    {
        Assert.Equal(pieces, Gpt2BpeTokenizer.PreTokenize(text).Select(p => text.Substring(p.Start, p.Length)));
    }
}
