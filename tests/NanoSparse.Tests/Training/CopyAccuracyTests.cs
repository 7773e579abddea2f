using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// CopyAccuracy against counts made by hand and by brute force: a model whose weights make it predict one fixed token
/// everywhere (every block's output is zero, ln_f maps everything to wte's row of that token, lm_head is tied to wte)
/// is right exactly on the counted targets equal to that token, so its accuracy per distance bin is their share.
/// </summary>
public sealed class CopyAccuracyTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-copy-acc-" + Guid.NewGuid().ToString("N"));

    public CopyAccuracyTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    static Gpt ConstantPredictor(int vocab, int predicted, int T, int B)
    {
        const int C = 8;
        var gpt = new Gpt(new GptConfig { NLayer = 1, NHead = 1, NEmbd = C, BlockSize = T, VocabSize = vocab, Bias = true }, B, T);
        foreach (var p in gpt.Parameters) p.Value.Span.Clear();
        gpt.Parameters.Single(p => p.Name == "transformer.wte.weight").Value.Span[predicted * C] = 1f;   // wte[predicted] = e_0
        gpt.Parameters.Single(p => p.Name == "transformer.ln_f.bias").Value.Span[0] = 1f;                // ln_f(x) = e_0 for every x
        return gpt;
    }

    TokenFile Write(string name, int[] tokens, int vocab)
    {
        string path = Path.Combine(_dir, name);
        TokenFileWriter.Write(path, tokens, TokenDtype.UInt16, vocab);
        return TokenFile.Open(path, TokenDtype.UInt16, vocab);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void AHandCountedCase(int batch)
    {
        // 0 is the separator, 1 the filler, 2-4 the alphabet. Segments: "2 3 4 | 2 3 4" (D = 3) at 1..6, "3 2 | 3 2"
        // (D = 2) at 8..11, and a cut one after the last separator (not counted). Targets with a distance: 5 and 6 (D = 3),
        // 11 (D = 2).
        int[] tokens = [0, 2, 3, 4, 2, 3, 4, 0, 3, 2, 3, 2, 0, 4, 2, 3, 4, 2, 3];
        using var stream = Write("hand.bin", tokens, 5);
        // T = 8, 2 windows: step (19 - 9) / 2 = 5, windows at 0 (targets 1..8: 5 and 6 counted) and 5 (targets 6..13:
        // 6's source 2 lies before the window, 11's source 8 inside, so 11 counted)
        var points = CopyAccuracy.Measure(ConstantPredictor(5, 3, 8, batch), new CopyProbe(3), stream, [1, 3], 2);
        Assert.Equal((1, 1, 0.0), (points[0].Distance, points[0].Samples, points[0].Accuracy));   // bin 1-2: target 2, predicted 3
        Assert.Equal((3, 2, 0.5), (points[1].Distance, points[1].Samples, points[1].Accuracy));   // bin 3-7: targets 3 and 4
        Assert.Equal(points[1].Accuracy, points[1].DigitAccuracy);
        // a bin with no sample is NaN, not 0
        var only3 = CopyAccuracy.Measure(ConstantPredictor(5, 3, 8, batch), new CopyProbe(3), stream, [4], 2);
        Assert.Equal(0, only3[0].Samples);
        Assert.True(double.IsNaN(only3[0].Accuracy));
    }

    [Fact]
    public void AHandCountedCaseWithAGap()
    {
        // "2 3 . . 2 3" (D = 4): the target 3 at 6 is predicted from 2 at 5, whose earlier occurrence is 4 back, at 1
        int[] tokens = [0, 2, 3, 1, 1, 2, 3, 0, 0, 0, 0];
        using var stream = Write("gap.bin", tokens, 4);
        var hit = CopyAccuracy.Measure(ConstantPredictor(4, 3, 8, 1), new CopyProbe(2), stream, [1, 4, 5], 1);
        Assert.Equal([0, 1, 0], hit.Select(p => p.Samples));
        Assert.Equal(1.0, hit[1].Accuracy);
        var miss = CopyAccuracy.Measure(ConstantPredictor(4, 2, 8, 1), new CopyProbe(2), stream, [4], 1);
        Assert.Equal((1, 0.0), (miss[0].Samples, miss[0].Accuracy));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void AConstantPredictorScoresTheShareOfCountedTargetsEqualToItsToken(int maxRun)
    {
        var task = new CopyProbe(6);
        var tokens = new int[3000];
        var segments = new List<CopyProbe.Segment>();
        task.Generate(tokens, 1, maxRun == 0 ? 6 : 12, new Rng(3), segments, maxRun: maxRun);
        using var stream = Write("val.bin", tokens, task.VocabSize);
        const int T = 16, windows = 11;
        int predicted = task.TokenId(4);
        int[] edges = [1, 2, 4];
        var points = CopyAccuracy.Measure(ConstantPredictor(task.VocabSize, predicted, T, 4), task, stream, edges, windows);
        // brute force from the generator's own segments
        var hits = new int[3];
        var counts = new int[3];
        long step = (tokens.Length - T - 1) / windows;
        for (int w = 0; w < windows; w++)
        {
            long start = w * step;
            foreach (var s in segments)
                for (int i = 1; i < s.Run; i++)
                {
                    long p = s.Start + s.Distance + i, source = p - 1 - s.Distance;
                    if (p < start + 1 || p > start + T || source < start) continue;
                    int bin = s.Distance >= 4 ? 2 : s.Distance >= 2 ? 1 : 0;
                    counts[bin]++;
                    if (tokens[p] == predicted) hits[bin]++;
                }
        }
        for (int k = 0; k < 3; k++)
        {
            Assert.Equal(edges[k], points[k].Distance);
            Assert.Equal(counts[k], points[k].Samples);
            Assert.Equal((double)hits[k] / counts[k], points[k].Accuracy, 12);
        }
        // the case can fail: some counted targets are the predicted token and some are not
        Assert.InRange(hits.Sum(), 1, counts.Sum() - 1);
        Assert.Equal(0, counts[0]);   // D = 1 is a run of 1: no target from the second token on
    }

    [Fact]
    public void BadBinsAreRefused()
    {
        var task = new CopyProbe(4);
        var tokens = new int[200];
        task.Generate(tokens, 1, 4, new Rng(1));
        using var stream = Write("b.bin", tokens, task.VocabSize);
        var gpt = ConstantPredictor(task.VocabSize, 2, 16, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CopyAccuracy.Measure(gpt, task, stream, [1, 16], 2));
        Assert.Contains("distance 16 must lie in [1, 15] for windows of 16 tokens", e.Message);
        Assert.Throws<ArgumentException>(() => CopyAccuracy.Measure(gpt, task, stream, [4, 2], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => CopyAccuracy.Measure(gpt, task, stream, [1], 0));
    }
}
