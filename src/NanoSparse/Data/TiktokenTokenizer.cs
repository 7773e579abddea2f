using Microsoft.ML.Tokenizers;

namespace NanoSparse.Data;

/// <summary>
/// OpenAI's tiktoken encodings cl100k_base (GPT-3.5/4) and o200k_base (GPT-4o), through Microsoft.ML.Tokenizers with
/// the vocabularies shipped in its Data packages (no download). Special tokens written in the text, such as
/// "&lt;|endoftext|&gt;", encode to their special ids.
/// </summary>
public sealed class TiktokenTokenizer : ITokenizer
{
    public static readonly IReadOnlyList<string> Encodings = ["cl100k_base", "o200k_base"];

    private readonly Microsoft.ML.Tokenizers.TiktokenTokenizer _inner;
    private readonly int _maxRankId;
    private readonly HashSet<int> _specialIds;

    /// <summary>"cl100k_base" or "o200k_base", the name meta.json and the CLI use.</summary>
    public string Kind => Encoding;
    public string Encoding { get; }
    /// <summary>One more than the largest id (tiktoken's n_vocab): 100277 for cl100k_base, 200019 for o200k_base.</summary>
    public int VocabSize { get; }
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    private TiktokenTokenizer(string encoding, Microsoft.ML.Tokenizers.TiktokenTokenizer inner)
    {
        Encoding = encoding;
        _inner = inner;
        // Ordinary tokens are the ranks 0..N-1 of the encoding's .tiktoken file (ML.Tokenizers does not expose them).
        _maxRankId = encoding == "cl100k_base" ? 100255 : 199997;
        SpecialTokens = inner.SpecialTokens ?? new Dictionary<string, int>();
        _specialIds = SpecialTokens.Values.ToHashSet();
        VocabSize = Math.Max(_maxRankId, _specialIds.Count > 0 ? _specialIds.Max() : 0) + 1;
    }

    /// <summary>Creates a tokenizer for "cl100k_base" or "o200k_base".</summary>
    public static TiktokenTokenizer Create(string encoding)
    {
        if (!Encodings.Contains(encoding))
            throw new ArgumentException($"unknown tiktoken encoding '{encoding}' (expected one of: {string.Join(", ", Encodings)})", nameof(encoding));
        return new TiktokenTokenizer(encoding, Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForEncoding(encoding));
    }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        // No normalization: the ids must decode back to exactly this text.
        var ids = _inner.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false);
        return ids as int[] ?? ids.ToArray();
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var list = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if (id < 0 || (id > _maxRankId && !_specialIds.Contains(id)))
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} (position {i}) is not in the {Encoding} vocabulary");
            list[i] = id;
        }
        return _inner.Decode(list);
    }
}
