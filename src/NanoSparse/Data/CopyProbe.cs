using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// The copying probe, the classic test of induction heads (Olsson et al. 2022, "In-context learning and induction
/// heads": two-layer models learn to continue a repeated random sequence with a "previous token" head and an
/// induction head). A stream of segments over a reserved alphabet: a separator, then a run of L distinct random
/// tokens, then the same run again. Inside the second copy every token from its second one on is predictable: the
/// input token (the copy's previous token) occurred exactly L positions back, and the token that followed it there is
/// the answer, so the distance is L. Runs draw their tokens without replacement, so within a segment each token occurs
/// once per copy and "copy what followed the most recent earlier occurrence of this token" is always right.
/// Half of the stream's tokens are copies, so almost half are supervised answers (dense supervision, against one
/// answer per record in <see cref="AssociativeRecall"/>).
///
/// Vocabulary (a char tokenizer's symbols, ids in this order): the separator '|', then <see cref="Alphabet"/> tokens
/// U+0100, U+0101, ... <see cref="FromSymbols"/> recognises a dataset of this task from its meta.json symbols;
/// <see cref="CopyDistances"/> recovers the predictable positions and their distances from a stream's tokens alone.
/// </summary>
public sealed class CopyProbe
{
    public const char Separator = '|';
    /// <summary>First alphabet code point; the alphabet holds at most 256 symbols.</summary>
    public const int AlphabetBase = 0x100, MaxAlphabet = 256;
    public const string CorpusName = "copy-probe";

    /// <summary>Number of distinct run tokens; chance per predicted token is 1/Alphabet.</summary>
    public int Alphabet { get; }
    public int VocabSize => 1 + Alphabet;
    public int SeparatorId => 0;
    public int TokenId(int symbol) => 1 + symbol;
    public double ChancePerToken => 1.0 / Alphabet;

    /// <summary>A segment of a generated stream: the index of its first copy's first token and the run length L.</summary>
    public readonly record struct Segment(int Start, int Length);

    /// <summary>The task over <paramref name="alphabet"/> run tokens, in [2, 256].</summary>
    public CopyProbe(int alphabet)
    {
        if (alphabet is < 2 or > MaxAlphabet) throw new ArgumentOutOfRangeException(nameof(alphabet), alphabet, $"alphabet ({alphabet}) must lie in [2, {MaxAlphabet}]");
        Alphabet = alphabet;
    }

    /// <summary>The char tokenizer's symbols in id order: the separator, then the alphabet.</summary>
    public string[] Symbols()
    {
        var s = new string[VocabSize];
        s[0] = Separator.ToString();
        for (int a = 0; a < Alphabet; a++) s[TokenId(a)] = ((char)(AlphabetBase + a)).ToString();
        return s;
    }

    /// <summary>The task a dataset's symbols describe; throws naming <paramref name="nameForErrors"/> when they are not this task's layout.</summary>
    public static CopyProbe FromSymbols(IReadOnlyList<string> symbols, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        int n = 0;
        while (1 + n < symbols.Count && symbols[1 + n] == ((char)(AlphabetBase + n)).ToString()) n++;
        if (symbols.Count < 3 || symbols[0] != Separator.ToString() || n < 2 || 1 + n != symbols.Count)
            throw new InvalidDataException($"{nameForErrors}: tokenizer.symbols has {symbols.Count} symbols starting with " +
                $"{(symbols.Count == 0 ? "nothing" : $"\"{symbols[0]}\"")}; the copying probe expects '{Separator}' then at least 2 tokens " +
                $"U+{AlphabetBase:X4}, U+{AlphabetBase + 1:X4}, ... and nothing else (a dataset written by `nanosparse copy-data`)");
        return new CopyProbe(n);
    }

    /// <summary>
    /// Fills <paramref name="tokens"/> with segments "| x₁..x_L x₁..x_L", L drawn log-uniformly from [minLength,
    /// maxLength] (so short and long distances both get many examples) and the run's tokens uniformly without
    /// replacement from the first max(<paramref name="drawFrom"/>, L) symbols (default: the whole alphabet; fewer make a
    /// curriculum over the same vocabulary: short runs reuse a few frequent symbols, from which a model learns the copy,
    /// and longer runs reach further into the alphabet); where the next segment would not fit, the rest is
    /// separators. Appends each segment to <paramref name="segments"/> when given; returns the number of segments.
    /// </summary>
    public int Generate(Span<int> tokens, int minLength, int maxLength, Rng rng, List<Segment>? segments = null, int drawFrom = 0)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (drawFrom == 0) drawFrom = Alphabet;
        if (drawFrom < 2 || drawFrom > Alphabet)
            throw new ArgumentOutOfRangeException(nameof(drawFrom), drawFrom, $"runs draw from {drawFrom} symbols; it must lie in [2, {Alphabet}] (the alphabet)");
        if (minLength < 1 || maxLength < minLength)
            throw new ArgumentException($"run lengths [{minLength}, {maxLength}] must satisfy 1 ≤ min ≤ max");
        if (maxLength > Alphabet)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"the longest run ({maxLength}) must not exceed the alphabet ({Alphabet}): a run's tokens are distinct");
        var pool = new int[Alphabet];
        double lo = Math.Log(minLength), hi = Math.Log(maxLength + 1.0);
        int pos = 0, count = 0;
        while (pos < tokens.Length)
        {
            int L = Math.Clamp((int)Math.Floor(Math.Exp(lo + rng.NextDouble() * (hi - lo))), minLength, maxLength);
            if (pos + 1 + 2 * L > tokens.Length)
            {
                tokens[pos..].Fill(SeparatorId);
                break;
            }
            tokens[pos++] = SeparatorId;
            // a partial Fisher-Yates shuffle: the first L entries of pool are L distinct uniform symbols
            int symbols = Math.Max(drawFrom, L);
            for (int a = 0; a < symbols; a++) pool[a] = a;
            for (int i = 0; i < L; i++)
            {
                int j = i + rng.NextInt(symbols - i);
                (pool[i], pool[j]) = (pool[j], pool[i]);
                tokens[pos + i] = tokens[pos + L + i] = TokenId(pool[i]);
            }
            segments?.Add(new Segment(pos, L));
            pos += 2 * L;
            count++;
        }
        return count;
    }

    /// <summary>
    /// Per token of a stream, the copy distance of its prediction: L where the token is in a segment's second copy
    /// at index ≥ 1 (predicted from the previous token, whose earlier occurrence lies L positions back), 0 elsewhere.
    /// Found from the tokens alone: every stretch between two separators must be a run followed by its exact
    /// repeat (stretches before the first and after the last separator may be cut by a file's ends and are skipped).
    /// Throws naming <paramref name="nameForErrors"/> and the position when a stretch is not.
    /// </summary>
    public int[] CopyDistances(ReadOnlySpan<int> tokens, string nameForErrors)
    {
        var distance = new int[tokens.Length];
        int open = tokens.IndexOf(SeparatorId);
        if (open < 0) return distance;
        for (int i = open + 1; i < tokens.Length; i++)
        {
            if (tokens[i] != SeparatorId) continue;
            int start = open + 1, n = i - start;
            open = i;
            if (n == 0) continue;
            if (n % 2 != 0 || !tokens.Slice(start, n / 2).SequenceEqual(tokens.Slice(start + n / 2, n / 2)))
                throw new InvalidDataException($"{nameForErrors}: the {n} tokens at {start}..{i - 1} between two '{Separator}' are not a run followed by its exact repeat (a copying-probe stream written by `nanosparse copy-data` was expected)");
            int L = n / 2;
            for (int k = 1; k < L; k++) distance[start + L + k] = L;
        }
        return distance;
    }
}
