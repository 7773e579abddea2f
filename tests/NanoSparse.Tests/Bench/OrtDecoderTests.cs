using NanoSparse.Bench;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Tests.IO;

namespace NanoSparse.Tests.Bench;

/// <summary>
/// The ONNX Runtime decode peer (OrtDecoder) on the decode-step graphs bench/peers/export_onnx.py exported from the
/// interop fixtures' nanoGPT models (tools/make_onnx_fixture.py): a prefill then one token a step, the presents fed back
/// as pasts, must give at every position the float64 PyTorch reference logits those fixtures hold (computed over the
/// whole window, no KV cache, no ONNX).
/// </summary>
public sealed class OrtDecoderTests
{
    const int T = 16, V = 37;

    static string Graph(string model) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "onnx", $"{model}.onnx");

    static GptConfig Config(bool bias) => new() { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = T, VocabSize = V, Bias = bias };

    // Window b's tokens and reference logits (T, V) of every position.
    static (int[] Tokens, float[] Logits) Reference(string model, int b)
    {
        using var f = SafeTensorsFile.Open(ModelImporterTests.Fixture(model, "reference.safetensors"));
        var tokens = f.ReadFloat32Array("tokens").Skip(b * T).Take(T).Select(v => (int)v).ToArray();
        return (tokens, f.ReadFloat32Array("logits").Skip(b * T * V).Take(T * V).ToArray());
    }

    static double MaxDiff(ReadOnlySpan<float> got, ReadOnlySpan<float> want)
    {
        Assert.Equal(want.Length, got.Length);
        double d = 0;
        for (int i = 0; i < want.Length; i++) d = Math.Max(d, Math.Abs((double)got[i] - want[i]));
        return d;
    }

    [Theory]
    [InlineData("nanogpt_bias", true, 1, 1)]
    [InlineData("nanogpt_nobias", false, 1, 5)]
    [InlineData("nanogpt_nobias", false, 2, 3)]
    [InlineData("nanogpt_bias", true, 2, 15)]
    public void PrefillThenOneTokenAStepEqualsTheReferenceLogitsAtEveryPosition(string model, bool bias, int threads, int prompt)
    {
        using var ort = new OrtDecoder(Graph(model), Config(bias), threads);
        for (int b = 0; b < 2; b++)   // the second window reuses the decoder: a prefill starts from an empty cache
        {
            var (tokens, logits) = Reference(model, b);
            double d = MaxDiff(ort.Prefill(tokens.AsSpan(0, prompt)), logits.AsSpan((prompt - 1) * V, V));
            Assert.True(d <= 1e-4, $"{model} window {b}: prefill of {prompt} tokens, max |diff| {d:E3}");
            for (int t = prompt; t < T; t++)
            {
                d = MaxDiff(ort.Decode(tokens[t]), logits.AsSpan(t * V, V));
                Assert.True(d <= 1e-4, $"{model} window {b}: decode at position {t}, max |diff| {d:E3}");
                Assert.Equal(t + 1, ort.Length);
            }
        }
        // The reference is informative: the logits vary well beyond the tolerance.
        var (_, all) = Reference(model, 0);
        Assert.True(all.Max() - all.Min() > 1);
    }

    [Fact]
    public void DecodeAgreesWithOurDenseModelOnTheSameWeights()
    {
        var gpt = GptInterop.Load(ModelFormat.NanoGpt, ModelImporterTests.Fixture("nanogpt_nobias", "model.safetensors"), null, batchSize: 1, seqLen: 1);
        var cache = gpt.CreateKvCache();
        using var ort = new OrtDecoder(Graph("nanogpt_nobias"), gpt.Config, 1);
        int[] prompt = [3, 1, 4, 1, 5, 9];
        var check = DecodePeers.Compare("m", 1, gpt.ForwardCached(cache, prompt), ort.Prefill(prompt));
        Assert.True(check.Ok, $"prefill max |diff| {check.MaxAbsDiff:E3}");
        var logits = ort.Prefill(prompt).ToArray();
        for (int i = 0; i < 8; i++)
        {
            int next = SparseModelBench.NextToken(logits, i, V);
            var ours = gpt.ForwardCached(cache, [next]);
            logits = ort.Decode(next).ToArray();
            check = DecodePeers.Compare("m", 1, ours, logits);
            Assert.True(check.Ok, $"step {i}: max |diff| {check.MaxAbsDiff:E3}");
        }
    }

    [Theory]
    [InlineData(4, V, "past_key_0")]     // n_head 4: the pasts are (1, 4, past, 4), the graph's (1, 2, past, 8)
    [InlineData(2, 50, "logits")]        // vocabulary 50: the graph's logits are (1, 37)
    public void AGraphOfAnotherShapeIsRefusedNamingTheFileAndTheTensor(int heads, int vocab, string tensor)
    {
        var config = Config(false) with { NHead = heads, VocabSize = vocab };
        var e = Assert.Throws<InvalidDataException>(() => new OrtDecoder(Graph("nanogpt_nobias"), config, 1));
        Assert.Contains("nanogpt_nobias.onnx", e.Message);
        Assert.Contains($"'{tensor}'", e.Message);
    }

    [Fact]
    public void MoreTokensThanTheBlockOrATokenOutsideTheVocabularyIsRefused()
    {
        using var ort = new OrtDecoder(Graph("nanogpt_nobias"), Config(false), 1);
        ort.Prefill(new int[T - 1]);
        ort.Decode(0);
        Assert.Throws<ArgumentException>(() => ort.Decode(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ort.Prefill([V]));
    }

    [Fact]
    public void TheLogitsCheckFlagsADifferenceBeyondTheToleranceAndANaN()
    {
        float[] ours = [0.5f, -2f, 1f];
        Assert.True(DecodePeers.Compare("m", 1, ours, [0.5f, -2f + 1e-4f, 1f]).Ok);          // 1e-4 ≤ 1e-4 × 2
        Assert.False(DecodePeers.Compare("m", 1, ours, [0.5f, -2f, 1f + 3e-4f]).Ok);         // 3e-4 > 2e-4
        Assert.False(DecodePeers.Compare("m", 1, ours, [0.5f, float.NaN, 1f]).Ok);
        Assert.False(DecodePeers.Compare("m", 1, ours, [0.5f, -2f]).Ok);
    }

    [Fact]
    public void AMissingInterpreterIsNamed()
    {
        string? missing = DecodePeers.MissingPrerequisite("/nonexistent/python3");
        Assert.NotNull(missing);
        Assert.Contains("/nonexistent/python3", missing);
    }
}
