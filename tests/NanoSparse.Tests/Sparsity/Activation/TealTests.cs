using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Tests.Sparsity.Activation;

/// <summary>TEAL / WINA: calibrated thresholds, the thresholded Linear weight, and the thresholds file.</summary>
[Collection("KernelThreads")]
public sealed class TealTests : IDisposable
{
    readonly int _savedThreads = KernelThreads.Max;
    readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-teal-" + Guid.NewGuid().ToString("N"));

    public TealTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    static readonly GptConfig Tiny = new() { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 16, VocabSize = 11, Bias = true };

    static Gpt TinyModel(int batch = 2, int seqLen = 16)
    {
        var gpt = new Gpt(Tiny, batch, seqLen);
        gpt.InitializeWeights(3);
        // non-zero biases and LayerNorm weights, so every part of the data flow matters
        var rng = new Rng(8);
        foreach (var p in gpt.Parameters)
            if (p.Name.EndsWith(".bias") || p.Name.Contains(".ln_"))
            {
                var v = p.Value.Span;
                for (int i = 0; i < v.Length; i++) v[i] += (float)(rng.NextGaussian() * 0.1);
            }
        return gpt;
    }

    static int[] RandomTokens(ulong seed, int n)
    {
        var rng = new Rng(seed);
        return Enumerable.Range(0, n).Select(_ => (int)(rng.NextUInt64() % (ulong)Tiny.VocabSize)).ToArray();
    }

    [Theory]
    [InlineData(0.25)]
    [InlineData(0.4)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    public void QuantileLeavesTheTargetFractionBelowTheThreshold(double sparsity)
    {
        var rng = new Rng(1);
        var scores = Enumerable.Range(0, 1001).Select(_ => (float)Math.Abs(rng.NextGaussian())).ToArray();
        var copy = scores.ToArray();
        var (t, below) = TealCalibration.Quantile(copy, sparsity);
        double measured = scores.Count(s => s < t) / (double)scores.Length;
        Assert.Equal(measured, below, 12);
        Assert.InRange(measured, sparsity - 1.0 / scores.Length, sparsity + 1.0 / scores.Length);
        Assert.Equal((0f, 0.0), TealCalibration.Quantile(scores.ToArray(), 0));
    }

    [Theory]
    [InlineData("teal", 0.25)]
    [InlineData("teal", 0.5)]
    [InlineData("wina", 0.4)]
    [InlineData("wina", 0.7)]
    public void CalibratedThresholdsReachTheTargetOnTheCalibrationInputs(string method, double sparsity)
    {
        var gpt = TinyModel();
        var tokens = RandomTokens(5, 4 * gpt.BatchSize * gpt.SeqLen);
        var t = TealCalibration.Calibrate(gpt, tokens, method, sparsity);
        Assert.Equal(Tiny.NLayer * 4, t.Weights.Count);
        // Re-run the same windows and count, with the decorator's own rule, the inputs each threshold zeroes.
        var zeroed = new long[t.Weights.Count];
        long[] seen = new long[t.Weights.Count];
        var weights = TealCalibration.BlockWeights(gpt);
        var taus = weights.Select((w, j) => TealCalibration.InputThresholds(method, t.Weights[j].Threshold, w.Weight, w.Values.Span)).ToArray();
        int rows = gpt.BatchSize * gpt.SeqLen;
        for (int pass = 0; pass < tokens.Length / rows; pass++)
        {
            gpt.ForwardBlocks(tokens.AsSpan(pass * rows, rows), Tiny.NLayer);
            for (int j = 0; j < weights.Count; j++)
            {
                var x = gpt.LinearInput(weights[j].Layer, weights[j].Key);
                var xs = new float[x.Length];
                long kept = ThresholdedLinearWeight.Apply(x, xs, taus[j]);
                zeroed[j] += x.Length - kept;
                seen[j] += x.Length;
            }
        }
        for (int j = 0; j < weights.Count; j++)
        {
            Assert.Equal(weights[j].Name, t.Weights[j].Name);
            double measured = (double)zeroed[j] / seen[j];
            // a quantile's resolution (1/n), plus scores within float rounding of t for WINA's t/‖W_:,i‖ form
            Assert.InRange(measured, sparsity - 1.0 / seen[j] - 2e-3, sparsity + 1.0 / seen[j] + 2e-3);
            // ties in float scores (WINA's products) put a few calibration scores exactly at t
            Assert.InRange(t.Weights[j].CalibrationSparsity, sparsity - 1.0 / seen[j] - 1e-3, sparsity + 1.0 / seen[j]);
        }
    }

    [Fact]
    public void HeldOutTokensSeeCloseToTheCalibratedSparsity()
    {
        var gpt = TinyModel(4, 16);
        var t = TealCalibration.Calibrate(gpt, RandomTokens(5, 16 * 64), ActivationMethods.Teal, 0.4);
        var sparse = ActivationSparsity.Apply(gpt, t, decodeCopies: false);
        sparse.Forward(RandomTokens(77, 4 * 16), default, training: false);
        Assert.InRange(ActivationSparsity.MeasuredSparsity(sparse), 0.35, 0.45);
        foreach (var (_, w) in ActivationSparsity.Weights(sparse)) Assert.InRange(w.MeasuredSparsity, 0.3, 0.5);
    }

    [Fact]
    public void WinaScoreIsInputMagnitudeTimesColumnNorm()
    {
        // W (Out 2, In 4): column norms ‖W_:,i‖₂ = 1, 2, 3, 0
        float[] w = [1, 2, 2, 0,
                     0, 0, 1, 0];
        var (layout, values) = (new DenseLinearWeight(2, 4), w);
        var norms = TealCalibration.ColumnNorms(layout, values);
        Assert.Equal([1f, 2f, MathF.Sqrt(5f), 0f], norms);
        float[] x = [3f, -1f, 0.5f, 7f];
        var scores = new float[4];
        TealCalibration.Scores(x, norms, scores);
        Assert.Equal([3f, 2f, 0.5f * MathF.Sqrt(5f), 0f], scores);
        // threshold t = 2 on the score: τ_i = t / ‖W_:,i‖, an all-zero column never kept
        var tau = TealCalibration.InputThresholds(ActivationMethods.Wina, 2f, layout, values);
        Assert.Equal([2f, 1f, 2f / MathF.Sqrt(5f), float.PositiveInfinity], tau);
        var xs = new float[4];
        Assert.Equal(2, ThresholdedLinearWeight.Apply(x, xs, tau));
        Assert.Equal([3f, -1f, 0f, 0f], xs);
        Assert.Equal([2f, 2f, 2f, 2f], TealCalibration.InputThresholds(ActivationMethods.Teal, 2f, layout, values));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    public void ThresholdedWeightEqualsTheDenseProductOnTheThresholdedInput(int rows)
    {
        const int O = 37, I = 50;
        var rng = new Rng(11);
        var dense = Enumerable.Range(0, O * I).Select(_ => (float)rng.NextGaussian()).ToArray();
        // a CSR inner layout (about half the positions) and a dense one
        var pattern = dense.Select((v, i) => i % 3 == 0 ? 0f : v).ToArray();
        var (csr, csrValues) = CsrLinearWeight.FromDense(O, I, pattern);
        var inners = new (ILinearWeight Weight, float[] Values, float[] Dense)[] { (new DenseLinearWeight(O, I), dense, dense), (csr, csrValues, pattern) };
        var x = Enumerable.Range(0, rows * I).Select(_ => (float)rng.NextGaussian()).ToArray();
        var bias = Enumerable.Range(0, O).Select(_ => (float)rng.NextGaussian()).ToArray();
        var residual = Enumerable.Range(0, rows * O).Select(_ => (float)rng.NextGaussian()).ToArray();
        var tau = Enumerable.Range(0, I).Select(i => i % 7 == 0 ? float.PositiveInfinity : (float)(rng.NextDouble() * 1.5)).ToArray();
        foreach (var (inner, values, w) in inners)
            foreach (bool decodeCopy in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                {
                    KernelThreads.Max = threads;
                    var t = new ThresholdedLinearWeight(inner, tau);
                    if (decodeCopy) t.BuildDecodeCopy(values);
                    var y = new float[rows * O];
                    t.Forward(y, x, values, bias, residual, rows, new float[t.WorkspaceFloats(rows)]);
                    long kept = 0;
                    for (int r = 0; r < rows; r++)
                        for (int o = 0; o < O; o++)
                        {
                            double s = bias[o] + (double)residual[r * O + o];
                            for (int i = 0; i < I; i++)
                            {
                                float xi = x[r * I + i];
                                if (Math.Abs(xi) >= tau[i]) s += (double)xi * w[o * I + i];
                            }
                            Assert.True(Math.Abs(y[r * O + o] - s) <= 1e-4 * (1 + Math.Abs(s)), $"{inner.Layout} copy {decodeCopy} {threads} thr row {r} out {o}: {y[r * O + o]} vs {s}");
                        }
                    for (int j = 0; j < x.Length; j++) kept += Math.Abs(x[j]) >= tau[j % I] ? 1 : 0;
                    Assert.Equal(1.0 - (double)kept / x.Length, t.MeasuredSparsity, 12);
                }
    }

    [Fact]
    public void DecodeThroughTheSparseInputKernelMatchesTheFullForwardWithTheSameThresholds()
    {
        var gpt = TinyModel(1, 16);
        var tokens = RandomTokens(9, 16);
        var t = TealCalibration.Calibrate(gpt, RandomTokens(5, 16 * 8), ActivationMethods.Wina, 0.5);
        var sparse = ActivationSparsity.Apply(gpt, t, decodeCopies: true);
        sparse.Forward(tokens, default, training: false);   // 16 rows: the wrapped layouts' own kernels on thresholded inputs
        var full = sparse.Logits.ToArray();
        var cache = sparse.CreateKvCache();
        for (int pos = 0; pos < tokens.Length; pos++)       // one row at a time: the sparse-input kernel
        {
            var logits = sparse.ForwardCached(cache, tokens.AsSpan(pos, 1));
            for (int v = 0; v < Tiny.VocabSize; v++)
                Assert.True(Math.Abs(logits[v] - full[pos * Tiny.VocabSize + v]) < 1e-3, $"position {pos} token {v}: {logits[v]} vs {full[pos * Tiny.VocabSize + v]}");
        }
        // sparsity 0 keeps everything: the dense model's logits
        var none = ActivationSparsity.Apply(gpt, TealCalibration.Calibrate(gpt, RandomTokens(5, 16), ActivationMethods.Teal, 0), decodeCopies: true);
        gpt.Forward(tokens, default, training: false);
        none.Forward(tokens, default, training: false);
        for (int i = 0; i < full.Length; i++) Assert.Equal(gpt.Logits[i], none.Logits[i], 1e-4f);
        Assert.Equal(0.0, ActivationSparsity.MeasuredSparsity(none));
    }

    [Fact]
    public void ThresholdsFileRoundTripsAndIsCheckedAgainstTheModel()
    {
        var gpt = TinyModel();
        var t = TealCalibration.Calibrate(gpt, RandomTokens(5, 2 * 32), ActivationMethods.Teal, 0.4, dataName: "random", seed: 3);
        string path = Path.Combine(_dir, "teal.json");
        t.Save(path);
        var back = ActivationThresholds.Load(path);
        Assert.Equal(t.Weights, back.Weights);
        Assert.Equal(0.4, back.TargetSparsity);
        back.CheckMatches(gpt, path);

        var other = new Gpt(Tiny with { NLayer = 3 }, 1, 4);
        var e = Assert.Throws<InvalidDataException>(() => ActivationSparsity.Apply(other, back, false, path));
        Assert.Contains("n_layer 2", e.Message);
        Assert.Contains("n_layer 3", e.Message);
        var missing = t with { Weights = t.Weights.Skip(1).ToList() };
        e = Assert.Throws<InvalidDataException>(() => missing.CheckMatches(gpt, path));
        Assert.Contains("no threshold for transformer.h.0.attn.c_attn.weight", e.Message);
        var wrongShape = t with { Weights = [t.Weights[0] with { InFeatures = 31 }, .. t.Weights.Skip(1)] };
        e = Assert.Throws<InvalidDataException>(() => wrongShape.CheckMatches(gpt, path));
        Assert.Contains("(96, 31) in the file but (96, 32) in the model", e.Message);
    }

    [Theory]
    [InlineData("{\"format\": \"nope\"}", "format \"nope\"")]
    [InlineData("not json", "not valid JSON")]
    [InlineData("{\"format\": \"nanosparse-activation-thresholds\", \"version\": 1, \"method\": \"teal\", \"target_sparsity\": 1.5, \"n_layer\": 2, \"n_embd\": 32, \"weights\": []}", "target_sparsity 1.5, expected a value in [0, 1)")]
    [InlineData("{\"format\": \"nanosparse-activation-thresholds\", \"version\": 1, \"method\": \"relu\", \"target_sparsity\": 0.5, \"n_layer\": 2, \"n_embd\": 32, \"weights\": []}", "method \"relu\"")]
    [InlineData("{\"format\": \"nanosparse-activation-thresholds\", \"version\": 1, \"method\": \"teal\", \"target_sparsity\": 0.5, \"n_layer\": 2, \"n_embd\": 32, \"weights\": [{\"name\": \"a\", \"out_features\": 2, \"in_features\": 2, \"threshold\": -1}]}", "weights[0].threshold -1")]
    public void MalformedThresholdsFileIsAOneLineErrorNamingTheField(string json, string expected)
    {
        string path = Path.Combine(_dir, "bad.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<InvalidDataException>(() => ActivationThresholds.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(-0.1)]
    [InlineData(double.NaN)]
    public void SparsityOutsideTheUnitIntervalIsRefused(double sparsity)
    {
        var gpt = TinyModel();
        var e = Assert.Throws<ArgumentException>(() => TealCalibration.Calibrate(gpt, RandomTokens(1, 32), ActivationMethods.Teal, sparsity));
        Assert.Contains("must lie in [0, 1)", e.Message);
        Assert.Throws<FileNotFoundException>(() => ActivationThresholds.Load(Path.Combine(_dir, "absent.json")));
    }
}
