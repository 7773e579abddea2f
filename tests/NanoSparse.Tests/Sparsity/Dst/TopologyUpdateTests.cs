using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Tests.Sparsity.Dst;

public sealed class TopologyUpdateTests
{
    sealed class Layer
    {
        public required CsrLinearWeight W;
        public required float[] Values, M, V;
        public int Out => W.OutFeatures;
        public int In => W.InFeatures;
        public float[] Dense(float[] stored) { var d = new float[Out * In]; W.ToDense(stored, d); return d; }
        public HashSet<int> Active()
        {
            var s = new HashSet<int>();
            var rp = W.Structure.RowPointers;
            for (int o = 0; o < Out; o++) for (int p = rp[o]; p < rp[o + 1]; p++) s.Add(o * In + W.Structure.ColumnIndex(p));
            return s;
        }
        // (cell, value) of every stored entry
        public Dictionary<int, int> EntryOf()
        {
            var map = new Dictionary<int, int>();
            var rp = W.Structure.RowPointers;
            for (int o = 0; o < Out; o++) for (int p = rp[o]; p < rp[o + 1]; p++) map[o * In + W.Structure.ColumnIndex(p)] = p;
            return map;
        }
    }

    static Layer Make(int outF, int inF, double density, int seed, bool constantFanIn = false)
    {
        var rng = new Rng((ulong)seed);
        var w = constantFanIn ? ConstantFanIn.Random(outF, inF, density, rng) : CsrLinearWeight.Random(outF, inF, density, rng);
        var values = new float[w.StoredCount];
        var m = new float[w.StoredCount];
        var v = new float[w.StoredCount];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)rng.NextGaussian();
            m[i] = (float)rng.NextGaussian() * 0.1f;
            v[i] = rng.NextFloat() * 0.01f + 1e-6f;
        }
        return new Layer { W = w, Values = values, M = m, V = v };
    }

    static float[] Gradient(int cells, int seed)
    {
        var rng = new Rng((ulong)seed + 1000);
        // Quantised, so ties among |g| occur and the tie rule is exercised.
        return Enumerable.Range(0, cells).Select(_ => (rng.NextInt(41) - 20) * 0.05f).ToArray();
    }

    static LayerUpdate Update(Layer l, DstMethod method, double fraction, float[]? gradient, ulong seed = 5, double gamma = 0.3)
    {
        var u = new TopologyUpdate([(l.Out, l.In, l.W.StoredCount)]);
        return u.Apply(l.W, l.Values, l.M, l.V, method, fraction, gradient ?? [], new Rng(seed), gamma);
    }

    [Theory]
    [InlineData(DstMethod.Set, 0.3)]
    [InlineData(DstMethod.RigL, 0.3)]
    [InlineData(DstMethod.SRigL, 0.3)]
    [InlineData(DstMethod.Set, 1.0)]
    [InlineData(DstMethod.RigL, 1.0)]
    [InlineData(DstMethod.RigL, 0.0)]
    public void EveryUpdateKeepsTheLayersStoredCountExactly(DstMethod method, double fraction)
    {
        foreach (var (o, i, d) in new[] { (48, 16, 0.1), (40, 64, 0.5), (17, 33, 0.9), (8, 300, 0.05) })
        {
            var l = Make(o, i, d, o * i, constantFanIn: method == DstMethod.SRigL);
            int nnz = l.W.StoredCount;
            var counts = new List<int>();
            for (int round = 0; round < 4; round++)
            {
                Update(l, method, fraction, Gradient(o * i, round), seed: (ulong)round);
                Assert.Equal(nnz, l.W.StoredCount);
                Assert.Equal(nnz, l.W.Structure.RowPointers[o]);
                Assert.Equal(nnz, l.Active().Count);   // distinct positions
                l.W.Structure.Validate();
            }
        }
    }

    [Theory]
    [InlineData(DstMethod.Set)]
    [InlineData(DstMethod.RigL)]
    public void DroppedPositionsAreTheSmallestMagnitudes(DstMethod method)
    {
        var l = Make(40, 64, 0.3, 11);
        // Ties in magnitude: the lower CSR entry (row-major position) goes first.
        for (int p = 0; p < l.Values.Length; p += 7) l.Values[p] = 0.5f * (p % 2 == 0 ? 1 : -1);
        var before = l.Active();
        var entry = l.EntryOf();
        var valueAt = before.ToDictionary(c => c, c => l.Values[entry[c]]);
        int k = (int)Math.Round(0.3 * l.W.StoredCount);
        var expected = before.OrderBy(c => Math.Abs(valueAt[c])).ThenBy(c => c).Take(k).ToHashSet();
        // RigL would regrow a dropped weight with a large gradient at once: none here, so the drop shows in the layout.
        var g = Gradient(40 * 64, 3);
        for (int c = 0; c < g.Length; c++) g[c] = before.Contains(c) ? 0 : 0.01f + Math.Abs(g[c]);
        var result = Update(l, method, 0.3, g);
        var after = l.Active();
        var dropped = before.Where(c => !after.Contains(c)).ToHashSet();
        Assert.Equal(k, result.Dropped);
        Assert.True(expected.SetEquals(dropped), $"dropped {dropped.Count} positions, {dropped.Except(expected).Count()} not among the {k} smallest");
    }

    [Fact]
    public void RigLRegrowsTheTopDenseGradientPositionsAmongEveryPositionNotKeptJustDroppedOnesIncluded()
    {
        // Evci et al. 2020, Algorithm 1: I_grow = ArgTopK over i ∉ θ \ I_drop of |∇L|, so a dropped weight whose
        // gradient is among the largest comes straight back, with its value and moments (reinit_when_same = False).
        var l = Make(48, 32, 0.2, 21);
        var g = Gradient(48 * 32, 9);   // |g| ≤ 1
        var before = l.Active();
        var entry = l.EntryOf();
        var (w0, m0, v0) = (l.Dense(l.Values), l.Dense(l.M), l.Dense(l.V));
        int k = (int)Math.Round(0.25 * l.W.StoredCount);
        var droppedOrder = before.OrderBy(c => Math.Abs(l.Values[entry[c]])).ThenBy(c => c).Take(k).ToList();
        var dropped = droppedOrder.ToHashSet();
        foreach (int c in droppedOrder.Where((_, i) => i % 10 == 0)) g[c] = 2f;   // every 10th dropped one: largest |g|
        var grownExpected = Enumerable.Range(0, 48 * 32).Where(c => !before.Contains(c) || dropped.Contains(c))
            .OrderByDescending(c => Math.Abs(g[c])).ThenBy(c => c).Take(k).ToHashSet();
        int regrownCount = grownExpected.Count(dropped.Contains);
        Assert.True(regrownCount >= droppedOrder.Count / 10);

        var result = Update(l, DstMethod.RigL, 0.25, g);
        var after = l.Active();
        Assert.True(before.Except(dropped).Union(grownExpected).ToHashSet().SetEquals(after),
            $"{after.Except(before.Except(dropped)).Except(grownExpected).Count()} of {k} grown positions are not the top |g| ones");
        Assert.Equal(k, result.Dropped);
        Assert.Equal(k - regrownCount, result.Changed);
        var (w1, m1, v1) = (l.Dense(l.Values), l.Dense(l.M), l.Dense(l.V));
        foreach (int c in grownExpected)
        {
            bool regrown = dropped.Contains(c);
            Assert.Equal(regrown ? w0[c] : 0f, w1[c]);
            Assert.Equal(regrown ? m0[c] : 0f, m1[c]);
            Assert.Equal(regrown ? v0[c] : 0f, v1[c]);
        }
    }

    [Fact]
    public void RigLWithoutLargeGradientsAtDroppedPositionsChangesExactlyTheDropCount()
    {
        var l = Make(48, 32, 0.2, 22);
        var g = Gradient(48 * 32, 10);
        var before = l.Active();
        foreach (int c in before) g[c] = 0;   // every active position: |g| = 0, below every inactive one's but ties
        for (int c = 0; c < g.Length; c++) if (!before.Contains(c) && g[c] == 0) g[c] = 0.01f;
        int k = (int)Math.Round(0.3 * l.W.StoredCount);
        var expected = Enumerable.Range(0, 48 * 32).Where(c => !before.Contains(c))
            .OrderByDescending(c => Math.Abs(g[c])).ThenBy(c => c).Take(k).ToHashSet();
        var result = Update(l, DstMethod.RigL, 0.3, g);
        Assert.Equal(k, result.Changed);
        Assert.True(expected.SetEquals(l.Active().Where(c => !before.Contains(c))));
    }

    [Fact]
    public void SetRegrowsOnlyAtInactivePositionsAndIsReproducibleFromItsSeed()
    {
        HashSet<int> Run(ulong seed, out HashSet<int> before)
        {
            var l = Make(64, 48, 0.1, 4);
            before = l.Active();
            var r = Update(l, DstMethod.Set, 0.3, null, seed);
            Assert.Equal(r.Grown, r.Changed);   // every grown position was inactive
            return l.Active();
        }
        var a = Run(1, out var before);
        var b = Run(1, out _);
        var c = Run(2, out _);
        int k = (int)Math.Round(0.3 * before.Count);
        var grown = a.Where(x => !before.Contains(x)).ToList();
        Assert.Equal(k, grown.Count);
        Assert.True(a.SetEquals(b));
        Assert.False(a.SetEquals(c));
    }

    [Fact]
    public void SetAtHighDensityTakesEveryInactivePositionThenDroppedOnes()
    {
        var l = Make(10, 10, 0.9, 8);   // 90 stored, 10 inactive; drop 45
        var before = l.Active();
        var r = Update(l, DstMethod.Set, 0.5, null);
        var after = l.Active();
        Assert.Equal(90, after.Count);
        Assert.Equal(10, r.Changed);
        Assert.True(Enumerable.Range(0, 100).Where(x => !before.Contains(x)).All(after.Contains));
    }

    [Theory]
    [InlineData(DstMethod.Set)]
    [InlineData(DstMethod.RigL)]
    [InlineData(DstMethod.SRigL)]
    public void GrownWeightsAndMomentsStartAtZeroAndKeptOnesKeepTheirValues(DstMethod method)
    {
        var l = Make(32, 40, 0.25, 17, constantFanIn: method == DstMethod.SRigL);
        for (int i = 0; i < l.Values.Length; i++) if (l.Values[i] == 0) l.Values[i] = 1;   // no stored zero
        var before = l.Active();
        var (w0, m0, v0) = (l.Dense(l.Values), l.Dense(l.M), l.Dense(l.V));
        Update(l, method, 0.3, Gradient(32 * 40, 1));
        var (w1, m1, v1) = (l.Dense(l.Values), l.Dense(l.M), l.Dense(l.V));
        var after = l.Active();
        int grown = 0;
        foreach (int c in after)
        {
            if (before.Contains(c) && w0[c] == w1[c] && m0[c] == m1[c] && v0[c] == v1[c]) continue;   // kept, moved with it
            Assert.False(before.Contains(c), $"position {c} was kept but its value or moments changed");
            Assert.Equal(0f, w1[c]);
            Assert.Equal(0f, m1[c]);
            Assert.Equal(0f, v1[c]);
            grown++;
        }
        Assert.True(grown > 0);
        foreach (int c in before.Where(c => !after.Contains(c))) Assert.Equal(0f, w1[c]);
    }

    [Theory]
    [InlineData(40)]   // token-major kernels
    [InlineData(5)]    // feature-major panels
    public void ALayerAfterAnUpdateGivesTheMaskedDenseForwardAndGradients(int rows)
    {
        var l = Make(48, 40, 0.3, 5);
        Update(l, DstMethod.RigL, 0.3, Gradient(48 * 40, 2));
        Update(l, DstMethod.Set, 0.2, null);
        var rng = new Rng(77);
        var x = Enumerable.Range(0, rows * l.In).Select(_ => (float)rng.NextGaussian()).ToArray();
        var dy = Enumerable.Range(0, rows * l.Out).Select(_ => (float)rng.NextGaussian()).ToArray();
        var dense = l.Dense(l.Values);
        var ws = new float[l.W.WorkspaceFloats(rows)];
        var y = new float[rows * l.Out];
        l.W.Forward(y, x, l.Values, [], [], rows, ws);
        var dx = new float[rows * l.In];
        var dValues = new float[l.W.StoredCount];
        l.W.Backward(dx, dValues, [], dy, x, l.Values, [], rows, ws);
        var dW = l.Dense(dValues);
        var mask = l.Dense(Enumerable.Repeat(1f, l.W.StoredCount).ToArray());
        for (int t = 0; t < rows; t++)
            for (int o = 0; o < l.Out; o++)
            {
                double s = 0;
                for (int j = 0; j < l.In; j++) s += (double)dense[o * l.In + j] * x[t * l.In + j];
                Assert.Equal(s, y[t * l.Out + o], 1e-4);
            }
        for (int t = 0; t < rows; t++)
            for (int j = 0; j < l.In; j++)
            {
                double s = 0;
                for (int o = 0; o < l.Out; o++) s += (double)dy[t * l.Out + o] * dense[o * l.In + j];
                Assert.Equal(s, dx[t * l.In + j], 1e-4);
            }
        for (int o = 0; o < l.Out; o++)
            for (int j = 0; j < l.In; j++)
            {
                double s = 0;
                for (int t = 0; t < rows; t++) s += (double)dy[t * l.Out + o] * x[t * l.In + j];
                Assert.Equal(mask[o * l.In + j] * s, dW[o * l.In + j], 1e-4);
            }
    }

    [Fact]
    public void TheDenseGradientCaptureIsDyTransposedTimesX()
    {
        var l = Make(24, 20, 0.2, 6);
        const int rows = 36;
        var rng = new Rng(3);
        var x = Enumerable.Range(0, rows * l.In).Select(_ => (float)rng.NextGaussian()).ToArray();
        var dy = Enumerable.Range(0, rows * l.Out).Select(_ => (float)rng.NextGaussian()).ToArray();
        var capture = new float[l.Out * l.In];
        l.W.DenseGradientCapture = capture;
        var ws = new float[l.W.WorkspaceFloats(rows)];
        l.W.Backward(x.ToArray(), new float[l.W.StoredCount], [], dy, x, l.Values, [], rows, ws);
        l.W.Backward(new float[x.Length], new float[l.W.StoredCount], [], dy, x, l.Values, [], rows, ws);   // accumulates
        l.W.DenseGradientCapture = null;
        for (int o = 0; o < l.Out; o++)
            for (int j = 0; j < l.In; j++)
            {
                double s = 0;
                for (int t = 0; t < rows; t++) s += (double)dy[t * l.Out + o] * x[t * l.In + j];
                Assert.Equal(2 * s, capture[o * l.In + j], 1e-3);
            }
    }

    static int[] RowCounts(CsrLinearWeight w) =>
        Enumerable.Range(0, w.OutFeatures).Select(o => w.Structure.RowPointers[o + 1] - w.Structure.RowPointers[o]).ToArray();

    [Fact]
    public void SRigLKeepsEveryRowAtTheSameFanIn()
    {
        var l = Make(32, 40, 0.25, 12, constantFanIn: true);
        Assert.All(RowCounts(l.W), c => Assert.Equal(10, c));
        for (int round = 0; round < 3; round++)
        {
            var r = Update(l, DstMethod.SRigL, 0.3, Gradient(32 * 40, round), gamma: 0);
            Assert.Equal(32, r.ActiveRows);
            Assert.All(RowCounts(l.W), c => Assert.Equal(10, c));
        }
        Assert.True(ConstantFanIn.Check(l.W).Constant);
    }

    [Fact]
    public void SRigLAblatesANeuronWithoutSalientWeightsAndSpreadsItsFanInOverTheOthers()
    {
        var l = Make(8, 40, 0.25, 13, constantFanIn: true);   // 8 rows of 10: 80 stored
        var g = Gradient(8 * 40, 4);
        for (int p = l.W.Structure.RowPointers[3]; p < l.W.Structure.RowPointers[4]; p++) l.Values[p] = 1e-6f;   // row 3: smallest
        for (int j = 0; j < 40; j++) g[3 * 40 + j] = 0;   // and no gradient
        for (int i = 0; i < l.Values.Length; i++) if (Math.Abs(l.Values[i]) < 1e-3 && i / 10 != 3) l.Values[i] = 0.5f;
        var r = Update(l, DstMethod.SRigL, 0.2, g, gamma: 0.3);   // drops 16 of 80: row 3's 10 first
        var counts = RowCounts(l.W);
        Assert.Equal(0, counts[3]);
        Assert.Equal(7, r.ActiveRows);
        Assert.Equal(80, counts.Sum());
        // 80 over 7 rows: 11 each, the first 3 of them 12.
        Assert.Equal([12, 12, 12, 0, 11, 11, 11, 11], counts);
    }

    [Theory]
    [InlineData(DstMethod.Set)]
    [InlineData(DstMethod.RigL)]
    [InlineData(DstMethod.SRigL)]
    public void AnUpdateAllocatesNothingAfterTheFirst(DstMethod method)
    {
        var l = Make(64, 48, 0.2, 9, constantFanIn: method == DstMethod.SRigL);
        var g = Gradient(64 * 48, 3);
        var u = new TopologyUpdate([(l.Out, l.In, l.W.StoredCount)]);
        var rng = new Rng(1);
        var ever = new ulong[(64 * 48 + 63) / 64];
        void Once() => u.Apply(l.W, l.Values, l.M, l.V, method, 0.3, g, rng, 0.3, ever);
        Once();
        Assert.Equal(0, Allocations.SteadyState(Once));
    }

    [Fact]
    public void StaticChangesNothing()
    {
        var l = Make(16, 16, 0.5, 1);
        var before = l.Active();
        var values = l.Values.ToArray();
        var r = Update(l, DstMethod.Static, 0.3, null);
        Assert.Equal(0, r.Changed);
        Assert.True(before.SetEquals(l.Active()));
        Assert.Equal(values, l.Values);
    }

    [Fact]
    public void ReplaceStructureRefusesADifferentStoredCount()
    {
        var l = Make(4, 4, 0.5, 1);
        var e = Assert.Throws<ArgumentException>(() => l.W.ReplaceStructure([0, 1, 2, 3, 4], [0, 1, 2, 3], new int[5]));
        Assert.Contains("stored count 8", e.Message);
    }
}
