using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Optim;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

[Collection("KernelThreads")]
public sealed class GradualPruningTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    /// <summary>GMP from step 2 to 10 every 2 steps to 80%; the switch to CSR at 50% (reached at step 6: 0.7).</summary>
    TrainConfig Gmp(string run, int maxIters = 12)
    {
        var c = _data.Config(run, maxIters);
        c.PruneSchedule = "gmp";
        c.PruneInitialSparsity = 0f;
        c.PruneFinalSparsity = 0.8f;
        c.PruneStart = 2;
        c.PruneEnd = 10;
        c.PruneFrequency = 2;
        c.PruneSwitchSparsity = 0.5f;
        return c;
    }

    static int[] Prunable(Gpt g) => GradualPruning.PrunableIndices(g);

    [Fact]
    public void MaskedPhaseEqualsATorchPruneStyleMaskedDenseReference()
    {
        var c = Gmp("masked", maxIters: 8);
        c.Dropout = 0;
        c.GradientAccumulationSteps = 1;
        c.Prefetch = false;
        c.PruneFinalSparsity = 0.6f;
        c.PruneEnd = 6;
        c.PruneSwitchSparsity = 1f;   // never switch
        using var t = new Trainer(c);
        var masksAt = new Dictionary<int, float[][]>();
        t.IterationStarting = tr => { if (tr.Pruning!.Masks is { } m) masksAt[tr.Step] = m.Select(x => (float[])x.Clone()).ToArray(); };
        t.Run();
        Assert.False(t.Pruning!.Switched);
        Assert.Equal([2, 3, 4, 5, 6, 7], masksAt.Keys.Order());
        foreach (int i in Prunable(t.Model))
            Assert.Equal((long)(0.6 * t.Model.Parameters[i].LogicalLength), t.Model.Parameters[i].Value.ToArray().Count(v => v == 0));

        // Reference (torch.nn.utils.prune): w_orig is what AdamW updates, with the gradient of w = w_orig ⊙ mask
        // (so grad_orig = grad ⊙ mask); the forward pass uses w. Pruned positions of w_orig keep their values.
        var meta = DatasetMeta.Load(Path.Combine(c.Dataset, "meta.json"));
        using var file = TokenFile.OpenSplit(c.Dataset, "train", meta);
        var sampler = new BatchSampler(file, c.BatchSize, c.BlockSize, c.Seed);
        var gpt = new Gpt(new GptConfig
        {
            NLayer = c.NLayer, NHead = c.NHead, NEmbd = c.NEmbd, BlockSize = c.BlockSize, VocabSize = meta.VocabSize,
            Bias = c.Bias, Dropout = c.Dropout,
        }, c.BatchSize, c.BlockSize);
        gpt.InitializeWeights(c.Seed);
        var orig = gpt.ParameterData.ToArray();
        var adam = new AdamW(orig.Length, gpt.Parameters.Select(p => AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay)),
            c.Beta1, c.Beta2, 1e-8f, c.WeightDecay);
        var schedule = new CosineSchedule(c.LearningRate, c.MinLr, c.WarmupIters, c.LrDecayIters, c.DecayLr);
        var mask = Enumerable.Repeat(1f, orig.Length).ToArray();
        var prunable = Prunable(gpt);
        int n = c.BatchSize * c.BlockSize;
        int[] x = new int[n], y = new int[n];
        var losses = new List<float>();
        for (int step = 0; step < c.MaxIters; step++)
        {
            if (masksAt.TryGetValue(step, out var m))
                for (int k = 0; k < prunable.Length; k++) m[k].CopyTo(mask, gpt.Parameters[prunable[k]].Offset);
            for (int i = 0; i < orig.Length; i++) gpt.ParameterData[i] = orig[i] * mask[i];
            gpt.ZeroGrad();
            sampler.Next(x, y);
            losses.Add(gpt.Forward(x, y, training: true));
            gpt.Backward();
            var g = gpt.GradientData;
            for (int i = 0; i < g.Length; i++) g[i] *= mask[i];
            GradientClipping.ClipByGlobalNorm(g, c.GradClip);
            adam.Step(orig, g, (float)schedule.At(step));
        }
        Assert.Equal(losses, t.Losses);   // float equality: bit-identical
        var effective = orig.Select((v, i) => v * mask[i]).ToArray();
        Assert.Equal(effective, t.Model.ParameterData.ToArray());   // float.Equals: +0 and −0 compare equal
        // The trainer holds pruned weights and their moments at exactly 0.
        for (int i = 0; i < mask.Length; i++)
            if (mask[i] == 0) Assert.True(t.Optimizer.M[i] == 0 && t.Optimizer.V[i] == 0 && t.Model.ParameterData[i] == 0);
    }

    [Fact]
    public void SwitchToCsrPreservesValuesAndMomentsExactlyAndLogitsToRounding()
    {
        var c = Gmp("switch", maxIters: 5);
        c.PruneSwitchSparsity = 1f;
        c.Dropout = 0;
        using var t = new Trainer(c);
        t.Run();
        var dense = t.Model;
        var opt = t.Optimizer;
        var pruning = t.Pruning!;
        Assert.False(pruning.Switched);

        var (sparse, sparseOpt) = GradualPruning.ToSparse(dense, opt, pruning.Names, pruning.Masks!);
        Assert.Equal(opt.StepCount, sparseOpt.StepCount);
        Assert.Equal(dense.DropoutRng.State, sparse.DropoutRng.State);
        var byName = dense.Parameters.ToDictionary(p => p.Name);
        foreach (var p in sparse.Parameters)
        {
            var q = byName[p.Name];
            var views = new[]
            {
                (Old: q.Value.ToArray(), New: p.Value.ToArray()),
                (Old: opt.M.Slice(q.Offset, q.Length).ToArray(), New: sparseOpt.M.Slice(p.Offset, p.Length).ToArray()),
                (Old: opt.V.Slice(q.Offset, q.Length).ToArray(), New: sparseOpt.V.Slice(p.Offset, p.Length).ToArray()),
            };
            if (p.Layout is ISparseLinearStructure s)
            {
                var mask = pruning.Masks![pruning.Names.ToList().IndexOf(p.Name)];
                Assert.Equal("csr", s.Layout);
                Assert.Equal(mask.Count(v => v != 0), s.StoredCount);
                foreach (var (old, stored) in views)
                {
                    var back = new float[p.LogicalLength];
                    s.ToDense(stored, back);
                    for (int i = 0; i < back.Length; i++)
                        if (mask[i] != 0) Assert.Equal(BitConverter.SingleToInt32Bits(old[i]), BitConverter.SingleToInt32Bits(back[i]));
                        else { Assert.Equal(0f, back[i]); Assert.Equal(0f, old[i]); }
                }
            }
            else
                foreach (var (old, stored) in views) Assert.Equal(old.Select(BitConverter.SingleToInt32Bits), stored.Select(BitConverter.SingleToInt32Bits));
        }

        // Same batch through both: the sparse kernels sum in another order, so logits agree to float rounding.
        var meta = DatasetMeta.Load(Path.Combine(c.Dataset, "meta.json"));
        using var file = TokenFile.OpenSplit(c.Dataset, "val", meta);
        var sampler = new BatchSampler(file, c.BatchSize, c.BlockSize, 3);
        int n = c.BatchSize * c.BlockSize;
        int[] x = new int[n], y = new int[n];
        sampler.Next(x, y);
        float lossDense = dense.Forward(x, y, training: false);
        var logitsDense = dense.Logits.ToArray();
        float lossSparse = sparse.Forward(x, y, training: false);
        var logitsSparse = sparse.Logits.ToArray();
        Assert.Equal(lossDense, lossSparse, 5);
        for (int i = 0; i < logitsDense.Length; i++) Assert.True(Math.Abs(logitsDense[i] - logitsSparse[i]) <= 1e-5f * (1 + Math.Abs(logitsDense[i])), $"logit {i}: {logitsDense[i]} vs {logitsSparse[i]}");
    }

    [Fact]
    public void GmpSwitchesAtTheThresholdAndLaterPruningStepsRemoveStoredEntries()
    {
        var c = Gmp("straight");
        using var t = new Trainer(c);
        var stored = new Dictionary<int, int>();
        t.IterationStarting = tr => stored[tr.Step] = Prunable(tr.Model).Sum(i => tr.Model.Parameters[i].Length);
        var summary = t.Run();
        Assert.Equal(6, t.Pruning!.SwitchStep);
        Assert.Equal(6, summary.SwitchStep);
        Assert.NotNull(summary.DenseMsPerIter);
        Assert.NotNull(summary.SparseMsPerIter);
        long cells = Prunable(t.Model).Sum(i => t.Model.Parameters[i].LogicalLength);
        Assert.Equal(cells, stored[5]);                       // masked dense: everything stored
        Assert.True(stored[6] < stored[5] && stored[8] < stored[6] && stored[10] < stored[8]);
        Assert.Equal(stored[10], stored[11]);
        foreach (int i in Prunable(t.Model))
        {
            var p = t.Model.Parameters[i];
            Assert.Equal("csr", p.Layout!.Layout);
            Assert.Equal(p.LogicalLength - (long)(0.8 * p.LogicalLength), p.Length);
        }
        // log.csv: the sparsity column holds the exact-zero fraction, rising along the schedule.
        var rows = File.ReadAllLines(Path.Combine(c.OutDir, TrainingLog.FileName)).Skip(1).Select(l => l.Split(','))
            .Where(f => f[2].Length == 0).ToDictionary(f => int.Parse(f[0]), f => double.Parse(f[6], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(0.0, rows[0]);
        Assert.True(rows[11] >= 0.8 - 1e-3);
        Assert.True(rows[4] > rows[2] && rows[6] > rows[4]);
    }

    [Fact]
    public void GlobalScopePrunesOneCountOverAllBlockWeights()
    {
        var c = Gmp("global", maxIters: 7);
        c.PruneScope = "global";
        c.PruneSwitchSparsity = 1f;
        using var t = new Trainer(c);
        t.Run();
        var weights = Prunable(t.Model).Select(i => t.Model.Parameters[i]).ToArray();
        long cells = weights.Sum(p => p.LogicalLength);
        double s = new NanoSparse.Sparsity.Pruning.CubicSchedule(0, 0.8, 2, 10, 2).SparsityAt(6);
        Assert.Equal((long)(s * cells), weights.Sum(p => (long)p.Value.ToArray().Count(v => v == 0)));
        // One threshold: no kept weight anywhere is smaller than a pruned one was when it was pruned; the per-weight
        // fractions differ (c_proj weights start with a smaller std, so they lose more).
        var fractions = weights.Select(p => p.Value.ToArray().Count(v => v == 0) / (double)p.LogicalLength).ToArray();
        Assert.True(fractions.Max() - fractions.Min() > 0.05, string.Join(", ", fractions));
    }

    [Fact]
    public void SparsePhaseTrainingStepAllocatesNothing()
    {
        var c = Gmp("alloc");
        c.Prefetch = false;
        using var t = new Trainer(c);
        t.Run();
        Assert.True(t.Pruning!.Switched);
        t.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => t.TrainIteration(1e-3f, out _)));

        var m = Gmp("alloc-masked");
        m.Prefetch = false;
        m.PruneSwitchSparsity = 1f;
        using var tm = new Trainer(m);
        tm.Run();
        Assert.False(tm.Pruning!.Switched);
        tm.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => tm.TrainIteration(1e-3f, out _)));
    }

    static (List<float> Losses, float[] Params, float[] M, float[] V, Trainer T) Train(TrainConfig config)
    {
        var t = new Trainer(config);
        t.Run();
        return (t.Losses, t.Model.ParameterData.ToArray(), t.Optimizer.M.ToArray(), t.Optimizer.V.ToArray(), t);
    }

    [Theory]
    [InlineData(4)]   // checkpoint before the switch (masks in optimizer.safetensors), resumed run switches at 6
    [InlineData(8)]   // checkpoint after the switch (CSR structure in model.safetensors)
    public void ResumeAcrossTheSwitchContinuesBitIdentically(int split)
    {
        var straight = Train(Gmp("resume-straight-" + split));
        straight.T.Dispose();
        var first = Gmp("resume-" + split, maxIters: split);
        var a = Train(first);
        a.T.Dispose();
        var resumed = Gmp("resume-" + split);
        resumed.InitFrom = "resume";
        var b = Train(resumed);
        Assert.Equal(split == 8, b.T.Pruning!.Switched && b.T.Pruning.SwitchStep is null);
        b.T.Dispose();

        Assert.Equal(straight.Losses, a.Losses.Concat(b.Losses));
        Assert.Equal(straight.Params.Select(BitConverter.SingleToInt32Bits), b.Params.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(straight.M.Select(BitConverter.SingleToInt32Bits), b.M.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(straight.V.Select(BitConverter.SingleToInt32Bits), b.V.Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void L1ProximalRunReachesExactZerosAndReportsThemPerWeight()
    {
        var c = _data.Config("l1", maxIters: 10);
        c.L1 = 5f;
        c.L2 = 0.5f;
        using var t = new Trainer(c);
        var summary = t.Run();
        Assert.NotNull(summary.WeightZeros);
        Assert.Equal(4, summary.WeightZeros!.Count);
        double total = 0, cells = 0;
        foreach (var (name, fraction) in summary.WeightZeros)
        {
            var p = t.Model.Parameters.Single(q => q.Name == name);
            Assert.Equal(p.Value.ToArray().Count(v => v == 0) / (double)p.LogicalLength, fraction);
            total += fraction * p.LogicalLength;
            cells += p.LogicalLength;
        }
        Assert.True(total / cells > 0.3, $"exact zeros {total / cells}");
        Assert.Equal(total / cells, t.ZeroFraction(), 12);
        var last = File.ReadAllLines(Path.Combine(c.OutDir, TrainingLog.FileName)).Last(l => l.Split(',')[2].Length == 0).Split(',');
        Assert.True(double.Parse(last[6], System.Globalization.CultureInfo.InvariantCulture) > 0.3);
        // Embeddings and LayerNorms are not penalised.
        Assert.DoesNotContain(0f, t.Model.Parameters.Single(p => p.Name == "transformer.wte.weight").Value.ToArray());
    }

    [Theory]
    [InlineData("prune_schedule", "cubic", "prune_schedule ('cubic') must be 'none' or 'gmp'")]
    [InlineData("prune_final_sparsity", "1", "prune_final_sparsity (1) must be in [0, 1)")]
    [InlineData("prune_initial_sparsity", "-0.5", "prune_initial_sparsity (-0.5) must be in [0, 1)")]
    [InlineData("prune_initial_sparsity", "0.95", "prune_initial_sparsity (0.95) must not exceed prune_final_sparsity (0.8)")]
    [InlineData("prune_end", "2", "prune_end (2) must be greater than prune_start (2)")]
    [InlineData("prune_frequency", "0", "prune_frequency (0) must be positive")]
    [InlineData("prune_start", "-3", "prune_start (-3) must be >= 0")]
    [InlineData("prune_scope", "row", "prune_scope ('row') must be 'layer' or 'global'")]
    [InlineData("prune_switch_sparsity", "1.5", "prune_switch_sparsity (1.5) must be in [0, 1]")]
    [InlineData("l1", "-1", "l1 (-1) must be in [0,")]
    [InlineData("l2", "NaN", "l2 (NaN) must be in [0,")]
    [InlineData("sparsity", "0.5", "prune_schedule 'gmp' prunes a dense model")]
    public void BadPruningConfigValuesAreOneLineErrorsNamingKeyAndValue(string key, string value, string expected)
    {
        var c = Gmp("bad");
        c.Set(key, value);
        var e = Assert.ThrowsAny<ArgumentException>(() => c.Validate());
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
