using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts.FeedForwards;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Nn;

/// <summary>Mixture of experts inside the whole model: config errors, decode, gradients, training, checkpoints.</summary>
[Collection("KernelThreads")]
public sealed class MoeModelTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    static GptConfig Tiny(int? experts = 4, int? topK = 2, int? every = null, string? routing = null, double? capacity = null) => new()
    {
        NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 16, VocabSize = 13,
        NExperts = experts, TopK = topK, MoeEvery = every, ExpertHidden = 24, MoeRouting = routing, CapacityFactor = capacity,
    };

    public static TheoryData<string, string> BadConfigs => new()
    {
        { "n_experts=0", "n_experts (0) must be ≥ 1" },
        { "n_experts=-2", "n_experts (-2) must be ≥ 1" },
        { "top_k=0", "top_k (0) must lie in [1, n_experts = 4]" },
        { "top_k=5", "top_k (5) must lie in [1, n_experts = 4]" },
        { "capacity_factor=0", "capacity_factor (0) must be a finite number > 0" },
        { "capacity_factor=-1.5", "capacity_factor (-1.5) must be a finite number > 0" },
        { "expert_hidden=0", "expert_hidden (0) must be ≥ 1" },
        { "moe_every=0", "moe_every (0) must be ≥ 1" },
        { "moe_routing=hash", "moe_routing (\"hash\") must be \"topk\" or \"expert_choice\"" },
        { "moe_aux_loss=-0.1", "moe_aux_loss (-0.1) must be a finite number ≥ 0" },
        { "moe_z_loss=NaN", "moe_z_loss (NaN) must be a finite number ≥ 0" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void BadMoeKeysGiveOneLineErrorsNamingKeyAndValue(string assignment, string message)
    {
        var c = _data.Config("bad");
        c.NExperts = 4;
        c.Set(assignment);
        var model = c.ApplyMoe(new GptConfig { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 16, VocabSize = 13 });
        var e = Assert.Throws<ArgumentException>(model.Validate);
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // the trainer refuses it the same way, before touching anything
        c.Set("init_from", "scratch");
        var t = Assert.Throws<ArgumentException>(() => new Trainer(c));
        Assert.Contains(message, t.Message);
    }

    [Fact]
    public void MoeEveryPicksEveryKthBlockCountingFromOne()
    {
        var c = Tiny(every: 2) with { NLayer = 5 };
        Assert.Equal("1, 3", MoeSettings.Layers(c));
        var gpt = new Gpt(c, 1, 4);
        Assert.Equal([false, true, false, true, false], gpt.Blocks.Select(b => b.FeedForward is MoeFeedForward).ToArray());
        Assert.Contains(gpt.Parameters, p => p.Name == "transformer.h.1.mlp.router.weight" && p.Shape.SequenceEqual([4, 16]));
        Assert.Contains(gpt.Parameters, p => p.Name == "transformer.h.3.mlp.experts.3.c_proj.weight" && p.Shape.SequenceEqual([16, 24]));
        Assert.Contains(gpt.Parameters, p => p.Name == "transformer.h.0.mlp.c_fc.weight");
        Assert.DoesNotContain(gpt.Parameters, p => p.Name.StartsWith("transformer.h.1.mlp.c_fc"));
        var (active, total) = MoeLosses.ParameterCounts(gpt);
        long perExpert = 2L * 16 * 24;
        Assert.Equal(total - 2 * (4 - 2) * perExpert, active);
    }

    [Theory]
    [InlineData(2, null, "topk")]
    [InlineData(1, 1, "topk")]
    [InlineData(3, 2, "topk")]
    public void CachedDecodeEqualsFullRecomputation(int topK, int? every, string routing)
    {
        var c = Tiny(4, topK, every, routing);
        int T = 12;
        var full = new Gpt(c, 1, T);
        full.InitializeWeights(3);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 7 + 3) % c.VocabSize).ToArray();
        var cached = new Gpt(c, 1, 1);
        full.ParameterData.CopyTo(cached.ParameterData);
        var cache = cached.CreateKvCache();
        int prefill = 5;
        var logits = cached.ForwardCached(cache, tokens.AsSpan(0, prefill)).ToArray();
        for (int t = prefill - 1; t < T; t++)
        {
            if (t >= prefill) logits = cached.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
            var recomputed = new Gpt(c, 1, t + 1);
            full.ParameterData.CopyTo(recomputed.ParameterData);
            recomputed.Forward(tokens.AsSpan(0, t + 1), default, training: false);
            var expected = recomputed.Logits.Slice(t * c.VocabSize, c.VocabSize).ToArray();
            for (int v = 0; v < c.VocabSize; v++)
                Assert.True(Math.Abs(expected[v] - logits[v]) < 1e-4f, $"position {t}, logit {v}: cached {logits[v]} vs full {expected[v]}");
        }
    }

    [Theory]
    [InlineData(2, null, "topk")]
    [InlineData(1, 0.75, "topk")]
    [InlineData(2, null, "expert_choice")]
    public void ModelGradientsOfLossPlusMoeLossesMatchFiniteDifferences(int topK, double? capacity, string routing)
    {
        KernelThreads.Max = 1;
        var c = Tiny(4, topK, null, routing, capacity) with { MoeAuxLoss = 0.5, MoeZLoss = 0.1 };
        var gpt = new Gpt(c, 2, 8);
        gpt.InitializeWeights(5);
        // a sharper router, so that routing decisions sit away from ties
        foreach (var p in gpt.Parameters.Where(p => p.Name.EndsWith("router.weight"))) { var v = p.Value.Span; for (int i = 0; i < v.Length; i++) v[i] *= 60; }
        var random = new Random(1);
        var tokens = Enumerable.Range(0, 16).Select(_ => random.Next(c.VocabSize)).ToArray();
        var targets = Enumerable.Range(0, 16).Select(_ => random.Next(c.VocabSize)).ToArray();
        double Loss() => gpt.Forward(tokens, targets, training: false) + MoeLosses.Weighted(gpt);
        gpt.ZeroGrad();
        Loss();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        foreach (var name in new[] { "transformer.h.0.mlp.router.weight", "transformer.h.1.mlp.router.weight", "transformer.h.0.mlp.experts.1.c_fc.weight",
                     "transformer.h.1.mlp.experts.2.c_proj.weight", "transformer.h.0.ln_2.weight", "transformer.wte.weight" })
        {
            var p = gpt.Parameters.Single(q => q.Name == name);
            var x = gpt.ParameterData.Slice(p.Offset, p.Length).ToArray();
            var analytic = grads.AsSpan(p.Offset, p.Length).ToArray();
            GradCheck.Assert(name, x, analytic, () =>
            {
                x.CopyTo(gpt.ParameterData.Slice(p.Offset, p.Length));
                return Loss();
            }, eps: 1e-3, atol: 2e-4, rtol: 2e-2, maxChecks: 24);
            x.CopyTo(gpt.ParameterData.Slice(p.Offset, p.Length));
        }
    }

    TrainConfig MoeRun(string run, int maxIters = 8)
    {
        var c = _data.Config(run, maxIters);
        c.NExperts = 4;
        c.TopK = 2;
        c.ExpertHidden = 24;
        c.CapacityFactor = 1.0;
        return c;
    }

    [Fact]
    public void ATrainingStepAllocatesNothingAfterTheFirst()
    {
        var c = MoeRun("alloc", 100);
        c.Prefetch = false;
        using var t = new Trainer(c);
        t.TrainIteration(1e-3f, out _);
        Assert.Equal(0, Allocations.SteadyState(() => t.TrainIteration(1e-3f, out _)));
        Assert.True(MoeLosses.Weighted(t.Model) > 0);
    }

    [Fact]
    public void AResumedRunContinuesBitIdenticallyAndTheCheckpointReloadsExactly()
    {
        var straight = new Trainer(MoeRun("straight"));
        straight.Run();
        var a = new Trainer(MoeRun("split", 5));
        a.Run();
        a.Dispose();
        var resumedConfig = MoeRun("split");
        resumedConfig.InitFrom = "resume";
        var b = new Trainer(resumedConfig);
        b.Run();
        Assert.Equal(straight.Losses.Skip(5), b.Losses);
        Assert.Equal(straight.Model.ParameterData.ToArray(), b.Model.ParameterData.ToArray());
        Assert.Equal(straight.Optimizer.M.ToArray(), b.Optimizer.M.ToArray());
        Assert.Equal(straight.Optimizer.V.ToArray(), b.Optimizer.V.ToArray());

        var loaded = Checkpoint.LoadModel(resumedConfig.OutDir, 4, 16, out var state);
        Assert.Equal(4, state.Model.NExperts);
        Assert.Equal(1.0, state.Model.CapacityFactor);
        Assert.Equal(b.Model.Config, loaded.Config);
        foreach (var p in b.Model.Parameters)
            Assert.Equal(p.Value.ToArray(), loaded.Parameters.Single(q => q.Name == p.Name).Value.ToArray());
        Assert.Contains(loaded.Parameters, p => p.Name == "transformer.h.0.mlp.experts.3.c_fc.weight");
        // moe_load.csv is not written by the library trainer (the CLI writes it); the config round-trips through state.json
        Assert.Equal(MoeSettings.Describe(b.Model.Config), MoeSettings.Describe(state.Model.ToConfig()));

        // export: nanoGPT names plus the documented expert and router names, values unchanged; GPT-2 refused in one line
        string exported = Path.Combine(_data.Root, "exported");
        NanoSparse.IO.ModelImporter.Export(NanoSparse.IO.ModelFormat.NanoGpt, resumedConfig.OutDir, exported);
        using (var file = NanoSparse.IO.SafeTensorsFile.Open(Path.Combine(exported, "model.safetensors")))
        {
            foreach (var p in b.Model.Parameters) Assert.Equal(p.Value.ToArray(), file.ReadFloat32Array(p.Name));
            Assert.True(file.Contains("lm_head.weight"));
            Assert.Equal(b.Model.Parameters.Count + 1, file.Tensors.Count);
        }
        Assert.Contains("\"n_experts\": 4", File.ReadAllText(Path.Combine(exported, "config.json")));
        var gpt2 = Assert.Throws<ArgumentException>(() => NanoSparse.IO.ModelImporter.Export(NanoSparse.IO.ModelFormat.Gpt2, resumedConfig.OutDir, exported + "2"));
        Assert.Contains("mixture of experts", gpt2.Message);
        Assert.DoesNotContain('\n', gpt2.Message);
        straight.Dispose();
        b.Dispose();
    }
}
