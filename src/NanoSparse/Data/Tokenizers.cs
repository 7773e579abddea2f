namespace NanoSparse.Data;

/// <summary>The tokenizer kinds a dataset can use, by the name meta.json and the CLI give them.</summary>
public static class Tokenizers
{
    public const string Char = "char";
    public const string Gpt2 = "gpt2";
    public static readonly IReadOnlyList<string> Kinds = [Char, Gpt2, "cl100k_base", "o200k_base"];

    /// <summary>The canonical kind name; "tiktoken:cl100k_base" is accepted for "cl100k_base". Throws naming the known kinds.</summary>
    public static string Normalize(string kind)
    {
        ArgumentNullException.ThrowIfNull(kind);
        string k = kind.StartsWith("tiktoken:", StringComparison.Ordinal) ? kind["tiktoken:".Length..] : kind;
        if (!Kinds.Contains(k))
            throw new ArgumentException($"tokenizer kind \"{kind}\" is unknown; expected one of {string.Join(", ", Kinds.Select(x => $"\"{x}\""))}");
        return k;
    }

    /// <summary>
    /// A tokenizer with a fixed vocabulary (every kind but "char", whose vocabulary comes from the text).
    /// gpt2 reads encoder.json and vocab.bpe from <paramref name="gpt2Dir"/>, else from the cache (fetched once).
    /// </summary>
    public static ITokenizer CreatePretrained(string kind, string? gpt2Dir = null, string? cacheDir = null)
    {
        return Normalize(kind) switch
        {
            Char => throw new ArgumentException("the char tokenizer's vocabulary comes from a dataset's meta.json (prepare --tokenizer char), not from a name"),
            Gpt2 => Gpt2Vocabulary.Load(gpt2Dir ?? Gpt2Vocabulary.EnsureAvailable(cacheDir)),
            string enc => TiktokenTokenizer.Create(enc),
        };
    }
}
