using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// The sparse KV caches against brute-force references in double precision: Mustafar pruning (attention over the
/// pruned K and V), H2O eviction (a plain simulation of the greedy heavy-hitter rule) and Quest page selection (bounds
/// and top pages by sorting); and each cache with nothing pruned or evicted decodes exactly as full recomputation.
/// </summary>
public class KvCacheTests
{
    static float[] RandomVector(Random r, int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale)).ToArray();

    // y (hs) = softmax(q·kᵀ/√hs) · v over the given rows, in double
    static double[] ReferenceAttention(float[] q, IReadOnlyList<float[]> keys, IReadOnlyList<float[]> values, out double[] probs)
    {
        int hs = q.Length;
        var s = keys.Select(k => Enumerable.Range(0, hs).Sum(d => (double)q[d] * k[d]) / Math.Sqrt(hs)).ToArray();
        double max = s.Max();
        var e = s.Select(v => Math.Exp(v - max)).ToArray();
        double sum = e.Sum();
        probs = e.Select(v => v / sum).ToArray();
        var y = new double[hs];
        for (int j = 0; j < keys.Count; j++)
            for (int d = 0; d < hs; d++) y[d] += probs[j] * values[j][d];
        return y;
    }

    static float[] Head(float[] row, int h, int hs) => row.AsSpan(h * hs, hs).ToArray();

    static float[] BruteForcePrune(float[] x, int keep)
    {
        var kept = Enumerable.Range(0, x.Length).OrderByDescending(i => Math.Abs(x[i])).ThenBy(i => i).Take(keep).ToHashSet();
        return x.Select((v, i) => kept.Contains(i) ? v : 0f).ToArray();
    }

    static void AssertClose(double[] expected, ReadOnlySpan<float> actual, double tolerance, string what)
    {
        for (int d = 0; d < expected.Length; d++)
            Assert.True(Math.Abs(expected[d] - actual[d]) <= tolerance, $"{what}, entry {d}: {actual[d]} vs reference {expected[d]}");
    }

    [Theory]
    [InlineData(2, 32, 0.7)]
    [InlineData(1, 64, 0.7)]
    [InlineData(3, 16, 0.5)]
    [InlineData(2, 20, 0.8)]
    public void PrunedCacheAttentionEqualsDenseAttentionOverThePrunedKeysAndValues(int heads, int hs, double sparsity)
    {
        int C = heads * hs, T = 37;
        var r = new Random(C);
        var cache = new KvPrunedCache(T, C, heads, sparsity);
        int keep = KvAttention.KeepCount(hs, sparsity);
        Assert.Equal(keep, cache.KeepPerHead);
        var keys = new List<float[]>();
        var values = new List<float[]>();
        var y = new float[C];
        var scores = new float[T];
        var pruned = new float[C];
        for (int p = 0; p < T; p++)
        {
            var k = RandomVector(r, C, 2);
            var v = RandomVector(r, C);
            keys.Add(k);
            values.Add(v);
            cache.Write(p, k, v);
            // each token keeps exactly keep entries per head, the largest by magnitude
            cache.PrunedKey(p, pruned);
            for (int h = 0; h < heads; h++)
            {
                Assert.Equal(keep, pruned.AsSpan(h * hs, hs).ToArray().Count(x => x != 0));
                Assert.Equal(BruteForcePrune(Head(k, h, hs), keep), pruned.AsSpan(h * hs, hs).ToArray());
            }
            cache.PrunedValue(p, pruned);
            for (int h = 0; h < heads; h++)
                Assert.Equal(BruteForcePrune(Head(v, h, hs), keep), pruned.AsSpan(h * hs, hs).ToArray());

            var q = RandomVector(r, C, 2);
            ((IKvCache)cache).Attend(y, q, p, heads, scores);
            for (int h = 0; h < heads; h++)
            {
                var expected = ReferenceAttention(Head(q, h, hs),
                    keys.Select(x => BruteForcePrune(Head(x, h, hs), keep)).ToList(),
                    values.Select(x => BruteForcePrune(Head(x, h, hs), keep)).ToList(), out _);
                AssertClose(expected, y.AsSpan(h * hs, hs), 2e-5, $"position {p}, head {h}");
            }
        }
    }

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(128)]
    public void PrunedCacheAt70PercentHoldsAtMost045TimesTheDenseBytes(int hs)
    {
        var pruned = new KvPrunedCache(100, 4 * hs, 4, 0.7);
        var dense = new DenseKvCache(100, 4 * hs);
        double ratio = (double)((IKvCache)pruned).Bytes(100) / ((IKvCache)dense).Bytes(100);
        Assert.True(ratio <= 0.45, $"hs {hs}: {ratio:F3}x the dense bytes");
        // bitmap words plus kept floats, exactly
        int keep = KvAttention.KeepCount(hs, 0.7);
        Assert.Equal(2L * 100 * 4 * (KvAttention.BitmapWords(hs) * 8 + keep * 4), ((IKvCache)pruned).Bytes(100));
    }

    // The greedy H2O rule by brute force: per head a list of (position, key, value, score); evict the least-scored
    // position older than the recent window (ties: the oldest) when full; attend and add the probabilities.
    sealed class H2OReference(int heads, int hs, int budget, int recent)
    {
        readonly List<(int Pos, float[] K, float[] V, double Score)>[] _heads =
            Enumerable.Range(0, heads).Select(_ => new List<(int, float[], float[], double)>()).ToArray();

        public double[][] Step(int p, float[] k, float[] v, float[] q)
        {
            var ys = new double[heads][];
            for (int h = 0; h < heads; h++)
            {
                var list = _heads[h];
                if (list.Count == budget)
                {
                    var victim = list.Where(e => e.Pos <= p - recent).OrderBy(e => e.Score).ThenBy(e => e.Pos).First();
                    list.Remove(victim);
                }
                list.Add((p, Head(k, h, hs), Head(v, h, hs), 0));
                ys[h] = ReferenceAttention(Head(q, h, hs), list.Select(e => e.K).ToList(), list.Select(e => e.V).ToList(), out var probs);
                for (int j = 0; j < list.Count; j++) list[j] = list[j] with { Score = list[j].Score + probs[j] };
            }
            return ys;
        }

        public int[] Kept(int h) => _heads[h].Select(e => e.Pos).Order().ToArray();
    }

    [Theory]
    [InlineData(8, 4)]
    [InlineData(8, 0)]
    [InlineData(5, 4)]
    [InlineData(1, 0)]
    public void H2OKeepsExactlyTheBudgetAndTheHeavyHittersOfABruteForceSimulation(int budget, int recent)
    {
        int heads = 2, hs = 8, C = heads * hs, T = 40;
        var r = new Random(budget * 10 + recent);
        var cache = new KvHeavyHitterCache(T, C, heads, budget, recent);
        var reference = new H2OReference(heads, hs, budget, recent);
        var y = new float[C];
        var scores = new float[T];
        for (int p = 0; p < T; p++)
        {
            var k = RandomVector(r, C, 3);
            var v = RandomVector(r, C);
            var q = RandomVector(r, C, 3);
            cache.Write(p, k, v);
            ((IKvCache)cache).Attend(y, q, p, heads, scores);
            var expected = reference.Step(p, k, v, q);
            Assert.Equal(Math.Min(p + 1, budget), cache.Count);
            for (int h = 0; h < heads; h++)
            {
                var kept = cache.KeptPositions(h).Order().ToArray();
                Assert.Equal(reference.Kept(h), kept);
                // the recent window is always there
                for (int j = Math.Max(0, p - recent + 1); j <= p; j++) Assert.Contains(j, kept);
                AssertClose(expected[h], y.AsSpan(h * hs, hs), 2e-5, $"position {p}, head {h}");
            }
        }
        Assert.Equal(2L * budget * C * 4 + budget * heads * 12, ((IKvCache)cache).Bytes(T));
    }

    [Fact]
    public void H2OTakesPositionsInOrderAndRestartsAtZero()
    {
        var cache = new KvHeavyHitterCache(10, 4, 1, 3, 1);
        var x = new float[4];
        cache.Write(0, x, x);
        cache.Write(1, x, x);
        var e = Assert.Throws<InvalidOperationException>(() => cache.Write(3, x, x));
        Assert.Contains("got 3 after 1", e.Message);
        cache.Write(0, x, x);
        Assert.Equal(1, cache.Count);
    }

    [Theory]
    [InlineData(16, 4)]
    [InlineData(12, 4)]
    [InlineData(8, 1)]
    [InlineData(7, 3)]
    public void QuestBoundsBoundEveryKeyAndTheChosenPagesAreTheTopByBound(int budget, int page)
    {
        int heads = 2, hs = 16, C = heads * hs, T = 45;
        var r = new Random(budget + 100 * page);
        var cache = new KvPageCache(T, C, heads, budget, page);
        int K = budget / page;
        Assert.Equal(K, cache.PagesPerQuery);
        var keys = new List<float[]>();
        var values = new List<float[]>();
        var y = new float[C];
        var scores = new float[T];
        var chosen = new int[T];
        for (int p = 0; p < T; p++)
        {
            var k = RandomVector(r, C, 2);
            var v = RandomVector(r, C);
            var q = RandomVector(r, C, 2);
            keys.Add(k);
            values.Add(v);
            cache.Write(p, k, v);
            int pages = p / page + 1;
            for (int h = 0; h < heads; h++)
            {
                var qh = Head(q, h, hs);
                // the bound bounds q·k of every key in its page (independent double computation of both sides)
                var bounds = new double[pages];
                for (int pg = 0; pg < pages; pg++)
                {
                    var members = Enumerable.Range(pg * page, Math.Min(page, p + 1 - pg * page)).ToArray();
                    double bound = 0;
                    for (int d = 0; d < hs; d++)
                    {
                        double min = members.Min(j => (double)keys[j][h * hs + d]), max = members.Max(j => (double)keys[j][h * hs + d]);
                        bound += Math.Max(qh[d] * min, qh[d] * max);
                    }
                    bounds[pg] = bound;
                    Assert.Equal(bound, cache.PageBound(qh, pg, h), 1e-4);
                    foreach (int j in members)
                        Assert.True(Enumerable.Range(0, hs).Sum(d => (double)qh[d] * keys[j][h * hs + d]) <= bound + 1e-9, $"page {pg} position {j}");
                }
                int count = cache.SelectPages(qh, p, h, chosen);
                int[] expectedPages = p + 1 <= budget || pages <= K
                    ? Enumerable.Range(0, pages).ToArray()
                    : Enumerable.Range(0, pages).OrderByDescending(pg => bounds[pg]).ThenBy(pg => pg).Take(K).Order().ToArray();
                Assert.Equal(expectedPages, chosen.AsSpan(0, count).ToArray());

                ((IKvCache)cache).Attend(y, q, p, heads, scores);
                var positions = expectedPages.SelectMany(pg => Enumerable.Range(pg * page, Math.Min(page, p + 1 - pg * page))).ToArray();
                var expected = ReferenceAttention(qh, positions.Select(j => Head(keys[j], h, hs)).ToList(), positions.Select(j => Head(values[j], h, hs)).ToList(), out _);
                AssertClose(expected, y.AsSpan(h * hs, hs), 2e-5, $"position {p}, head {h}");
            }
        }
    }

    static void RandomWeights(Gpt gpt, int seed)
    {
        var r = new Random(seed);
        foreach (var p in gpt.Parameters)
        {
            var v = p.Value.Span;
            bool ln = p.Name.Contains(".ln_");
            for (int i = 0; i < v.Length; i++)
                v[i] = (float)((ln && p.Name.EndsWith("weight") ? 1 : 0) + (r.NextDouble() * 2 - 1) * 0.4);
        }
    }

    public static TheoryData<string, int> NothingDropped => new()
    {
        { "dense", 1 }, { "dense", 4 }, { "pruned", 1 }, { "pruned", 4 }, { "h2o", 1 }, { "h2o", 4 }, { "quest", 1 }, { "quest", 4 },
    };

    [Theory]
    [MemberData(nameof(NothingDropped))]
    public void WithNothingPrunedOrEvictedCachedDecodeEqualsFullRecomputation(string kind, int prefill)
    {
        var config = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 12, VocabSize = 13, Bias = true };
        int T = config.BlockSize, V = config.VocabSize;
        var gpt = new Gpt(config, 1, T);
        RandomWeights(gpt, 5);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 5 + 2) % V).ToArray();
        gpt.Forward(tokens, [], false);
        var reference = gpt.Logits.ToArray();
        // sparsity 0 keeps every entry; a budget of block_size evicts nothing and selects every page
        var spec = new KvCacheSpec { Kind = kind, Sparsity = 0, Budget = T, Recent = 2, PageSize = 4 };
        var cache = gpt.CreateKvCache(spec);
        var logits = gpt.ForwardCached(cache, tokens.AsSpan(0, prefill)).ToArray();
        AssertRow(reference, prefill - 1, logits, V);
        for (int t = prefill; t < T; t++)
        {
            logits = gpt.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
            AssertRow(reference, t, logits, V);
        }
    }

    static void AssertRow(float[] reference, int t, float[] logits, int V)
    {
        for (int v = 0; v < V; v++)
            Assert.True(Math.Abs(reference[t * V + v] - logits[v]) <= 2e-5f, $"position {t}, token {v}: cached {logits[v]} vs full {reference[t * V + v]}");
    }

    [Fact]
    public void SparseCachesDecodeDifferentlyOnceTheyDropSomething()
    {
        // the sparse paths really run: a small budget or high sparsity changes the logits
        var config = new GptConfig { NLayer = 1, NHead = 2, NEmbd = 32, BlockSize = 24, VocabSize = 11 };
        var gpt = new Gpt(config, 1, config.BlockSize);
        RandomWeights(gpt, 9);
        var tokens = Enumerable.Range(0, 24).Select(i => (i * 7 + 1) % 11).ToArray();
        float[] Last(KvCacheSpec? spec)
        {
            var cache = gpt.CreateKvCache(spec);
            gpt.ForwardCached(cache, tokens.AsSpan(0, 1));
            for (int t = 1; t < tokens.Length - 1; t++) gpt.ForwardCached(cache, tokens.AsSpan(t, 1));
            return gpt.ForwardCached(cache, tokens.AsSpan(tokens.Length - 1, 1)).ToArray();
        }
        var dense = Last(null);
        foreach (var spec in new[] { new KvCacheSpec { Kind = "pruned", Sparsity = 0.7 }, new KvCacheSpec { Kind = "h2o", Budget = 4 }, new KvCacheSpec { Kind = "quest", Budget = 8, PageSize = 4 } })
            Assert.True(dense.Zip(Last(spec)).Max(p => Math.Abs(p.First - p.Second)) > 1e-4, spec.ToString());
    }

    [Theory]
    [InlineData("h2o", 0.7, 0, -1, 16, "KV budget 0 must be at least 1")]
    [InlineData("quest", 0.7, 0, -1, 16, "KV budget 0 must be at least 1")]
    [InlineData("pruned", 1.0, 8, -1, 16, "KV sparsity 1 must lie in [0, 1)")]
    [InlineData("pruned", -0.1, 8, -1, 16, "KV sparsity -0.1 must lie in [0, 1)")]
    [InlineData("snap", 0.7, 8, -1, 16, "unknown KV cache 'snap': expected one of dense, pruned, h2o, quest")]
    [InlineData("h2o", 0.7, 8, 8, 16, "KV recent window 8 must be smaller than the budget 8")]
    [InlineData("quest", 0.7, 8, -1, 9, "KV page size 9 must lie in [1, budget 8]")]
    public void BadSpecsAreOneLineErrorsNamingTheValue(string kind, double sparsity, int budget, int recent, int page, string message)
    {
        var spec = new KvCacheSpec { Kind = kind, Sparsity = sparsity, Budget = budget, Recent = recent, PageSize = page };
        var e = Assert.Throws<ArgumentException>(() => spec.Validate());
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        var gpt = new Gpt(new GptConfig { NLayer = 1, NHead = 1, NEmbd = 8, BlockSize = 8, VocabSize = 5 }, 1, 8);
        Assert.Throws<ArgumentException>(() => gpt.CreateKvCache(spec));
    }
}
