namespace NanoSparse.Data;

/// <summary>
/// Decodes a stream of token ids piece by piece for printing while sampling. Byte-level tokenizers (gpt2, tiktoken)
/// can split one UTF-8 character across tokens; decoding such a token alone gives U+FFFD. Pending ids are held back
/// while their text ends in U+FFFD (up to 4 tokens, the longest UTF-8 sequence), so the pieces concatenate to the
/// text of the whole sequence.
/// </summary>
public sealed class StreamingDecoder(ITokenizer tokenizer)
{
    private readonly List<int> _pending = new(8);
    const int MaxHeld = 4;

    /// <summary>Adds one id; returns the text that is now complete ("" while a character is still cut).</summary>
    public string Push(int id)
    {
        _pending.Add(id);
        string text = tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        if (text.Length > 0 && text[^1] == '\uFFFD' && _pending.Count < MaxHeld) return "";
        _pending.Clear();
        return text;
    }

    /// <summary>The text of ids still held back (a character that never completed), then empties the buffer.</summary>
    public string Flush()
    {
        string text = _pending.Count == 0 ? "" : tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        _pending.Clear();
        return text;
    }
}
