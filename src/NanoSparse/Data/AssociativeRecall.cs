using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// A purely synthetic associative-recall task in the spirit of multi-query associative recall (MQAR; Zoology,
/// Arora et al. 2023): a stream of key-value pairs over a reserved vocabulary. A record is a key token followed by a
/// value token; its query repeats the key (and the same value) a controlled distance later, so at every query the
/// model can predict the value only by finding the key's earlier occurrence. Keys and values come from their own
/// alphabets, which never appear otherwise; between pairs the stream holds a single filler token '.'.
///
/// Vocabulary (a char tokenizer's symbols, ids in this order): '.', then <see cref="Keys"/> keys U+0100, U+0101, ...
/// (Ā ā Ă ...), then <see cref="Values"/> values U+0400, U+0401, ... (Ѐ Ё Ђ ...). <see cref="FromSymbols"/> recognises
/// a dataset of this task from its meta.json symbols.
///
/// In the stream (<see cref="Generate"/>) a key is never reused while its query is pending, and not within
/// reuseDistance tokens of its last query's end, so a window of at most reuseDistance + 1 tokens holds at most one
/// record/query episode per key: "copy the value that followed this key's previous occurrence" is always the right
/// rule, and no recency tie-break is needed. Every query is answerable once its record lies inside the model's
/// block, which gives many supervised answers per sequence (one per record), unlike a probe embedded in text.
/// distance = tokens between the end of the record and the start of the query (as in <see cref="RetrievalProbe"/>).
/// </summary>
public sealed class AssociativeRecall : IRetrievalTask
{
    public const char Filler = '.';
    /// <summary>First key and first value code point; each alphabet holds at most 256 symbols.</summary>
    public const int KeyBase = 0x100, ValueBase = 0x400, MaxAlphabet = 256;
    public const string CorpusName = "assoc-recall";

    /// <summary>Number of distinct keys and values.</summary>
    public int Keys { get; }
    public int Values { get; }
    public int RecordLength => 2;
    public int QueryLength => 1;
    public int ValueLength => 1;
    public double ChancePerToken => 1.0 / Values;
    public string AnswerTokenName => "value";
    public int VocabSize => 1 + Keys + Values;

    /// <summary>A record and its query in a generated stream: token positions of the record's key and of the query's key.</summary>
    public readonly record struct Pair(int Record, int Query, int Key, int Value)
    {
        public int Distance => Query - Record - 2;
    }

    /// <summary>The task with <paramref name="keys"/> keys and <paramref name="values"/> values, each in [2, 256].</summary>
    public AssociativeRecall(int keys, int values)
    {
        if (keys is < 2 or > MaxAlphabet) throw new ArgumentOutOfRangeException(nameof(keys), keys, $"keys ({keys}) must lie in [2, {MaxAlphabet}]");
        if (values is < 2 or > MaxAlphabet) throw new ArgumentOutOfRangeException(nameof(values), values, $"values ({values}) must lie in [2, {MaxAlphabet}]");
        Keys = keys;
        Values = values;
    }

    /// <summary>The char tokenizer's symbols in id order: '.', the keys, the values.</summary>
    public string[] Symbols()
    {
        var s = new string[VocabSize];
        s[0] = Filler.ToString();
        for (int k = 0; k < Keys; k++) s[KeyId(k)] = ((char)(KeyBase + k)).ToString();
        for (int v = 0; v < Values; v++) s[ValueId(v)] = ((char)(ValueBase + v)).ToString();
        return s;
    }

    /// <summary>The task a dataset's symbols describe; throws naming <paramref name="nameForErrors"/> when they are not this task's layout.</summary>
    public static AssociativeRecall FromSymbols(IReadOnlyList<string> symbols, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        string Expected() => $"'{Filler}', then keys U+{KeyBase:X4}.. and values U+{ValueBase:X4}.. (a dataset written by `nanosparse recall-data`)";
        if (symbols.Count < 5 || symbols[0] != Filler.ToString())
            throw new InvalidDataException($"{nameForErrors}: tokenizer.symbols starts with {(symbols.Count == 0 ? "nothing" : $"\"{symbols[0]}\"")} ({symbols.Count} symbols); the associative-recall task expects {Expected()}");
        int keys = 0;
        while (1 + keys < symbols.Count && symbols[1 + keys] == ((char)(KeyBase + keys)).ToString()) keys++;
        int values = 0;
        while (1 + keys + values < symbols.Count && symbols[1 + keys + values] == ((char)(ValueBase + values)).ToString()) values++;
        if (keys < 2 || values < 2 || 1 + keys + values != symbols.Count)
            throw new InvalidDataException($"{nameForErrors}: tokenizer.symbols has {symbols.Count} symbols of which {keys} keys and {values} values in sequence; the associative-recall task expects {Expected()}, at least 2 of each and nothing else");
        return new AssociativeRecall(keys, values);
    }

    public int FillerId => 0;
    public int KeyId(int key) => 1 + key;
    public int ValueId(int value) => 1 + Keys + value;
    public bool IsKey(int id) => id >= 1 && id <= Keys;
    public bool IsValue(int id) => id > Keys && id <= Keys + Values;

    /// <summary>
    /// Fills <paramref name="tokens"/> with the task's stream: a record starts on average every
    /// <paramref name="every"/> tokens (gaps uniform in [1, 2·every]) with a key drawn uniformly from those free to
    /// use and a uniform value; its query lands exactly d tokens after the record's end, d drawn log-uniformly from
    /// [minDistance, maxDistance] (so short and long distances both get many examples; a record whose query slot
    /// would overlap another's is postponed a token). Queries may interleave with later records. Appends each
    /// written record/query pair to <paramref name="pairs"/> when given; returns the number of pairs.
    /// </summary>
    public int Generate(Span<int> tokens, int every, int minDistance, int maxDistance, int reuseDistance, Rng rng, List<Pair>? pairs = null)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (every < 1) throw new ArgumentOutOfRangeException(nameof(every), every, $"every ({every}) must be at least 1 token");
        if (minDistance < 0 || maxDistance < minDistance)
            throw new ArgumentException($"distances [{minDistance}, {maxDistance}] must satisfy 0 ≤ min ≤ max");
        if (reuseDistance < 0) throw new ArgumentOutOfRangeException(nameof(reuseDistance), reuseDistance, $"reuse distance ({reuseDistance}) must be >= 0");
        int len = tokens.Length, count = 0;
        // plannedKey[p]: the key whose query starts at p, or −1
        var plannedKey = new int[len];
        Array.Fill(plannedKey, -1);
        var pending = new bool[Keys];
        var value = new int[Keys];
        var recordAt = new int[Keys];
        var freeFrom = new long[Keys];   // a key may start a new record at or after this position
        double lo = Math.Log(minDistance + 1.0), hi = Math.Log(maxDistance + 2.0);
        long next = rng.NextInt(2 * every);
        int pos = 0;
        while (pos < len)
        {
            int due = plannedKey[pos];
            if (due >= 0)
            {
                tokens[pos] = KeyId(due);
                tokens[pos + 1] = ValueId(value[due]);
                pairs?.Add(new Pair(recordAt[due], pos, due, value[due]));
                count++;
                pending[due] = false;
                freeFrom[due] = pos + 2L + reuseDistance;
                pos += 2;
                continue;
            }
            if (pos >= next && pos + 2 <= len && plannedKey[pos + 1] < 0)
            {
                int d = Math.Clamp((int)Math.Floor(Math.Exp(lo + rng.NextDouble() * (hi - lo))) - 1, minDistance, maxDistance);
                long q = pos + 2L + d;
                // the query slot [q, q + 2) must fit and not overlap another query's slot
                if (q + 2 <= len && plannedKey[q] < 0 && plannedKey[q + 1] < 0 && (q - 1 < pos + 2 || plannedKey[q - 1] < 0))
                {
                    // a uniform key among the free ones (reservoir sampling)
                    int key = -1, seen = 0;
                    for (int k = 0; k < Keys; k++)
                        if (!pending[k] && freeFrom[k] <= pos && rng.NextInt(++seen) == 0) key = k;
                    if (key >= 0)
                    {
                        value[key] = rng.NextInt(Values);
                        pending[key] = true;
                        recordAt[key] = pos;
                        plannedKey[q] = key;
                        tokens[pos] = KeyId(key);
                        tokens[pos + 1] = ValueId(value[key]);
                        pos += 2;
                        next = pos - 1 + rng.NextInt(2 * every);
                        continue;
                    }
                }
            }
            tokens[pos++] = FillerId;
        }
        return count;
    }

    /// <summary>The largest distance a window of seqLen positions leaves room for (record, gap, query, answer).</summary>
    public int MaxDistance(int seqLen) => seqLen + 1 - RecordLength - QueryLength - ValueLength;

    /// <summary>
    /// One measured query in a window of the task's own stream (<paramref name="tokens"/>, seqLen + 1 tokens, holds a
    /// stretch of a generated stream on entry; its pairs are the distractors, so <paramref name="distractors"/> is
    /// not used): a key that occurs nowhere in the window gets a new record <paramref name="distance"/> tokens before
    /// the query at the window's last input position, and the value after the query is the answer (the window's last
    /// token). Pairs that the overwrite cut in half lose their other half to the filler. Returns the answer's index.
    /// </summary>
    public int Write(Span<int> tokens, int distance, int distractors, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        int seqLen = tokens.Length - 1;
        if (distance < 0 || distance > MaxDistance(seqLen))
            throw new ArgumentOutOfRangeException(nameof(distance), distance, $"distance must lie in [0, {MaxDistance(seqLen)}] for a window of {seqLen} tokens");
        Span<bool> present = stackalloc bool[Keys];
        foreach (int t in tokens)
            if (IsKey(t)) present[t - 1] = true;
        int absent = 0;
        foreach (bool p in present) if (!p) absent++;
        if (absent == 0)
            throw new InvalidOperationException($"all {Keys} keys occur in a window of {tokens.Length} tokens, so none can be the measured key; write the data with more keys or a longer --reuse-distance");
        int pick = rng.NextInt(absent), key = -1;
        for (int k = 0; k < Keys && key < 0; k++)
            if (!present[k] && pick-- == 0) key = k;
        int val = rng.NextInt(Values);
        int answer = seqLen, query = answer - 1, record = query - distance - 2;
        tokens[record] = KeyId(key);
        tokens[record + 1] = ValueId(val);
        tokens[query] = KeyId(key);
        tokens[answer] = ValueId(val);
        // a key whose value was overwritten, or a value whose key was, becomes filler
        if (record > 0 && IsKey(tokens[record - 1])) tokens[record - 1] = FillerId;
        if (record + 2 < query && IsValue(tokens[record + 2])) tokens[record + 2] = FillerId;
        if (query - 1 > record + 1 && IsKey(tokens[query - 1])) tokens[query - 1] = FillerId;
        return answer;
    }
}
