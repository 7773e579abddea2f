using NanoSparse.Nn;
using NanoSparse.Sparsity.Pruning.Structured;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Sparsity.Structured;

public class StructuredPrunerTests
{
    static GptConfig Model(bool bias, string activation = GptConfig.Gelu) =>
        new() { NLayer = 2, NHead = 4, NEmbd = 16, BlockSize = 8, VocabSize = 13, Bias = bias, Activation = activation };

    static Gpt Random(GptConfig config, int B, int T, int seed)
    {
        var gpt = new Gpt(config, B, T);
        LayerWidthTests.RandomWeights(gpt, seed);
        return gpt;
    }

    static float[] Weight(Gpt gpt, string name) => gpt.Parameters.Single(p => p.Name == name).Value.ToArray();

    static int[] Tokens(int n, int vocab, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.Next(vocab)).ToArray();
    }

    /// <summary>
    /// The masked-dense reference: the original model with the removed heads' columns of attn.c_proj and the removed
    /// neurons' columns of mlp.c_proj zeroed, so those units add nothing to the residual stream.
    /// </summary>
    static Gpt Masked(Gpt source, StructuredPlan plan, int B, int T)
    {
        var masked = new Gpt(source.Config, B, T);
        source.ParameterData.CopyTo(masked.ParameterData);
        var config = source.Config;
        int C = config.NEmbd, hs = config.HeadSize;
        for (int l = 0; l < config.NLayer; l++)
        {
            int A = config.AttentionWidth(l), H = config.MlpHidden(l);
            var aProj = masked.Parameters.Single(p => p.Name == $"transformer.h.{l}.attn.c_proj.weight").Value.Span;
            for (int h = 0; h < config.Heads(l); h++)
                if (!plan.KeptHeads[l].Contains(h))
                    for (int c = 0; c < C; c++) aProj.Slice(c * A + h * hs, hs).Clear();
            var mProj = masked.Parameters.Single(p => p.Name == $"transformer.h.{l}.mlp.c_proj.weight").Value.Span;
            for (int j = 0; j < H; j++)
                if (!plan.KeptNeurons[l].Contains(j))
                    for (int c = 0; c < C; c++) mProj[c * H + j] = 0;
        }
        return masked;
    }

    [Theory]
    [InlineData(true, StructuredScore.Norm, StructuredScope.Layer, 0.25, 0.5)]
    [InlineData(false, StructuredScore.Norm, StructuredScope.Global, 0.5, 0.3)]
    [InlineData(true, StructuredScore.Activation, StructuredScope.Layer, 0.75, 0.9)]
    [InlineData(true, StructuredScore.Activation, StructuredScope.Global, 0.6, 0.6)]
    [InlineData(false, StructuredScore.Norm, StructuredScope.Layer, 0, 0)]
    public void PrunedModelGivesTheLogitsOfTheMaskedModel(bool bias, StructuredScore score, StructuredScope scope, double heads, double neurons)
    {
        int B = 2, T = 8;
        var source = Random(Model(bias), B, T, 21);
        var tokens = Tokens(B * T, 13, 5);
        UnitScores scores;
        if (score == StructuredScore.Norm) scores = StructuredScores.Norm(source);
        else
        {
            var acc = new ActivationScores(source);
            source.Forward(tokens, [], false);
            acc.Accumulate();
            scores = acc.Scores();
        }
        var plan = StructuredPruner.Select(scores, heads, neurons, scope);
        var pruned = StructuredPruner.Build(source, plan, B, T);
        Assert.Equal(plan.KeptHeads.Select(k => k.Length), Enumerable.Range(0, 2).Select(pruned.Config.Heads));
        Assert.Equal(plan.KeptNeurons.Select(k => k.Length), Enumerable.Range(0, 2).Select(pruned.Config.MlpHidden));
        if (heads > 0) Assert.True(pruned.ParameterCount < source.ParameterCount);

        var masked = Masked(source, plan, B, T);
        masked.Forward(tokens, [], false);
        pruned.Forward(tokens, [], false);
        var expected = masked.Logits.ToArray();
        var actual = pruned.Logits.ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f + 1e-5f * Math.Abs(expected[i]), $"logit {i}: pruned {actual[i]} vs masked {expected[i]}");
        // and it differs from the unpruned model's where something was removed (the check can fail)
        if (heads > 0)
        {
            source.Forward(tokens, [], false);
            Assert.True(source.Logits.ToArray().Zip(actual).Max(p => Math.Abs(p.First - p.Second)) > 1e-3f);
        }
    }

    [Fact]
    public void PruningAnAlreadyNarrowModelAgainMatchesItsMaskedModel()
    {
        int B = 1, T = 8;
        var source = Random(LayerWidthTests.Narrow(bias: true), B, T, 4);
        var plan = StructuredPruner.Select(StructuredScores.Norm(source), 0.5, 0.5, StructuredScope.Layer);
        Assert.Equal([1, 2, 3], plan.KeptHeads.Select(k => k.Length));   // 1 → 1 (floor(0.5) = 0 removed), 3 → 2, 5 → 3
        Assert.Equal([4, 32, 10], plan.KeptNeurons.Select(k => k.Length));
        var pruned = StructuredPruner.Build(source, plan, B, T);
        var tokens = Tokens(T, 13, 9);
        var masked = Masked(source, plan, B, T);
        masked.Forward(tokens, [], false);
        pruned.Forward(tokens, [], false);
        var expected = masked.Logits.ToArray();
        var actual = pruned.Logits.ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f, $"logit {i}: pruned {actual[i]} vs masked {expected[i]}");
    }

    [Fact]
    public void NormScoresEqualBruteForce()
    {
        var gpt = Random(Model(bias: true), 1, 1, 3);
        var scores = StructuredScores.Norm(gpt);
        int C = 16, hs = 4, NH = 4, A = 16, H = 64;
        for (int l = 0; l < 2; l++)
        {
            var attn = Weight(gpt, $"transformer.h.{l}.attn.c_attn.weight");   // (3A, C)
            var proj = Weight(gpt, $"transformer.h.{l}.attn.c_proj.weight");   // (C, A)
            for (int h = 0; h < NH; h++)
            {
                double s = 0;
                for (int row = 0; row < 3 * A; row++)
                    if (row % A / hs == h)
                        for (int c = 0; c < C; c++) s += Math.Pow(attn[row * C + c], 2);
                for (int c = 0; c < C; c++)
                    for (int col = 0; col < A; col++)
                        if (col / hs == h) s += Math.Pow(proj[c * A + col], 2);
                Assert.Equal(Math.Sqrt(s), scores.Heads[l][h], 9);
            }
            var fc = Weight(gpt, $"transformer.h.{l}.mlp.c_fc.weight");        // (H, C)
            var mproj = Weight(gpt, $"transformer.h.{l}.mlp.c_proj.weight");   // (C, H)
            for (int j = 0; j < H; j++)
            {
                double row = 0, col = 0;
                for (int c = 0; c < C; c++) { row += Math.Pow(fc[j * C + c], 2); col += Math.Pow(mproj[c * H + j], 2); }
                Assert.Equal(Math.Sqrt(row) * Math.Sqrt(col), scores.Neurons[l][j], 9);
            }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ActivationScoresEqualANaiveDoublePrecisionForward(bool bias)
    {
        int B = 2, T = 6;
        var config = Model(bias, GptConfig.GeluTanh) with { NHeadPerLayer = [4, 2], MlpHiddenPerLayer = [64, 24] };
        var gpt = Random(config, B, T, 17);
        var acc = new ActivationScores(gpt);
        var first = Tokens(B * T, 13, 1);
        var second = Tokens(B * T, 13, 2);
        gpt.Forward(first, [], false);
        acc.Accumulate();
        gpt.Forward(second, [], false);
        acc.Accumulate();
        var scores = acc.Scores();
        Assert.Equal(2 * B * T, acc.Tokens);

        var reference = new NaiveGpt(gpt);
        var heads = new double[2][];
        var gelu = new double[2][];
        for (int l = 0; l < 2; l++) { heads[l] = new double[config.Heads(l)]; gelu[l] = new double[config.MlpHidden(l)]; }
        foreach (var tokens in new[] { first, second })
            for (int b = 0; b < B; b++)
                reference.Run(tokens.AsSpan(b * T, T).ToArray(), heads, gelu);
        int n = 2 * B * T;
        for (int l = 0; l < 2; l++)
        {
            int H = config.MlpHidden(l);
            var mproj = Weight(gpt, $"transformer.h.{l}.mlp.c_proj.weight");
            for (int h = 0; h < heads[l].Length; h++)
                Assert.True(Math.Abs(heads[l][h] / n - scores.Heads[l][h]) <= 1e-4 * (1 + heads[l][h] / n), $"layer {l} head {h}: {scores.Heads[l][h]} vs {heads[l][h] / n}");
            for (int j = 0; j < H; j++)
            {
                double norm = Math.Sqrt(Enumerable.Range(0, 16).Sum(c => Math.Pow(mproj[c * H + j], 2)));
                double expected = gelu[l][j] / n * norm;
                Assert.True(Math.Abs(expected - scores.Neurons[l][j]) <= 1e-4 * (1 + expected), $"layer {l} neuron {j}: {scores.Neurons[l][j]} vs {expected}");
            }
        }
    }

    /// <summary>
    /// A GPT forward pass in double written from the formulas (LayerNorm eps 1e-5, causal softmax attention, tanh
    /// GELU), accumulating per token each head's ‖c_proj_h · y_h‖₂ and each neuron's |GELU output|.
    /// </summary>
    sealed class NaiveGpt(Gpt gpt)
    {
        readonly GptConfig _c = gpt.Config;
        readonly Dictionary<string, float[]> _w = gpt.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());

        double[] W(string name) => _w[name].Select(v => (double)v).ToArray();
        double[]? Bias(string name) => _w.TryGetValue(name, out var b) ? b.Select(v => (double)v).ToArray() : null;

        public void Run(int[] tokens, double[][] headSums, double[][] geluSums)
        {
            int T = tokens.Length, C = _c.NEmbd, hs = _c.HeadSize;
            var wte = W("transformer.wte.weight");
            var wpe = W("transformer.wpe.weight");
            var x = new double[T][];
            for (int t = 0; t < T; t++) x[t] = Enumerable.Range(0, C).Select(c => wte[tokens[t] * C + c] + wpe[t * C + c]).ToArray();
            for (int l = 0; l < _c.NLayer; l++)
            {
                string p = $"transformer.h.{l}.";
                int NH = _c.Heads(l), A = NH * hs, H = _c.MlpHidden(l);
                var ln1 = x.Select(row => Norm(row, W(p + "ln_1.weight"), Bias(p + "ln_1.bias"))).ToArray();
                var qkv = ln1.Select(row => Linear(row, W(p + "attn.c_attn.weight"), Bias(p + "attn.c_attn.bias"), 3 * A)).ToArray();
                var proj = W(p + "attn.c_proj.weight");
                var attnOut = new double[T][];
                for (int t = 0; t < T; t++)
                {
                    attnOut[t] = Bias(p + "attn.c_proj.bias") ?? new double[C];
                    for (int h = 0; h < NH; h++)
                    {
                        var scores = new double[t + 1];
                        for (int s = 0; s <= t; s++)
                        {
                            double dot = 0;
                            for (int d = 0; d < hs; d++) dot += qkv[t][h * hs + d] * qkv[s][A + h * hs + d];
                            scores[s] = dot / Math.Sqrt(hs);
                        }
                        double max = scores.Max(), z = scores.Sum(v => Math.Exp(v - max));
                        var y = new double[hs];
                        for (int s = 0; s <= t; s++)
                            for (int d = 0; d < hs; d++) y[d] += Math.Exp(scores[s] - max) / z * qkv[s][2 * A + h * hs + d];
                        double norm = 0;
                        for (int c = 0; c < C; c++)
                        {
                            double o = 0;
                            for (int d = 0; d < hs; d++) o += proj[c * A + h * hs + d] * y[d];
                            attnOut[t][c] += o;
                            norm += o * o;
                        }
                        headSums[l][h] += Math.Sqrt(norm);
                    }
                }
                for (int t = 0; t < T; t++) x[t] = x[t].Zip(attnOut[t], (a, b) => a + b).ToArray();
                for (int t = 0; t < T; t++)
                {
                    var ln2 = Norm(x[t], W(p + "ln_2.weight"), Bias(p + "ln_2.bias"));
                    var hidden = Linear(ln2, W(p + "mlp.c_fc.weight"), Bias(p + "mlp.c_fc.bias"), H)
                        .Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray();
                    for (int j = 0; j < H; j++) geluSums[l][j] += Math.Abs(hidden[j]);
                    var m = Linear(hidden, W(p + "mlp.c_proj.weight"), Bias(p + "mlp.c_proj.bias"), C);
                    x[t] = x[t].Zip(m, (a, b) => a + b).ToArray();
                }
            }
        }

        static double[] Norm(double[] x, double[] weight, double[]? bias)
        {
            double mean = x.Average(), variance = x.Select(v => (v - mean) * (v - mean)).Average();
            return x.Select((v, i) => (v - mean) / Math.Sqrt(variance + 1e-5) * weight[i] + (bias?[i] ?? 0)).ToArray();
        }

        // (out) = W (out, in) · x + b
        static double[] Linear(double[] x, double[] w, double[]? b, int outFeatures)
        {
            var y = new double[outFeatures];
            for (int o = 0; o < outFeatures; o++)
            {
                double s = b?[o] ?? 0;
                for (int i = 0; i < x.Length; i++) s += w[o * x.Length + i] * x[i];
                y[o] = s;
            }
            return y;
        }
    }

    [Fact]
    public void LayerScopeRemovesTheFloorOfTheFractionOfEachLayersLowestScores()
    {
        var r = new Random(5);
        var heads = new[] { Distinct(r, 8), Distinct(r, 3), Distinct(r, 1) };
        var neurons = new[] { Distinct(r, 40), Distinct(r, 7), Distinct(r, 2) };
        var plan = StructuredPruner.Select(new UnitScores(heads, neurons), 0.4, 0.7, StructuredScope.Layer);
        for (int l = 0; l < 3; l++)
        {
            AssertKeepsHighest(heads[l], plan.KeptHeads[l], heads[l].Length - (int)Math.Floor(0.4 * heads[l].Length));
            AssertKeepsHighest(neurons[l], plan.KeptNeurons[l], neurons[l].Length - (int)Math.Floor(0.7 * neurons[l].Length));
        }
        Assert.Equal([5, 2, 1], plan.KeptHeads.Select(k => k.Length));
        Assert.Equal([12, 3, 1], plan.KeptNeurons.Select(k => k.Length));
    }

    [Fact]
    public void GlobalScopeRemovesTheLowestScoresOfTheWholeModelButNeverALayersLastUnit()
    {
        var r = new Random(6);
        // layer 1's scores are all below layer 0's: a global ranking empties it down to its last head
        var heads = new[] { Distinct(r, 6).Select(v => v + 10).ToArray(), Distinct(r, 4) };
        var neurons = new[] { Distinct(r, 30), Distinct(r, 20) };
        var plan = StructuredPruner.Select(new UnitScores(heads, neurons), 0.5, 0.5, StructuredScope.Global);
        Assert.Equal(10 - 5, plan.KeptHeads.Sum(k => k.Length));
        Assert.Single(plan.KeptHeads[1]);
        Assert.Equal(Array.IndexOf(heads[1], heads[1].Max()), plan.KeptHeads[1][0]);
        Assert.Equal(4, plan.KeptHeads[0].Length);   // its two lowest heads went with layer 1's three lowest
        AssertKeepsHighest(heads[0], plan.KeptHeads[0], 4);
        // neurons: exactly the 25 lowest of 50 across both layers
        Assert.Equal(25, plan.KeptNeurons.Sum(k => k.Length));
        double threshold = neurons.SelectMany(n => n).OrderBy(v => v).ElementAt(25);
        for (int l = 0; l < 2; l++)
            for (int j = 0; j < neurons[l].Length; j++)
                Assert.Equal(neurons[l][j] >= threshold, plan.KeptNeurons[l].Contains(j));
    }

    static double[] Distinct(Random r, int n) => Enumerable.Range(0, n).Select(i => i + r.NextDouble() * 0.5).OrderBy(_ => r.Next()).ToArray();

    static void AssertKeepsHighest(double[] scores, int[] kept, int count)
    {
        Assert.Equal(count, kept.Length);
        Assert.Equal(Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).Take(count).Order(), kept);
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void AFractionOutsideZeroToOneIsRefusedInOneLine(double fraction)
    {
        var scores = new UnitScores([[1, 2]], [[1, 2, 3]]);
        var e = Assert.Throws<ArgumentException>(() => StructuredPruner.Select(scores, fraction, 0, StructuredScope.Layer));
        Assert.Contains("heads fraction", e.Message);
        Assert.Contains("must lie in [0, 1)", e.Message);
        e = Assert.Throws<ArgumentException>(() => StructuredPruner.Select(scores, 0, fraction, StructuredScope.Global));
        Assert.Contains("neurons fraction", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void APlanThatRemovesEveryHeadOfALayerIsRefused()
    {
        var gpt = Random(Model(bias: false), 1, 1, 1);
        var plan = new StructuredPlan([[0, 1], []], [[0], [1]]);
        var e = Assert.Throws<ArgumentException>(() => StructuredPruner.Build(gpt, plan, 1, 1));
        Assert.Contains("layer 1 would keep no head", e.Message);
        plan = new StructuredPlan([[0, 1], [3]], [[0], [64]]);
        e = Assert.Throws<ArgumentException>(() => StructuredPruner.Build(gpt, plan, 1, 1));
        Assert.Contains("layer 1: kept neuron indices must be ascending and in [0, 64), found 64", e.Message);
    }

    [Fact]
    public void NonFiniteScoresAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => StructuredPruner.Select(new UnitScores([[1, double.NaN]], [[1]]), 0.5, 0, StructuredScope.Layer));
        Assert.Contains("heads 1 of layer 0 is NaN", e.Message);
    }
}
