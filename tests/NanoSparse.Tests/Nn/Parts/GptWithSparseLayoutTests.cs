using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// A model whose Linear weights use a sparse layout (the masked reference layout of the tests) against the dense
/// model with zeros at the positions not stored: the same logits, loss and gradients, through training, shards and
/// cached decoding. The dense model is itself checked against PyTorch and finite differences elsewhere.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class GptWithSparseLayoutTests
{
    static GptConfig Config(float dropout = 0f, bool sparse = true)
    {
        MaskedLinearWeight.EnsureRegistered();
        var dense = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = 6, VocabSize = 11, Bias = true, Dropout = dropout };
        if (!sparse) return dense;
        return dense with
        {
            WeightLayouts = new Dictionary<string, string>
            {
                ["attn.c_attn"] = MaskedLinearWeight.Name,
                ["attn.c_proj"] = MaskedLinearWeight.Name,
                ["h.0.attn.c_proj"] = "dense",               // a layer's own entry wins over the one for every layer
                ["mlp.c_fc"] = MaskedLinearWeight.Name,
                ["h.1.mlp.c_proj"] = MaskedLinearWeight.Name,
            },
        };
    }

    static void RandomWeights(Gpt gpt, int seed)
    {
        var r = new Random(seed);
        foreach (var p in gpt.Parameters)
        {
            var v = p.Value.Span;
            bool lnWeight = p.Name.Contains(".ln_") && p.Name.EndsWith("weight");
            for (int i = 0; i < v.Length; i++) v[i] = (float)((lnWeight ? 1 : 0) + (r.NextDouble() * 2 - 1) * 0.4);
        }
    }

    /// <summary>The dense model holding the sparse model's weights (zeros where nothing is stored).</summary>
    static Gpt DenseTwin(Gpt sparse, int B, int T)
    {
        var dense = new Gpt(sparse.Config with { WeightLayouts = null }, B, T);
        for (int i = 0; i < sparse.Parameters.Count; i++)
        {
            var s = sparse.Parameters[i];
            var d = dense.Parameters[i];
            Assert.Equal(s.Name, d.Name);
            if (s.Layout is null) s.Value.CopyTo(d.Value);
            else s.Layout.ToDense(s.Value.Span, d.Value.Span);
        }
        return dense;
    }

    static (int[] Tokens, int[] Targets) Batch(int n, int seed)
    {
        var r = new Random(seed);
        return (Enumerable.Range(0, n).Select(_ => r.Next(11)).ToArray(), Enumerable.Range(0, n).Select(_ => r.Next(11)).ToArray());
    }

    [Fact]
    public void SparseWeightsKeepTheirShapeAndStoreOnlyThePattern()
    {
        var sparse = new Gpt(Config(), 1, 6);
        var dense = new Gpt(Config(sparse: false), 1, 6);
        Assert.Equal(dense.Parameters.Select(p => (p.Name, string.Join(",", p.Shape))), sparse.Parameters.Select(p => (p.Name, string.Join(",", p.Shape))));
        string[] maskedNames =
        [
            "transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight",
            "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_proj.weight", "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight",
        ];
        long removed = 0;
        int offset = 0;
        foreach (var p in sparse.Parameters)
        {
            Assert.Equal(offset, p.Offset);
            offset += p.Length;
            bool masked = maskedNames.Contains(p.Name);
            Assert.Equal(masked, p.IsSparse);
            if (p.Name.EndsWith("c_attn.weight") || p.Name.EndsWith("c_proj.weight") || p.Name.EndsWith("c_fc.weight"))
            {
                Assert.NotNull(p.Layout);
                Assert.Equal(masked ? MaskedLinearWeight.Name : "dense", p.Layout!.Layout);
                Assert.Equal(p.Layout.StoredCount, p.Length);
                Assert.True(p.Decay);
            }
            else Assert.Null(p.Layout);
            if (masked) Assert.InRange(p.Length, 1, p.LogicalLength - 1);
            removed += p.LogicalLength - p.Length;
        }
        Assert.Equal(dense.ParameterData.Length - removed, sparse.ParameterData.Length);
        Assert.Equal(sparse.ParameterData.Length, sparse.ParameterCount);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.25f)]
    public void SparseModelMatchesTheDenseModelWithZerosWhereNothingIsStored(float dropout)
    {
        int B = 2, T = 5;
        var sparse = new Gpt(Config(dropout), B, T);
        RandomWeights(sparse, 3);
        var dense = DenseTwin(sparse, B, T);
        var (tokens, targets) = Batch(B * T, 4);
        sparse.ZeroGrad();
        dense.ZeroGrad();
        float sparseLoss = sparse.Forward(tokens, targets, training: true);   // both draw the same dropout seeds
        float denseLoss = dense.Forward(tokens, targets, training: true);
        Assert.Equal(denseLoss, sparseLoss, 5);
        GradCheck.AssertClose(sparse.Logits, dense.Logits.ToArray().Select(v => (double)v).ToArray(), 1e-5, "logits");
        sparse.Backward();
        dense.Backward();
        for (int i = 0; i < sparse.Parameters.Count; i++)
        {
            var s = sparse.Parameters[i];
            var d = dense.Parameters[i];
            var expected = d.Grad.ToArray();
            if (s.Layout is not null && s.IsSparse)
            {
                // the dense gradient at the stored positions only
                var kept = new float[s.LogicalLength];
                s.Layout.ToDense(Enumerable.Repeat(1f, s.Length).ToArray(), kept);
                for (int k = 0; k < kept.Length; k++) expected[k] *= kept[k];
                var actual = new float[s.LogicalLength];
                s.Layout.ToDense(s.Grad.Span, actual);
                GradCheck.AssertClose(actual, expected.Select(v => (double)v).ToArray(), 1e-5, s.Name);
            }
            else GradCheck.AssertClose(s.Grad.Span, expected.Select(v => (double)v).ToArray(), 1e-5, s.Name);
        }
    }

    [Fact]
    public void ShardedPassesGiveEachSliceItsOwnWorkspace()
    {
        int B = 3, T = 6;
        (float Loss, float[] Grads) Run(int threads)
        {
            int saved = KernelThreads.Max;
            try
            {
                KernelThreads.Max = threads;
                var gpt = new Gpt(Config(0.2f), B, T);
                RandomWeights(gpt, 5);
                var (tokens, targets) = Batch(B * T, 6);
                gpt.ZeroGrad();
                float loss = gpt.Forward(tokens, targets, training: true);
                gpt.Backward();
                return (loss, gpt.GradientData.ToArray());
            }
            finally { KernelThreads.Max = saved; }
        }
        var whole = Run(1);
        var sharded = Run(3);
        Assert.Equal(whole.Loss, sharded.Loss, 5);
        float scale = whole.Grads.Max(Math.Abs);
        for (int i = 0; i < whole.Grads.Length; i++)
            Assert.True(Math.Abs(whole.Grads[i] - sharded.Grads[i]) <= 1e-5f * scale, $"gradient[{i}]: one thread {whole.Grads[i]}, sharded {sharded.Grads[i]}");
    }

    [Fact]
    public void CachedDecodingWithSparseWeightsMatchesTheFullForward()
    {
        var config = Config();
        int T = config.BlockSize, V = config.VocabSize;
        var gpt = new Gpt(config, 1, T);
        RandomWeights(gpt, 9);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 5 + 2) % V).ToArray();
        gpt.Forward(tokens, [], false);
        var reference = gpt.Logits.ToArray();
        var cache = gpt.CreateKvCache();
        gpt.ForwardCached(cache, tokens.AsSpan(0, 2));
        for (int t = 2; t < T; t++)
        {
            var logits = gpt.ForwardCached(cache, tokens.AsSpan(t, 1));
            for (int v = 0; v < V; v++)
                Assert.True(Math.Abs(reference[t * V + v] - logits[v]) <= 1e-5f, $"position {t}, token {v}: cached {logits[v]} vs full {reference[t * V + v]}");
        }
        Assert.Equal(T, cache.Length);
        Assert.Equal(config.NLayer, cache.Layers.Count);
    }

    [Fact]
    public void PatternsDrawnFromTheConfigAreTheSameEveryBuildAndDifferPerWeight()
    {
        var config = Config(sparse: false) with
        {
            WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = MaskedLinearWeight.Name + ":random" },
        };
        float[] Pattern(Gpt gpt, int layer)
        {
            var p = gpt.Parameters.Single(q => q.Name == $"transformer.h.{layer}.mlp.c_fc.weight");
            var kept = new float[p.LogicalLength];
            p.Layout!.ToDense(Enumerable.Repeat(1f, p.Length).ToArray(), kept);
            return kept;
        }
        var a = new Gpt(config, 1, 4);
        var b = new Gpt(config, 2, 6);
        Assert.Equal(Pattern(a, 0), Pattern(b, 0));
        Assert.Equal(Pattern(a, 1), Pattern(b, 1));
        Assert.NotEqual(Pattern(a, 0), Pattern(a, 1));
        Assert.InRange(Pattern(a, 0).Sum(), 0.3 * 256, 0.7 * 256);   // (32, 8), half kept
    }

    [Fact]
    public void ABadLayoutParameterNamesTheWeightAndTheLayoutString()
    {
        var config = Config(sparse: false) with { WeightLayouts = new Dictionary<string, string> { ["h.1.mlp.c_proj"] = MaskedLinearWeight.Name + ":x" } };
        var e = Assert.Throws<ArgumentException>(() => new Gpt(config, 1, 4));
        Assert.Contains("transformer.h.1.mlp.c_proj.weight (8, 32) as \"test-masked:x\"", e.Message);
        Assert.Contains("('x') must be an integer", e.Message);
    }
}
