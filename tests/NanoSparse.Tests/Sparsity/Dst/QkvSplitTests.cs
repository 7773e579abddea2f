using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Sparsity;
using NanoSparse.Sparsity.Dst;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Sparsity.Dst;

/// <summary>dst_split_qkv: c_attn's Q, K and V row slices as three layers (densities, starting layout, updates).</summary>
[Collection("KernelThreads")]
public sealed class QkvSplitTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    const int A = 16, In = 24;   // one slice is A × In; the fused weight 3A × In

    sealed record Fused(CsrLinearWeight W, float[] Values, float[] M, float[] V);

    static Fused Make(double density, int seed, bool constantFanIn = false)
    {
        var rng = new Rng((ulong)seed);
        var w = constantFanIn ? ConstantFanIn.Random(3 * A, In, density, rng) : QkvSplit.RandomSlices(3 * A, In, density, rng);
        var values = new float[w.StoredCount];
        var m = new float[w.StoredCount];
        var v = new float[w.StoredCount];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)rng.NextGaussian();
            m[i] = (float)rng.NextGaussian() * 0.1f;
            v[i] = rng.NextFloat() * 0.01f + 1e-6f;
        }
        return new Fused(w, values, m, v);
    }

    // Quantised (ties occur) and 20x larger in the V rows, as V's gradients are in nanoGPT's c_attn: without the split
    // RigL moves weights from Q and K into V.
    static float[] VHeavyGradient(int seed)
    {
        var rng = new Rng((ulong)seed + 1000);
        var g = new float[3 * A * In];
        for (int c = 0; c < g.Length; c++) g[c] = (rng.NextInt(41) - 20) * 0.05f * (c >= 2 * A * In ? 20 : 1);
        return g;
    }

    static HashSet<int> Active(CsrLinearWeight w)
    {
        var s = new HashSet<int>();
        var rp = w.Structure.RowPointers;
        for (int o = 0; o < w.OutFeatures; o++) for (int p = rp[o]; p < rp[o + 1]; p++) s.Add(o * w.InFeatures + w.Structure.ColumnIndex(p));
        return s;
    }

    static readonly int[] Groups = [0, A, 2 * A, 3 * A];

    [Fact]
    public void RowGroupsAreTheQKVSlicesOfAFusedCAttnOnlyWhenSplit()
    {
        Assert.Equal([0, 64, 128, 192], QkvSplit.RowGroups("transformer.h.3.attn.c_attn.weight", 192, split: true));
        Assert.Equal([0, 192], QkvSplit.RowGroups("transformer.h.3.attn.c_attn.weight", 192, split: false));
        Assert.Equal([0, 64], QkvSplit.RowGroups("transformer.h.3.attn.c_proj.weight", 64, split: true));
        Assert.Equal([0, 256], QkvSplit.RowGroups("transformer.h.0.mlp.c_fc.weight", 256, split: true));
    }

    [Fact]
    public void TheStartingLayoutHoldsExactlyItsShareInEachSlice()
    {
        var w = QkvSplit.RandomSlices(3 * A, In, 0.3, new Rng(4));
        int share = (int)Math.Round(0.3 * A * In);
        Assert.Equal([share, share, share], QkvSplit.StoredPerGroup(w, Groups));
        // Each slice is a uniform draw: over many seeds every row of each slice holds about density · In.
        var rowTotals = new double[3 * A];
        for (int seed = 0; seed < 200; seed++)
        {
            var r = QkvSplit.RandomSlices(3 * A, In, 0.3, new Rng((ulong)seed));
            for (int o = 0; o < 3 * A; o++) rowTotals[o] += r.Structure.RowPointers[o + 1] - r.Structure.RowPointers[o];
        }
        Assert.All(rowTotals, t => Assert.InRange(t / 200, 0.3 * In - 0.7, 0.3 * In + 0.7));
    }

    [Theory]
    [InlineData(DstMethod.Set)]
    [InlineData(DstMethod.RigL)]
    [InlineData(DstMethod.SRigL)]
    public void EachSlicesStoredCountStaysExactThroughUpdates(DstMethod method)
    {
        var l = Make(0.25, 3, constantFanIn: method == DstMethod.SRigL);
        var before = QkvSplit.StoredPerGroup(l.W, Groups);
        var update = new TopologyUpdate([(l.W.OutFeatures, l.W.InFeatures, l.W.StoredCount)]);
        var rng = new Rng(8);
        for (int step = 0; step < 6; step++)
        {
            var r = update.Apply(l.W, l.Values, l.M, l.V, method, 0.3, VHeavyGradient(step), rng, 0.3, default, Groups);
            Assert.True(r.Changed > 0);
            Assert.Equal(before, QkvSplit.StoredPerGroup(l.W, Groups));
        }
    }

    [Fact]
    public void WithoutTheSplitRigLMovesWeightsIntoTheVSlice()
    {
        // The same update as above on one group: the V-heavy gradient pulls regrowth into V (what the split prevents).
        var l = Make(0.25, 3);
        var before = QkvSplit.StoredPerGroup(l.W, Groups);
        new TopologyUpdate([(l.W.OutFeatures, l.W.InFeatures, l.W.StoredCount)])
            .Apply(l.W, l.Values, l.M, l.V, DstMethod.RigL, 0.3, VHeavyGradient(0), null);
        var after = QkvSplit.StoredPerGroup(l.W, Groups);
        Assert.True(after[2] > before[2], $"V held {before[2]} before, {after[2]} after");
        Assert.Equal(before.Sum(), after.Sum());
    }

    [Fact]
    public void RigLDropsAndRegrowsWithinEachSliceByBruteForce()
    {
        // Per slice s (rows [r0, r1)): k_s = round(f · nnz_s); drop the k_s smallest |w| of the slice (ties: lower
        // position); regrow the k_s largest |g| among the slice's positions not kept, just-dropped ones included (ties:
        // lower position). Brute force over sorted lists, independent of TopologyUpdate's TopK.
        var l = Make(0.25, 11);
        var g = VHeavyGradient(5);
        var activeBefore = Active(l.W);
        var valueAt = new Dictionary<int, float>();
        var rp = l.W.Structure.RowPointers;
        for (int o = 0; o < 3 * A; o++) for (int p = rp[o]; p < rp[o + 1]; p++) valueAt[o * In + l.W.Structure.ColumnIndex(p)] = l.Values[p];
        const double f = 0.3;
        var expected = new HashSet<int>();
        int expectedDropped = 0;
        for (int s = 0; s < 3; s++)
        {
            int lo = s * A * In, hi = (s + 1) * A * In;
            var mine = activeBefore.Where(c => c >= lo && c < hi).ToList();
            int k = (int)Math.Round(f * mine.Count);
            expectedDropped += k;
            var dropped = mine.OrderBy(c => Math.Abs(valueAt[c])).ThenBy(c => c).Take(k).ToHashSet();
            var kept = mine.Where(c => !dropped.Contains(c)).ToHashSet();
            var grown = Enumerable.Range(lo, hi - lo).Where(c => !kept.Contains(c))
                .OrderByDescending(c => Math.Abs(g[c])).ThenBy(c => c).Take(k);
            expected.UnionWith(kept);
            expected.UnionWith(grown);
        }
        var r = new TopologyUpdate([(l.W.OutFeatures, l.W.InFeatures, l.W.StoredCount)])
            .Apply(l.W, l.Values, l.M, l.V, DstMethod.RigL, f, g, null, 0.3, default, Groups);
        var after = Active(l.W);
        Assert.True(expected.SetEquals(after), $"{after.Except(expected).Count()} positions differ from the brute force");
        Assert.Equal(expectedDropped, r.Dropped);
    }

    [Fact]
    public void SRigLKeepsConstantFanInWithinEachSlice()
    {
        var l = Make(0.25, 17, constantFanIn: true);
        var update = new TopologyUpdate([(l.W.OutFeatures, l.W.InFeatures, l.W.StoredCount)]);
        for (int step = 0; step < 4; step++)
        {
            update.Apply(l.W, l.Values, l.M, l.V, DstMethod.SRigL, 0.3, VHeavyGradient(step), null, 0.3, default, Groups);
            var rp = l.W.Structure.RowPointers;
            for (int s = 0; s < 3; s++)
            {
                var counts = Enumerable.Range(s * A, A).Select(o => rp[o + 1] - rp[o]).Where(c => c > 0).ToArray();
                Assert.True(counts.Max() - counts.Min() <= 1, $"slice {s}: row counts {counts.Min()}..{counts.Max()}");
            }
        }
    }

    [Fact]
    public void BadRowGroupsAreRefused()
    {
        var l = Make(0.25, 3);
        var u = new TopologyUpdate([(l.W.OutFeatures, l.W.InFeatures, l.W.StoredCount)]);
        var e = Assert.Throws<ArgumentException>(() => u.Apply(l.W, l.Values, l.M, l.V, DstMethod.Set, 0.3, default, new Rng(1), 0.3, default, [0, 20, 40]));
        Assert.Contains("row groups (0, 20, 40)", e.Message);
    }

    [Theory]
    [InlineData(0.9)]
    [InlineData(0.8)]
    public void ErkDensitiesWithTheSplitAverageToTheGlobalTarget(double sparsity)
    {
        // medium: C = 256, 6 layers. Split: Q, K, V and c_proj are C × C (raw (C + C)/C² = 2/C), c_fc and mlp.c_proj
        // 4C × C (raw 5/(4C)); per layer Σ raw·cells = 4·2C + 2·5C = 18C over 12C² cells, so ε = d·12C²/(18C) and
        // the densities are 4/3·d (attention) and 5/6·d (MLP), d = 1 − sparsity.
        var config = new GptConfig { NLayer = 6, NHead = 8, NEmbd = 256, BlockSize = 256, VocabSize = 85 };
        var split = SparseModelConfig.Apply(config, sparsity, SparseModelConfig.ErdosRenyiKernel, splitQkv: true, seed: 1);
        double d = 1 - sparsity;
        Assert.Equal(4.0 / 3 * d, split.WeightDensity(0, "attn.c_attn"), 12);
        Assert.Equal(4.0 / 3 * d, split.WeightDensity(0, "attn.c_proj"), 12);
        Assert.Equal(5.0 / 6 * d, split.WeightDensity(0, "mlp.c_fc"), 12);
        Assert.Equal(5.0 / 6 * d, split.WeightDensity(0, "mlp.c_proj"), 12);
        long C = 256;
        double held = 3 * C * C * split.WeightDensity(0, "attn.c_attn") + C * C * split.WeightDensity(0, "attn.c_proj")
            + 4 * C * C * (split.WeightDensity(0, "mlp.c_fc") + split.WeightDensity(0, "mlp.c_proj"));
        Assert.Equal(d, held / (12 * C * C), 12);
        // Without the split c_attn (3C × C, raw 4/(3C)) gets less than c_proj.
        var fused = SparseModelConfig.Apply(config, sparsity, SparseModelConfig.ErdosRenyiKernel, seed: 1);
        Assert.True(fused.WeightDensity(0, "attn.c_attn") < fused.WeightDensity(0, "attn.c_proj"));
    }

    TrainConfig SplitRun(string run, string method, int maxIters = 12)
    {
        var c = _data.Config(run, maxIters);
        c.Sparsity = 0.5f;
        c.SparsityDistribution = "erk";
        c.Dst = method;
        c.DstSplitQkv = true;
        c.DstInterval = 2;
        c.DstStop = 10;
        c.DstDropFraction = 0.4f;
        return c;
    }

    static int[] SliceCounts(Trainer t) => t.Model.Parameters.Where(p => p.Layout is CsrLinearWeight && QkvSplit.IsFused(p.Name))
        .SelectMany(p => QkvSplit.StoredPerGroup((CsrLinearWeight)p.Layout!, QkvSplit.RowGroups(p.Name, p.Shape[0], true))).ToArray();

    [Theory]
    [InlineData("set")]
    [InlineData("rigl")]
    [InlineData("srigl")]
    public void ATrainingRunKeepsEachSlicesShareOfItsErkDensity(string method)
    {
        var c = SplitRun("run-" + method, method);
        using var t = new Trainer(c);
        // n_embd 16: Q, K, V and c_proj 16 × 16 at 4/3 · 0.5; each slice holds round(2/3 · 256) (srigl: 16 rows × round(2/3 · 16)).
        int share = method == "srigl" ? 16 * ConstantFanIn.FanIn(16, 2.0 / 3) : (int)Math.Round(2.0 / 3 * 256);
        var before = SliceCounts(t);
        Assert.All(before, n => Assert.Equal(share, n));
        Assert.True(t.Dst!.SplitQkv);
        t.Run();
        Assert.Equal(4, t.Dst.Updates.Count);
        Assert.Equal(before, SliceCounts(t));
    }

    [Theory]
    [InlineData("rigl")]
    [InlineData("srigl")]
    public void AResumedSplitRunContinuesBitIdentically(string method)
    {
        using var straight = new Trainer(SplitRun("straight-" + method, method));
        straight.Run();
        List<float> first;
        using (var a = new Trainer(SplitRun("resumed-" + method, method, maxIters: 5))) { a.Run(); first = a.Losses; }   // updates at 2, 4; checkpoint at 5
        var resumed = SplitRun("resumed-" + method, method);
        resumed.InitFrom = "resume";
        using var b = new Trainer(resumed);
        b.Run();                                                                                       // updates at 6, 8
        Assert.Equal(2, b.Dst!.Updates.Count);
        Assert.Equal(straight.Losses, first.Concat(b.Losses));
        Assert.Equal(SliceCounts(straight), SliceCounts(b));
        Assert.Equal(straight.Model.ParameterData.ToArray().Select(BitConverter.SingleToInt32Bits), b.Model.ParameterData.ToArray().Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(straight.Optimizer.M.ToArray().Select(BitConverter.SingleToInt32Bits), b.Optimizer.M.ToArray().Select(BitConverter.SingleToInt32Bits));
        foreach (var (p, q) in straight.Model.Parameters.Zip(b.Model.Parameters))
            if (p.Layout is CsrLinearWeight x) Assert.Equal(x.ExportIndices()[1].Values, ((CsrLinearWeight)q.Layout!).ExportIndices()[1].Values);
    }

    [Fact]
    public void ResumingASplitRunWithoutTheSplitIsRefusedNamingTheKey()
    {
        using (var a = new Trainer(SplitRun("flip", "rigl", maxIters: 3))) a.Run();
        var resumed = SplitRun("flip", "rigl");
        resumed.InitFrom = "resume";
        resumed.DstSplitQkv = false;
        var e = Assert.Throws<ArgumentException>(() => new Trainer(resumed));
        Assert.Contains("dst_split_qkv (false) differs from the run being resumed", e.Message);
        Assert.Contains("(true)", e.Message);
    }

    [Theory]
    [InlineData("sparsity", "0", "dst_split_qkv (true) splits the sparse c_attn")]
    [InlineData("sparse_format", "bsr:4x4", "dst_split_qkv (true) draws csr slices; sparse_format is 'bsr:4x4'")]
    [InlineData("sparse_weights", "mlp.c_fc", "sparse_weights ('mlp.c_fc') does not include it")]
    public void ASplitWithoutASparseCsrCAttnIsAOneLineErrorNamingTheKey(string key, string value, string expected)
    {
        var c = SplitRun("bad", "static");
        c.Set(key, value);
        var e = Assert.Throws<ArgumentException>(() => c.Validate());
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
