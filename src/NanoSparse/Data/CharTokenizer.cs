using System.Text;

namespace NanoSparse.Data;

/// <summary>
/// Character-level tokenizer as in nanoGPT's shakespeare_char/prepare.py: the vocabulary is the sorted set of
/// distinct characters of the corpus and a character's id is its rank. A "character" here is a Unicode scalar
/// value (a <see cref="Rune"/>), so text outside the Basic Multilingual Plane round-trips; symbols are sorted by
/// code point, which for BMP text is the order Python's sorted(set(text)) gives.
/// </summary>
public sealed class CharTokenizer : ITokenizer
{
    readonly string[] _symbols;
    readonly Dictionary<int, int> _idOfCodePoint;
    // Fast path for the common case of BMP characters: id by UTF-16 code unit, -1 when absent.
    readonly int[] _idOfBmp = new int[char.MaxValue + 1];

    public string Kind => "char";
    public int VocabSize => _symbols.Length;
    public IReadOnlyList<string> Symbols => _symbols;

    /// <summary>Tokenizer over the given symbols, each exactly one Unicode scalar value, distinct.</summary>
    public CharTokenizer(IEnumerable<string> symbols)
    {
        _symbols = symbols.ToArray();
        _idOfCodePoint = new Dictionary<int, int>(_symbols.Length);
        Array.Fill(_idOfBmp, -1);
        for (int i = 0; i < _symbols.Length; i++)
        {
            string s = _symbols[i];
            if (s is null || Rune.DecodeFromUtf16(s, out Rune rune, out int used) != System.Buffers.OperationStatus.Done || used != s.Length)
                throw new ArgumentException($"tokenizer symbol {i} ({Describe(s)}) must be exactly one Unicode character");
            if (!_idOfCodePoint.TryAdd(rune.Value, i))
                throw new ArgumentException($"tokenizer symbol {i} ({Describe(s)}) repeats symbol {_idOfCodePoint[rune.Value]}");
            if (rune.IsBmp) _idOfBmp[rune.Value] = i;
        }
    }

    /// <summary>Vocabulary = sorted distinct characters of <paramref name="text"/>.</summary>
    public static CharTokenizer FromText(string text) => FromTexts([text]);

    /// <summary>Vocabulary = sorted distinct characters of all <paramref name="texts"/>.</summary>
    public static CharTokenizer FromTexts(IEnumerable<string> texts)
    {
        var seen = new bool[char.MaxValue + 1];
        var astral = new SortedSet<int>();
        foreach (string text in texts)
        {
            foreach (char c in text)
                if (!char.IsSurrogate(c)) seen[c] = true;
            if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0)
            {
                ThrowOnLoneSurrogate(text);
                foreach (Rune r in text.EnumerateRunes())
                    if (!r.IsBmp) astral.Add(r.Value);
            }
        }
        var symbols = new List<string>();
        for (int c = 0; c <= char.MaxValue; c++)
            if (seen[c]) symbols.Add(((char)c).ToString());
        foreach (int cp in astral) symbols.Add(char.ConvertFromUtf32(cp));
        return new CharTokenizer(symbols);
    }

    static void ThrowOnLoneSurrogate(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (char.IsSurrogate(text[i]))
                throw new ArgumentException($"text has a lone surrogate U+{(int)text[i]:X4} at position {i}; it is not valid Unicode text");
        }
    }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            int id;
            if (!char.IsSurrogate(c))
            {
                id = _idOfBmp[c];
            }
            else
            {
                if (Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used) != System.Buffers.OperationStatus.Done)
                    throw new ArgumentException($"text has a lone surrogate U+{(int)c:X4} at position {i}; it is not valid Unicode text");
                id = _idOfCodePoint.GetValueOrDefault(r.Value, -1);
                if (id < 0) ThrowUnknown(text.Substring(i, used), i);
                i += used - 1;
            }
            if (id < 0) ThrowUnknown(c.ToString(), i);
            ids.Add(id);
        }
        return ids.ToArray();
    }

    void ThrowUnknown(string symbol, int position) =>
        throw new ArgumentException(
            $"character {Describe(symbol)} at position {position} is not in the tokenizer's vocabulary of {VocabSize} symbols");

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)_symbols.Length)
                throw new ArgumentOutOfRangeException(nameof(ids),
                    $"token id {id} at position {i} is outside the vocabulary [0, {VocabSize})");
            sb.Append(_symbols[id]);
        }
        return sb.ToString();
    }

    internal static string Describe(string? s)
    {
        if (s is null) return "null";
        if (s.Length == 0) return "\"\"";
        var sb = new StringBuilder("'");
        foreach (Rune r in s.EnumerateRunes())
            sb.Append(Rune.IsControl(r) || Rune.IsWhiteSpace(r) ? $"\\u{r.Value:X4}" : r.ToString());
        sb.Append('\'');
        if (s.Length > 0 && Rune.DecodeFromUtf16(s, out Rune first, out _) == System.Buffers.OperationStatus.Done)
            sb.Append($" (U+{first.Value:X4})");
        return sb.ToString();
    }
}
