using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;
using NanoSparse.Training;

namespace NanoSparse.Tests.Sparsity.Pruning;

/// <summary>The driver: block order and calibration inputs against a double-precision forward pass written here, global
/// counts, and the pruned model run in sparse layouts against its masked-dense reference.</summary>
[Collection("KernelThreads")]
public sealed class PrunerTests
{
    static readonly GptConfig Tiny = new()
    {
        NLayer = 3, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 11, Bias = false, Activation = GptConfig.GeluTanh,
    };

    static Gpt TinyModel(ulong seed = 5)
    {
        var gpt = new Gpt(Tiny, 1, 1);
        gpt.InitializeWeights(seed);
        // Larger weights than GPT-2's init, so the blocks change their inputs visibly.
        foreach (var p in gpt.Parameters)
            if (p.Layout is not null)
                foreach (ref float v in p.Value.Span) v *= 8f;
        return gpt;
    }

    static CalibrationData Calibration(int windows, ulong seed)
    {
        var rng = new Rng(seed);
        var tokens = new int[windows * Tiny.BlockSize];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.NextInt(Tiny.VocabSize);
        return new CalibrationData(tokens, windows, Tiny.BlockSize);
    }

    static Dictionary<string, float[]> Weights(Gpt gpt) => gpt.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());

    /// <summary>
    /// nanoGPT's forward pass in double precision, written out plainly: for each window, the inputs of every Linear
    /// weight of every block, summed as Σ x_j² over all positions (what Wanda's and DSnoT's statistics hold).
    /// </summary>
    static Dictionary<string, double[]> ReferenceSumSquares(Dictionary<string, float[]> w, CalibrationData data)
    {
        int C = Tiny.NEmbd, NH = Tiny.NHead, hs = C / NH, T = data.WindowLength;
        var result = new Dictionary<string, double[]>();
        void Add(string key, double[] row)
        {
            if (!result.TryGetValue(key, out var acc)) result[key] = acc = new double[row.Length];
            for (int j = 0; j < row.Length; j++) acc[j] += row[j] * row[j];
        }
        double[] Ln(double[] x, float[] g)
        {
            double mean = x.Average(), v = x.Select(a => (a - mean) * (a - mean)).Average(), rstd = 1 / Math.Sqrt(v + 1e-5);
            return x.Select((a, j) => (a - mean) * rstd * g[j]).ToArray();
        }
        double[] Mul(float[] W, double[] x, int outF) =>   // W (outF, x.Length) · x
            Enumerable.Range(0, outF).Select(o => Enumerable.Range(0, x.Length).Sum(j => W[o * x.Length + j] * x[j])).ToArray();
        for (int win = 0; win < data.Windows; win++)
        {
            var x = new double[T][];
            for (int t = 0; t < T; t++)
            {
                int tok = data.Tokens[win * T + t];
                x[t] = Enumerable.Range(0, C).Select(c => (double)w["transformer.wte.weight"][tok * C + c] + w["transformer.wpe.weight"][t * C + c]).ToArray();
            }
            for (int l = 0; l < Tiny.NLayer; l++)
            {
                string p = $"transformer.h.{l}.";
                var qkv = new double[T][];
                for (int t = 0; t < T; t++)
                {
                    var a = Ln(x[t], w[p + "ln_1.weight"]);
                    Add($"h.{l}.attn.c_attn", a);
                    qkv[t] = Mul(w[p + "attn.c_attn.weight"], a, 3 * C);
                }
                for (int t = 0; t < T; t++)
                {
                    var y = new double[C];
                    for (int h = 0; h < NH; h++)
                    {
                        var s = new double[t + 1];
                        for (int u = 0; u <= t; u++)
                            for (int d = 0; d < hs; d++) s[u] += qkv[t][h * hs + d] * qkv[u][C + h * hs + d] / Math.Sqrt(hs);
                        double max = s.Max(), z = s.Sum(v => Math.Exp(v - max));
                        for (int u = 0; u <= t; u++)
                            for (int d = 0; d < hs; d++) y[h * hs + d] += Math.Exp(s[u] - max) / z * qkv[u][2 * C + h * hs + d];
                    }
                    Add($"h.{l}.attn.c_proj", y);
                    var o = Mul(w[p + "attn.c_proj.weight"], y, C);
                    for (int c = 0; c < C; c++) x[t][c] += o[c];
                }
                for (int t = 0; t < T; t++)
                {
                    var b = Ln(x[t], w[p + "ln_2.weight"]);
                    Add($"h.{l}.mlp.c_fc", b);
                    var g = Mul(w[p + "mlp.c_fc.weight"], b, 4 * C)
                        .Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray();
                    Add($"h.{l}.mlp.c_proj", g);
                    var o = Mul(w[p + "mlp.c_proj.weight"], g, C);
                    for (int c = 0; c < C; c++) x[t][c] += o[c];
                }
            }
        }
        return result;
    }

    /// <summary>Magnitude pruning that claims to need calibration, and keeps the statistics it was handed.</summary>
    sealed class RecordingPruner : ILayerPruner
    {
        public Dictionary<string, double[]> SumSquares { get; } = [];
        public List<string> Order { get; } = [];
        public string Name => "recording";
        public bool NeedsCalibration => true;
        public bool NeedsGram => false;
        public void Prune(LayerPruneRequest request)
        {
            Order.Add(request.Name);
            SumSquares[request.Name] = (double[])request.Stats!.SumSquares.Clone();
            new MagnitudePruner().Prune(request);
        }
    }

    static void PruneByMagnitude(float[] w, double sparsity)
    {
        int count = (int)(w.Length * sparsity);
        foreach (int i in Enumerable.Range(0, w.Length).OrderBy(i => Math.Abs(w[i])).ThenBy(i => i).Take(count)) w[i] = 0;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void BlockLIsCalibratedOnTheOutputsOfThePrunedBlocksBeforeIt(int threads)
    {
        int saved = NanoSparse.Kernels.KernelThreads.Max;
        NanoSparse.Kernels.KernelThreads.Max = threads;
        try
        {
            var model = TinyModel();
            var original = Weights(model);
            var data = Calibration(6, 3);
            var pruner = new RecordingPruner();
            Pruner.Prune(model, new PruneOptions { Sparsity = 0.6, CalibrationWindows = 6 }, pruner, data, null, default);

            // Hand-run reference: block by block, inputs from the reference weights with earlier blocks pruned.
            var reference = original.ToDictionary(kv => kv.Key, kv => (float[])kv.Value.Clone());
            var denseInputs = ReferenceSumSquares(original, data);
            var expectedOrder = new List<string>();
            for (int l = 0; l < Tiny.NLayer; l++)
            {
                var inputs = ReferenceSumSquares(reference, data);
                foreach (var w in GptConfig.BlockWeights)
                {
                    string key = $"h.{l}.{w}";
                    expectedOrder.Add(key);
                    var want = inputs[key];
                    var got = pruner.SumSquares[key];
                    for (int j = 0; j < want.Length; j++)
                        Assert.True(Math.Abs(got[j] - want[j]) <= 1e-4 * want.Max(), $"{key} feature {j}: Σx² {got[j]}, reference {want[j]}");
                    // The test can tell: from block 1 on, the dense model's inputs are far from the pruned model's.
                    if (l > 0)
                        Assert.True(Enumerable.Range(0, want.Length).Max(j => Math.Abs(denseInputs[key][j] - want[j])) > 1e-2 * want.Max(),
                            $"{key}: pruning earlier blocks should change its inputs");
                }
                foreach (var w in GptConfig.BlockWeights) PruneByMagnitude(reference[$"transformer.h.{l}.{w}.weight"], 0.6);
            }
            Assert.Equal(expectedOrder, pruner.Order);
            foreach (var p in model.Parameters) Assert.Equal(reference[p.Name], p.Value.ToArray());
        }
        finally { NanoSparse.Kernels.KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData("magnitude", 0.55)]
    [InlineData("random", 0.3)]
    public void GlobalScopeRemovesTheExactCountAcrossAllTargetedWeights(string method, double sparsity)
    {
        var model = TinyModel();
        var original = Weights(model);
        var options = new PruneOptions { Method = method, Sparsity = sparsity, Scope = PruneOptions.GlobalScope, Ignore = ["h.1.attn.c_proj"], Seed = 9 };
        var report = Pruner.Prune(model, options);
        var targets = PruneTargets.Resolve(Tiny, [], ["h.1.attn.c_proj"]);
        Assert.Equal(11, targets.Count);
        long total = targets.Sum(t => original[t.ParameterName].Length);
        Assert.Equal((long)(total * sparsity), report.Weights.Sum(w => w.Removed));
        var after = Weights(model);
        Assert.Equal(original["transformer.h.1.attn.c_proj.weight"], after["transformer.h.1.attn.c_proj.weight"]);
        if (method == "magnitude")
        {
            // Brute force: one threshold over all targeted weights, ties by position in block order.
            var all = targets.SelectMany((t, k) => original[t.ParameterName].Select((v, i) => (Score: Math.Abs((double)v), Weight: k, Index: i))).ToList();
            var removed = all.OrderBy(e => e.Score).ThenBy(e => e.Weight).ThenBy(e => e.Index).Take((int)(total * sparsity)).ToHashSet();
            for (int k = 0; k < targets.Count; k++)
            {
                var w = after[targets[k].ParameterName];
                for (int i = 0; i < w.Length; i++)
                    Assert.Equal(removed.Contains((Math.Abs((double)original[targets[k].ParameterName][i]), k, i)) ? 0f : original[targets[k].ParameterName][i], w[i]);
            }
            // Layers differ in their magnitudes, so one threshold gives them different sparsities.
            Assert.True(report.Weights.Select(w => w.Sparsity).Distinct().Count() > 1);
        }
    }

    [Theory]
    [InlineData("unstructured", "csr")]
    [InlineData("2:4", "nm:2:4")]
    [InlineData("unstructured", "auto")]
    public void PrunedModelInSparseLayoutsGivesTheLogitsOfItsMaskedDenseReference(string pattern, string format)
    {
        var model = TinyModel(7);
        var original = Weights(model);
        var data = Calibration(4, 8);
        var report = Pruner.Prune(model, new PruneOptions { Method = "wanda", Sparsity = 0.5, Pattern = pattern, CalibrationWindows = 4 }, data);
        Assert.Equal(12, report.Weights.Count);

        // Masked-dense reference: the original weights with the mask applied (Wanda changes no kept weight).
        int B = 2, T = Tiny.BlockSize;
        var masked = new Gpt(Tiny, B, T);
        var pruned = Weights(model);
        foreach (var p in masked.Parameters)
        {
            var v = p.Value.Span;
            original[p.Name].CopyTo(v);
            if (p.Layout is not null)
                for (int i = 0; i < v.Length; i++) if (pruned[p.Name][i] == 0) v[i] = 0;
        }
        var sparse1 = Sparsify.Convert(model, format, model.Parameters.Where(p => p.Layout is not null).Select(p => p.Name).ToHashSet());
        Assert.All(sparse1.Parameters.Where(p => p.Layout is not null), p => Assert.True(p.IsSparse, p.Name + " should be stored sparse"));
        var layouts = sparse1.Parameters.Where(p => p.Layout is not null).ToDictionary(p => p.Name, p => p.Layout!);
        var sparse = new Gpt(sparse1.Config, B, T, layouts);
        sparse1.ParameterData.CopyTo(sparse.ParameterData);

        var tokens = data.Tokens.AsSpan(0, B * T).ToArray();
        masked.Forward(tokens, default, training: false);
        sparse.Forward(tokens, default, training: false);
        var a = masked.Logits.ToArray();
        var b = sparse.Logits.ToArray();
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 1e-4f * (1 + Math.Abs(a[i])), $"logit {i}: sparse {b[i]}, masked dense {a[i]}");
    }

    [Fact]
    public void OwlPrunesEachBlockToItsOwnSparsityAveragingTheTarget()
    {
        var model = TinyModel(11);
        var data = Calibration(4, 2);
        var report = Pruner.Prune(model, new PruneOptions { Method = "wanda", Sparsity = 0.6, Profile = PruneOptions.OwlProfileName, OwlLambda = 0.1, OwlThreshold = 3, CalibrationWindows = 4 }, data);
        var s = report.BlockSparsities!;
        Assert.Equal(0.6, s.Average(), 12);
        Assert.True(s.Max() - s.Min() > 0.1, "the tiny model's blocks differ in outliers");
        foreach (var w in report.Weights)
        {
            Assert.Equal(s[w.Layer], w.TargetSparsity);
            Assert.Equal(w.OutFeatures * (long)(w.InFeatures * s[w.Layer]), w.Removed);   // Wanda: per row
        }
        var ratios = report.OutlierRatios!;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                if (ratios[a] > ratios[b]) Assert.True(s[a] < s[b]);
    }

    [Fact]
    public void OptionsThatCannotWorkTogetherAreRefusedByName()
    {
        var model = TinyModel();
        var before = model.ParameterData.ToArray();
        void Refused(PruneOptions o, string fragment, CalibrationData? data = null) =>
            Assert.Contains(fragment, Assert.Throws<ArgumentException>(() => Pruner.Prune(model, o, data)).Message);
        Refused(new PruneOptions { Sparsity = 1.0 }, "--sparsity (1) must lie in [0, 1)");
        Refused(new PruneOptions { Sparsity = -0.1 }, "--sparsity (-0.1)");
        Refused(new PruneOptions { Pattern = "3:7" }, "M = 7 does not divide the 16 inputs of h.0.attn.c_attn");
        Refused(new PruneOptions { Method = "wanda", Sparsity = 0.5, Scope = "global" }, "within each output row");
        Refused(new PruneOptions { Method = "magnitude", Pattern = "2:4", Profile = "owl" }, "--profile owl needs an unstructured pattern");
        Refused(new PruneOptions { Method = "magnitude", Sparsity = 0.5, Profile = "owl" }, "--profile owl needs calibration data");
        Refused(new PruneOptions { Method = "wanda", Sparsity = 0.5 }, "needs calibration data");
        Refused(new PruneOptions { Sparsity = 0.5, Targets = ["h.3.mlp.c_fc"] }, "--targets entry 'h.3.mlp.c_fc'");
        Refused(new PruneOptions { Sparsity = 0.5, Ignore = ["mlp.fc"] }, "--ignore entry 'mlp.fc'");
        Refused(new PruneOptions { Method = "sparsegpt2", Sparsity = 0.5 }, "unknown method 'sparsegpt2'");
        Assert.Equal(before, model.ParameterData.ToArray());
    }
}
