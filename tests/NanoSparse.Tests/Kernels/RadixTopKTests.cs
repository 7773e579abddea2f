using NanoSparse.Kernels;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Tests.Kernels;

/// <summary>
/// RadixTopK against a brute-force reference (every index sorted by score descending, ties to the lower index, the
/// first k taken, then sorted ascending) and against TopK.Largest, on score sets chosen to stress the radix passes:
/// wide and narrow ranges (one exponent: the top bits agree), many ties, ±0, ±∞, negatives, odd lengths (scalar tails,
/// and lengths under one vector).
/// </summary>
public class RadixTopKTests
{
    static int[] Reference(float[] scores, int k) =>
        Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k).OrderBy(i => i).ToArray();

    static float[] Scores(string kind, int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(i => kind switch
        {
            "wide" => (float)((r.NextDouble() * 2 - 1) * Math.Pow(10, r.Next(-20, 20))),
            "narrow" => 1f + (float)r.NextDouble() * 1e-3f,                        // one exponent, close mantissas
            "ties" => r.Next(7) - 3,                                             // seven values, many equal
            "zeros" => r.Next(4) switch { 0 => 0f, 1 => -0f, 2 => -1e-30f, _ => 1e-30f },
            "inf" => r.Next(5) switch { 0 => float.PositiveInfinity, 1 => float.NegativeInfinity, _ => (float)(r.NextDouble() * 2 - 1) },
            _ => (float)(-r.NextDouble() - 1),                                   // all negative
        }).ToArray();
    }

    [Theory]
    [InlineData("wide", 3072, 307)]
    [InlineData("wide", 3072, 1536)]
    [InlineData("narrow", 3072, 922)]
    [InlineData("narrow", 1001, 1)]
    [InlineData("ties", 3072, 307)]
    [InlineData("ties", 97, 50)]
    [InlineData("zeros", 515, 200)]
    [InlineData("inf", 333, 100)]
    [InlineData("negative", 2049, 2048)]
    [InlineData("wide", 17, 0)]
    [InlineData("ties", 17, 17)]
    [InlineData("ties", 15, 7)]          // shorter than one 16-key vector: the scalar passes alone
    [InlineData("zeros", 13, 5)]
    [InlineData("wide", 3072, 2900)]     // τ among the negatives
    // From HistogramMinimum on: the histogram pass, then counting passes over τ's bucket moved to the front of the
    // scratch ("wide", "inf", "zeros", "negative": no bucket holds an eighth of the keys) or over all keys ("narrow":
    // one bucket holds all; "ties": each of the seven values holds a seventh).
    [InlineData("wide", 70001, 7000)]
    [InlineData("wide", 65536, 1)]
    [InlineData("wide", 65536, 65535)]
    [InlineData("narrow", 70000, 20000)]
    [InlineData("ties", 70000, 9000)]
    [InlineData("inf", 66000, 30000)]
    [InlineData("zeros", 66003, 33000)]
    [InlineData("negative", 65537, 100)]
    public void Largest_EqualsSortedReference(string kind, int n, int k)
    {
        for (int seed = 0; seed < 3; seed++)
        {
            var s = Scores(kind, n, seed);
            var chosen = new int[k];
            RadixTopK.Largest(s, k, chosen);
            var expected = Reference(s, k);
            Assert.Equal(expected, chosen);
            // The caller's scratch (the topology update's), filled with garbage first: it is all overwritten.
            var scratch = Enumerable.Repeat(0xDEADBEEFu, n + 3).ToArray();
            var withScratch = new int[k];
            RadixTopK.Largest(s, k, withScratch, scratch);
            Assert.Equal(expected, withScratch);
            var viaQuickselect = new int[k];
            TopK.Largest(s, k, new float[n], viaQuickselect);
            Assert.Equal(viaQuickselect, chosen);
        }
    }

    [Fact]
    public void Largest_RejectsKOutsideRange()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => RadixTopK.Largest(new float[5], 6, new int[6]));
        Assert.Contains("k must lie in [0, 5]", e.Message);
        Assert.Throws<ArgumentException>(() => RadixTopK.Largest(new float[5], 3, new int[2]));
        var shortScratch = Assert.Throws<ArgumentException>(() => RadixTopK.Largest(new float[5], 3, new int[3], new uint[4]));
        Assert.Contains("scratch has 4 elements, expected at least n = 5", shortScratch.Message);
    }
}
