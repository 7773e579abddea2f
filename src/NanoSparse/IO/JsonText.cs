using System.Buffers;
using System.Text;

namespace NanoSparse.IO;

/// <summary>
/// The bytes of a JSON document checked before a parser sees them. JSON exchanged between systems is UTF-8
/// (RFC 8259 §8.1), and every JSON file NanoSparse reads (safetensors headers, meta.json, config.json, train configs,
/// tokenizer vocabularies) must be. System.Text.Json accepts invalid bytes and lone surrogate escapes ("\udc00")
/// until a string is read, then throws a message that names no file; File.ReadAllText silently turns invalid bytes
/// into U+FFFD. <see cref="Check"/> finds both up front and names the file, the line and the byte offset.
/// </summary>
public static class JsonText
{
    static readonly byte[] Bom = [0xEF, 0xBB, 0xBF];
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads a JSON file, checks it (<see cref="Check"/>) and returns its bytes without a UTF-8 byte-order mark.</summary>
    public static byte[] ReadFile(string path, string what = "the JSON text")
    {
        byte[] bytes = File.ReadAllBytes(path);
        Check(bytes, path, what);
        return bytes.AsSpan().StartsWith(Bom) ? bytes[Bom.Length..] : bytes;
    }

    /// <summary>Reads a JSON file as a string (checked as <see cref="ReadFile"/>).</summary>
    public static string ReadAllText(string path, string what = "the JSON text") => StrictUtf8.GetString(ReadFile(path, what));

    /// <summary>
    /// Throws InvalidDataException "{path}: {what} is not valid UTF-8: ..." naming the first invalid byte (value,
    /// offset, line), or "... has a lone UTF-16 surrogate escape \uXXXX at ..." for a string escape that no valid
    /// character has.
    /// </summary>
    public static void Check(ReadOnlySpan<byte> bytes, string path, string what = "the JSON text")
    {
        CheckUtf8(bytes, path, what);
        int lone = FirstLoneSurrogateEscape(bytes, out string escape);
        if (lone >= 0)
            throw new InvalidDataException(
                $"{path}: {what} has the string escape {escape} at offset {lone} (line {LineOf(bytes, lone)}), a lone UTF-16 surrogate " +
                "that encodes no character; expected a high surrogate \\uD800-\\uDBFF followed by a low one \\uDC00-\\uDFFF");
    }

    /// <summary>Throws InvalidDataException "{path}: {what} is not valid UTF-8: byte 0xFF at offset 12 (line 1) ...".</summary>
    public static void CheckUtf8(ReadOnlySpan<byte> bytes, string path, string what = "the text")
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return;
        int offset = FirstInvalidUtf8(bytes);
        throw new InvalidDataException(
            $"{path}: {what} is not valid UTF-8: byte 0x{bytes[offset]:X2} at offset {offset} (line {LineOf(bytes, offset)}) " +
            "does not begin or continue a UTF-8 sequence; expected UTF-8 text");
    }

    /// <summary>Offset of the first byte that is not part of a well-formed UTF-8 sequence (bytes.Length if none).</summary>
    static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed);
            if (status != OperationStatus.Done) return i;
            i += consumed;
        }
        return bytes.Length;
    }

    /// <summary>
    /// Offset of the first \uXXXX escape inside a JSON string that is a high surrogate not followed by a low-surrogate
    /// escape, or a low surrogate not preceded by a high one; -1 if none. Text outside strings is skipped, so a
    /// malformed document is left to the parser to describe.
    /// </summary>
    static int FirstLoneSurrogateEscape(ReadOnlySpan<byte> bytes, out string escape)
    {
        escape = "";
        bool inString = false;
        for (int i = 0; i < bytes.Length; i++)
        {
            byte b = bytes[i];
            if (!inString)
            {
                if (b == (byte)'"') inString = true;
                continue;
            }
            if (b == (byte)'"') { inString = false; continue; }
            if (b != (byte)'\\' || i + 1 >= bytes.Length) continue;
            if (bytes[i + 1] != (byte)'u') { i++; continue; }   // \" \\ \n ...: skip the escaped character
            if (!TryHex4(bytes, i + 2, out int unit)) { i++; continue; }
            if (unit is >= 0xD800 and <= 0xDBFF)
            {
                if (i + 12 <= bytes.Length && bytes[i + 6] == (byte)'\\' && bytes[i + 7] == (byte)'u'
                    && TryHex4(bytes, i + 8, out int low) && low is >= 0xDC00 and <= 0xDFFF)
                {
                    i += 11;   // a valid pair \uD8xx\uDCxx
                    continue;
                }
                escape = Encoding.ASCII.GetString(bytes.Slice(i, 6));
                return i;
            }
            if (unit is >= 0xDC00 and <= 0xDFFF)
            {
                escape = Encoding.ASCII.GetString(bytes.Slice(i, 6));
                return i;
            }
            i += 5;
        }
        return -1;
    }

    static bool TryHex4(ReadOnlySpan<byte> bytes, int start, out int value)
    {
        value = 0;
        if (start + 4 > bytes.Length) return false;
        for (int k = 0; k < 4; k++)
        {
            int d = bytes[start + k] switch
            {
                >= (byte)'0' and <= (byte)'9' and var c => c - '0',
                >= (byte)'a' and <= (byte)'f' and var c => c - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' and var c => c - 'A' + 10,
                _ => -1,
            };
            if (d < 0) return false;
            value = value * 16 + d;
        }
        return true;
    }

    static int LineOf(ReadOnlySpan<byte> bytes, int offset) => bytes[..offset].Count((byte)'\n') + 1;
}
