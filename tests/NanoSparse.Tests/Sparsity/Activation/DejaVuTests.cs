using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Tests.Data;
using NanoSparse.Tests.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Sparsity.Activation;

[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public sealed class DejaVuTests
{
    const int C = 32, V = 11, T = 8;

    static GptConfig Tiny(string activation = "gelu") =>
        new() { NLayer = 2, NHead = 2, NEmbd = C, BlockSize = T, VocabSize = V, Bias = true, Activation = activation };

    static Gpt Model(int seed, int batch = 2)
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

    static DejaVuPredictor RandomPredictor(GptConfig config, int rank, int seed, string label = "top:0.25")
    {
        var r = new Random(seed);
        var layers = new List<DejaVuPredictor.Layer>();
        for (int l = 0; l < config.NLayer; l++)
        {
            var p = new DejaVuPredictor.Layer(config.NEmbd, config.MlpHidden(l), rank);
            GradCheck.RandomArray(r, p.W1.Length).CopyTo(p.W1, 0);
            GradCheck.RandomArray(r, p.W2.Length).CopyTo(p.W2, 0);
            GradCheck.RandomArray(r, p.B2.Length, 0.1).CopyTo(p.B2, 0);
            layers.Add(p);
        }
        return new DejaVuPredictor(layers, label);
    }

    /// <summary>
    /// The MLP of one position in double on the neuron set the predictor's double scores choose (top-k): the dense
    /// masked evaluation the neuron-sparse decode must equal.
    /// </summary>
    static double[] MaskedMlp(Gpt gpt, int layer, DejaVuPredictor.Layer p, float[] x, int keep)
    {
        int H = p.Hidden;
        var byName = gpt.Parameters.ToDictionary(q => q.Name);
        string n = $"transformer.h.{layer}.mlp.";
        var wFc = byName[n + "c_fc.weight"].Value.ToArray();
        var bFc = byName[n + "c_fc.bias"].Value.ToArray();
        var wProj = byName[n + "c_proj.weight"].Value.ToArray();
        var bProj = byName[n + "c_proj.bias"].Value.ToArray();
        var z = new double[p.Rank];
        for (int i = 0; i < p.Rank; i++) for (int c = 0; c < C; c++) z[i] += (double)p.W1[i * C + c] * x[c];
        var s = new double[H];
        for (int j = 0; j < H; j++) { s[j] = p.B2[j]; for (int i = 0; i < p.Rank; i++) s[j] += p.W2[j * p.Rank + i] * z[i]; }
        var chosen = Enumerable.Range(0, H).OrderByDescending(j => s[j]).Take(keep).ToHashSet();
        var h = new double[H];
        foreach (int j in chosen)
        {
            double a = bFc[j];
            for (int c = 0; c < C; c++) a += (double)wFc[j * C + c] * x[c];
            h[j] = 0.5 * a * (1 + Erf(a / Math.Sqrt(2)));
        }
        var y = new double[C];
        for (int c = 0; c < C; c++) { y[c] = bProj[c]; for (int j = 0; j < H; j++) y[c] += (double)wProj[c * H + j] * h[j]; }
        return y;
    }

    // Abramowitz–Stegun 7.1.26 is too coarse for a 1e-5 check; a series/continued fraction is overkill: use the float
    // kernel's own erf only through Gelu's definition would be circular, so integrate exp(-t²) numerically (Simpson).
    static double Erf(double v)
    {
        int n = 2000;
        double a = 0, b = Math.Abs(v), hstep = (b - a) / n, sum = 1 + Math.Exp(-b * b);
        for (int i = 1; i < n; i++) { double t = a + i * hstep; sum += (i % 2 == 1 ? 4 : 2) * Math.Exp(-t * t); }
        return Math.Sign(v) * 2 / Math.Sqrt(Math.PI) * sum * hstep / 3;
    }

    [Theory]
    [InlineData(1, 32)]    // 75% sparsity (H = 128)
    [InlineData(2, 13)]    // 90%, a neuron count with a tail
    [InlineData(2, 1)]     // one neuron
    public void NeuronSparseDecodeEqualsTheDenseMaskedMlpOnTheSameNeurons(int threads, int keep)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var gpt = Model(3);
            var predictor = RandomPredictor(gpt.Config, 8, 4);
            int H = gpt.Config.MlpHidden(0);
            var parts = PredictedMlp.Install(gpt, predictor, 1 - (double)keep / H, "test");
            var r = new Random(9);
            for (int l = 0; l < 2; l++)
            {
                var x = GradCheck.RandomArray(r, C);
                var scratch = new float[parts[l].DecodeScratchFloats(1)];
                var y = new float[C];
                parts[l].Decode(y, x, new Decoding(gpt.ParameterData.ToArray(), scratch, [], 0, 1));
                GradCheck.AssertClose(y, MaskedMlp(gpt, l, predictor.Layers[l], x, keep), 2e-5, $"layer {l}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(0.75)]
    [InlineData(null)]   // the positive-logit rule
    public void CachedDecodeThroughThePredictorEqualsTheMaskedEvaluation(double? sparsity)
    {
        var gpt = Model(5, batch: 1);
        var predictor = RandomPredictor(gpt.Config, 8, 6);
        if (sparsity is null)
            foreach (var p in predictor.Layers)
            {
                // The positive-logit rule: keep every score well away from 0, so that the GEMM (eval) and the GEMV
                // (decode) orders of summation cannot flip a neuron; the input still moves the scores.
                for (int i = 0; i < p.W2.Length; i++) p.W2[i] *= 0.02f;
                for (int j = 0; j < p.B2.Length; j++) p.B2[j] = j % 3 == 0 ? 1f : -1f;
            }
        var parts = PredictedMlp.Install(gpt, predictor, sparsity, "test");
        var tokens = new[] { 1, 5, 2, 9, 3, 3, 0, 7 };
        gpt.Forward(tokens, [], training: false);     // masked dense: full GEMMs with the unselected neurons zeroed
        var full = gpt.Logits.ToArray();
        Assert.True(parts[0].SelectedFraction is > 0 and < 1, $"selected {parts[0].SelectedFraction}");
        if (sparsity is null) Assert.Equal(43.0 / 128, parts[0].SelectedFraction, 6);
        if (sparsity is { } s) Assert.Equal(1 - s, parts[1].SelectedFraction, 6);
        var cache = gpt.CreateKvCache();
        for (int t = 0; t < T; t++)
        {
            var step = gpt.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
            for (int v = 0; v < V; v++) Assert.Equal(full[t * V + v], step[v], 4);
        }
    }

    [Fact]
    public void KeepingEveryNeuronGivesTheDenseModel()
    {
        var dense = Model(7, batch: 1);
        var tokens = new[] { 4, 1, 8, 2, 6, 0, 10, 3 };
        dense.Forward(tokens, [], training: false);
        var expected = dense.Logits.ToArray();
        var gpt = Model(7, batch: 1);
        PredictedMlp.Install(gpt, RandomPredictor(gpt.Config, 4, 8), 0.0, "test");
        gpt.Forward(tokens, [], training: false);
        GradCheck.AssertClose(gpt.Logits, expected.Select(v => (double)v).ToArray(), 1e-4, "sparsity 0");
        var cache = gpt.CreateKvCache();
        var step = gpt.ForwardCached(cache, tokens).ToArray();   // a prefill of 8 rows, row by row through the kernels
        GradCheck.AssertClose(step, expected.Skip((T - 1) * V).Select(v => (double)v).ToArray(), 1e-4, "prefill");
    }

    [Fact]
    public void TrainingReducesTheLossAndFindsTheActiveNeuronsOnASyntheticCase()
    {
        // Labels from a rank-3 map: neuron j is active when (U·(Vᵀx))_j > 0.4; a rank-4 predictor can learn it.
        int c = 12, h = 40, rows = 2048;
        var r = new Random(11);
        var U = GradCheck.RandomArray(r, h * 3);
        var W = GradCheck.RandomArray(r, 3 * c);
        var x = GradCheck.RandomArray(r, rows * c);
        var y = new byte[rows * h];
        for (int n = 0; n < rows; n++)
            for (int j = 0; j < h; j++)
            {
                double s = 0;
                for (int q = 0; q < 3; q++)
                {
                    double t = 0;
                    for (int k = 0; k < c; k++) t += W[q * c + k] * x[n * c + k];
                    s += U[j * 3 + q] * t;
                }
                y[n * h + j] = (byte)(s > 0.4 ? 1 : 0);
            }
        var options = new DejaVuTrainOptions(Rank: 4, Epochs: 30, MiniBatch: 64, LearningRate: 1e-2f, Seed: 3);
        var (layer, initial, final) = DejaVuTraining.TrainLayer(x, y, rows, c, h, options);
        var (loss, recall, selected, active) = DejaVuTraining.Measure(layer, x, y, rows);
        Assert.Equal(final, loss, 9);
        Assert.True(final < 0.5 * initial, $"BCE {initial:F4} -> {final:F4}");
        Assert.True(recall > 0.85, $"recall {recall:F3} (selected {selected:F3}, active {active:F3})");
    }

    [Fact]
    public void LabelsAreTheNonzeroOrTheLargestActivations()
    {
        float[] act = [0, 2, -3, 0, 0.5f, -0.1f];
        var labels = new byte[6];
        DejaVuTraining.Labels(act, labels, 2, 3, 0);
        Assert.Equal(new byte[] { 0, 1, 1, 0, 1, 1 }, labels);
        DejaVuTraining.Labels(act, labels, 2, 3, 1.0 / 3);
        Assert.Equal(new byte[] { 0, 0, 1, 0, 1, 0 }, labels);
    }

    [Fact]
    public void AFileRoundTripsAndBadInputGivesOneLineErrors()
    {
        using var dir = new TempDir();
        var gpt = Model(1);
        var predictor = RandomPredictor(gpt.Config, 4, 2);
        string path = dir["p.safetensors"];
        predictor.Save(path);
        var back = DejaVuPredictor.Load(path);
        Assert.Equal("top:0.25", back.Label);
        for (int l = 0; l < 2; l++)
        {
            Assert.Equal(predictor.Layers[l].W1, back.Layers[l].W1);
            Assert.Equal(predictor.Layers[l].W2, back.Layers[l].W2);
            Assert.Equal(predictor.Layers[l].B2, back.Layers[l].B2);
        }
        static void OneLine(Exception e, params string[] parts)
        {
            Assert.DoesNotContain('\n', e.Message);
            foreach (var p in parts) Assert.Contains(p, e.Message);
        }
        OneLine(Assert.Throws<ArgumentException>(() => new DejaVuTrainOptions(Rank: 0).Validate()), "rank (0)");
        OneLine(Assert.Throws<ArgumentException>(() => new DejaVuPredictor.Layer(C, 128, 0)), "rank (0)");
        OneLine(Assert.Throws<ArgumentException>(() => new DejaVuTrainOptions(Label: "top:1.5").Validate()), "top:1.5");
        OneLine(Assert.Throws<FileNotFoundException>(() => DejaVuPredictor.Load(dir["missing.safetensors"])), "missing.safetensors");
        File.WriteAllText(dir["junk.safetensors"], "not a safetensors file");
        Assert.ThrowsAny<Exception>(() => DejaVuPredictor.Load(dir["junk.safetensors"]));
        // a predictor made for another width
        var wide = new Gpt(Tiny() with { NEmbd = 48, NHead = 2 }, 1, T);
        OneLine(Assert.Throws<InvalidDataException>(() => RandomPredictor(wide.Config, 4, 1).CheckMatches(gpt.Config, path)), path, "n_embd is 32", "48");
        OneLine(Assert.Throws<InvalidDataException>(() => new DejaVuPredictor([predictor.Layers[0]], "active").CheckMatches(gpt.Config, path)), "n_layer is 1", "2");
        OneLine(Assert.Throws<ArgumentException>(() => PredictedMlp.Install(Model(1), predictor, 1.0, path)), "sparsity 1", "[0, 1)");
        OneLine(Assert.Throws<ArgumentException>(() => PredictedMlp.Install(Model(1), predictor, -0.1, path)), "sparsity -0.1");
    }
}
