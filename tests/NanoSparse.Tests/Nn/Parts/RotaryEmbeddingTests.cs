using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Tests.Kernels;
using NanoSparse.Training;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// RoPE: the rotation against a double-precision reference written as complex multiplication
/// (q_i + i·q_{i+hs/2}) · e^{i·p·θ_i}; the property it exists for (q'·k' depends on the position difference only);
/// and, switched on in a model, every attention pattern's gradients against finite differences and its cached decode
/// against the full forward pass.
/// </summary>
[Collection(nameof(GemmCollection))]
public class RotaryEmbeddingTests
{
    [Theory]
    [InlineData(3, 7, 0, 2, 16)]
    [InlineData(5, 4, 13, 3, 8)]
    [InlineData(4, 4, 1000, 1, 64)]
    public void ApplyMatchesComplexRotationAndInverseUndoesIt(int rows, int seqLen, int first, int heads, int hs)
    {
        int A = heads * hs;
        var random = new Random(rows * 31 + hs);
        var qkv = Enumerable.Range(0, rows * 3 * A).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var original = qkv.ToArray();
        RotaryEmbedding.Apply(qkv, rows, seqLen, first, A, heads);
        for (int r = 0; r < rows; r++)
        {
            int p = first + r % seqLen;
            for (int part = 0; part < 3; part++)
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < hs / 2; i++)
                    {
                        int at = r * 3 * A + part * A + h * hs + i;
                        var z = new System.Numerics.Complex(original[at], original[at + hs / 2]);
                        if (part < 2) z *= System.Numerics.Complex.FromPolarCoordinates(1, p * Math.Pow(10000, -2.0 * i / hs));
                        Assert.True(Math.Abs(qkv[at] - z.Real) < 2e-5 && Math.Abs(qkv[at + hs / 2] - z.Imaginary) < 2e-5,
                            $"row {r} part {part} head {h} pair {i}: ({qkv[at]}, {qkv[at + hs / 2]}) vs ({z.Real}, {z.Imaginary})");
                    }
        }
        RotaryEmbedding.Apply(qkv, rows, seqLen, first, A, heads, inverse: true);
        for (int i = 0; i < qkv.Length; i++) Assert.True(Math.Abs(qkv[i] - original[i]) < 2e-5, $"inverse at {i}");
    }

    [Fact]
    public void RotatedDotProductsDependOnThePositionDifferenceOnly()
    {
        const int hs = 16;
        var random = new Random(2);
        var q = Enumerable.Range(0, hs).Select(_ => (float)random.NextDouble()).ToArray();
        var k = Enumerable.Range(0, hs).Select(_ => (float)random.NextDouble()).ToArray();
        double Score(int pq, int pk)
        {
            var a = new float[3 * hs];
            var b = new float[3 * hs];
            q.CopyTo(a, 0);
            k.CopyTo(b, hs);   // b's k third
            RotaryEmbedding.Apply(a, 1, 1, pq, hs, 1);
            RotaryEmbedding.Apply(b, 1, 1, pk, hs, 1);
            double s = 0;
            for (int i = 0; i < hs; i++) s += a[i] * b[hs + i];
            return s;
        }
        Assert.Equal(Score(10, 3), Score(507, 500), 4);
        Assert.Equal(Score(3, 3), Score(900, 900), 4);
        Assert.NotEqual(Score(10, 3), Score(10, 4), 3);
    }

    public static TheoryData<string> Patterns => new() { "dense", "window", "topk", "nsa" };

    static GptConfig Config(string name) => AttentionPatternTests.Config(AttentionPatternTests.Make(name)) with { Rope = true };

    [Theory]
    [MemberData(nameof(Patterns))]
    public void WithRopeTheQkvGradientsMatchFiniteDifferences(string name)
    {
        int B = 2, T = 40;
        var gpt = new Gpt(Config(name), B, T);
        LayerWidthTests.RandomWeights(gpt, 5);
        var r = new Random(6);
        var tokens = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
        var targets = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
        double Loss() => gpt.Forward(tokens, targets, training: true);
        double withRope = Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        // the rotation is in the model: the same weights without it give another loss
        var plain = new Gpt(Config(name) with { Rope = false }, B, T);
        gpt.ParameterData.CopyTo(plain.ParameterData);
        Assert.NotEqual(withRope, plain.Forward(tokens, targets, training: true), 4);
        foreach (var q in gpt.Parameters.Where(q => q.Name.EndsWith(".attn.c_attn.weight", StringComparison.Ordinal)))
        {
            var x = q.Value.ToArray();
            var analytic = grads.AsSpan(q.Offset, q.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(q.Value);
                return Loss();
            }
            GradCheck.Assert($"{name} {q.Name}", x, analytic, LossOf, eps: 2e-3, atol: 3e-4, rtol: 1e-2, maxChecks: 24);
        }
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void WithRopeCachedDecodingEqualsTheFullForward(string name)
    {
        var config = Config(name);
        int T = config.BlockSize, V = config.VocabSize;
        var gpt = new Gpt(config, 1, T);
        LayerWidthTests.RandomWeights(gpt, 21);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 7 + 3 + i * i) % V).ToArray();
        gpt.Forward(tokens, [], false);
        var reference = gpt.Logits.ToArray();
        foreach (int prefill in new[] { 1, 37 })
        {
            var cache = gpt.CreateKvCache();
            var logits = gpt.ForwardCached(cache, tokens.AsSpan(0, prefill)).ToArray();
            AssertRow(reference, prefill - 1, logits, V, name);
            for (int t = prefill; t < T; t++)
            {
                logits = gpt.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
                AssertRow(reference, t, logits, V, name);
            }
        }
    }

    static void AssertRow(float[] reference, int t, float[] logits, int V, string name)
    {
        for (int v = 0; v < V; v++)
            Assert.True(Math.Abs(reference[t * V + v] - logits[v]) <= 2e-5f, $"{name} position {t}, token {v}: cached {logits[v]} vs full {reference[t * V + v]}");
    }

    [Fact]
    public void RopeIsOffByDefaultAndModelArgsCarryIt()
    {
        Assert.False(new GptConfig().Rope);
        var config = Config("window");
        var back = ModelArgs.From(config).ToConfig();
        Assert.True(back.Rope);
        Assert.Equal(config, back);
        Assert.NotEqual(config, config with { Rope = false });
        Assert.Contains("\"rope\":true", System.Text.Json.JsonSerializer.Serialize(ModelArgs.From(config)));
        Assert.DoesNotContain("rope", System.Text.Json.JsonSerializer.Serialize(ModelArgs.From(config with { Rope = false })));
    }
}
