using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// A synthetic long-range probe in a char vocabulary: key-value retrieval at a controlled distance.
/// A record is "&amp;KEY:VALUE" (KEY <see cref="KeyLength"/> lowercase letters, VALUE <see cref="ValueLength"/> digits;
/// by default three and four) written over running text; later the query "&amp;KEY:" asks for the value again. A model
/// that keeps the record in reach predicts the digits after the query; one that lost it (a short window, an evicted
/// cache) can only guess (chance 10^−ValueLength for all digits). A short format (one-letter keys, two digits) is an
/// induction-head task a small model learns in a few hundred steps: at "&amp;k:" copy what followed the last "&amp;k:".
/// Distractor records with other keys sit between record and query, so copying the most recent record fails: the key
/// must be matched (an induction-head task).
/// distance = tokens between the end of the record and the start of the query.
/// </summary>
public sealed class RetrievalProbe : IRetrievalTask
{
    public const int DefaultKeyLength = 3, DefaultValueLength = 4;
    /// <summary>Letters per key and digits per value.</summary>
    public int KeyLength { get; }
    public int ValueLength { get; }
    /// <summary>"&amp;KEY:VALUE".</summary>
    public int RecordLength => 1 + KeyLength + 1 + ValueLength;
    /// <summary>"&amp;KEY:".</summary>
    public int QueryLength => 1 + KeyLength + 1;
    public double ChancePerToken => 0.1;
    public string AnswerTokenName => "digit";
    const char Marker = '&', Separator = ':';

    readonly int _marker, _separator;
    readonly int[] _letters = new int[26], _digits = new int[10];

    /// <summary>The probe over a char vocabulary; it must hold '&amp;', ':', 'a'–'z' and '0'–'9'. Keys of
    /// <paramref name="keyLength"/> letters in [1, 8], values of <paramref name="valueLength"/> digits in [1, 8].</summary>
    public RetrievalProbe(IReadOnlyList<string> symbols, string nameForErrors = "vocabulary", int keyLength = DefaultKeyLength, int valueLength = DefaultValueLength)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        if (keyLength is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(keyLength), keyLength, $"key length ({keyLength}) must lie in [1, 8] letters");
        if (valueLength is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(valueLength), valueLength, $"value length ({valueLength}) must lie in [1, 8] digits");
        KeyLength = keyLength;
        ValueLength = valueLength;
        int Id(char c)
        {
            for (int i = 0; i < symbols.Count; i++)
                if (symbols[i].Length == 1 && symbols[i][0] == c) return i;
            throw new ArgumentException($"{nameForErrors}: the retrieval probe needs the character '{c}', which is not among its {symbols.Count} symbols (a char vocabulary with &, :, a-z and 0-9, such as Brown's)");
        }
        _marker = Id(Marker);
        _separator = Id(Separator);
        for (int i = 0; i < 26; i++) _letters[i] = Id((char)('a' + i));
        for (int i = 0; i < 10; i++) _digits[i] = Id((char)('0' + i));
    }

    /// <summary>The largest distance a window of seqLen positions leaves room for (record, gap, query, answer).</summary>
    public int MaxDistance(int seqLen) => seqLen + 1 - RecordLength - QueryLength - ValueLength;

    /// <summary>
    /// One probe sequence of seqLen + 1 tokens written into <paramref name="tokens"/> (which holds running text on
    /// entry: the filler): the record ends <paramref name="distance"/> tokens before the query, the query and answer
    /// end the sequence, and up to <paramref name="distractors"/> records with other keys are written at random
    /// places before the query. Returns the index in tokens of the answer's first digit: x = tokens[..^1] predicts
    /// it at index answer − 1.
    /// </summary>
    public int Write(Span<int> tokens, int distance, int distractors, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        int seqLen = tokens.Length - 1;
        if (distance < 0 || distance > MaxDistance(seqLen))
            throw new ArgumentOutOfRangeException(nameof(distance), distance, $"distance must lie in [0, {MaxDistance(seqLen)}] for a window of {seqLen} tokens");
        int answer = tokens.Length - ValueLength, query = answer - QueryLength, record = query - distance - RecordLength;
        Span<int> key = stackalloc int[KeyLength], value = stackalloc int[ValueLength];
        for (int i = 0; i < KeyLength; i++) key[i] = rng.NextInt(26);
        for (int i = 0; i < ValueLength; i++) value[i] = rng.NextInt(10);
        // distractors first (the target's record and query overwrite any overlap), each with a different key
        Span<int> otherKey = stackalloc int[KeyLength], otherValue = stackalloc int[ValueLength];
        for (int d = 0; d < distractors && query >= RecordLength; d++)
        {
            int at = rng.NextInt(query - RecordLength + 1);
            if (at + RecordLength > record && at < record + RecordLength) continue;   // would overlap the target record
            do for (int i = 0; i < KeyLength; i++) otherKey[i] = rng.NextInt(26);
            while (otherKey.SequenceEqual(key));
            for (int i = 0; i < ValueLength; i++) otherValue[i] = rng.NextInt(10);
            WriteRecord(tokens.Slice(at, RecordLength), otherKey, otherValue);
        }
        WriteRecord(tokens.Slice(record, RecordLength), key, value);
        WriteRecord(tokens.Slice(query, QueryLength + ValueLength), key, value);
        return answer;
    }

    static bool Pending(List<(int At, int[] Key, int[] Value)> pending, ReadOnlySpan<int> key)
    {
        foreach (var p in pending)
            if (key.SequenceEqual(p.Key)) return true;
        return false;
    }

    void WriteRecord(Span<int> dst, ReadOnlySpan<int> key, ReadOnlySpan<int> value)
    {
        dst[0] = _marker;
        for (int i = 0; i < KeyLength; i++) dst[1 + i] = _letters[key[i]];
        dst[1 + KeyLength] = _separator;
        for (int i = 0; i < ValueLength; i++) dst[QueryLength + i] = _digits[value[i]];
    }

    /// <summary>
    /// Probe data for training: running text with record/query pairs written over it. Every
    /// <paramref name="every"/> tokens on average a record starts, and its query (with the answer) follows after a
    /// distance drawn uniformly from [minDistance, maxDistance]; pairs may interleave (a later record is a distractor
    /// for an earlier query). Returns the number of pairs written.
    /// </summary>
    public int Inject(Span<int> tokens, int every, int minDistance, int maxDistance, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (every < 1) throw new ArgumentOutOfRangeException(nameof(every), every, "every must be at least 1 token");
        if (minDistance < 0 || maxDistance < minDistance)
            throw new ArgumentException($"distances [{minDistance}, {maxDistance}] must satisfy 0 ≤ min ≤ max");
        int pairs = 0;
        Span<int> key = stackalloc int[KeyLength], value = stackalloc int[ValueLength];
        // occupied: the end of the last thing written, so records and queries never overwrite each other
        var pending = new List<(int At, int[] Key, int[] Value)>();
        long next = rng.NextInt(2 * every);
        int free = 0;
        for (int pos = 0; pos < tokens.Length; pos++)
        {
            if (pos < free) continue;
            int due = pending.FindIndex(p => p.At <= pos);
            if (due >= 0)
            {
                var p = pending[due];
                pending.RemoveAt(due);
                if (pos + QueryLength + ValueLength > tokens.Length) continue;
                WriteRecord(tokens.Slice(pos, QueryLength + ValueLength), p.Key, p.Value);
                free = pos + QueryLength + ValueLength;
                pairs++;
                continue;
            }
            if (pos >= next && pos + RecordLength <= tokens.Length)
            {
                // a key whose query is still pending is not reused: the last "&KEY:" before a query is its record
                // (matters for short keys: one letter gives 26 keys)
                int tries = 0;
                do for (int i = 0; i < KeyLength; i++) key[i] = rng.NextInt(26);
                while (Pending(pending, key) && ++tries < 64);
                if (tries == 64) { next = pos + 1 + rng.NextInt(2 * every); continue; }
                for (int i = 0; i < ValueLength; i++) value[i] = rng.NextInt(10);
                WriteRecord(tokens.Slice(pos, RecordLength), key, value);
                free = pos + RecordLength;
                pending.Add((free + minDistance + rng.NextInt(maxDistance - minDistance + 1), key.ToArray(), value.ToArray()));
                next = pos + 1 + rng.NextInt(2 * every);
            }
        }
        return pairs;
    }

    /// <summary>The digit a token id stands for, or −1.</summary>
    public int DigitOf(int id) => Array.IndexOf(_digits, id);
}
