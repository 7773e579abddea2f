using System.Text.Json.Nodes;
using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Optim;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// Static sparse training from random init through the Trainer: the sparse model against a masked-dense reference
/// written here (a dense model whose gradients at the positions not stored are zeroed every step), resume, allocation,
/// and the config keys' errors.
/// </summary>
[Collection("KernelThreads")]
public sealed class SparseTrainingTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    TrainConfig Sparse(string run, string distribution = "uniform", string format = "csr", string nm = "", float sparsity = 0.8f, int maxIters = 8)
    {
        var c = _data.Config(run, maxIters);
        c.Sparsity = sparsity;
        c.SparsityDistribution = distribution;
        c.SparseFormat = format;
        c.Nm = nm;
        return c;
    }

    /// <summary>The dense model holding <paramref name="sparse"/>'s weights, zeros where nothing is stored, and the 0/1 mask of stored positions.</summary>
    internal static (Gpt Dense, float[] Mask) DenseTwin(Gpt sparse)
    {
        var dense = new Gpt(sparse.Config with { WeightLayouts = null, WeightDensities = null }, sparse.BatchSize, sparse.SeqLen);
        var mask = new float[dense.ParameterData.Length];
        for (int i = 0; i < sparse.Parameters.Count; i++)
        {
            var s = sparse.Parameters[i];
            var d = dense.Parameters[i];
            Assert.Equal(s.Name, d.Name);
            var m = mask.AsSpan(d.Offset, (int)d.LogicalLength);
            if (s.Layout is null) { s.Value.CopyTo(d.Value); m.Fill(1); continue; }
            s.Layout.ToDense(s.Value.Span, d.Value.Span);
            s.Layout.ToDense(Enumerable.Repeat(1f, s.Length).ToArray(), m);
        }
        return (dense, mask);
    }

    static float[] Densified(Gpt sparse) => DenseTwin(sparse).Dense.ParameterData.ToArray();

    static void AssertRelativelyClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = 0;
        foreach (float v in expected) scale = Math.Max(scale, Math.Abs(v));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * Math.Max(Math.Abs(expected[i]), scale * 1e-2),
                $"{what}[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    [Theory]
    [InlineData("csr", "")]
    [InlineData("bsr:4x4", "")]
    [InlineData("csr", "2:4")]
    public void ASparseModelsLogitsEqualItsDensifiedCopys(string format, string nm)
    {
        var c = Sparse("logits", "erk", format, nm);
        c.Dropout = 0;
        using var t = new Trainer(c);
        Assert.False(t.Model.Config.AllWeightsDense);
        Assert.Contains(t.Model.Parameters, p => p.IsSparse);
        var (dense, _) = DenseTwin(t.Model);
        var r = new Random(3);
        var tokens = Enumerable.Range(0, c.BatchSize * c.BlockSize).Select(_ => r.Next(t.Meta.VocabSize)).ToArray();
        t.Model.Forward(tokens, [], training: false);
        dense.Forward(tokens, [], training: false);
        AssertRelativelyClose(dense.Logits, t.Model.Logits, 1e-5, "logits");
    }

    [Theory]
    [InlineData("uniform", "csr", "")]
    [InlineData("erk", "csr", "")]
    [InlineData("uniform", "bsr:4x4", "")]
    [InlineData("uniform", "csr", "2:4")]
    public void SparseTrainingEqualsMaskedDenseTraining(string distribution, string format, string nm)
    {
        var c = Sparse("masked", distribution, format, nm);
        c.Dropout = 0;
        c.Bias = false;   // a key bias has gradient 0 in exact arithmetic (softmax ignores it): only rounding noise to compare
        c.Prefetch = false;
        using var t = new Trainer(c);
        var sparse = t.Model;
        // every sparse weight is a matrix for weight decay, whatever its stored values' 1-D span
        Assert.All(sparse.Parameters.Where(p => p.IsSparse), p => Assert.True(p.Decay));
        Assert.All(t.Optimizer.Segments.Where(s => sparse.Parameters.Any(p => p.IsSparse && p.Offset == s.Offset)), s => Assert.True(s.Decay));

        // The reference: the same weights dense, the same batches, gradients masked before clipping, its own AdamW.
        var (dense, mask) = DenseTwin(sparse);
        var adam = new AdamW(dense.ParameterData.Length,
            dense.Parameters.Select(p => AdamW.SegmentOf(dense.ParameterData, p.Value.Span, p.Decay)), c.Beta1, c.Beta2, 1e-8f, c.WeightDecay);
        using var train = TokenFile.OpenSplit(c.Dataset, "train", t.Meta);
        var sampler = new BatchSampler(train, c.BatchSize, c.BlockSize, c.Seed);
        int n = c.BatchSize * c.BlockSize;
        var (x, y) = (new int[n], new int[n]);
        for (int step = 0; step < 5; step++)
        {
            float lr = (float)t.LearningRateAt(step);
            float sparseLoss = t.TrainIteration(lr, out double sparseNorm);

            dense.ZeroGrad();
            double sum = 0;
            for (int micro = 0; micro < c.GradientAccumulationSteps; micro++)
            {
                sampler.Next(x, y);
                sum += dense.Forward(x, y, training: true);
                dense.Backward();
            }
            var g = dense.GradientData;
            for (int i = 0; i < g.Length; i++) g[i] = g[i] / c.GradientAccumulationSteps * mask[i];
            double denseNorm = GradientClipping.ClipByGlobalNorm(g, c.GradClip);
            adam.Step(dense.ParameterData, g, lr);

            Assert.Equal(sum / c.GradientAccumulationSteps, sparseLoss, 1e-5 * Math.Abs(sparseLoss));
            Assert.Equal(denseNorm, sparseNorm, 1e-5 * denseNorm);
            // Per tensor, max |Δ| ≤ 1e-5 · max |w|: element-wise relative error is meaningless for weights whose
            // gradient is rounding noise (AdamW divides it by its own √v), which both runs sum in different orders.
            var densified = Densified(sparse);
            foreach (var p in dense.Parameters)
            {
                var expected = p.Value.Span;
                var actual = densified.AsSpan(p.Offset, p.Length);
                float scale = 0, worst = 0;
                for (int i = 0; i < expected.Length; i++)
                {
                    scale = Math.Max(scale, Math.Abs(expected[i]));
                    worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
                }
                Assert.True(worst <= 1e-5f * scale, $"{p.Name} after step {step}: max |difference| {worst} > 1e-5 × max |w| {scale}");
            }
        }
        // Masked positions never move and their moments stay 0: the sparse optimizer holds only the stored ones.
        for (int i = 0; i < mask.Length; i++)
            if (mask[i] == 0) Assert.True(dense.ParameterData[i] == 0 && adam.M[i] == 0 && adam.V[i] == 0, $"masked position {i} moved");
        Assert.Equal(sparse.ParameterData.Length, t.Optimizer.Length);
        Assert.True(t.Optimizer.Length < adam.Length);
    }

    /// <summary>
    /// n_embd 512 and 256 tokens per micro-batch, so every CSR product runs token-major with K in 256-row blocks (80%
    /// sparse: ~100 nonzeros per row and block): the sparse model's loss and gradients equal the dense twin's, masked,
    /// over three steps of sparse training (the weights moved by the sparse run are copied into the twin each step); then
    /// a training step allocates nothing.
    /// Gradients rather than AdamW's steps: at this size some weights' first-step updates g/(|g| + ε) turn on
    /// gradients that cancel to rounding noise, whichever run sums them.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]   // ranges of token panels per thread
    public void AWideSparseModelsGradientsEqualTheMaskedDenseGradients(int threads)
    {
        var c = Sparse("wide-masked");
        (c.NEmbd, c.NHead, c.BlockSize, c.Threads) = (512, 4, 64, threads);
        c.Dropout = 0;
        c.Prefetch = false;
        using var t = new Trainer(c);
        var sparse = t.Model;
        Assert.Equal(256, sparse.BatchSize * sparse.SeqLen);
        using var train = TokenFile.OpenSplit(c.Dataset, "train", t.Meta);
        var sampler = new BatchSampler(train, c.BatchSize, c.BlockSize, c.Seed + 1);
        int n = c.BatchSize * c.BlockSize;
        var (x, y) = (new int[n], new int[n]);
        for (int step = 0; step < 3; step++)
        {
            sampler.Next(x, y);
            var (dense, mask) = DenseTwin(sparse);
            sparse.ZeroGrad();
            double sparseLoss = sparse.Forward(x, y, training: true);
            sparse.Backward();
            dense.ZeroGrad();
            double denseLoss = dense.Forward(x, y, training: true);
            dense.Backward();
            Assert.Equal(denseLoss, sparseLoss, 1e-5 * Math.Abs(denseLoss));
            for (int i = 0; i < sparse.Parameters.Count; i++)
            {
                var s = sparse.Parameters[i];
                var d = dense.Parameters[i];
                var expected = d.Grad.Span;
                var actual = new float[d.LogicalLength];
                if (s.Layout is null) s.Grad.Span.CopyTo(actual); else s.Layout.ToDense(s.Grad.Span, actual);
                var m = mask.AsSpan(d.Offset, (int)d.LogicalLength);
                float scale = 0, worst = 0;
                for (int e = 0; e < expected.Length; e++) scale = Math.Max(scale, Math.Abs(expected[e]));
                for (int e = 0; e < expected.Length; e++) worst = Math.Max(worst, Math.Abs(expected[e] * m[e] - actual[e]));
                Assert.True(scale > 0, $"{d.Name}: the dense gradient is all zeros at step {step}");
                Assert.True(worst <= 1e-4f * scale, $"{d.Name} at step {step}: max |sparse − masked dense gradient| {worst} > 1e-4 × max |g| {scale}");
            }
            t.TrainIteration((float)t.LearningRateAt(step), out _);
        }
        // The blocked products' split tables are per-thread buffers grown once: warm steps allocate nothing.
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 2; i++) t.TrainIteration(1e-3f, out _); }));
    }

    [Theory]
    [InlineData("uniform", "csr", "", 1)]
    [InlineData("erk", "csr", "", 2)]
    [InlineData("uniform", "bsr:4x4", "", 1)]
    [InlineData("uniform", "csr", "2:4", 1)]
    public void ResumeOfASparseRunIsBitIdentical(string distribution, string format, string nm, int threads)
    {
        static (List<float> Losses, float[] Params) Train(TrainConfig config)
        {
            using var t = new Trainer(config);
            t.Run();
            return (t.Losses, t.Model.ParameterData.ToArray());
        }
        var straight = Sparse("straight", distribution, format, nm);
        straight.Threads = threads;
        var a = Train(straight);
        Assert.Equal(8, a.Losses.Count);

        var half = Sparse("split", distribution, format, nm, maxIters: 4);
        half.Threads = threads;
        var b1 = Train(half);
        // model_args records the layouts, the densities and the seed of the positions
        var args = JsonNode.Parse(File.ReadAllText(Path.Combine(half.OutDir, "state.json")))!["model_args"]!;
        Assert.Equal(nm == "" ? format : "nm:" + nm, (string)args["weight_layouts"]!["mlp.c_fc"]!);
        Assert.Equal(42UL, (ulong)args["sparsity_seed"]!);
        if (nm == "") Assert.NotNull(args["weight_densities"]);

        var resumed = half.Clone();
        resumed.MaxIters = 8;
        resumed.InitFrom = "resume";
        resumed.Sparsity = 0;   // the checkpoint's model args win, as nanoGPT's do
        var b2 = Train(resumed);
        Assert.Equal(a.Losses, b1.Losses.Concat(b2.Losses));   // float equality: bit-identical
        Assert.Equal(a.Params, b2.Params);
        Assert.All(a.Losses, l => Assert.True(float.IsFinite(l)));
    }

    [Theory]
    [InlineData("csr", "", 1)]
    [InlineData("csr", "", 2)]
    [InlineData("bsr:4x4", "", 1)]
    [InlineData("csr", "2:4", 2)]
    public void ASparseTrainIterationAllocatesNothingAfterWarmUp(string format, string nm, int threads)
    {
        var c = Sparse("alloc", "erk", format, nm);
        c.Threads = threads;
        using var t = new Trainer(c);
        for (int i = 0; i < 3; i++) t.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 3; i++) t.TrainIteration(1e-3f, out _); }));
    }

    [Theory]
    [InlineData("sparsity", "1", "sparsity (1) must be in [0, 1)")]
    [InlineData("sparsity", "-0.5", "sparsity (-0.5) must be in [0, 1)")]
    [InlineData("sparsity_distribution", "normal", "sparsity_distribution ('normal') must be one of uniform, er, erk")]
    [InlineData("nm", "4:4", "nm ('4:4'): N = 4 must be at least 1 and less than M = 4")]
    [InlineData("nm", "3:2", "nm ('3:2')")]
    [InlineData("sparse_weights", "mlp.c_fc,wte", "sparse_weights ('wte') must name weights among")]
    [InlineData("sparse_format", "", "sparse_format must not be empty")]
    public void BadSparsityKeysAreOneLineErrorsNamingTheKey(string key, string value, string message)
    {
        var c = _data.Config("bad");
        c.Set(key, value);
        var e = Assert.Throws<ArgumentException>(() => c.Validate());
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("nm", "2:5", "nm ('2:5'): M = 5 must divide the in features (the reduction dimension) of attn.c_attn, which has 16")]
    [InlineData("sparse_format", "coo", "sparse_format ('coo') must be one of")]
    [InlineData("sparse_format", "bsr:3x4", "sparse_format ('bsr:3x4') does not fit attn.c_proj (16x16)")]
    public void KeysThatDependOnTheModelShapeFailWhenTheTrainerStartsAndWriteNothing(string key, string value, string message)
    {
        var c = _data.Config("shape");
        c.Sparsity = 0.5f;
        c.Set(key, value);
        c.Validate();
        var e = Assert.Throws<ArgumentException>(() => new Trainer(c));
        Assert.StartsWith("config: ", e.Message);
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(c.OutDir));
    }
}
