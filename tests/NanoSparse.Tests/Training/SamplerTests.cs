using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

public class SamplerTests
{
    static Gpt Model()
    {
        var gpt = new Gpt(new GptConfig { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 13 }, 1, 8);
        var r = new Random(2);
        var v = gpt.ParameterData;
        for (int i = 0; i < v.Length; i++) v[i] = (float)(r.NextDouble() * 2 - 1);
        return gpt;
    }

    [Fact]
    public void TopOneIsGreedyDecodingOverTheLastBlockSizeTokens()
    {
        var gpt = Model();
        int[] prompt = [1, 2, 3];
        var result = Sampler.Generate(gpt, prompt, 12, 1f, 1, new Rng(1));   // 15 tokens > block_size 8: crops
        Assert.Equal(15, result.Length);
        Assert.Equal(prompt, result[..3]);
        // Reference: nanoGPT's loop without a cache, full forward over idx[-block_size:], argmax of the last row.
        var ids = prompt.ToList();
        for (int step = 0; step < 12; step++)
        {
            var context = ids.Skip(Math.Max(0, ids.Count - 8)).ToArray();
            var model = new Gpt(gpt.Config, 1, context.Length);
            gpt.ParameterData.CopyTo(model.ParameterData);
            model.Forward(context, [], false);
            var last = model.Logits.Slice((context.Length - 1) * 13, 13).ToArray();
            ids.Add(Array.IndexOf(last, last.Max()));
        }
        Assert.Equal(ids.ToArray(), result);
    }

    [Fact]
    public void SameSeedSameTextAndOnlyTopKTokensAppear()
    {
        var gpt = Model();
        var seen = new List<int>();
        var a = Sampler.Generate(gpt, [4], 30, 1.5f, 3, new Rng(9), seen.Add);
        var b = Sampler.Generate(gpt, [4], 30, 1.5f, 3, new Rng(9));
        Assert.Equal(a, b);
        Assert.Equal(a[1..], seen);
        var c = Sampler.Generate(gpt, [4], 30, 1.5f, 0, new Rng(10));
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void SampleTokenKeepsOnlyTheTopK()
    {
        float[] logits = [0f, 5f, 1f, 4f, -2f];
        var probs = new float[5];
        var sorted = new float[5];
        var rng = new Rng(3);
        var counts = new int[5];
        for (int i = 0; i < 4000; i++) counts[Sampler.SampleToken(logits, 1f, 2, rng, probs, sorted)]++;
        Assert.Equal(0, counts[0] + counts[2] + counts[4]);
        // p(1) = e^5 / (e^5 + e^4) ≈ 0.731
        Assert.InRange(counts[1] / 4000.0, 0.70, 0.76);
    }

    [Fact]
    public void RejectsNonPositiveTemperature()
    {
        Assert.Throws<ArgumentException>(() => Sampler.Generate(Model(), [1], 3, 0f, 0, new Rng(1)));
    }

    [Fact]
    public void CropToRefillsFromTheLastTokensAndThenGrowsTheContextAgain()
    {
        var gpt = Model();
        int[] prompt = [1, 2, 3];
        var result = Sampler.Generate(gpt, prompt, 20, 1f, 1, new Rng(1), cropTo: 4);
        // Reference without a cache: the context grows to block_size (8), then restarts from its last 4 tokens
        // and grows again; greedy decoding over that context each step.
        var ids = prompt.ToList();
        int contextLength = ids.Count;
        for (int step = 0; step < 20; step++)
        {
            var context = ids.Skip(ids.Count - contextLength).ToArray();
            var model = new Gpt(gpt.Config, 1, context.Length);
            gpt.ParameterData.CopyTo(model.ParameterData);
            model.Forward(context, [], false);
            var last = model.Logits.Slice((context.Length - 1) * 13, 13).ToArray();
            ids.Add(Array.IndexOf(last, last.Max()));
            contextLength = contextLength == 8 ? 4 : contextLength + 1;
        }
        Assert.Equal(ids.ToArray(), result);
        Assert.Throws<ArgumentException>(() => Sampler.Generate(gpt, prompt, 2, 1f, 1, new Rng(1), cropTo: 9));
    }
}
