using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// The copying probe, the classic test of induction heads (Olsson et al. 2022, "In-context learning and induction
/// heads": two-layer models learn to continue a repeated random sequence with a "previous token" head and an
/// induction head). A stream of segments over a reserved alphabet: a separator, a run of r distinct random tokens,
/// a gap of G filler tokens '.', then the same run again. Inside the repeat every token from its second one on is
/// predictable: the input token (the repeat's previous token) occurred exactly D = r + G positions back, and the
/// token that followed it there is the answer, so the copy distance is D. Runs draw their tokens without replacement,
/// so within a segment each token occurs once per copy and "copy what followed the most recent earlier occurrence of
/// this token" is always right. Without a gap (G = 0, r = D) the segment is a run and its immediate repeat and about
/// half of the stream is supervised answers; the gap lets distances exceed the alphabet with short runs over a few
/// symbols (which small models learn to copy far sooner than runs over hundreds of symbols).
///
/// Vocabulary (a char tokenizer's symbols, ids in this order): the separator '|', the filler '.', then
/// <see cref="Alphabet"/> tokens U+0100, U+0101, ... <see cref="FromSymbols"/> recognises a dataset of this task from
/// its meta.json symbols; <see cref="CopyDistances"/> recovers the predictable positions and their distances from a
/// stream's tokens alone.
/// </summary>
public sealed class CopyProbe
{
    public const char Separator = '|', Filler = '.';
    /// <summary>First alphabet code point; the alphabet holds at most 256 symbols.</summary>
    public const int AlphabetBase = 0x100, MaxAlphabet = 256;
    public const string CorpusName = "copy-probe";

    /// <summary>Number of distinct run tokens; chance per predicted token is 1/Alphabet.</summary>
    public int Alphabet { get; }
    public int VocabSize => 2 + Alphabet;
    public int SeparatorId => 0;
    public int FillerId => 1;
    public int TokenId(int symbol) => 2 + symbol;
    public double ChancePerToken => 1.0 / Alphabet;

    /// <summary>
    /// A segment of a generated stream: the index of its run's first token, the run length r and the copy distance
    /// D (the repeat starts at Start + D; the D − r tokens between the run and its repeat are filler).
    /// </summary>
    public readonly record struct Segment(int Start, int Run, int Distance);

    /// <summary>The task over <paramref name="alphabet"/> run tokens, in [2, 256].</summary>
    public CopyProbe(int alphabet)
    {
        if (alphabet is < 2 or > MaxAlphabet) throw new ArgumentOutOfRangeException(nameof(alphabet), alphabet, $"alphabet ({alphabet}) must lie in [2, {MaxAlphabet}]");
        Alphabet = alphabet;
    }

    /// <summary>The char tokenizer's symbols in id order: the separator, the filler, then the alphabet.</summary>
    public string[] Symbols()
    {
        var s = new string[VocabSize];
        s[SeparatorId] = Separator.ToString();
        s[FillerId] = Filler.ToString();
        for (int a = 0; a < Alphabet; a++) s[TokenId(a)] = ((char)(AlphabetBase + a)).ToString();
        return s;
    }

    /// <summary>The task a dataset's symbols describe; throws naming <paramref name="nameForErrors"/> when they are not this task's layout.</summary>
    public static CopyProbe FromSymbols(IReadOnlyList<string> symbols, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        int n = 0;
        while (2 + n < symbols.Count && symbols[2 + n] == ((char)(AlphabetBase + n)).ToString()) n++;
        if (symbols.Count < 4 || symbols[0] != Separator.ToString() || symbols[1] != Filler.ToString() || n < 2 || 2 + n != symbols.Count)
            throw new InvalidDataException($"{nameForErrors}: tokenizer.symbols has {symbols.Count} symbols starting with " +
                $"{(symbols.Count == 0 ? "nothing" : $"\"{symbols[0]}\"")}; the copying probe expects '{Separator}', '{Filler}', then at least 2 tokens " +
                $"U+{AlphabetBase:X4}, U+{AlphabetBase + 1:X4}, ... and nothing else (a dataset written by `nanosparse copy-data`)");
        return new CopyProbe(n);
    }

    /// <summary>
    /// Fills <paramref name="tokens"/> with segments "| x₁..x_r .…. x₁..x_r": the copy distance D drawn
    /// log-uniformly from [minDistance, maxDistance] (so short and long distances both get many examples), the run
    /// r = min(D, maxRun) long and D − r fillers between the run and its repeat; the run's tokens are drawn uniformly
    /// without replacement from the first max(<paramref name="drawFrom"/>, r) symbols (default: the whole alphabet;
    /// fewer make short runs reuse a few frequent symbols). Where the next segment would not fit, the rest is
    /// separators. Appends each segment to <paramref name="segments"/> when given; returns the number of segments.
    /// maxRun 0 means min(alphabet, maxDistance).
    /// </summary>
    public int Generate(Span<int> tokens, int minDistance, int maxDistance, Rng rng, List<Segment>? segments = null, int drawFrom = 0, int maxRun = 0)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (drawFrom == 0) drawFrom = Alphabet;
        if (maxRun == 0) maxRun = Math.Min(Alphabet, maxDistance);
        if (drawFrom < 2 || drawFrom > Alphabet)
            throw new ArgumentOutOfRangeException(nameof(drawFrom), drawFrom, $"runs draw from {drawFrom} symbols; it must lie in [2, {Alphabet}] (the alphabet)");
        if (minDistance < 1 || maxDistance < minDistance)
            throw new ArgumentException($"distances [{minDistance}, {maxDistance}] must satisfy 1 ≤ min ≤ max");
        if (maxRun < 1 || maxRun > Alphabet)
            throw new ArgumentOutOfRangeException(nameof(maxRun), maxRun, $"the longest run ({maxRun}) must lie in [1, {Alphabet}] (the alphabet): a run's tokens are distinct");
        var pool = new int[Alphabet];
        double lo = Math.Log(minDistance), hi = Math.Log(maxDistance + 1.0);
        int pos = 0, count = 0;
        while (pos < tokens.Length)
        {
            int D = Math.Clamp((int)Math.Floor(Math.Exp(lo + rng.NextDouble() * (hi - lo))), minDistance, maxDistance);
            int r = Math.Min(D, maxRun);
            if (pos + 1 + D + r > tokens.Length)
            {
                tokens[pos..].Fill(SeparatorId);
                break;
            }
            tokens[pos++] = SeparatorId;
            // a partial Fisher-Yates shuffle: the first r entries of pool are r distinct uniform symbols
            int symbols = Math.Max(drawFrom, r);
            for (int a = 0; a < symbols; a++) pool[a] = a;
            for (int i = 0; i < r; i++)
            {
                int j = i + rng.NextInt(symbols - i);
                (pool[i], pool[j]) = (pool[j], pool[i]);
                tokens[pos + i] = tokens[pos + D + i] = TokenId(pool[i]);
            }
            tokens.Slice(pos + r, D - r).Fill(FillerId);
            segments?.Add(new Segment(pos, r, D));
            pos += D + r;
            count++;
        }
        return count;
    }

    /// <summary>
    /// Per token of a stream, the copy distance of its prediction: D where the token is in a segment's repeat at
    /// index ≥ 1 (predicted from the previous token, whose earlier occurrence lies D positions back), 0 elsewhere.
    /// Found from the tokens alone: every stretch between two separators must be a run, optionally a block of
    /// fillers, then the run's exact repeat (stretches before the first and after the last separator may be cut by a
    /// file's ends and are skipped). Throws naming <paramref name="nameForErrors"/> and the position when a stretch is not.
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
            var stretch = tokens.Slice(start, n);
            int f = stretch.IndexOf(FillerId), g = stretch.LastIndexOf(FillerId);
            int r = f < 0 ? n / 2 : f, gap = f < 0 ? 0 : g - f + 1;
            bool ok = r >= 1 && 2 * r + gap == n && (f < 0 ? n % 2 == 0 : !stretch.Slice(f, gap).ContainsAnyExcept(FillerId))
                && stretch[..r].SequenceEqual(stretch.Slice(r + gap, r));
            if (!ok)
                throw new InvalidDataException($"{nameForErrors}: the {n} tokens at {start}..{i - 1} between two '{Separator}' are not a run, optional '{Filler}' fillers and the run's exact repeat (a copying-probe stream written by `nanosparse copy-data` was expected)");
            int D = r + gap;
            for (int k = 1; k < r; k++) distance[start + D + k] = D;
        }
        return distance;
    }
}
