using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Sparsity;

[Collection("KernelThreads")]
public sealed class SrSteTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    /// <summary>Brute force: sort each group's positions by (|w| descending, index ascending) and keep the first N.</summary>
    static float[] ReferenceMask(float[] w, int n, int m)
    {
        var mask = new float[w.Length];
        for (int g = 0; g < w.Length; g += m)
        {
            var order = Enumerable.Range(0, m).OrderByDescending(i => Math.Abs((double)w[g + i])).ThenBy(i => i).Take(n);
            foreach (int i in order) mask[g + i] = 1;
        }
        return mask;
    }

    static float[] WithTies(Random random, int length)
    {
        var w = new float[length];
        for (int i = 0; i < length; i++)
            w[i] = random.Next(5) switch
            {
                0 => 0f,                                         // exact zeros
                1 => (random.Next(2) * 2 - 1) * 0.25f,           // equal magnitudes of either sign
                _ => (float)(random.NextDouble() * 2 - 1),
            };
        return w;
    }

    [Theory]
    [InlineData(2, 4)]
    [InlineData(1, 4)]
    [InlineData(3, 4)]
    [InlineData(2, 8)]
    [InlineData(4, 8)]
    [InlineData(1, 2)]
    [InlineData(4, 16)]
    public void ProjectionKeepsExactlyTheNLargestMagnitudesOfEveryGroup(int n, int m)
    {
        var random = new Random(n * 100 + m);
        var w = WithTies(random, 12 * 4 * m);
        var mask = new float[w.Length];
        SrSte.ProjectMask(w, mask, n, m);
        Assert.Equal(ReferenceMask(w, n, m), mask);
        for (int g = 0; g < w.Length; g += m)
        {
            Assert.Equal(n, mask.AsSpan(g, m).ToArray().Count(v => v == 1));
            double smallestKept = Enumerable.Range(0, m).Where(i => mask[g + i] == 1).Min(i => Math.Abs(w[g + i]));
            double largestDropped = Enumerable.Range(0, m).Where(i => mask[g + i] == 0).Max(i => Math.Abs(w[g + i]));
            Assert.True(smallestKept >= largestDropped);
        }
    }

    static GptConfig TinyConfig(int vocab = 11) => new() { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = vocab, Bias = true };

    [Fact]
    public void ForwardRunsOnTheNmProjectionOfTheDenseWeights()
    {
        var gpt = new Gpt(TinyConfig(), 2, 8);
        gpt.InitializeWeights(3);
        var before = gpt.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());
        var srste = new SrSte(gpt, 2, 4, 2e-4f, GptConfig.BlockWeights);
        srste.Project(gpt);
        Assert.Equal(4 * 2, srste.Names.Count);
        foreach (var p in gpt.Parameters)
        {
            var w = before[p.Name];
            if (!srste.Covers(p.Name)) { Assert.Equal(w, p.Value.ToArray()); continue; }
            var mask = ReferenceMask(w, 2, 4);
            var values = p.Value.ToArray();
            for (int i = 0; i < w.Length; i++) Assert.Equal(w[i] * mask[i], values[i]);
            for (int g = 0; g < values.Length; g += 4) Assert.True(values.AsSpan(g, 4).ToArray().Count(v => v != 0) <= 2);
            Assert.Equal(w, srste.DenseWeights[srste.Names.ToList().IndexOf(p.Name)]);
        }
    }

    [Fact]
    public void GradientIsTheStraightThroughGradientPlusTheSparseRefinedTerm()
    {
        KernelThreads.Max = 1;
        const float lambda = 0.05f;   // large, so the term is far above rounding
        var config = TinyConfig();
        var random = new Random(5);
        int[] tokens = Enumerable.Range(0, 16).Select(_ => random.Next(config.VocabSize)).ToArray();
        int[] targets = Enumerable.Range(0, 16).Select(_ => random.Next(config.VocabSize)).ToArray();

        var gpt = new Gpt(config, 2, 8);
        gpt.InitializeWeights(9);
        var dense = gpt.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());
        var srste = new SrSte(gpt, 2, 4, lambda, GptConfig.BlockWeights);
        srste.Project(gpt);
        gpt.ZeroGrad();
        gpt.Forward(tokens, targets, training: true);
        gpt.Backward();
        srste.BeforeOptimizerStep(gpt);

        // Reference: a dense model holding the brute-force projection W̃; its gradient is ∂L/∂W̃ at every position.
        var reference = new Gpt(config, 2, 8);
        foreach (var p in reference.Parameters)
        {
            var w = dense[p.Name];
            if (srste.Covers(p.Name))
            {
                var mask = ReferenceMask(w, 2, 4);
                for (int i = 0; i < w.Length; i++) p.Value.Span[i] = w[i] * mask[i];
            }
            else w.CopyTo(p.Value.Span);
        }
        reference.ZeroGrad();
        reference.Forward(tokens, targets, training: true);
        reference.Backward();

        var byName = reference.Parameters.ToDictionary(p => p.Name);
        bool prunedGradientSeen = false;
        foreach (var p in gpt.Parameters)
        {
            var g = p.Grad.ToArray();
            var gRef = byName[p.Name].Grad.ToArray();
            var w = dense[p.Name];
            Assert.Equal(w, p.Value.ToArray());   // the dense weights are back for the update
            if (!srste.Covers(p.Name)) { Assert.Equal(gRef, g); continue; }
            var mask = ReferenceMask(w, 2, 4);
            for (int i = 0; i < g.Length; i++)
            {
                double expected = gRef[i] + (mask[i] == 0 ? (double)lambda * w[i] : 0);
                Assert.True(Math.Abs(g[i] - expected) <= 1e-6 * Math.Max(1, Math.Abs(expected)), $"{p.Name}[{i}]: {g[i]} vs {expected}");
                if (mask[i] == 0 && gRef[i] != 0) prunedGradientSeen = true;
            }
        }
        Assert.True(prunedGradientSeen, "the straight-through gradient must reach pruned weights");
    }

    [Fact]
    public void ProjectionMovesWhenTheDenseWeightsCrossInAGroup()
    {
        var gpt = new Gpt(TinyConfig(), 1, 8);
        gpt.InitializeWeights(1);
        var srste = new SrSte(gpt, 2, 4, 0f, ["mlp.c_fc"]);
        srste.Project(gpt);
        var p = gpt.Parameters.First(q => q.Name == "transformer.h.0.mlp.c_fc.weight");
        var mask = srste.Masks[0];
        int dropped = Array.IndexOf(mask, 0f);
        // the update makes a pruned weight the largest of its group: the next projection keeps it
        srste.BeforeOptimizerStep(gpt);
        p.Value.Span[dropped] = 10f;
        srste.Project(gpt);
        Assert.Equal(1f, srste.Masks[0][dropped]);
        Assert.Equal(10f, p.Value.Span[dropped]);
    }

    TrainConfig SrSteRun(string run, int maxIters)
    {
        var c = _data.Config(run, maxIters);
        c.Srste = true;
        c.Nm = "2:4";
        c.SrsteLambda = 1e-2f;
        return c;
    }

    [Fact]
    public void CheckpointHoldsTheNmModelWhoseLogitsEqualTheMaskedDenseProjection()
    {
        var c = SrSteRun("nm", 8);
        using (var t = new Trainer(c)) t.Run();
        var nm = Checkpoint.LoadModel(c.OutDir, 2, 16, out var state);
        foreach (var name in GptConfig.BlockWeights)
            Assert.Equal("nm:2:4", nm.Config.WeightLayout(0, name));
        Assert.All(nm.Parameters.Where(p => p.Layout is not null), p => Assert.IsType<NmLinearWeight>(p.Layout));

        // Reference: the dense model with W̃ = projection of the stored dense weights (optimizer.safetensors).
        var reference = new Gpt(nm.Config with { WeightLayouts = null, SparsitySeed = 0 }, 2, 16);
        using (var file = NanoSparse.IO.SafeTensorsFile.Open(Path.Combine(c.OutDir, Checkpoint.OptimizerFile)))
            foreach (var p in reference.Parameters)
            {
                if (p.Layout is null) { nm.Parameters.Single(q => q.Name == p.Name).Value.Span.CopyTo(p.Value.Span); continue; }
                var w = file.ReadFloat32Array(p.Name + SrSte.WeightSuffix);
                var mask = ReferenceMask(w, 2, 4);
                for (int i = 0; i < w.Length; i++) p.Value.Span[i] = w[i] * mask[i];
            }
        var meta = DatasetMeta.Load(Path.Combine(c.Dataset, "meta.json"));
        using var val = TokenFile.OpenSplit(c.Dataset, "val", meta);
        var sampler = new BatchSampler(val, 2, 16, 77);
        int[] x = new int[32], y = new int[32];
        sampler.Next(x, y);
        float lossNm = nm.Forward(x, y, training: false);
        float lossRef = reference.Forward(x, y, training: false);
        var a = nm.Logits.ToArray();
        var b = reference.Logits.ToArray();
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 1e-5 * Math.Max(1, Math.Abs(b[i])), $"logit {i}: {a[i]} vs {b[i]}");
        Assert.True(Math.Abs(lossNm - lossRef) <= 1e-5 * lossRef, $"loss {lossNm} vs {lossRef}");
    }

    [Fact]
    public void ResumedRunContinuesBitIdentically()
    {
        var full = SrSteRun("full", 8);
        full.AlwaysSaveCheckpoint = true;
        using var straight = new Trainer(full);
        straight.Run();
        var half = SrSteRun("half", 4);
        half.AlwaysSaveCheckpoint = true;
        using (var t = new Trainer(half)) t.Run();
        half.MaxIters = 8;
        half.InitFrom = "resume";
        using var resumed = new Trainer(half);
        Assert.Equal(4, resumed.Step);
        Assert.Equal(straight.SrSte!.Names, resumed.SrSte!.Names);
        resumed.Run();
        Assert.Equal(straight.Losses.Skip(4), resumed.Losses);
        Assert.Equal(straight.Model.ParameterData.ToArray(), resumed.Model.ParameterData.ToArray());
        Assert.Equal(straight.Optimizer.M.ToArray(), resumed.Optimizer.M.ToArray());
        Assert.Equal(straight.Optimizer.V.ToArray(), resumed.Optimizer.V.ToArray());
        for (int k = 0; k < straight.SrSte.Names.Count; k++)
            Assert.Equal(straight.SrSte.DenseWeights[k], resumed.SrSte.DenseWeights[k]);
        foreach (var file in new[] { Checkpoint.ModelFile, Checkpoint.OptimizerFile })
        {
            using var a = NanoSparse.IO.SafeTensorsFile.Open(Path.Combine(full.OutDir, file));
            using var b = NanoSparse.IO.SafeTensorsFile.Open(Path.Combine(half.OutDir, file));
            Assert.Equal(a.Tensors.Select(t => t.Name).Order(), b.Tensors.Select(t => t.Name).Order());
            foreach (var t in a.Tensors) Assert.True(a.GetBytes(t.Name).SequenceEqual(b.GetBytes(t.Name)), $"{file}: {t.Name}");
        }
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public void AnSrSteTrainIterationAllocatesNothingAfterWarmUp(bool supar, int threads)
    {
        var c = SrSteRun("alloc", 8);
        c.Supar = supar;   // SμPar's density under SR-STE is N/M
        c.Threads = threads;
        using var t = new Trainer(c);
        for (int i = 0; i < 3; i++) t.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 3; i++) t.TrainIteration(1e-3f, out _); }));
        if (supar)
            Assert.All(t.Model.Parameters.Where(p => t.SrSte!.Covers(p.Name)),
                p => Assert.Equal(2f, t.Optimizer.Segments.Single(s => s.Offset == p.Offset).LrScale));
    }

    [Fact]
    public void ConfigRefusesSrSteWithoutNmOrWithOtherSparsity()
    {
        var c = _data.Config("bad");
        c.Srste = true;
        Assert.Contains("nm is empty", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
        c.Nm = "2:4";
        c.Sparsity = 0.5f;
        Assert.Contains("sparsity (0.5)", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
        c.Sparsity = 0;
        c.SrsteLambda = -1;
        Assert.Contains("srste_lambda", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
        c.SrsteLambda = 2e-4f;
        c.L1 = 1e-3f;
        Assert.Contains("l1 (0.001)", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
        c.L1 = 0;
        c.Nm = "2:3";   // 3 does not divide n_embd 16
        Assert.Contains("M = 3 must divide", Assert.Throws<ArgumentException>(() => new Trainer(c)).Message);
    }

    [Fact]
    public void ResumingAnSrSteRunFromACheckpointWithoutItsDenseWeightsIsRefused()
    {
        var plain = _data.Config("static", 4);
        plain.Nm = "2:4";   // static N:M training: the checkpoint has no srste tensors
        using (var t = new Trainer(plain)) t.Run();
        plain.Srste = true;
        plain.InitFrom = "resume";
        plain.MaxIters = 8;
        var e = Assert.Throws<InvalidDataException>(() => new Trainer(plain));
        Assert.Contains("srste_weight", e.Message);
    }
}
