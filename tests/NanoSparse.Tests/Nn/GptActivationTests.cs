using System.Text.Json;
using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

/// <summary>GptConfig.Activation: "gelu" (nanoGPT) or "gelu_tanh" (GPT-2) (relu, relu2, fatrelu: ReluMlpTests), honoured by forward, backward and the KV cache.</summary>
public class GptActivationTests
{
    static GptConfig Tiny(string activation) =>
        new() { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = 6, VocabSize = 11, Bias = true, Activation = activation };

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

    static int[] Tokens(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.Next(11)).ToArray();
    }

    [Fact]
    public void DefaultIsExactGeluAndUnknownNamesAreRejected()
    {
        Assert.Equal("gelu", new GptConfig().Activation);
        new GptConfig { Activation = "gelu_tanh" }.Validate();
        var e = Assert.Throws<ArgumentException>(() => new GptConfig { Activation = "swish" }.Validate());
        Assert.Contains("activation", e.Message);
        Assert.Contains("swish", e.Message);
        Assert.Throws<ArgumentException>(() => new Gpt(new GptConfig { Activation = "gelu_new" }, 1, 1));
    }

    [Fact]
    public void ActivationSerialisesUnderItsJsonName()
    {
        string json = JsonSerializer.Serialize(Tiny("gelu_tanh"));
        Assert.Contains("\"activation\":\"gelu_tanh\"", json);
        Assert.Equal(Tiny("gelu_tanh"), JsonSerializer.Deserialize<GptConfig>(json));
        // Configs written before the field existed mean the exact GELU.
        Assert.Equal("gelu", JsonSerializer.Deserialize<GptConfig>("{\"n_layer\":2}")!.Activation);
    }

    [Fact]
    public void TheActivationChangesTheLogits()
    {
        var exact = new Gpt(Tiny("gelu"), 1, 6);
        var tanh = new Gpt(Tiny("gelu_tanh"), 1, 6);
        RandomWeights(exact, 3);
        exact.ParameterData.CopyTo(tanh.ParameterData);
        int[] tokens = Tokens(6, 4);
        exact.Forward(tokens, [], training: false);
        tanh.Forward(tokens, [], training: false);
        double maxDiff = 0;
        for (int i = 0; i < exact.Logits.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(exact.Logits[i] - tanh.Logits[i]));
        Assert.True(maxDiff > 1e-6 && maxDiff < 1e-2, $"max |logit diff| between gelu and gelu_tanh = {maxDiff:E2}");

        // Backward switches too: the MLP gradients differ (by about as much as the activations do).
        int[] targets = Tokens(6, 5);
        foreach (var g in new[] { exact, tanh })
        {
            g.Forward(tokens, targets, training: true);
            g.ZeroGrad();
            g.Backward();
        }
        var p = exact.Parameters.First(q => q.Name == "transformer.h.0.mlp.c_fc.weight");
        var q2 = tanh.Parameters.First(q => q.Name == p.Name);
        double gradDiff = 0;
        for (int i = 0; i < p.Length; i++) gradDiff = Math.Max(gradDiff, Math.Abs(p.Grad.Span[i] - q2.Grad.Span[i]));
        Assert.True(gradDiff > 1e-7, $"c_fc gradients under gelu and gelu_tanh differ by only {gradDiff:E2}");
    }

    [Fact]
    public void BackwardMatchesFiniteDifferencesWithTanhGelu()
    {
        int B = 2, T = 5;
        var gpt = new Gpt(Tiny("gelu_tanh"), B, T);
        RandomWeights(gpt, 7);
        int[] tokens = Tokens(B * T, 8), targets = Tokens(B * T, 9);
        double Loss() => gpt.Forward(tokens, targets, training: true);
        Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        foreach (var p in gpt.Parameters.Where(p => p.Name.Contains(".mlp.") || p.Name.Contains("wte") || p.Name.Contains("h.0.ln_1")))
        {
            var x = p.Value.ToArray();
            var analytic = grads.AsSpan(p.Offset, p.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(p.Value);
                return Loss();
            }
            GradCheck.Assert(p.Name, x, analytic, LossOf, eps: 2e-3, atol: 3e-4, rtol: 1e-2, maxChecks: 12);
        }
    }

    [Fact]
    public void CachedDecodingUsesTheSameActivation()
    {
        var gpt = new Gpt(Tiny("gelu_tanh"), 1, 6);
        RandomWeights(gpt, 5);
        int[] tokens = Tokens(6, 6);
        gpt.Forward(tokens, [], training: false);
        var full = gpt.Logits.ToArray();
        var cache = gpt.CreateKvCache();
        for (int t = 0; t < 6; t++)
        {
            var step = gpt.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
            for (int v = 0; v < 11; v++) Assert.Equal(full[t * 11 + v], step[v], 4);
        }
    }
}
