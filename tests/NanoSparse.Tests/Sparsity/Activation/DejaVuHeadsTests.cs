using NanoSparse.IO;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Tests.Data;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Sparsity.Activation;

/// <summary>Deja Vu's attention-head prediction: the predicted-heads attention part, the head labels, the file format.</summary>
[Collection("KernelThreads")]   // sets KernelThreads.Max
public sealed class DejaVuHeadsTests
{
    const int C = 32, NH = 4, HS = C / NH, V = 11, T = 8;

    static GptConfig Tiny() =>
        new() { NLayer = 2, NHead = NH, NEmbd = C, BlockSize = T, VocabSize = V, Bias = true, Activation = "relu" };

    static Gpt Model(int seed, int batch = 1)
    {
        var gpt = new Gpt(Tiny(), batch, T);
        var r = new Random(seed);
        foreach (var p in gpt.Parameters)
        {
            var v = p.Value.Span;
            bool lnWeight = p.Name.Contains(".ln_") && p.Name.EndsWith("weight");
            for (int i = 0; i < v.Length; i++) v[i] = (float)((lnWeight ? 1 : 0) + (r.NextDouble() * 2 - 1) * 0.4);
        }
        gpt.PrepareForInference();
        return gpt;
    }

    static DejaVuPredictor HeadPredictor(GptConfig config, int rank, int seed, string label = "top:0.5")
    {
        var r = new Random(seed);
        var layers = new List<DejaVuPredictor.Layer>();
        for (int l = 0; l < config.NLayer; l++)
        {
            var p = new DejaVuPredictor.Layer(config.NEmbd, config.Heads(l), rank);
            GradCheck.RandomArray(r, p.W1.Length).CopyTo(p.W1, 0);
            GradCheck.RandomArray(r, p.W2.Length).CopyTo(p.W2, 0);
            GradCheck.RandomArray(r, p.B2.Length, 0.1).CopyTo(p.B2, 0);
            layers.Add(p);
        }
        return new DejaVuPredictor([], "active", null, layers, label);
    }

    /// <summary>
    /// The model in double precision with each layer's attention restricted to the heads its predictor's double scores
    /// (on ln_1's output) rank in the top <paramref name="keep"/>: the unchosen heads' outputs contribute nothing to
    /// c_proj; keys and values are every head's. Returns the logits (T, V) of every position.
    /// </summary>
    static double[] Reference(Gpt gpt, DejaVuPredictor predictor, int keep, int[] tokens)
    {
        var byName = gpt.Parameters.ToDictionary(p => p.Name);
        double[] P(string name) => byName[name].Value.ToArray().Select(v => (double)v).ToArray();
        int n = tokens.Length, A = C;
        var wte = P("transformer.wte.weight");
        var wpe = P("transformer.wpe.weight");
        var x = new double[n][];
        for (int t = 0; t < n; t++) x[t] = Enumerable.Range(0, C).Select(i => wte[tokens[t] * C + i] + wpe[t * C + i]).ToArray();
        for (int l = 0; l < 2; l++)
        {
            string p = $"transformer.h.{l}.";
            var u = x.Select(r => LayerNorm(r, P(p + "ln_1.weight"), P(p + "ln_1.bias"))).ToArray();
            var qkv = u.Select(r => Linear(r, P(p + "attn.c_attn.weight"), P(p + "attn.c_attn.bias"), 3 * A)).ToArray();
            var hp = predictor.HeadLayers[l];
            for (int t = 0; t < n; t++)
            {
                var z = Linear(u[t], hp.W1.Select(v => (double)v).ToArray(), [], hp.Rank);
                var s = Linear(z, hp.W2.Select(v => (double)v).ToArray(), hp.B2.Select(v => (double)v).ToArray(), NH);
                var chosen = Enumerable.Range(0, NH).OrderByDescending(h => s[h]).ThenBy(h => h).Take(keep).ToHashSet();
                var y = new double[A];
                foreach (int h in chosen)
                {
                    var e = new double[t + 1];
                    for (int j = 0; j <= t; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < HS; d++) dot += qkv[t][h * HS + d] * qkv[j][A + h * HS + d];
                        e[j] = dot / Math.Sqrt(HS);
                    }
                    double max = e.Max(), sum = 0;
                    for (int j = 0; j <= t; j++) sum += e[j] = Math.Exp(e[j] - max);
                    for (int j = 0; j <= t; j++)
                        for (int d = 0; d < HS; d++) y[h * HS + d] += e[j] / sum * qkv[j][2 * A + h * HS + d];
                }
                var o = Linear(y, P(p + "attn.c_proj.weight"), P(p + "attn.c_proj.bias"), C);
                for (int i = 0; i < C; i++) x[t][i] += o[i];
            }
            for (int t = 0; t < n; t++)
            {
                var u2 = LayerNorm(x[t], P(p + "ln_2.weight"), P(p + "ln_2.bias"));
                var a = Linear(u2, P(p + "mlp.c_fc.weight"), P(p + "mlp.c_fc.bias"), 4 * C).Select(v => Math.Max(0, v)).ToArray();
                var o = Linear(a, P(p + "mlp.c_proj.weight"), P(p + "mlp.c_proj.bias"), C);
                for (int i = 0; i < C; i++) x[t][i] += o[i];
            }
        }
        var logits = new double[n * V];
        for (int t = 0; t < n; t++)
        {
            var f = LayerNorm(x[t], P("transformer.ln_f.weight"), P("transformer.ln_f.bias"));
            for (int v = 0; v < V; v++)
                for (int i = 0; i < C; i++) logits[t * V + v] += f[i] * wte[v * C + i];
        }
        return logits;
    }

    static double[] Linear(double[] x, double[] w, double[] b, int outFeatures)
    {
        var y = new double[outFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            double s = b.Length == 0 ? 0 : b[o];
            for (int i = 0; i < x.Length; i++) s += w[o * x.Length + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    static double[] LayerNorm(double[] x, double[] w, double[] b)
    {
        double mean = x.Average(), variance = x.Sum(v => (v - mean) * (v - mean)) / x.Length, rstd = 1 / Math.Sqrt(variance + 1e-5);
        return x.Select((v, i) => (v - mean) * rstd * w[i] + b[i]).ToArray();
    }

    static readonly int[] Tokens = [3, 9, 1, 4, 10, 0, 6, 2];

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 3)]
    [InlineData(2, 2)]
    [InlineData(2, 4)]   // every head: the dense model
    public void ForwardAndCachedDecodeEqualTheDoubleReferenceMaskingTheSameHeads(int threads, int keep)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var gpt = Model(3);
            var predictor = HeadPredictor(gpt.Config, 6, 4);
            var parts = PredictedHeadsAttention.Install(gpt, predictor, keep, "test");
            var expected = Reference(gpt, predictor, keep, Tokens);
            gpt.Forward(Tokens, [], training: false);   // masked dense evaluation
            GradCheck.AssertClose(gpt.Logits, expected, 1e-4, "forward");
            Assert.Equal((double)keep / NH, parts[0].SelectedFraction, 9);
            // token by token: every step through the one-position path (q, attention and c_proj of the chosen heads)
            var cache = gpt.CreateKvCache();
            for (int t = 0; t < T; t++)
                GradCheck.AssertClose(gpt.ForwardCached(cache, Tokens.AsSpan(t, 1)), expected.AsSpan(t * V, V), 1e-4, $"decode step {t}");
            // a prefill of 5 (the masked dense path), then single tokens over the cache it left
            cache.Reset();
            GradCheck.AssertClose(gpt.ForwardCached(cache, Tokens.AsSpan(0, 5)), expected.AsSpan(4 * V, V), 1e-4, "prefill");
            for (int t = 5; t < T; t++)
                GradCheck.AssertClose(gpt.ForwardCached(cache, Tokens.AsSpan(t, 1)), expected.AsSpan(t * V, V), 1e-4, $"after prefill, step {t}");
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void KeepingEveryHeadGivesTheDenseModelAndFewerHeadsDoNot()
    {
        var dense = Model(7);
        dense.Forward(Tokens, [], training: false);
        var expected = dense.Logits.ToArray().Select(v => (double)v).ToArray();
        var all = Model(7);
        PredictedHeadsAttention.Install(all, HeadPredictor(all.Config, 4, 8), NH, "test");
        all.Forward(Tokens, [], training: false);
        GradCheck.AssertClose(all.Logits, expected, 1e-5, "every head");
        var two = Model(7);
        PredictedHeadsAttention.Install(two, HeadPredictor(two.Config, 4, 8), 2, "test");
        two.Forward(Tokens, [], training: false);
        Assert.True(two.Logits.ToArray().Zip(expected).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "skipping heads changed nothing");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ASkippedHeadsQueryRowsAndProjectionColumnsAreNeverRead(int threads)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            // A predictor that ignores its input (W2 = 0): heads 0 and 2 score highest in every layer, so 1 and 3 are skipped.
            DejaVuPredictor Fixed(Gpt g)
            {
                var p = HeadPredictor(g.Config, 3, 5);
                foreach (var layer in p.HeadLayers)
                {
                    Array.Clear(layer.W2);
                    layer.B2[0] = 2; layer.B2[1] = -1; layer.B2[2] = 1; layer.B2[3] = -2;
                }
                return p;
            }
            var clean = Model(11);
            PredictedHeadsAttention.Install(clean, Fixed(clean), 2, "test");
            clean.Forward(Tokens, [], training: false);
            var expected = clean.Logits.ToArray().Select(v => (double)v).ToArray();

            var poisoned = Model(11);
            foreach (var p in poisoned.Parameters)
            {
                var v = p.Value.Span;
                foreach (int h in new[] { 1, 3 })
                {
                    if (p.Name.EndsWith("attn.c_attn.weight")) v.Slice(h * HS * C, HS * C).Fill(float.NaN);       // q rows of head h
                    if (p.Name.EndsWith("attn.c_attn.bias")) v.Slice(h * HS, HS).Fill(float.NaN);
                    if (p.Name.EndsWith("attn.c_proj.weight"))
                        for (int c = 0; c < C; c++) v.Slice(c * C + h * HS, HS).Fill(float.NaN);                  // its c_proj columns
                }
            }
            PredictedHeadsAttention.Install(poisoned, Fixed(poisoned), 2, "test");
            var cache = poisoned.CreateKvCache();
            for (int t = 0; t < T; t++)
            {
                var logits = poisoned.ForwardCached(cache, Tokens.AsSpan(t, 1));
                Assert.True(logits.ToArray().All(float.IsFinite), $"step {t}: a skipped head's weights were read");
                GradCheck.AssertClose(logits, expected.AsSpan(t * V, V), 1e-4, $"step {t}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void OracleHeadsAreTheLabelsHeadsInForwardAndDecode()
    {
        var gpt = Model(13);
        var parts = PredictedHeadsAttention.Install(gpt, HeadPredictor(gpt.Config, 3, 3), 2, "test");
        foreach (var p in parts) p.Oracle = true;
        gpt.Forward(Tokens, [], training: false);
        var full = gpt.Logits.ToArray().Select(v => (double)v).ToArray();
        Assert.Equal(1.0, parts[0].Recall, 9);   // label top:0.5 = the 2 largest of 4: the oracle keeps exactly those
        Assert.Equal(1.0, parts[1].Recall, 9);
        var cache = gpt.CreateKvCache();
        for (int t = 0; t < T; t++)
            GradCheck.AssertClose(gpt.ForwardCached(cache, Tokens.AsSpan(t, 1)), full.AsSpan(t * V, V), 1e-4, $"oracle decode step {t}");
        var dense = Model(13);
        dense.Forward(Tokens, [], training: false);
        Assert.True(dense.Logits.ToArray().Zip(full).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "the oracle skipped nothing");
        Assert.True(PredictorSpec.Parse("f:-:oracle6") is { OracleHeads: true, KeepHeads: 6, UseMlp: false });
    }

    [Fact]
    public void TheListedHeadsKernelEqualsTheAllHeadsKernelOnThoseHeadsAndLeavesTheOthers()
    {
        var r = new Random(2);
        int count = 37, A = 64, hs = 16;
        var q = GradCheck.RandomArray(r, A);
        var keys = GradCheck.RandomArray(r, count * A);
        var values = GradCheck.RandomArray(r, count * A);
        var all = new float[A];
        CachedAttention.Forward(all, q, keys, values, count, A, A / hs, new float[count]);
        var some = Enumerable.Repeat(7f, A).ToArray();
        CachedAttention.ForwardHeads(some, q, keys, values, count, A, hs, [0, 3], new float[count]);
        for (int i = 0; i < A; i++)
        {
            int h = i / hs;
            if (h is 0 or 3) Assert.Equal(all[i], some[i], 5);
            else Assert.Equal(7f, some[i]);
        }
    }

    [Fact]
    public void HeadNormsAndLabelsFollowTheirDefinitions()
    {
        var r = new Random(4);
        int N = 5, A = C;
        var wProj = GradCheck.RandomArray(r, C * A);
        var y = GradCheck.RandomArray(r, N * A);
        var norms = new float[N * NH];
        HeadContributions.Norms(norms, y, HeadContributions.HeadBlocks(wProj, C, A, HS), N, C, A, HS);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < NH; h++)
            {
                double sq = 0;
                for (int c = 0; c < C; c++)
                {
                    double o = 0;
                    for (int d = 0; d < HS; d++) o += (double)wProj[c * A + h * HS + d] * y[n * A + h * HS + d];
                    sq += o * o;
                }
                Assert.Equal(Math.Sqrt(sq), norms[n * NH + h], 4);
            }
        float[] given = [1, 4, 2, 3, /**/ 0.1f, 0.1f, 5, 0.2f];
        var labels = new byte[8];
        HeadContributions.Labels(given, labels, 2, 4, "top:0.5");
        Assert.Equal(new byte[] { 0, 1, 0, 1, /**/ 0, 0, 1, 1 }, labels);
        HeadContributions.Labels(given, labels, 2, 4, "share:0.25");   // totals 10 and 5.4: bars 2.5 and 1.35
        Assert.Equal(new byte[] { 0, 1, 0, 1, /**/ 0, 0, 1, 0 }, labels);
        Assert.Throws<ArgumentException>(() => HeadContributions.ParseLabel("share:1"));
        Assert.Throws<ArgumentException>(() => HeadContributions.ParseLabel("half"));
    }

    [Fact]
    public void AFileWithBothKindsRoundTripsAndAnOldMlpFileStillLoads()
    {
        using var dir = new TempDir();
        var gpt = Model(1);
        var heads = HeadPredictor(gpt.Config, 3, 2, "share:0.2");
        var mlp = new List<DejaVuPredictor.Layer> { new(C, 4 * C, 5), new(C, 4 * C, 5) };
        mlp[1].B2[7] = 0.5f;
        var both = new DejaVuPredictor(mlp, "active", null, heads.HeadLayers, "share:0.2");
        string path = dir["both.safetensors"];
        both.Save(path);
        var back = DejaVuPredictor.Load(path);
        Assert.Equal("mlp,heads", back.Kinds);
        Assert.Equal("share:0.2", back.HeadLabel);
        for (int l = 0; l < 2; l++)
        {
            Assert.Equal(heads.HeadLayers[l].W1, back.HeadLayers[l].W1);
            Assert.Equal(heads.HeadLayers[l].W2, back.HeadLayers[l].W2);
            Assert.Equal(heads.HeadLayers[l].B2, back.HeadLayers[l].B2);
            Assert.Equal(mlp[l].B2, back.Layers[l].B2);
        }
        back.CheckMatches(gpt.Config, path);
        // a file written before head prediction: MLP tensors and no "kinds"
        string old = dir["old.safetensors"];
        SafeTensors.Write(old, [new("h.0.w1", [2, C], new float[2 * C]), new("h.0.w2", [4 * C, 2], new float[8 * C]), new("h.0.b2", [4 * C], new float[4 * C])],
            new Dictionary<string, string> { ["format"] = DejaVuPredictor.Format, ["n_layer"] = "1", ["label"] = "active" });
        var legacy = DejaVuPredictor.Load(old);
        Assert.Equal("mlp", legacy.Kinds);
        Assert.False(legacy.HasHeads);
    }

    static void OneLine(Exception e, params string[] parts)
    {
        Assert.DoesNotContain('\n', e.Message);
        foreach (var p in parts) Assert.Contains(p, e.Message);
    }

    [Fact]
    public void BadFilesAndSettingsGiveOneLineErrors()
    {
        using var dir = new TempDir();
        var gpt = Model(1);
        // wrong layer count
        var three = HeadPredictor(Tiny() with { NLayer = 3 }, 3, 1);
        OneLine(Assert.Throws<InvalidDataException>(() => PredictedHeadsAttention.Install(Model(1), three, 2, "p3")), "p3", "n_layer is 3", "the model has 2");
        // wrong head count (a model with 2 heads of 16)
        var twoHeads = HeadPredictor(Tiny() with { NHead = 2 }, 3, 1);
        OneLine(Assert.Throws<InvalidDataException>(() => PredictedHeadsAttention.Install(Model(1), twoHeads, 2, "p2")), "p2", "h.0.attn.w2 scores 2 heads", "has 4");
        // wrong width
        var wide = HeadPredictor(Tiny() with { NEmbd = 48, NHead = 4 }, 3, 1);
        OneLine(Assert.Throws<InvalidDataException>(() => PredictedHeadsAttention.Install(Model(1), wide, 2, "pw")), "h.0.attn.w1 takes 48 channels", "n_embd is 32");
        // a rank that does not match between w1 and w2
        string badRank = dir["rank.safetensors"];
        SafeTensors.Write(badRank, [new("h.0.attn.w1", [4, C], new float[4 * C]), new("h.0.attn.w2", [NH, 5], new float[NH * 5]), new("h.0.attn.b2", [NH], new float[NH])],
            new Dictionary<string, string> { ["format"] = DejaVuPredictor.Format, ["n_layer"] = "1", ["kinds"] = "heads" });
        OneLine(Assert.Throws<InvalidDataException>(() => DejaVuPredictor.Load(badRank)), badRank, "h.0.attn.w2 is [4, 5]", "expected [4, 4]");
        string badKinds = dir["kinds.safetensors"];
        SafeTensors.Write(badKinds, [new("h.0.attn.w1", [4, C], new float[4 * C])],
            new Dictionary<string, string> { ["format"] = DejaVuPredictor.Format, ["n_layer"] = "1", ["kinds"] = "experts" });
        OneLine(Assert.Throws<InvalidDataException>(() => DejaVuPredictor.Load(badKinds)), "kinds", "experts");
        // budgets
        var ok = HeadPredictor(gpt.Config, 3, 1);
        OneLine(Assert.Throws<ArgumentException>(() => PredictedHeadsAttention.Install(Model(1), ok, 5, "p")), "heads kept per token (5)", "[1, 4]");
        OneLine(Assert.Throws<ArgumentException>(() => PredictedHeadsAttention.Install(Model(1), ok, 0, "p")), "(0)");
        // an MLP-only file asked for heads, a heads-only file asked for MLP sparsity
        string headsOnly = dir["heads.safetensors"];
        ok.Save(headsOnly);
        OneLine(Assert.Throws<ArgumentException>(() => PredictorSpec.Parse(headsOnly + ":0.5").Install(Model(1))), "MLP sparsity", "no MLP predictors");
        string mlpOnly = dir["mlp.safetensors"];
        new DejaVuPredictor([new(C, 4 * C, 2), new(C, 4 * C, 2)], "active").Save(mlpOnly);
        OneLine(Assert.Throws<ArgumentException>(() => PredictorSpec.Parse(mlpOnly + "::2").Install(Model(1))), "no head predictors");
        OneLine(Assert.Throws<ArgumentException>(() => PredictorSpec.Parse(headsOnly + ":-:-").Install(Model(1))), "nothing to apply");
        OneLine(Assert.Throws<ArgumentException>(() => new DejaVuTrainOptions(Target: "experts").Validate()), "target \"experts\"");
        OneLine(Assert.Throws<ArgumentException>(() => new DejaVuTrainOptions(HeadRank: 0).Validate()), "head rank (0)");
        OneLine(Assert.Throws<ArgumentException>(() => new DejaVuTrainOptions(HeadLabel: "top:2").Validate()), "head label \"top:2\"");
    }

    [Theory]
    [InlineData("p.st", "p.st", true, null, true, null)]
    [InlineData("p.st:0.9", "p.st", true, 0.9, true, null)]
    [InlineData("p.st:0.9:6", "p.st", true, 0.9, true, 6)]
    [InlineData("p.st::6", "p.st", true, null, true, 6)]
    [InlineData("p.st:-:4", "p.st", false, null, true, 4)]
    [InlineData("p.st:0.5:-", "p.st", true, 0.5, false, null)]
    [InlineData("dir:x/p.st:0.5", "dir:x/p.st", true, 0.5, true, null)]
    public void PredictorSpecsParse(string value, string file, bool mlp, double? sparsity, bool heads, int? keep)
    {
        var s = PredictorSpec.Parse(value);
        Assert.Equal(new PredictorSpec(file, mlp, sparsity, heads, keep), s);
    }

    [Fact]
    public void AHeadPredictorTrainedOnASyntheticCaseFindsTheLabelledHeads()
    {
        // Head h is needed when (U·(Wx))_h is among the top 2 of 4: a rank-3 map, which a rank-3 predictor can learn.
        int c = 10, rows = 3000;
        var r = new Random(12);
        var U = GradCheck.RandomArray(r, NH * 3);
        var W = GradCheck.RandomArray(r, 3 * c);
        var x = GradCheck.RandomArray(r, rows * c);
        var scores = new float[rows * NH];
        for (int n = 0; n < rows; n++)
            for (int h = 0; h < NH; h++)
            {
                double s = 0;
                for (int q = 0; q < 3; q++)
                {
                    double t = 0;
                    for (int k = 0; k < c; k++) t += W[q * c + k] * x[n * c + k];
                    s += U[h * 3 + q] * t;
                }
                scores[n * NH + h] = (float)Math.Exp(s);   // positive, like a norm
            }
        var y = new byte[rows * NH];
        HeadContributions.Labels(scores, y, rows, NH, "top:0.5");
        var options = new DejaVuTrainOptions(Rank: 3, Epochs: 30, MiniBatch: 64, LearningRate: 1e-2f, Seed: 3);
        var (layer, initial, final) = DejaVuTraining.TrainLayer(x, y, rows, c, NH, options);
        Assert.True(final < 0.6 * initial, $"BCE {initial:F4} -> {final:F4}");
        double recall = DejaVuTraining.RecallAtTop(layer, x, y, rows, 2);
        Assert.True(recall > 0.85, $"recall at the top 2 heads {recall:F3}");
    }
}
