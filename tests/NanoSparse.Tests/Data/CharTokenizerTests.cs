using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public class CharTokenizerTests
{
    [Fact]
    public void Vocabulary_is_sorted_distinct_characters_like_nanoGPT()
    {
        var tok = CharTokenizer.FromText("hello world\n");
        // Python: sorted(set("hello world\n")) == ['\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
        Assert.Equal(["\n", " ", "d", "e", "h", "l", "o", "r", "w"], tok.Symbols);
        Assert.Equal(9, tok.VocabSize);
        Assert.Equal("char", tok.Kind);
        Assert.Equal([4, 3, 5, 5, 6], tok.Encode("hello"));
    }

    [Fact]
    public void Encode_then_decode_returns_the_text_including_astral_characters()
    {
        string text = "naïve café 😀 𝄞 text\r\n";
        var tok = CharTokenizer.FromText(text);
        int[] ids = tok.Encode(text);
        Assert.Equal(text.EnumerateRunes().Count(), ids.Length);
        Assert.Equal(text, tok.Decode(ids));
    }

    [Fact]
    public void Encode_names_the_unknown_character_and_its_position()
    {
        var tok = CharTokenizer.FromText("abc");
        var e = Assert.Throws<ArgumentException>(() => tok.Encode("abxc"));
        Assert.Contains("'x'", e.Message);
        Assert.Contains("position 2", e.Message);
    }

    [Fact]
    public void Decode_names_an_id_out_of_range()
    {
        var tok = CharTokenizer.FromText("abc");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([0, 3]));
        Assert.Contains("token id 3", e.Message);
        Assert.Contains("position 1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void Duplicate_symbols_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new CharTokenizer(["a", "b", "a"]));
        Assert.Contains("repeats", e.Message);
        Assert.Throws<ArgumentException>(() => new CharTokenizer(["ab"]));
    }
}
