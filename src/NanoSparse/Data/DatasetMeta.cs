using System.Text.Json;
using System.Text.Json.Nodes;

namespace NanoSparse.Data;

/// <summary>One source document of a dataset: where its tokens lie inside its split's .bin file.</summary>
/// <param name="Name">File name relative to the input (or the corpus's document id, e.g. "ca01").</param>
/// <param name="Genre">Genre name (Brown: "press: reportage"), or null when unknown.</param>
/// <param name="Split">"train" or "val".</param>
/// <param name="Offset">Index of the document's first token in its split's file.</param>
/// <param name="Count">Number of tokens.</param>
public sealed record DocumentInfo(string Name, string? Genre, string Split, long Offset, long Count);

/// <summary>
/// meta.json beside train.bin and val.bin: vocabulary, token dtype, tokenizer, token counts and documents.
/// <code>
/// { "vocab_size": 65, "dtype": "uint16", "tokenizer": { "kind": "char", "symbols": ["\n", " ", ...] },
///   "corpus": "brown", "train_tokens": 123, "val_tokens": 45,
///   "documents": [ { "name": "ca01", "genre": "press: reportage", "split": "train", "offset": 0, "count": 99 } ] }
/// </code>
/// Tokenizer kinds (<see cref="Tokenizers.Kinds"/>): "char" (symbols listed), "gpt2" (GPT-2's byte-level BPE; the
/// dataset folder holds copies of encoder.json and vocab.bpe), "cl100k_base" and "o200k_base" (tiktoken; their
/// vocabularies ship with the library). Only "char" has "symbols".
/// </summary>
public sealed class DatasetMeta
{
    public const string FileName = "meta.json";

    public int VocabSize { get; init; }
    public TokenDtype Dtype { get; init; }
    /// <summary>Tokenizer kind: "char", "gpt2", "cl100k_base" or "o200k_base".</summary>
    public string Tokenizer { get; init; } = "char";
    /// <summary>The char tokenizer's symbols in id order.</summary>
    public IReadOnlyList<string> Symbols { get; init; } = [];
    /// <summary>Corpus name ("brown") or the input's file/folder name.</summary>
    public string Corpus { get; init; } = "";
    public long TrainTokens { get; init; }
    public long ValTokens { get; init; }
    public IReadOnlyList<DocumentInfo> Documents { get; init; } = [];
    /// <summary>The folder <see cref="Load"/> read meta.json from (not stored in the file); gpt2 looks for its files there.</summary>
    public string? SourceDir { get; init; }

    /// <summary>
    /// The dataset's tokenizer. gpt2 reads encoder.json and vocab.bpe from <paramref name="gpt2Dir"/>, else from
    /// <see cref="SourceDir"/>, else from the cache (fetched once). Throws when its vocabulary size is not vocab_size.
    /// </summary>
    public ITokenizer CreateTokenizer(string? gpt2Dir = null, string? cacheDir = null)
    {
        string kind = Tokenizers.Normalize(Tokenizer);
        if (kind == Tokenizers.Char) return new CharTokenizer(Symbols);
        if (kind == Tokenizers.Gpt2 && gpt2Dir is null && Gpt2Vocabulary.IsPresent(SourceDir)) gpt2Dir = SourceDir;
        ITokenizer tok = Tokenizers.CreatePretrained(kind, gpt2Dir, cacheDir);
        if (tok.VocabSize != VocabSize)
            throw new InvalidDataException(
                $"{(SourceDir is null ? "" : Path.Combine(SourceDir, FileName) + ": ")}vocab_size is {VocabSize} but the {kind} tokenizer{(gpt2Dir is null ? "" : $" from {gpt2Dir}")} has {tok.VocabSize} tokens");
        return tok;
    }

    /// <summary>Token count of a split ("train" or "val").</summary>
    public long TokensOf(string split) => split switch
    {
        "train" => TrainTokens,
        "val" => ValTokens,
        _ => throw new ArgumentException($"split \"{split}\" is not one of \"train\", \"val\"", nameof(split)),
    };

    /// <summary>Distinct genres of the documents, in order of first appearance.</summary>
    public IReadOnlyList<string> Genres => Documents.Select(d => d.Genre).OfType<string>().Distinct().ToArray();

    public JsonObject ToJson()
    {
        var docs = new JsonArray();
        foreach (var d in Documents)
            docs.Add(new JsonObject
            {
                ["name"] = d.Name, ["genre"] = d.Genre, ["split"] = d.Split, ["offset"] = d.Offset, ["count"] = d.Count,
            });
        var symbols = new JsonArray();
        foreach (string s in Symbols) symbols.Add(JsonValue.Create(s)); // explicit: no reflection (trimming/AOT safe)
        var tokenizer = new JsonObject { ["kind"] = Tokenizer };
        if (Tokenizer == Tokenizers.Char) tokenizer["symbols"] = symbols;
        return new JsonObject
        {
            ["vocab_size"] = VocabSize,
            ["dtype"] = Dtype.ToJsonName(),
            ["tokenizer"] = tokenizer,
            ["corpus"] = Corpus,
            ["train_tokens"] = TrainTokens,
            ["val_tokens"] = ValTokens,
            ["documents"] = docs,
        };
    }

    /// <summary>Validates, then writes atomically (temporary file in the same folder, flush, rename).</summary>
    public void Save(string path)
    {
        Validate(path);
        JsonObject json = ToJson();
        AtomicFile.Write(path, fs =>
        {
            using var writer = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            json.WriteTo(writer);
        });
    }

    /// <summary>Reads and validates meta.json; every error names the file, the field, the value found and the one expected.</summary>
    public static DatasetMeta Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: dataset metadata file not found", path);
        JsonNode? root;
        try { root = JsonNode.Parse(NanoSparse.IO.JsonText.ReadFile(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        return FromJson(root, path, Path.GetDirectoryName(Path.GetFullPath(path)));
    }

    public static DatasetMeta FromJson(JsonNode? root, string path, string? sourceDir = null)
    {
        if (root is not JsonObject obj) throw Bad(path, "(root)", Kind(root), "a JSON object");

        int vocab = (int)GetInteger(obj, "vocab_size", path, 1, int.MaxValue);
        string dtypeName = GetString(obj, "dtype", path);
        if (!TokenDtypes.TryParse(dtypeName, out TokenDtype dtype))
            throw Bad(path, "dtype", $"\"{dtypeName}\"", "\"uint16\" or \"uint32\"");
        if (dtype == TokenDtype.UInt16 && vocab > 65536)
            throw Bad(path, "vocab_size", vocab.ToString(), "at most 65536 with dtype \"uint16\" (use \"uint32\")");

        if (Get(obj, "tokenizer", path) is not JsonObject tok) throw Bad(path, "tokenizer", Kind(obj["tokenizer"]), "an object");
        string kind = GetString(tok, "kind", path, "tokenizer.");
        try { kind = Tokenizers.Normalize(kind); }
        catch (ArgumentException) { throw Bad(path, "tokenizer.kind", $"\"{kind}\"", "one of " + string.Join(", ", Tokenizers.Kinds.Select(k => $"\"{k}\""))); }
        string[] symbols = kind == Tokenizers.Char ? ReadSymbols(tok, path, vocab) : [];

        string corpus = GetString(obj, "corpus", path);
        long train = GetInteger(obj, "train_tokens", path, 0, long.MaxValue);
        long val = GetInteger(obj, "val_tokens", path, 0, long.MaxValue);

        if (Get(obj, "documents", path) is not JsonArray docArray) throw Bad(path, "documents", Kind(obj["documents"]), "an array");
        var docs = new DocumentInfo[docArray.Count];
        for (int i = 0; i < docs.Length; i++)
        {
            string p = $"documents[{i}].";
            if (docArray[i] is not JsonObject d) throw Bad(path, $"documents[{i}]", Kind(docArray[i]), "an object");
            string name = GetString(d, "name", path, p);
            string? genre = d.ContainsKey("genre") && d["genre"] is null ? null : GetString(d, "genre", path, p);
            string split = GetString(d, "split", path, p);
            if (split is not ("train" or "val")) throw Bad(path, p + "split", $"\"{split}\"", "\"train\" or \"val\"");
            long offset = GetInteger(d, "offset", path, 0, long.MaxValue, p);
            long count = GetInteger(d, "count", path, 0, long.MaxValue, p);
            long total = split == "train" ? train : val;
            if (offset + count > total)
                throw Bad(path, p + "offset", $"{offset} (+ count {count})", $"offset + count <= {split}_tokens ({total})");
            docs[i] = new DocumentInfo(name, genre, split, offset, count);
        }

        return new DatasetMeta
        {
            VocabSize = vocab, Dtype = dtype, Tokenizer = kind, Symbols = symbols, Corpus = corpus,
            TrainTokens = train, ValTokens = val, Documents = docs, SourceDir = sourceDir,
        };
    }

    static string[] ReadSymbols(JsonObject tok, string path, int vocab)
    {
        if (Get(tok, "symbols", path, "tokenizer.") is not JsonArray symArray)
            throw Bad(path, "tokenizer.symbols", Kind(tok["symbols"]), "an array of strings");
        var symbols = new string[symArray.Count];
        for (int i = 0; i < symbols.Length; i++)
        {
            if (symArray[i] is not JsonValue v || !v.TryGetValue(out string? s))
                throw Bad(path, $"tokenizer.symbols[{i}]", Kind(symArray[i]), "a string");
            symbols[i] = s;
        }
        if (symbols.Length != vocab)
            throw Bad(path, "vocab_size", vocab.ToString(), $"{symbols.Length}, the number of tokenizer.symbols");
        try { _ = new CharTokenizer(symbols); }
        catch (ArgumentException e) { throw new InvalidDataException($"{path}: field \"tokenizer.symbols\": {e.Message}", e); }

        return symbols;
    }

    // Through text, so values are checked exactly as Load will see them.
    void Validate(string path) => FromJson(JsonNode.Parse(ToJson().ToJsonString()), path);

    static JsonNode? Get(JsonObject obj, string field, string path, string prefix = "")
    {
        if (!obj.TryGetPropertyValue(field, out JsonNode? node))
            throw new InvalidDataException($"{path}: required field \"{prefix}{field}\" is missing");
        return node;
    }

    static string GetString(JsonObject obj, string field, string path, string prefix = "")
    {
        JsonNode? node = Get(obj, field, path, prefix);
        if (node is JsonValue v && v.TryGetValue(out string? s)) return s;
        throw Bad(path, prefix + field, Kind(node), "a string");
    }

    static long GetInteger(JsonObject obj, string field, string path, long min, long max, string prefix = "")
    {
        JsonNode? node = Get(obj, field, path, prefix);
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue(out long x) || (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < 9e15 && (x = (long)d) == x))
            {
                if (x < min || x > max) throw Bad(path, prefix + field, x.ToString(), $"an integer in [{min}, {max}]");
                return x;
            }
        }
        throw Bad(path, prefix + field, Kind(node), "an integer");
    }

    static string Kind(JsonNode? node) => node switch
    {
        null => "null",
        JsonValue v => v.ToJsonString(),
        JsonArray => "an array",
        JsonObject => "an object",
        _ => node.ToJsonString(),
    };

    static InvalidDataException Bad(string path, string field, string found, string expected) =>
        new($"{path}: field \"{field}\" is {found}; expected {expected}");
}
