using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Data;

/// <summary>The associative-recall stream and its measured windows, checked by brute force over the tokens.</summary>
public class AssociativeRecallTests
{
    /// <summary>Every occurrence of each key in order, found by scanning the tokens.</summary>
    static Dictionary<int, List<int>> Occurrences(AssociativeRecall task, ReadOnlySpan<int> tokens)
    {
        var at = new Dictionary<int, List<int>>();
        for (int i = 0; i < tokens.Length; i++)
            if (task.IsKey(tokens[i]))
            {
                if (!at.TryGetValue(tokens[i], out var list)) at[tokens[i]] = list = [];
                list.Add(i);
            }
        return at;
    }

    [Theory]
    [InlineData(16, 8, 4, 0, 60, 64)]
    [InlineData(128, 64, 8, 1, 500, 512)]
    [InlineData(40, 10, 3, 5, 5, 0)]
    public void EveryQueryRepeatsItsKeysRecordAtADistanceWithinTheBoundsAndKeysAreNotReusedEarly(
        int keys, int values, int every, int min, int max, int reuse)
    {
        var task = new AssociativeRecall(keys, values);
        var tokens = new int[60_000];
        var pairs = new List<AssociativeRecall.Pair>();
        int count = task.Generate(tokens, every, min, max, reuse, new Rng(7), pairs);
        Assert.Equal(count, pairs.Count);
        Assert.True(count > tokens.Length / (8 * every), $"{count} pairs");
        // the stream holds only filler and whole pairs: a key, then a value
        for (int i = 0; i < tokens.Length; i++)
        {
            Assert.InRange(tokens[i], 0, task.VocabSize - 1);
            if (task.IsKey(tokens[i])) Assert.True(task.IsValue(tokens[i + 1]), $"key at {i} not followed by a value");
            if (task.IsValue(tokens[i])) Assert.True(i > 0 && task.IsKey(tokens[i - 1]), $"value at {i} not after a key");
        }
        // each key's occurrences alternate record, query: the query repeats the record's value at a distance in
        // [min, max], and the key's next record starts at least `reuse` tokens after that query's end
        var found = new List<AssociativeRecall.Pair>();
        foreach (var (id, list) in Occurrences(task, tokens))
        {
            Assert.True(list.Count % 2 == 0, $"key {id} occurs {list.Count} times");
            for (int j = 0; j < list.Count; j += 2)
            {
                int record = list[j], query = list[j + 1];
                Assert.Equal(tokens[record + 1], tokens[query + 1]);
                Assert.InRange(query - record - 2, min, max);
                if (j + 2 < list.Count) Assert.True(list[j + 2] - (query + 2) >= reuse, $"key {id} reused {list[j + 2] - (query + 2)} tokens after its query");
                found.Add(new AssociativeRecall.Pair(record, query, id - 1, tokens[record + 1] - 1 - keys));
            }
        }
        Assert.Equal(found.OrderBy(p => p.Query), pairs.OrderBy(p => p.Query));
        // log-uniform distances: about as many below the geometric middle of [min + 1, max + 2] as above it
        double middle = Math.Sqrt((min + 1.0) * (max + 2.0)) - 1;
        if (max > min) Assert.InRange(pairs.Count(p => p.Distance < middle) / (double)count, 0.4, 0.6);
    }

    [Fact]
    public void SymbolsRoundTripAndOtherVocabulariesAreRefusedWithTheirLayout()
    {
        var task = new AssociativeRecall(5, 7);
        var symbols = task.Symbols();
        Assert.Equal(13, symbols.Length);
        Assert.Equal(["."], symbols[..1]);
        Assert.Equal("Ā", symbols[1]);
        Assert.Equal("Ѐ", symbols[6]);
        var back = AssociativeRecall.FromSymbols(symbols, "meta.json");
        Assert.Equal((5, 7), (back.Keys, back.Values));
        string[] brown = [.. "\n !&:abc0123".Select(c => c.ToString())];
        var e = Assert.Throws<InvalidDataException>(() => AssociativeRecall.FromSymbols(brown, "data/brown/meta.json"));
        Assert.StartsWith("data/brown/meta.json: tokenizer.symbols starts with \"\n\"", e.Message);
        var extra = Assert.Throws<InvalidDataException>(() => AssociativeRecall.FromSymbols([.. symbols, "x"], "m.json"));
        Assert.Contains("5 keys and 7 values", extra.Message);
        Assert.Throws<InvalidDataException>(() => AssociativeRecall.FromSymbols([], "m.json"));
    }

    [Theory]
    [InlineData(0, 64)]
    [InlineData(1, 64)]
    [InlineData(16, 0)]
    [InlineData(257, 64)]
    public void AnAlphabetOutsideTwoTo256IsRefused(int keys, int values)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new AssociativeRecall(keys, values));
        Assert.Contains("must lie in [2, 256]", e.Message);
    }

    [Fact]
    public void BadGeneratorArgumentsAreRefused()
    {
        var task = new AssociativeRecall(8, 8);
        var rng = new Rng(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 0, 0, 10, 0, rng));
        Assert.Throws<ArgumentException>(() => task.Generate(new int[100], 4, 10, 5, 0, rng));
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Generate(new int[100], 4, 0, 5, -1, rng));
    }

    [Theory]
    [InlineData(64, 0)]
    [InlineData(64, 17)]
    [InlineData(64, 61)]    // the largest distance: the record starts at 0
    [InlineData(300, 200)]
    public void WritePutsAnUnseenKeysRecordAtTheDistanceAndItsQueryAndAnswerAtTheEnd(int seqLen, int distance)
    {
        var task = new AssociativeRecall(64, 16);
        Assert.Equal(seqLen - 3, task.MaxDistance(seqLen));
        var stream = new int[20_000];
        task.Generate(stream, 8, 0, 200, 300, new Rng(3));
        var rng = new Rng((ulong)distance);
        for (int trial = 0; trial < 20; trial++)
        {
            int offset = 997 * trial;
            var window = stream.AsSpan(offset, seqLen + 1).ToArray();
            var before = window.ToArray();
            int answer = task.Write(window, distance, 0, rng);
            Assert.Equal(seqLen, answer);
            int query = answer - 1, record = query - distance - 2;
            int key = window[query];
            Assert.True(task.IsKey(key));
            Assert.True(task.IsValue(window[answer]));
            // the measured key occurs exactly at the record and the query, nowhere in the window before the write
            Assert.Equal([record, query], Occurrences(task, window)[key]);
            Assert.DoesNotContain(key, before);
            Assert.Equal(window[record + 1], window[answer]);
            // the rest is the stream, except the pairs the writes cut in half, whose other half became filler
            for (int i = 0; i < window.Length; i++)
            {
                if (i == record || i == record + 1 || i == query || i == answer) continue;
                if (window[i] != before[i]) Assert.True(window[i] == task.FillerId && (i == record - 1 || i == record + 2 || i == query - 1), $"position {i} changed");
                if (task.IsKey(window[i])) Assert.True(task.IsValue(window[i + 1]), $"key at {i} lost its value");
                if (task.IsValue(window[i]) && i > 0) Assert.True(task.IsKey(window[i - 1]), $"value at {i} lost its key");
            }
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => task.Write(new int[seqLen + 1], seqLen - 2, 0, rng));
        Assert.Contains($"distance must lie in [0, {seqLen - 3}] for a window of {seqLen} tokens", e.Message);
    }

    [Fact]
    public void AWindowThatHoldsEveryKeyIsRefused()
    {
        var task = new AssociativeRecall(2, 4);
        int[] window = [task.KeyId(0), task.ValueId(1), 0, 0, task.KeyId(1), task.ValueId(2), 0, 0, 0];
        var e = Assert.Throws<InvalidOperationException>(() => task.Write(window, 2, 0, new Rng(1)));
        Assert.Contains("all 2 keys occur in a window of 9 tokens", e.Message);
    }
}
