using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Unicode;

namespace NanoSparse.Training;

/// <summary>
/// Checks JSON against the properties of the class it will be deserialized into, before System.Text.Json sees it,
/// so that a null, a wrong kind of value or invalid UTF-8 is reported as "file: field a.b is X, expected Y" rather
/// than as a NullReferenceException later or a message naming .NET types. Fields absent from the JSON keep their
/// defaults; fields the class does not have are ignored.
/// </summary>
public static class JsonShape
{
    /// <summary>Parses UTF-8 JSON text and checks it against <typeparamref name="T"/>; throws FormatException naming <paramref name="path"/> and the field.</summary>
    public static JsonObject Parse<T>(byte[] bytes, string path)
    {
        CheckUtf8(bytes, path);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(bytes, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            string where = e.LineNumber is long line ? $" at line {line + 1}, byte {e.BytePositionInLine + 1}" : "";
            throw new FormatException($"{path}: invalid JSON{where}: {e.Message.Split(" LineNumber:")[0].Split(". Path:")[0]}", e);
        }
        if (node is not JsonObject obj) throw new FormatException($"{path}: the JSON is {Describe(node)}, expected an object");
        Check(obj, typeof(T), path, "");
        return obj;
    }

    /// <summary>Invalid UTF-8 inside a string or a key, reported with the field that holds it and the byte offset.</summary>
    static void CheckUtf8(byte[] bytes, string path)
    {
        if (Utf8.IsValid(bytes)) return;
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        var names = new List<string>();   // the property names on the way to the current token
        string Field() => names.Count == 0 ? "(top level)" : string.Join('.', names);
        int BadOffset(ReadOnlySpan<byte> span, long start)
        {
            int valid = 0;
            while (valid < span.Length && Rune.DecodeFromUtf8(span[valid..], out _, out int used) == System.Buffers.OperationStatus.Done) valid += used;
            return (int)(start + valid);
        }
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName:
                        while (names.Count >= reader.CurrentDepth) names.RemoveAt(names.Count - 1);
                        if (!Utf8.IsValid(reader.ValueSpan))
                        {
                            int at = BadOffset(reader.ValueSpan, reader.TokenStartIndex + 1);
                            throw new FormatException($"{path}: a field name inside {Field()} is not valid UTF-8 (byte 0x{bytes[at]:X2} at offset {at}); expected UTF-8 text");
                        }
                        names.Add(reader.GetString()!);
                        break;
                    case JsonTokenType.String when !Utf8.IsValid(reader.ValueSpan):
                        {
                            int at = BadOffset(reader.ValueSpan, reader.TokenStartIndex + 1);
                            throw new FormatException($"{path}: field {Field()} is not valid UTF-8 (byte 0x{bytes[at]:X2} at offset {at}); expected UTF-8 text");
                        }
                    case JsonTokenType.EndObject:
                        while (names.Count > reader.CurrentDepth) names.RemoveAt(names.Count - 1);
                        break;
                }
            }
        }
        catch (JsonException) { }
        int first = BadOffset(bytes, 0);
        throw new FormatException($"{path}: not valid UTF-8 (byte 0x{bytes[first]:X2} at offset {first}{(names.Count > 0 ? ", after field " + Field() : "")}); expected UTF-8 JSON");
    }

    static void Check(JsonObject obj, Type type, string path, string prefix)
    {
        foreach (var prop in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            string? name = prop.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name;
            if (name is null || !obj.TryGetPropertyValue(name, out var node)) continue;
            CheckValue(node, prop.PropertyType, path, prefix + name);
        }
    }

    static void CheckValue(JsonNode? node, Type type, string path, string field)
    {
        var nullable = Nullable.GetUnderlyingType(type);
        if (node is null)
        {
            if (nullable is not null) return;
            throw new FormatException($"{path}: field {field} is null, expected {Expected(type)}");
        }
        type = nullable ?? type;
        bool ok = type switch
        {
            _ when type == typeof(string) => node.GetValueKind() == JsonValueKind.String,
            _ when type == typeof(bool) => node.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
            _ when type == typeof(int) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int _),
            _ when type == typeof(long) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out long _),
            _ when type == typeof(ulong) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out ulong _),
            _ when type == typeof(float) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out float f) && float.IsFinite(f),
            _ when type == typeof(double) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d) && double.IsFinite(d),
            _ when type.IsArray => node is JsonArray,
            _ when IsDictionary(type) => node is JsonObject,
            _ => node is JsonObject,
        };
        if (!ok) throw new FormatException($"{path}: field {field} is {Describe(node)}, expected {Expected(type)}");
        if (type.IsArray)
        {
            var a = (JsonArray)node;
            for (int i = 0; i < a.Count; i++) CheckValue(a[i], type.GetElementType()!, path, $"{field}[{i}]");
        }
        else if (IsDictionary(type))
        {
            foreach (var (key, value) in (JsonObject)node) CheckValue(value, type.GetGenericArguments()[1], path, $"{field}.{key}");
        }
        else if (!type.IsPrimitive && type != typeof(string))
        {
            Check((JsonObject)node, type, path, field + ".");
        }
    }

    static bool IsDictionary(Type t) => t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Dictionary<,>);

    static string Expected(Type t) =>
        t == typeof(string) ? "a string" :
        t == typeof(bool) ? "true or false" :
        t == typeof(int) ? "an integer (32-bit)" :
        t == typeof(long) ? "an integer (64-bit)" :
        t == typeof(ulong) ? "a non-negative integer (64-bit)" :
        t == typeof(float) || t == typeof(double) ? "a finite number" :
        t == typeof(string[]) ? "an array of strings" :
        t.IsArray ? "an array" :
        "an object";

    /// <summary>What a JSON value is, in words, with the value itself when it is short.</summary>
    public static string Describe(JsonNode? node)
    {
        if (node is null) return "null";
        string text = node.ToJsonString();
        if (text.Length > 40) text = text[..37] + "...";
        return node.GetValueKind() switch
        {
            JsonValueKind.Object => "an object",
            JsonValueKind.Array => "an array",
            JsonValueKind.String => "the string " + text,
            JsonValueKind.Number => "the number " + text,
            _ => text,
        };
    }
}
