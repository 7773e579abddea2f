using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

public class GptTests
{
    static GptConfig Tiny(bool bias, float dropout = 0f) =>
        new() { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = 6, VocabSize = 11, Bias = bias, Dropout = dropout };

    static (int[] Tokens, int[] Targets) Batch(int B, int T, int V, int seed)
    {
        var r = new Random(seed);
        return (Enumerable.Range(0, B * T).Select(_ => r.Next(V)).ToArray(), Enumerable.Range(0, B * T).Select(_ => r.Next(V)).ToArray());
    }

    /// <summary>Larger-than-nanoGPT weights so that every gradient is well above finite-difference noise.</summary>
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

    [Fact]
    public void ParametersFollowNanoGptStateDictNamesShapesAndOrder()
    {
        var gpt = new Gpt(Tiny(bias: true), 1, 6);
        var names = gpt.Parameters.Select(p => p.Name).ToArray();
        Assert.Equal("transformer.wte.weight", names[0]);
        Assert.Equal("transformer.wpe.weight", names[1]);
        Assert.Equal("transformer.h.0.ln_1.weight", names[2]);
        Assert.Equal("transformer.h.0.attn.c_attn.weight", names[4]);
        Assert.Equal("transformer.ln_f.bias", names[^1]);
        Assert.Equal(2 + 2 * 12 + 2, names.Length);
        Assert.Equal([24, 8], gpt.Parameters[4].Shape);
        Assert.Equal([8, 32], gpt.Parameters.Single(p => p.Name == "transformer.h.1.mlp.c_proj.weight").Shape);
        Assert.Equal(gpt.ParameterData.Length, gpt.Parameters.Sum(p => p.Length));
        Assert.Equal(gpt.ParameterCount, gpt.Parameters.Sum(p => (long)p.Length));
        var noBias = new Gpt(Tiny(bias: false), 1, 6);
        Assert.DoesNotContain(noBias.Parameters, p => p.Name.EndsWith(".bias"));
        Assert.Equal(2 + 2 * 6 + 1, noBias.Parameters.Count);
    }

    [Fact]
    public void InitializationFollowsNanoGpt()
    {
        var gpt = new Gpt(new GptConfig { NLayer = 3, NHead = 2, NEmbd = 64, BlockSize = 16, VocabSize = 50, Bias = true }, 1, 16);
        gpt.InitializeWeights(42);
        double Std(Parameter p)
        {
            var v = p.Value.Span.ToArray();
            double m = v.Average(x => (double)x);
            return Math.Sqrt(v.Average(x => (x - m) * (x - m)));
        }
        foreach (var p in gpt.Parameters)
        {
            if (p.Name.EndsWith(".bias")) Assert.All(p.Value.ToArray(), v => Assert.Equal(0f, v));
            else if (p.Name.Contains(".ln_")) Assert.All(p.Value.ToArray(), v => Assert.Equal(1f, v));
            else if (p.Name.EndsWith("c_proj.weight")) Assert.InRange(Std(p), 0.02 / Math.Sqrt(6) * 0.9, 0.02 / Math.Sqrt(6) * 1.1);
            else Assert.InRange(Std(p), 0.018, 0.022);
        }
        var again = new Gpt(gpt.Config, 1, 16);
        again.InitializeWeights(42);
        Assert.Equal(gpt.ParameterData.ToArray(), again.ParameterData.ToArray());
    }

    [Theory]
    [InlineData(true, 0f)]
    [InlineData(false, 0f)]
    [InlineData(true, 0.25f)]
    public void BackwardMatchesFiniteDifferencesOnEveryParameterTensor(bool bias, float dropout)
    {
        int B = 2, T = 5;
        var gpt = new Gpt(Tiny(bias, dropout), B, T);
        RandomWeights(gpt, 7);
        var (tokens, targets) = Batch(B, T, 11, 8);
        var rngState = gpt.DropoutRng.State;
        double Loss()
        {
            gpt.DropoutRng.State = rngState;   // the same dropout masks for every evaluation
            return gpt.Forward(tokens, targets, training: true);
        }
        Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        var values = new float[gpt.ParameterData.Length];
        foreach (var p in gpt.Parameters)
        {
            // FD on a copy of this tensor's values, written back into the model for every evaluation.
            var x = p.Value.ToArray();
            var analytic = grads.AsSpan(p.Offset, p.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(p.Value);
                return Loss();
            }
            // Float forward: eps trades truncation (∝ eps²) against rounding (∝ 1/eps); the dropout net (scaled by
            // 1/(1-p)) is more curved, hence its looser bound. A wrong gradient is off by O(100%), not by 3%.
            GradCheck.Assert(p.Name, x, analytic, LossOf, eps: dropout > 0 ? 1e-3 : 2e-3, atol: 3e-4, rtol: dropout > 0 ? 3e-2 : 1e-2, maxChecks: 12);
        }
    }

    [Fact]
    public void BackwardAccumulatesAndZeroGradClears()
    {
        var gpt = new Gpt(Tiny(bias: true), 2, 5);
        RandomWeights(gpt, 3);
        var (tokens, targets) = Batch(2, 5, 11, 4);
        gpt.ZeroGrad();
        gpt.Forward(tokens, targets, true);
        gpt.Backward();
        var once = gpt.GradientData.ToArray();
        gpt.Forward(tokens, targets, true);
        gpt.Backward();
        var twice = gpt.GradientData.ToArray();
        for (int i = 0; i < once.Length; i++) Assert.Equal(2 * once[i], twice[i], 1e-6f + Math.Abs(once[i]) * 1e-5f);
        gpt.ZeroGrad();
        Assert.All(gpt.GradientData.ToArray(), g => Assert.Equal(0f, g));
        Assert.Throws<InvalidOperationException>(() => { gpt.Forward(tokens, targets, true); gpt.Backward(); gpt.Backward(); });
    }

    [Fact]
    public void ForwardWithoutTargetsReturnsNaNAndKeepsLogits()
    {
        var gpt = new Gpt(Tiny(bias: false), 1, 4);
        gpt.InitializeWeights(1);
        float loss = gpt.Forward([1, 2, 3, 4], [], training: false);
        Assert.True(float.IsNaN(loss));
        Assert.Equal(4 * 11, gpt.Logits.Length);
        Assert.Throws<InvalidOperationException>(() => gpt.Backward());
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => gpt.Forward([1, 2, 11, 4], [], false));
        Assert.Contains("vocab_size", ex.Message);
    }

    [Fact]
    public void TrainingStepAllocatesNothingAfterWarmUp()
    {
        var config = new GptConfig { NLayer = 2, NHead = 4, NEmbd = 64, BlockSize = 32, VocabSize = 65, Bias = true, Dropout = 0.1f };
        int B = 4, T = 32;
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(5);
        var (tokens, targets) = Batch(B, T, 65, 6);
        for (int i = 0; i < 2; i++)
        {
            gpt.Forward(tokens, targets, true);
            gpt.Backward();
        }
        long allocated = Allocations.SteadyState(() =>
        {
            for (int i = 0; i < 3; i++)
            {
                gpt.ZeroGrad();
                gpt.Forward(tokens, targets, true);
                gpt.Backward();
            }
        });
        Assert.Equal(0, allocated);
    }

    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 3)]
    public void CachedLogitsEqualFullForwardAtEveryPosition(bool bias, int prefill)
    {
        var config = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 13, Bias = bias };
        int T = config.BlockSize, V = config.VocabSize;
        var full = new Gpt(config, 1, T);
        RandomWeights(full, 11);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 7 + 3) % V).ToArray();
        full.Forward(tokens, [], false);
        var reference = full.Logits.ToArray();
        var cache = full.CreateKvCache();
        var logits = full.ForwardCached(cache, tokens.AsSpan(0, prefill)).ToArray();
        AssertRow(reference, prefill - 1, logits, V);
        for (int t = prefill; t < T; t++)
        {
            logits = full.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
            AssertRow(reference, t, logits, V);
        }
        Assert.Throws<ArgumentException>(() => full.ForwardCached(cache, [1]));
        // After a crop the cache is refilled with the window; positions restart at 0, as nanoGPT's idx[:, -block_size:].
        var window = tokens[2..].Concat(new[] { 5, 9 }).ToArray();
        full.Forward(window, [], false);
        var croppedReference = full.Logits.ToArray();
        cache.Reset();
        logits = full.ForwardCached(cache, window).ToArray();
        AssertRow(croppedReference, T - 1, logits, V);
    }

    static void AssertRow(float[] reference, int t, float[] logits, int V)
    {
        for (int v = 0; v < V; v++)
            Assert.True(Math.Abs(reference[t * V + v] - logits[v]) <= 1e-5f,
                $"position {t}, token {v}: cached {logits[v]} vs full {reference[t * V + v]}");
    }
}
