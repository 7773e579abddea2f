using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Tests.Nn;

/// <summary>
/// The MLP with activations that make zeros (relu, relu2, fatrelu) and the L1 penalty on its hidden activation:
/// backward against finite differences of the whole model's loss (plus penalty), decoding against the full forward,
/// the zero count against a brute-force count of a double-precision recomputation.
/// </summary>
public class ReluMlpTests
{
    static GptConfig Tiny(string activation, float threshold = 0f) =>
        new() { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = 6, VocabSize = 11, Bias = true, Activation = activation, FatreluThreshold = threshold };

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

    public static TheoryData<string, float, float> Cases => new()
    {
        { "relu", 0f, 0f }, { "relu2", 0f, 0f }, { "fatrelu", 0.1f, 0f },
        // with the L1 penalty λ · Σ_l mean |a_l| (GELU too: its sign(a) term is not just 1)
        { "relu", 0f, 0.5f }, { "relu2", 0f, 0.5f }, { "fatrelu", 0.1f, 0.5f }, { "gelu", 0f, 0.5f },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BackwardMatchesFiniteDifferencesOfLossPlusPenalty(string activation, float threshold, float lambda)
    {
        int B = 2, T = 5;
        var gpt = new Gpt(Tiny(activation, threshold), B, T);
        RandomWeights(gpt, 7);
        var penalty = lambda > 0 ? new ActivationL1(gpt, lambda, warmup: 0, startStep: 0) : null;
        penalty?.Apply(0);
        int[] tokens = Tokens(B * T, 8), targets = Tokens(B * T, 9);
        double Loss() => gpt.Forward(tokens, targets, training: true) + (penalty?.Penalty(gpt, 0) ?? 0);
        Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        // A weight before the MLP (ln_2, c_attn) moves every pre-activation at once, so for the kinked activations (relu,
        // fatrelu) some crosses its kink inside ±eps and the central difference is off by O(1) there: those are checked
        // with the smooth ones (relu2, gelu) only; c_fc and c_proj move one neuron's pre-activations or none.
        bool smooth = activation is "relu2" or "gelu";
        foreach (var p in gpt.Parameters.Where(p => p.Name.Contains(".mlp.") || smooth && (p.Name.Contains("h.0.ln_2") || p.Name.Contains("h.0.attn.c_attn"))))
        {
            var x = p.Value.ToArray();
            var analytic = grads.AsSpan(p.Offset, p.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(p.Value);
                return Loss();
            }
            // eps small against the kinks' spacing: a ReLU kink crossed inside ±eps shows as an error of order eps
            GradCheck.Assert($"{activation} λ={lambda} {p.Name}", x, analytic, LossOf, eps: 1e-3, atol: 5e-4, rtol: 2e-2, maxChecks: 16);
        }
    }

    [Fact]
    public void ThePenaltyGradientIsNotZero()
    {
        // the same model and batch with and without act_l1: the c_fc gradients must differ (the penalty reaches them)
        int B = 2, T = 5;
        float[] GradOf(float lambda)
        {
            var gpt = new Gpt(Tiny("relu"), B, T);
            RandomWeights(gpt, 11);
            if (lambda > 0) new ActivationL1(gpt, lambda, 0, 0).Apply(0);
            gpt.Forward(Tokens(B * T, 1), Tokens(B * T, 2), training: true);
            gpt.ZeroGrad();
            gpt.Backward();
            var p = gpt.Parameters.First(q => q.Name == "transformer.h.1.mlp.c_fc.weight");
            return p.Grad.ToArray();
        }
        var plain = GradOf(0);
        var penalised = GradOf(1f);
        Assert.True(plain.Zip(penalised).Max(z => Math.Abs(z.First - z.Second)) > 1e-4);
    }

    [Theory]
    [InlineData("relu", 0f)]
    [InlineData("relu2", 0f)]
    [InlineData("fatrelu", 0.15f)]
    public void CachedDecodingEqualsTheFullForward(string activation, float threshold)
    {
        var gpt = new Gpt(Tiny(activation, threshold), 1, 6);
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

    [Theory]
    [InlineData("relu", 0f)]
    [InlineData("fatrelu", 0.2f)]
    [InlineData("relu2", 0f)]
    public void KeptActivationIsTheActivationOfCFcAndItsZerosAreCounted(string activation, float threshold)
    {
        int B = 2, T = 6;
        var gpt = new Gpt(Tiny(activation, threshold) with { Bias = false }, B, T);
        RandomWeights(gpt, 13);
        gpt.Forward(Tokens(B * T, 3), [], training: false);
        var stats = new ActivationStats(gpt, 0.05f);
        stats.Add(gpt);
        var report = stats.Report();
        for (int l = 0; l < 2; l++)
        {
            // recompute a = act(x · W_fcᵀ) in double from the c_fc input the model kept
            var mlp = (Mlp)gpt.Blocks[l].FeedForward;
            var input = gpt.LinearInput(l, "mlp.c_fc").ToArray();
            var w = gpt.Parameters.First(p => p.Name == $"transformer.h.{l}.mlp.c_fc.weight").Value.ToArray();
            int C = 8, H = mlp.Hidden;
            var kept = gpt.KeptActivation(mlp.GeluOutputs).ToArray();
            long zeros = 0, near = 0;
            for (int n = 0; n < B * T; n++)
                for (int j = 0; j < H; j++)
                {
                    double h = 0;
                    for (int c = 0; c < C; c++) h += (double)input[n * C + c] * w[j * C + c];
                    double a = activation == "relu2" ? (h > 0 ? h * h : 0) : (h > threshold ? h : 0);
                    Assert.True(Math.Abs(a - kept[n * H + j]) < 1e-4 || Math.Abs(h - threshold) < 1e-5, $"layer {l} a[{n},{j}] = {kept[n * H + j]}, reference {a}");
                    if (kept[n * H + j] == 0f) zeros++;
                    if (Math.Abs(kept[n * H + j]) < 0.05f) near++;
                }
            Assert.Equal((double)zeros / (B * T * H), report.Zeros[l], 12);
            Assert.Equal((double)near / (B * T * H), report.NearZeros[l], 12);
            Assert.True(report.Zeros[l] > 0.2 && report.Zeros[l] < 0.95, $"layer {l} zero fraction {report.Zeros[l]}");
        }
        Assert.Equal(B * T, report.Positions);
        Assert.Equal(report.Zeros.Average(), ActivationStats.LastPassZeros(gpt), 12);
    }

    [Fact]
    public void ConfigNamesBadActivationsAndThresholds()
    {
        foreach (var name in GptConfig.Activations) Tiny(name).Validate();
        Tiny("fatrelu", 0.3f).Validate();
        var e = Assert.Throws<ArgumentException>(() => Tiny("fatrelu", -0.5f).Validate());
        Assert.Contains("fatrelu_threshold (-0.5)", e.Message);
        e = Assert.Throws<ArgumentException>(() => Tiny("relu", 0.5f).Validate());
        Assert.Contains("fatrelu_threshold (0.5)", e.Message);
        Assert.Contains("\"relu\"", e.Message);
        Assert.Throws<ArgumentException>(() => Tiny("fatrelu", float.NaN).Validate());
    }

    [Theory]
    [InlineData("relu")]
    [InlineData("relu2")]
    [InlineData("fatrelu")]
    public void ExportToNanoGptDimsRefusesAnActivationItCannotWrite(string activation)
    {
        var e = Assert.Throws<NotSupportedException>(() => NanoSparse.IO.GptInterop.ToDims(Tiny(activation)));
        Assert.Contains($"\"{activation}\"", e.Message);
        Assert.Equal(NanoSparse.IO.GptDims.GeluExact, NanoSparse.IO.GptInterop.ToDims(Tiny("gelu")).Activation);
    }

    [Fact]
    public void L1RampRisesLinearlyFromTheRunsFirstStep()
    {
        var gpt = new Gpt(Tiny("relu"), 1, 6);
        var l1 = new ActivationL1(gpt, 2f, warmup: 4, startStep: 10);
        Assert.Equal(0.5f, l1.LambdaAt(10));
        Assert.Equal(1.5f, l1.LambdaAt(12));
        Assert.Equal(2f, l1.LambdaAt(13));
        Assert.Equal(2f, l1.LambdaAt(100));
        Assert.Equal(2f, new ActivationL1(gpt, 2f, 0, 10).LambdaAt(10));
        l1.Apply(10);
        var mlp = (Mlp)gpt.Blocks[0].FeedForward;
        Assert.Equal(0.5f / (6 * mlp.Hidden), mlp.L1Coefficient, 9);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ActivationL1(gpt, -1f, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ActivationL1(gpt, 1f, -1, 0));
    }
}
