using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Training;

namespace NanoSparse.Tests.Nn;

/// <summary>Models whose layers have their own head counts and MLP widths (what structured pruning leaves).</summary>
public class LayerWidthTests
{
    // hs = 4; layer 2 has more heads than n_head (attention wider than C), layer 0 a single head and a 7-wide MLP
    internal static GptConfig Narrow(bool bias, float dropout = 0f) => new()
    {
        NLayer = 3, NHead = 4, NEmbd = 16, BlockSize = 8, VocabSize = 13, Bias = bias, Dropout = dropout,
        NHeadPerLayer = [1, 3, 5], MlpHiddenPerLayer = [7, 64, 20],
    };

    // hs = 16: the tiled attention kernels where the CPU has AVX-512
    static GptConfig NarrowWideHeads(bool bias) => new()
    {
        NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 8, VocabSize = 13, Bias = bias,
        NHeadPerLayer = [1, 3], MlpHiddenPerLayer = [9, 40],
    };

    internal static void RandomWeights(Gpt gpt, int seed)
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
    public void LinearWeightsHaveEachLayersWidths()
    {
        var gpt = new Gpt(Narrow(bias: true), 1, 4);
        var shapes = gpt.Parameters.ToDictionary(p => p.Name, p => p.Shape);
        int[] heads = [1, 3, 5], hidden = [7, 64, 20];
        for (int l = 0; l < 3; l++)
        {
            int A = heads[l] * 4, H = hidden[l];
            Assert.Equal([3 * A, 16], shapes[$"transformer.h.{l}.attn.c_attn.weight"]);
            Assert.Equal([3 * A], shapes[$"transformer.h.{l}.attn.c_attn.bias"]);
            Assert.Equal([16, A], shapes[$"transformer.h.{l}.attn.c_proj.weight"]);
            Assert.Equal([H, 16], shapes[$"transformer.h.{l}.mlp.c_fc.weight"]);
            Assert.Equal([H], shapes[$"transformer.h.{l}.mlp.c_fc.bias"]);
            Assert.Equal([16, H], shapes[$"transformer.h.{l}.mlp.c_proj.weight"]);
        }
        Assert.Equal(gpt.ParameterCount, (long)GptSize.ParameterCount(gpt.Config));
    }

    [Theory]
    [InlineData(true, 0f, false)]
    [InlineData(false, 0f, false)]
    [InlineData(true, 0.25f, false)]
    [InlineData(true, 0f, true)]
    public void BackwardMatchesFiniteDifferences(bool bias, float dropout, bool wideHeads)
    {
        int B = 2, T = 5;
        var gpt = new Gpt(wideHeads ? NarrowWideHeads(bias) : Narrow(bias, dropout), B, T);
        RandomWeights(gpt, 7);
        var r = new Random(8);
        var tokens = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
        var targets = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
        var rngState = gpt.DropoutRng.State;
        double Loss()
        {
            gpt.DropoutRng.State = rngState;
            return gpt.Forward(tokens, targets, training: true);
        }
        Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        foreach (var p in gpt.Parameters)
        {
            var x = p.Value.ToArray();
            var analytic = grads.AsSpan(p.Offset, p.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(p.Value);
                return Loss();
            }
            GradCheck.Assert(p.Name, x, analytic, LossOf, eps: dropout > 0 ? 1e-3 : 2e-3, atol: 3e-4, rtol: dropout > 0 ? 3e-2 : 1e-2, maxChecks: 10);
        }
    }

    [Theory]
    [InlineData(true, 1, false)]
    [InlineData(false, 3, false)]
    [InlineData(true, 2, true)]
    public void CachedDecodingEqualsFullForward(bool bias, int prefill, bool wideHeads)
    {
        var config = wideHeads ? NarrowWideHeads(bias) : Narrow(bias);
        int T = config.BlockSize, V = config.VocabSize;
        var full = new Gpt(config, 1, T);
        RandomWeights(full, 11);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 7 + 3) % V).ToArray();
        full.Forward(tokens, [], false);
        var reference = full.Logits.ToArray();
        var cache = full.CreateKvCache();
        for (int l = 0; l < config.NLayer; l++)
            Assert.Equal(config.AttentionWidth(l), ((NanoSparse.Nn.Parts.DenseKvCache)cache.Layers[l]).Width);
        var logits = full.ForwardCached(cache, tokens.AsSpan(0, prefill)).ToArray();
        AssertRow(reference, prefill - 1, logits, V);
        for (int t = prefill; t < T; t++)
        {
            logits = full.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
            AssertRow(reference, t, logits, V);
        }
    }

    static void AssertRow(float[] reference, int t, float[] logits, int V)
    {
        for (int v = 0; v < V; v++)
            Assert.True(Math.Abs(reference[t * V + v] - logits[v]) <= 1e-5f, $"position {t}, token {v}: cached {logits[v]} vs full {reference[t * V + v]}");
    }

    [Fact]
    public void SaveAndLoadAreBitExactAndKeepTheWidths()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-widths-" + Guid.NewGuid().ToString("N"));
        try
        {
            var gpt = new Gpt(Narrow(bias: true), 1, 4);
            RandomWeights(gpt, 3);
            Checkpoint.SaveModel(dir, gpt, null);
            var loaded = Checkpoint.LoadAnyModel(dir, 2, 8, out _);
            Assert.Equal(gpt.Config, loaded.Config);
            Assert.Equal([1, 3, 5], loaded.Config.NHeadPerLayer);
            Assert.Equal([7, 64, 20], loaded.Config.MlpHiddenPerLayer);
            Assert.Equal(gpt.ParameterData.ToArray().Select(BitConverter.SingleToInt32Bits), loaded.ParameterData.ToArray().Select(BitConverter.SingleToInt32Bits));

            // model_args of a training checkpoint carry them too, and only for a model that needs them
            var args = ModelArgs.From(gpt.Config);
            Assert.Equal([1, 3, 5], args.NHeadPerLayer!);
            Assert.Equal(gpt.Config, args.ToConfig());
            var standard = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 8, NHeadPerLayer = [2, 2], MlpHiddenPerLayer = [32, 32] };
            Assert.Null(ModelArgs.From(standard).NHeadPerLayer);
            Assert.Null(ModelArgs.From(standard).MlpHiddenPerLayer);
            Assert.Equal(standard with { NHeadPerLayer = null, MlpHiddenPerLayer = null }, standard);

            // nanoGPT / GPT-2 cannot hold per-layer widths: export is refused in one line naming the field
            var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Export(ModelFormat.NanoGpt, dir, dir + "-export"));
            Assert.Contains("n_head_per_layer[0] is 1", e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.False(Directory.Exists(dir + "-export"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ExportOfAModelWithUniformListsStillWorks()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-widths-" + Guid.NewGuid().ToString("N"));
        try
        {
            var config = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = 4, VocabSize = 7, NHeadPerLayer = [2, 2], MlpHiddenPerLayer = [32, 32] };
            var gpt = new Gpt(config, 1, 4);
            RandomWeights(gpt, 5);
            Checkpoint.SaveModel(dir, gpt, null);
            var dims = ModelImporter.Export(ModelFormat.NanoGpt, dir, dir + "-export");
            Assert.Equal(2, dims.NHead);
        }
        finally
        {
            foreach (var d in new[] { dir, dir + "-export" }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [Theory]
    [InlineData(new[] { 1, 2 }, null, "n_head_per_layer has 2 entries, expected one per layer (n_layer = 3)")]
    [InlineData(new[] { 1, 0, 2 }, null, "n_head_per_layer[1] (0) must be positive")]
    [InlineData(null, new[] { 4, -1, 4 }, "mlp_hidden_per_layer[1] (-1) must be positive")]
    [InlineData(null, new[] { 4 }, "mlp_hidden_per_layer has 1 entries, expected one per layer (n_layer = 3)")]
    public void ImpossibleWidthsAreRefusedNamingTheField(int[]? heads, int[]? hidden, string expected)
    {
        var config = new GptConfig { NLayer = 3, NHead = 2, NEmbd = 8, NHeadPerLayer = heads, MlpHiddenPerLayer = hidden };
        var e = Assert.Throws<ArgumentException>(config.Validate);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AStateJsonWithImpossibleWidthsIsRefusedNamingTheFile()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-widths-" + Guid.NewGuid().ToString("N"));
        try
        {
            var gpt = new Gpt(Narrow(bias: false), 1, 4);
            Checkpoint.SaveModel(dir, gpt, null);
            string path = Path.Combine(dir, Checkpoint.ConfigFile);
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"n_head_per_layer\": [\n    1,", "\"n_head_per_layer\": [\n    0,"));
            Assert.Contains("\"n_head_per_layer\": [\n    0,", File.ReadAllText(path));
            var e = Assert.Throws<FormatException>(() => Checkpoint.LoadAnyModel(dir, 1, 4, out _));
            Assert.Contains(path, e.Message);
            Assert.Contains("n_head_per_layer[0] (0) must be positive", e.Message);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
