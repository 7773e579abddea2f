using System.Text.Json;
using System.Text.Json.Nodes;

namespace NanoSparse.IO;

/// <summary>
/// The architecture numbers the interop formats need (a subset of NanoSparse.Nn.GptConfig, plus the GELU variant
/// GPT-2 checkpoints use). Kept separate from GptConfig so importing/exporting files needs no model instance.
/// </summary>
public sealed record GptDims(int NLayer, int NHead, int NEmbd, int BlockSize, int VocabSize, bool Bias, string Activation = GptDims.GeluExact)
{
    /// <summary>Exact erf GELU (nanoGPT's nn.GELU(), NanoSparse's Gpt).</summary>
    public const string GeluExact = "gelu";
    /// <summary>tanh-approximated GELU used by GPT-2 (Hugging Face "gelu_new"); GptConfig's name for it.</summary>
    public const string GeluTanh = "gelu_tanh";

    /// <summary>
    /// The activation for a name found in a config: "gelu" (exact), or "gelu_tanh" and the Hugging Face names of the
    /// same function ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"). Throws naming the source and the names accepted.
    /// </summary>
    public static string ParseActivation(string name, string source) => name switch
    {
        GeluExact => GeluExact,
        GeluTanh or "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => GeluTanh,
        _ => throw new InvalidDataException($"{source}: activation '{name}' is not supported (expected gelu, or gelu_tanh / gelu_new for GPT-2's tanh approximation)"),
    };

    public void Validate(string source)
    {
        void Positive(string field, int v) { if (v <= 0) throw new InvalidDataException($"{source}: {field} ({v}) must be positive"); }
        Positive("n_layer", NLayer);
        Positive("n_head", NHead);
        Positive("n_embd", NEmbd);
        Positive("block_size", BlockSize);
        Positive("vocab_size", VocabSize);
        if (NEmbd % NHead != 0) throw new InvalidDataException($"{source}: n_embd ({NEmbd}) must be divisible by n_head ({NHead})");
    }

    /// <summary>Reads nanoGPT's model_args JSON: n_layer, n_head, n_embd, block_size, vocab_size, bias (dropout ignored).</summary>
    public static GptDims ReadNanoGptConfig(string path)
    {
        var root = ReadObject(path);
        var dims = new GptDims(GetInt(root, "n_layer", path), GetInt(root, "n_head", path), GetInt(root, "n_embd", path),
            GetInt(root, "block_size", path), GetInt(root, "vocab_size", path), GetBool(root, "bias", path, fallback: true),
            root["activation"] is JsonValue a ? ParseActivation(a.GetValue<string>(), $"config '{path}'") : GeluExact);
        dims.Validate($"config '{path}'");
        return dims;
    }

    /// <summary>Reads a Hugging Face GPT-2 config.json: n_layer, n_head, n_embd, n_positions, vocab_size, layer_norm_epsilon.</summary>
    public static GptDims ReadGpt2Config(string path)
    {
        var root = ReadObject(path);
        int nEmbd = GetInt(root, "n_embd", path);
        if (root["n_inner"] is JsonValue inner && inner.GetValueKind() == JsonValueKind.Number && inner.GetValue<int>() != 4 * nEmbd)
            throw new InvalidDataException($"config '{path}': n_inner ({inner}) must be 4*n_embd ({4 * nEmbd}) or null");
        if (root["layer_norm_epsilon"] is JsonValue eps && Math.Abs(eps.GetValue<double>() - 1e-5) > 1e-12)
            throw new InvalidDataException($"config '{path}': layer_norm_epsilon ({eps}) must be 1e-5, the value NanoSparse's LayerNorm uses");
        // GPT-2's config.json says "gelu_new"; a missing field means the library default, which is also gelu_new.
        string act = root["activation_function"] is JsonValue af ? ParseActivation(af.GetValue<string>(), $"config '{path}'") : GeluTanh;
        var dims = new GptDims(GetInt(root, "n_layer", path), GetInt(root, "n_head", path), nEmbd,
            GetInt(root, "n_positions", path), GetInt(root, "vocab_size", path), Bias: true, act);
        dims.Validate($"config '{path}'");
        return dims;
    }

    /// <summary>NanoSparse's config.json (GptConfig in snake_case); "activation" only when it is not the exact GELU.</summary>
    public JsonObject ToNanoSparseJson()
    {
        var o = new JsonObject
        {
            ["n_layer"] = NLayer, ["n_head"] = NHead, ["n_embd"] = NEmbd, ["block_size"] = BlockSize,
            ["vocab_size"] = VocabSize, ["bias"] = Bias, ["dropout"] = 0.0,
        };
        if (Activation != GeluExact) o["activation"] = Activation;
        return o;
    }

    /// <summary>nanoGPT's model_args.</summary>
    public JsonObject ToNanoGptJson() => new()
    {
        ["n_layer"] = NLayer, ["n_head"] = NHead, ["n_embd"] = NEmbd, ["block_size"] = BlockSize,
        ["vocab_size"] = VocabSize, ["bias"] = Bias, ["dropout"] = 0.0,
    };

    /// <summary>A Hugging Face GPT2LMHeadModel config.json.</summary>
    public JsonObject ToGpt2Json() => new()
    {
        ["architectures"] = new JsonArray("GPT2LMHeadModel"),
        ["model_type"] = "gpt2",
        ["activation_function"] = Activation == GeluExact ? "gelu" : "gelu_new",
        ["n_layer"] = NLayer, ["n_head"] = NHead, ["n_embd"] = NEmbd, ["n_positions"] = BlockSize, ["n_ctx"] = BlockSize,
        ["vocab_size"] = VocabSize, ["layer_norm_epsilon"] = 1e-5, ["n_inner"] = null,
        ["attn_pdrop"] = 0.0, ["embd_pdrop"] = 0.0, ["resid_pdrop"] = 0.0, ["initializer_range"] = 0.02,
        ["tie_word_embeddings"] = true,
    };

    /// <summary>Writes JSON atomically (temp file in the same folder, flush, rename).</summary>
    public static void WriteJsonAtomic(string path, JsonNode node)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                using (var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true }))
                    node.WriteTo(w);
                fs.WriteByte((byte)'\n');
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch { }
            throw;
        }
    }

    internal static JsonObject ReadObject(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config file '{path}' does not exist", path);
        JsonNode? node;
        try { node = JsonNode.Parse(JsonText.ReadFile(path)); }
        catch (JsonException e) { throw new InvalidDataException($"config '{path}' is not valid JSON: {e.Message}"); }
        return node as JsonObject ?? throw new InvalidDataException($"config '{path}' must hold a JSON object");
    }

    internal static int GetInt(JsonObject o, string field, string path)
    {
        if (o[field] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number)
            throw new InvalidDataException($"config '{path}': field '{field}' is missing or not a number (found {o[field]?.ToJsonString() ?? "nothing"})");
        double d = v.GetValue<double>();
        if (d != Math.Floor(d) || d > int.MaxValue || d < int.MinValue)
            throw new InvalidDataException($"config '{path}': field '{field}' must be an integer (found {d})");
        return (int)d;
    }

    internal static bool GetBool(JsonObject o, string field, string path, bool fallback)
    {
        if (o[field] is null) return fallback;
        if (o[field] is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        throw new InvalidDataException($"config '{path}': field '{field}' must be true or false (found {o[field]!.ToJsonString()})");
    }
}
