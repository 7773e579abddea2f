using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Data;

/// <summary>
/// The copying probe's stream checked by brute force: each segment is a separator, a run of distinct tokens and its
/// exact repeat, run lengths within the bounds; CopyDistances marks exactly the second copies' positions from the
/// second token on, each with a distance at which the input token and the target occurred before, and that earlier
/// occurrence is the input token's most recent one.
/// </summary>
public sealed class CopyProbeTests
{
    [Theory]
    [InlineData(256, 8, 250, 1)]
    [InlineData(16, 1, 16, 2)]
    [InlineData(40, 5, 5, 3)]
    public void EachSecondCopyEqualsItsFirstAndLengthsLieInTheBounds(int alphabet, int min, int max, ulong seed)
    {
        var task = new CopyProbe(alphabet);
        var tokens = new int[20_000];
        var segments = new List<CopyProbe.Segment>();
        int n = task.Generate(tokens, min, max, new Rng(seed), segments);
        Assert.Equal(n, segments.Count);
        Assert.True(n > 20_000 / (2 * max + 1) / 2, $"{n} segments");
        int expectedStart = 1;
        var lengths = new HashSet<int>();
        foreach (var s in segments)
        {
            Assert.Equal(expectedStart, s.Start);
            Assert.Equal(task.SeparatorId, tokens[s.Start - 1]);
            Assert.InRange(s.Length, min, max);
            lengths.Add(s.Length);
            var seen = new HashSet<int>();
            for (int i = 0; i < s.Length; i++)
            {
                int t = tokens[s.Start + i];
                Assert.InRange(t, 1, alphabet);           // an alphabet token, never the separator
                Assert.True(seen.Add(t), "a run's tokens are distinct");
                Assert.Equal(t, tokens[s.Start + s.Length + i]);
            }
            expectedStart = s.Start + 2 * s.Length + 1;
        }
        // the tail that no segment fits into is separators
        for (int i = expectedStart - 1; i < tokens.Length; i++) Assert.Equal(task.SeparatorId, tokens[i]);
        Assert.True(tokens.Length - (expectedStart - 1) <= 2 * max + 1);
        if (max - min >= 3) Assert.True(lengths.Count >= 3, "lengths vary");
    }

    [Fact]
    public void DrawFromKeepsEachRunInTheFirstMaxOfDrawFromAndItsLengthSymbols()
    {
        var task = new CopyProbe(64);
        var tokens = new int[5_000];
        var segments = new List<CopyProbe.Segment>();
        task.Generate(tokens, 2, 8, new Rng(9), segments, drawFrom: 8);
        Assert.All(tokens, t => Assert.InRange(t, 0, 8));
        Assert.Equal(9, tokens.Distinct().Count());   // the separator and all 8 symbols occur
        Assert.Equal(65, task.VocabSize);
        task.CopyDistances(tokens, "v.bin");          // still runs and their repeats
        // a run longer than drawFrom draws from its own length's worth of symbols: the first max(drawFrom, L)
        tokens = new int[20_000];
        segments.Clear();
        task.Generate(tokens, 2, 64, new Rng(10), segments, drawFrom: 8);
        foreach (var s in segments)
            for (int i = 0; i < s.Length; i++) Assert.InRange(tokens[s.Start + i], 1, Math.Max(8, s.Length));
        Assert.Contains(segments, s => s.Length > 40 && Enumerable.Range(0, s.Length).Any(i => tokens[s.Start + i] > 40));
    }

    [Fact]
    public void LengthsAreLogUniform()
    {
        // log-uniform over [8, 255]: about as many runs in [8, 16) as in [64, 128)
        var task = new CopyProbe(256);
        var segments = new List<CopyProbe.Segment>();
        task.Generate(new int[2_000_000], 8, 255, new Rng(5), segments);
        double low = segments.Count(s => s.Length < 16), high = segments.Count(s => s.Length is >= 64 and < 128);
        Assert.InRange(low / high, 0.85, 1.15);
    }

    [Fact]
    public void CopyDistancesMarkTheSecondCopiesFromTheirSecondTokenOnAndNothingElse()
    {
        var task = new CopyProbe(64);
        var tokens = new int[8_000];
        var segments = new List<CopyProbe.Segment>();
        task.Generate(tokens, 2, 60, new Rng(7), segments);
        var distance = task.CopyDistances(tokens, "val.bin");
        var expected = new int[tokens.Length];
        foreach (var s in segments)
            for (int i = 1; i < s.Length; i++) expected[s.Start + s.Length + i] = s.Length;
        Assert.Equal(expected, distance);
        // brute force: at a marked target p, the input token p-1 last occurred exactly L back, followed by the target
        var last = new Dictionary<int, int>();
        for (int p = 1; p < tokens.Length; p++)
        {
            int input = tokens[p - 1];
            if (distance[p] > 0)
            {
                int L = distance[p];
                Assert.Equal(p - 1 - L, last[input]);
                Assert.Equal(tokens[p], tokens[p - L]);
            }
            last[input] = p - 1;
        }
    }

    [Fact]
    public void CopyDistancesSkipCutEndsAndRefuseAStretchThatIsNotARepeat()
    {
        var task = new CopyProbe(8);
        // a cut segment before the first separator, two whole ones, a cut one after the last separator
        int[] tokens = [3, 4, 3, 0, 1, 2, 1, 2, 0, 5, 6, 7, 5, 6, 7, 0, 4, 4];
        var d = task.CopyDistances(tokens, "v.bin");
        Assert.Equal(new[] { 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0 }, d);
        tokens[13] = 1;
        var e = Assert.Throws<InvalidDataException>(() => task.CopyDistances(tokens, "v.bin"));
        Assert.Contains("v.bin: the 6 tokens at 9..14 between two '|' are not a run followed by its exact repeat", e.Message);
    }

    [Fact]
    public void SymbolsRoundTripAndAnotherLayoutIsRefused()
    {
        var task = new CopyProbe(37);
        var symbols = task.Symbols();
        Assert.Equal(38, symbols.Length);
        Assert.Equal("|", symbols[0]);
        Assert.Equal("\u0100", symbols[1]);
        Assert.Equal(37, CopyProbe.FromSymbols(symbols, "meta.json").Alphabet);
        var recall = new AssociativeRecall(4, 4).Symbols();
        var e = Assert.Throws<InvalidDataException>(() => CopyProbe.FromSymbols(recall, "x/meta.json"));
        Assert.Contains("x/meta.json: tokenizer.symbols has 9 symbols starting with \".\"; the copying probe expects '|'", e.Message);
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CopyProbe(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CopyProbe(257));
        var task = new CopyProbe(16);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 2, 17, new Rng(1)));
        Assert.Contains("the longest run (17) must not exceed the alphabet (16)", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 2, 8, new Rng(1), drawFrom: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 2, 8, new Rng(1), drawFrom: 17));
        Assert.Throws<ArgumentException>(() => task.Generate(new int[100], 0, 4, new Rng(1)));
        Assert.Throws<ArgumentException>(() => task.Generate(new int[100], 5, 4, new Rng(1)));
    }
}
