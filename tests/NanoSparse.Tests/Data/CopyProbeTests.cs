using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Data;

/// <summary>
/// The copying probe's stream checked by brute force: each segment is a separator, a run of distinct tokens, a gap
/// of fillers and the run's exact repeat, distances within the bounds; CopyDistances marks exactly the repeats'
/// positions from the second token on, each with a distance at which the input token and the target occurred
/// before, and that earlier occurrence is the input token's most recent one.
/// </summary>
public sealed class CopyProbeTests
{
    [Theory]
    [InlineData(256, 8, 250, 0, 1)]     // no gaps: a run and its immediate repeat
    [InlineData(16, 1, 16, 0, 2)]
    [InlineData(40, 5, 5, 0, 3)]
    [InlineData(16, 2, 250, 16, 4)]     // runs of at most 16, fillers up to distance 250
    [InlineData(8, 3, 40, 5, 5)]
    public void EachRepeatEqualsItsRunAtItsDistanceWithinTheBounds(int alphabet, int min, int max, int maxRun, ulong seed)
    {
        var task = new CopyProbe(alphabet);
        var tokens = new int[20_000];
        var segments = new List<CopyProbe.Segment>();
        int n = task.Generate(tokens, min, max, new Rng(seed), segments, maxRun: maxRun);
        int longestRun = maxRun == 0 ? Math.Min(alphabet, max) : maxRun;
        Assert.Equal(n, segments.Count);
        Assert.True(n > 20_000 / (2 * max + 1) / 2, $"{n} segments");
        int expectedStart = 1;
        var distances = new HashSet<int>();
        foreach (var s in segments)
        {
            Assert.Equal(expectedStart, s.Start);
            Assert.Equal(task.SeparatorId, tokens[s.Start - 1]);
            Assert.InRange(s.Distance, min, max);
            Assert.Equal(Math.Min(s.Distance, longestRun), s.Run);
            distances.Add(s.Distance);
            var seen = new HashSet<int>();
            for (int i = 0; i < s.Run; i++)
            {
                int t = tokens[s.Start + i];
                Assert.InRange(t, 2, alphabet + 1);       // an alphabet token, never the separator or the filler
                Assert.True(seen.Add(t), "a run's tokens are distinct");
                Assert.Equal(t, tokens[s.Start + s.Distance + i]);
            }
            for (int i = s.Run; i < s.Distance; i++) Assert.Equal(task.FillerId, tokens[s.Start + i]);
            expectedStart = s.Start + s.Distance + s.Run + 1;
        }
        // the tail that no segment fits into is separators
        for (int i = expectedStart - 1; i < tokens.Length; i++) Assert.Equal(task.SeparatorId, tokens[i]);
        Assert.True(tokens.Length - (expectedStart - 1) <= max + longestRun + 1);
        if (max - min >= 3) Assert.True(distances.Count >= 3, "distances vary");
    }

    [Fact]
    public void DistancesAreLogUniform()
    {
        // log-uniform over [8, 255]: about as many segments in [8, 16) as in [64, 128)
        var task = new CopyProbe(256);
        var segments = new List<CopyProbe.Segment>();
        task.Generate(new int[2_000_000], 8, 255, new Rng(5), segments);
        double low = segments.Count(s => s.Distance < 16), high = segments.Count(s => s.Distance is >= 64 and < 128);
        Assert.InRange(low / high, 0.85, 1.15);
    }

    [Fact]
    public void DrawFromKeepsEachRunInTheFirstMaxOfDrawFromAndItsLengthSymbols()
    {
        var task = new CopyProbe(64);
        var tokens = new int[5_000];
        var segments = new List<CopyProbe.Segment>();
        task.Generate(tokens, 2, 8, new Rng(9), segments, drawFrom: 8);
        Assert.All(tokens, t => Assert.InRange(t, 0, 9));
        Assert.Equal(9, tokens.Distinct().Count());   // the separator and all 8 symbols occur (no filler: no gaps)
        Assert.Equal(66, task.VocabSize);
        task.CopyDistances(tokens, "v.bin");          // still runs and their repeats
        // a run longer than drawFrom draws from its own length's worth of symbols: the first max(drawFrom, r)
        tokens = new int[20_000];
        segments.Clear();
        task.Generate(tokens, 2, 64, new Rng(10), segments, drawFrom: 8);
        foreach (var s in segments)
            for (int i = 0; i < s.Run; i++) Assert.InRange(tokens[s.Start + i], 2, Math.Max(8, s.Run) + 1);
        Assert.Contains(segments, s => s.Run > 40 && Enumerable.Range(0, s.Run).Any(i => tokens[s.Start + i] > 41));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6)]
    public void CopyDistancesMarkTheRepeatsFromTheirSecondTokenOnAndNothingElse(int maxRun)
    {
        var task = new CopyProbe(64);
        var tokens = new int[8_000];
        var segments = new List<CopyProbe.Segment>();
        task.Generate(tokens, 2, 60, new Rng(7), segments, maxRun: maxRun);
        var distance = task.CopyDistances(tokens, "val.bin");
        var expected = new int[tokens.Length];
        foreach (var s in segments)
            for (int i = 1; i < s.Run; i++) expected[s.Start + s.Distance + i] = s.Distance;
        Assert.Equal(expected, distance);
        Assert.Contains(segments, s => s.Distance > s.Run == (maxRun > 0));
        // brute force: at a marked target p, the input token p-1 last occurred exactly D back, followed by the target
        var last = new Dictionary<int, int>();
        for (int p = 1; p < tokens.Length; p++)
        {
            int input = tokens[p - 1];
            if (distance[p] > 0)
            {
                int D = distance[p];
                Assert.Equal(p - 1 - D, last[input]);
                Assert.Equal(tokens[p], tokens[p - D]);
            }
            last[input] = p - 1;
        }
    }

    [Fact]
    public void CopyDistancesSkipCutEndsAndRefuseAStretchThatIsNotARunGapAndRepeat()
    {
        var task = new CopyProbe(8);
        // a cut segment before the first separator; "2 3 2 3" (D 2); "5 6 . . 5 6" (D 4); a cut one after the last separator
        int[] tokens = [3, 4, 3, 0, 2, 3, 2, 3, 0, 5, 6, 1, 1, 5, 6, 0, 4, 4];
        var d = task.CopyDistances(tokens, "v.bin");
        Assert.Equal(new[] { 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0 }, d);
        int[] bad = [0, 5, 6, 1, 1, 5, 7, 0];
        var e = Assert.Throws<InvalidDataException>(() => task.CopyDistances(bad, "v.bin"));
        Assert.Contains("v.bin: the 6 tokens at 1..6 between two '|' are not a run, optional '.' fillers and the run's exact repeat", e.Message);
        Assert.Throws<InvalidDataException>(() => task.CopyDistances([0, 5, 1, 6, 1, 5, 0], "v.bin"));   // fillers not in one block
        Assert.Throws<InvalidDataException>(() => task.CopyDistances([0, 5, 6, 1, 5, 0], "v.bin"));      // run and repeat differ in length
        Assert.Throws<InvalidDataException>(() => task.CopyDistances([0, 1, 1, 0], "v.bin"));            // fillers only
    }

    [Fact]
    public void SymbolsRoundTripAndAnotherLayoutIsRefused()
    {
        var task = new CopyProbe(37);
        var symbols = task.Symbols();
        Assert.Equal(39, symbols.Length);
        Assert.Equal(["|", ".", "\u0100"], symbols[..3]);
        Assert.Equal(37, CopyProbe.FromSymbols(symbols, "meta.json").Alphabet);
        var recall = new AssociativeRecall(4, 4).Symbols();
        var e = Assert.Throws<InvalidDataException>(() => CopyProbe.FromSymbols(recall, "x/meta.json"));
        Assert.Contains("x/meta.json: tokenizer.symbols has 9 symbols starting with \".\"; the copying probe expects '|', '.'", e.Message);
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CopyProbe(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CopyProbe(257));
        var task = new CopyProbe(16);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 2, 40, new Rng(1), maxRun: 17));
        Assert.Contains("the longest run (17) must lie in [1, 16] (the alphabet)", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 2, 8, new Rng(1), drawFrom: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 2, 8, new Rng(1), drawFrom: 17));
        Assert.Throws<ArgumentException>(() => task.Generate(new int[100], 0, 4, new Rng(1)));
        Assert.Throws<ArgumentException>(() => task.Generate(new int[100], 5, 4, new Rng(1)));
    }
}
