using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// RetrievalAccuracy on the associative-recall task against a hand-computed case: a model whose weights make it
/// predict one fixed value token everywhere (every block's output is zero, ln_f maps everything to wte's row of that
/// value, lm_head is tied to wte) is right exactly on the samples whose answer is that value, so its accuracy per
/// distance is the share of such samples among the windows the measurement draws (replayed here from the same seed).
/// </summary>
public sealed class RetrievalAccuracyTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-recall-acc-" + Guid.NewGuid().ToString("N"));

    public RetrievalAccuracyTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void AConstantPredictorScoresTheShareOfAnswersEqualToItsValue()
    {
        var task = new AssociativeRecall(16, 4);
        var stream = new int[4000];
        task.Generate(stream, 5, 0, 25, 32, new Rng(11));
        string path = Path.Combine(_dir, "val.bin");
        TokenFileWriter.Write(path, stream, TokenDtype.UInt16, task.VocabSize);
        using var filler = TokenFile.Open(path, TokenDtype.UInt16, task.VocabSize);

        const int T = 32, C = 16, B = 3;
        int predicted = task.ValueId(2);
        var gpt = new Gpt(new GptConfig { NLayer = 1, NHead = 1, NEmbd = C, BlockSize = T, VocabSize = task.VocabSize, Bias = true }, B, T);
        foreach (var p in gpt.Parameters) p.Value.Span.Clear();
        var wte = gpt.Parameters.Single(p => p.Name == "transformer.wte.weight").Value.Span;
        wte[predicted * C] = 1f;   // wte[predicted] = e_0
        gpt.Parameters.Single(p => p.Name == "transformer.ln_f.bias").Value.Span[0] = 1f;   // ln_f(x) = e_0 for every x

        int[] distances = [0, 7, 20, T - 3];
        const int samples = 7;   // two full batches of 3 and one of 1
        const ulong seed = 99;
        var full = RetrievalAccuracy.Measure(gpt, task, filler, distances, samples, 0, seed);
        var cached = RetrievalAccuracy.Measure(gpt, task, filler, distances, samples, 0, seed, new KvCacheSpec { Kind = KvCacheSpec.Dense });
        int hitsSeen = 0;
        for (int i = 0; i < distances.Length; i++)
        {
            int d = distances[i];
            // the measurement's draws: per sample an offset, then the record and query written into that window
            var rng = new Rng(seed ^ (ulong)d * 0x9E3779B97F4A7C15UL);
            int hits = 0;
            for (int s = 0; s < samples; s++)
            {
                var window = new int[T + 1];
                filler.Read(rng.NextInt64(filler.Length - T), window);
                int answer = task.Write(window, d, 0, rng);
                if (window[answer] == predicted) hits++;
            }
            hitsSeen += hits;
            Assert.Equal(d, full[i].Distance);
            Assert.Equal(samples, full[i].Samples);
            Assert.Equal((double)hits / samples, full[i].Accuracy, 12);
            Assert.Equal((double)hits / samples, full[i].DigitAccuracy, 12);
            Assert.Equal(full[i], cached[i]);
        }
        // the case can fail: some answers are the predicted value and some are not
        Assert.InRange(hitsSeen, 1, distances.Length * samples - 1);
    }

    [Fact]
    public void ADistanceBeyondTheBlockIsRefused()
    {
        var task = new AssociativeRecall(16, 4);
        var stream = new int[500];
        task.Generate(stream, 5, 0, 25, 32, new Rng(1));
        string path = Path.Combine(_dir, "v.bin");
        TokenFileWriter.Write(path, stream, TokenDtype.UInt16, task.VocabSize);
        using var filler = TokenFile.Open(path, TokenDtype.UInt16, task.VocabSize);
        var gpt = new Gpt(new GptConfig { NLayer = 1, NHead = 1, NEmbd = 16, BlockSize = 32, VocabSize = task.VocabSize }, 2, 32);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => RetrievalAccuracy.Measure(gpt, task, filler, [30], 4, 0, 1));
        Assert.Contains("distance 30 must lie in [0, 29] for windows of 32 tokens", e.Message);
    }
}
