using System.Text.RegularExpressions;
using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Data;

/// <summary>The retrieval probe's sequences, read back as text and checked by a regular expression.</summary>
public class RetrievalProbeTests
{
    static readonly string[] Symbols = [.. "\n !&:.,abcdefghijklmnopqrstuvwxyzABC0123456789".Select(c => c.ToString())];
    static string Text(ReadOnlySpan<int> ids) => string.Concat(ids.ToArray().Select(i => Symbols[i]));
    static readonly Regex Record = new("&([a-z]{3}):([0-9]{4})");

    static int[] Filler(int n, int seed)
    {
        var r = new Random(seed);
        int space = Array.IndexOf(Symbols, " ");
        // letters and spaces only: no '&' in the filler, so every record found was written by the probe
        return Enumerable.Range(0, n).Select(_ => r.Next(5) == 0 ? space : Array.IndexOf(Symbols, ((char)('a' + r.Next(26))).ToString())).ToArray();
    }

    [Theory]
    [InlineData(64, 0, 0)]
    [InlineData(64, 20, 3)]
    [InlineData(128, 106, 5)]   // the largest distance: the record starts at 0
    [InlineData(300, 150, 8)]
    public void WritePlacesTheRecordAtTheDistanceAndTheQueryWithItsAnswerAtTheEnd(int seqLen, int distance, int distractors)
    {
        var probe = new RetrievalProbe(Symbols);
        Assert.Equal(seqLen + 1 - 18, probe.MaxDistance(seqLen));
        var rng = new Rng((ulong)(seqLen + distance));
        for (int trial = 0; trial < 10; trial++)
        {
            var tokens = Filler(seqLen + 1, trial);
            int answer = probe.Write(tokens, distance, distractors, rng);
            Assert.Equal(seqLen + 1 - 4, answer);
            string text = Text(tokens);
            var matches = Record.Matches(text).ToList();
            var query = matches[^1];
            Assert.Equal(answer - 5, query.Index);   // "&KEY:" then the four digits end the sequence
            var target = matches.Where(m => m != query && m.Groups[1].Value == query.Groups[1].Value).ToList();
            var record = Assert.Single(target);
            Assert.Equal(query.Groups[2].Value, record.Groups[2].Value);
            Assert.Equal(distance, query.Index - (record.Index + probe.RecordLength));
            Assert.True(matches.Count - 2 <= distractors);
            for (int i = 0; i < 4; i++) Assert.Equal(query.Groups[2].Value[i] - '0', probe.DigitOf(tokens[answer + i]));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => probe.Write(new int[seqLen + 1], probe.MaxDistance(seqLen) + 1, 0, rng));
    }

    [Fact]
    public void InjectWritesQueriesThatRepeatAnEarlierRecordWithinTheDistances()
    {
        var probe = new RetrievalProbe(Symbols);
        var tokens = Filler(20_000, 3);
        int pairs = probe.Inject(tokens, 200, 30, 300, new Rng(5));
        Assert.InRange(pairs, 50, 150);
        var matches = Record.Matches(Text(tokens)).ToList();
        // each pair is a record and, later, the same "&KEY:VALUE" again; keys are random, so pair them in order
        var open = new Dictionary<string, int>();
        int queries = 0;
        foreach (Match m in matches)
        {
            if (open.Remove(m.Value, out int recordEnd))
            {
                int distance = m.Index - recordEnd;
                Assert.InRange(distance, 30, 300 + probe.RecordLength + probe.QueryLength + probe.ValueLength);
                queries++;
            }
            else open[m.Value] = m.Index + probe.RecordLength;
        }
        Assert.Equal(pairs, queries);
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 1)]
    [InlineData(1, 6)]
    public void AShortFormatWritesItsRecordAndQueryAndTheTargetIsTheLastEarlierUseOfItsKey(int keyLength, int valueLength)
    {
        var probe = new RetrievalProbe(Symbols, keyLength: keyLength, valueLength: valueLength);
        Assert.Equal(1 + keyLength + 1 + valueLength, probe.RecordLength);
        Assert.Equal(200 + 1 - 2 * (2 + keyLength) - 2 * valueLength, probe.MaxDistance(200));
        var record = new Regex($"&([a-z]{{{keyLength}}}):([0-9]{{{valueLength}}})");
        var rng = new Rng(11);
        for (int trial = 0; trial < 20; trial++)
        {
            var tokens = Filler(201, trial);
            int distance = 3 + trial * 7;
            int answer = probe.Write(tokens, distance, 6, rng);
            Assert.Equal(201 - valueLength, answer);
            var matches = record.Matches(Text(tokens)).ToList();
            var query = matches[^1];
            Assert.Equal(answer - probe.QueryLength, query.Index);
            // the target is the last earlier record with the query's key (distractors have other keys)
            var target = matches.Take(matches.Count - 1).Last(m => m.Groups[1].Value == query.Groups[1].Value);
            Assert.Equal(query.Groups[2].Value, target.Groups[2].Value);
            Assert.Equal(distance, query.Index - (target.Index + probe.RecordLength));
        }
    }

    [Fact]
    public void InjectWithOneLetterKeysNeverReusesAPendingKeySoEachQueryCopiesTheLastRecordOfItsKey()
    {
        var probe = new RetrievalProbe(Symbols, keyLength: 1, valueLength: 2);
        var tokens = Filler(30_000, 4);
        // dense records with long distances: many pairs pending at once, so key collisions would be common
        int pairs = probe.Inject(tokens, 16, 8, 400, new Rng(7));
        Assert.InRange(pairs, 500, 3000);
        var matches = new Regex("&([a-z]):([0-9]{2})").Matches(Text(tokens)).ToList();
        // brute force: walk the text; a key's next occurrence after an open record is its query, with the same value
        var open = new Dictionary<string, (int End, string Value)>();
        int queries = 0;
        foreach (Match m in matches)
        {
            string key = m.Groups[1].Value;
            if (open.Remove(key, out var rec))
            {
                Assert.Equal(rec.Value, m.Groups[2].Value);
                Assert.InRange(m.Index - rec.End, 8, 400 + 10 * probe.RecordLength);
                queries++;
            }
            else open[key] = (m.Index + probe.RecordLength, m.Groups[2].Value);
        }
        Assert.Equal(pairs, queries);
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(9, 4)]
    [InlineData(3, 0)]
    public void AFormatOutsideOneToEightIsRefused(int keyLength, int valueLength) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new RetrievalProbe(Symbols, keyLength: keyLength, valueLength: valueLength));

    [Fact]
    public void AVocabularyWithoutTheProbesCharactersIsAnErrorNamingTheCharacter()
    {
        var e = Assert.Throws<ArgumentException>(() => new RetrievalProbe(["a", "b", ":"], "data/x/meta.json"));
        Assert.Contains("data/x/meta.json", e.Message);
        Assert.Contains("'&'", e.Message);
    }
}
