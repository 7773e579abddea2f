using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

/// <summary>Attention of one query over a dense KV cache against a double-precision softmax(q·kᵀ/√hs)·v per head.</summary>
[Collection("KernelThreads")]   // sets KernelThreads.Max: must not run beside tests that need a fixed thread count
public class CachedAttentionTests
{
    static float[] RandomVector(Random r, int n, double spread) => Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * spread)).ToArray();

    static double[] Reference(float[] q, float[] keys, float[] values, int count, int width, int heads)
    {
        int hs = width / heads;
        var y = new double[width];
        for (int h = 0; h < heads; h++)
        {
            var s = new double[count];
            for (int j = 0; j < count; j++)
            {
                double dot = 0;
                for (int c = 0; c < hs; c++) dot += (double)q[h * hs + c] * keys[j * width + h * hs + c];
                s[j] = dot / Math.Sqrt(hs);
            }
            double max = s.Max(), sum = 0;
            for (int j = 0; j < count; j++) sum += s[j] = Math.Exp(s[j] - max);
            for (int j = 0; j < count; j++)
                for (int c = 0; c < hs; c++) y[h * hs + c] += s[j] / sum * values[j * width + h * hs + c];
        }
        return y;
    }

    [Theory]
    [InlineData(1, 768, 12, 1)]     // gpt2 heads (hs 64), the first position
    [InlineData(300, 768, 12, 1)]
    [InlineData(300, 768, 12, 2)]   // heads split over two threads
    [InlineData(2000, 768, 12, 2)]  // two groups of six heads, a long cache
    [InlineData(3000, 768, 12, 1)]  // one group would hold 36,000 scores: a head at a time
    [InlineData(50, 192, 3, 1)]     // a group of three heads (an odd count)
    [InlineData(50, 384, 6, 2)]     // two groups of three
    [InlineData(5000, 64, 1, 2)]    // one group of one head, 5,000 scores on its stack
    [InlineData(9000, 256, 4, 1)]   // past the stack's scores (36,000 in one group, 9,000 for a head): the caller's buffer, serially
    [InlineData(77, 192, 4, 2)]     // hs 48: a 64-wide pass is not possible, three 16-wide ones
    [InlineData(40, 384, 3, 1)]     // hs 128: two 64-wide passes
    [InlineData(33, 40, 5, 2)]      // hs 8: the span fallback
    public void MatchesDoubleReference(int count, int width, int heads, int threads)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var r = new Random(count * 31 + width);
            var q = RandomVector(r, width, 2.0);   // scores spread over several units: a softmax far from uniform
            var keys = RandomVector(r, count * width, 1.0);
            var values = RandomVector(r, count * width, 1.0);
            var y = new float[width];
            var scores = new float[count];
            CachedAttention.Forward(y, q, keys, values, count, width, heads, scores);
            var expected = Reference(q, keys, values, count, width, heads);
            for (int i = 0; i < width; i++)
                Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5 + 1e-4 * Math.Abs(expected[i]), $"y[{i}] = {y[i]}, expected {expected[i]}");
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// hs = 64 runs in fixed chunks of positions merged in order whatever the thread count: one and two threads give the
    /// same bits (a chunk, a partial chunk, one and several blocks of 256 positions, a single head).
    /// </summary>
    [Theory]
    [InlineData(1, 768, 12)]
    [InlineData(45, 768, 12)]
    [InlineData(300, 768, 12)]
    [InlineData(1000, 768, 12)]
    [InlineData(700, 64, 1)]
    [InlineData(200, 1280, 20)]     // more heads than one vector of scores
    public void OneAndTwoThreadsGiveTheSameBits(int count, int width, int heads)
    {
        int saved = KernelThreads.Max;
        try
        {
            var r = new Random(count + heads);
            var q = RandomVector(r, width, 2.0);
            var keys = RandomVector(r, count * width, 1.0);
            var values = RandomVector(r, count * width, 1.0);
            var one = new float[width];
            var two = new float[width];
            KernelThreads.Max = 1;
            CachedAttention.Forward(one, q, keys, values, count, width, heads, new float[count]);
            KernelThreads.Max = 2;
            CachedAttention.Forward(two, q, keys, values, count, width, heads, new float[count]);
            for (int i = 0; i < width; i++)
                Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(two[i]), $"y[{i}]: {one[i]} at one thread, {two[i]} at two");
            var expected = Reference(q, keys, values, count, width, heads);
            for (int i = 0; i < width; i++)
                Assert.True(Math.Abs(one[i] - expected[i]) <= 1e-5 + 1e-4 * Math.Abs(expected[i]), $"y[{i}] = {one[i]}, expected {expected[i]}");
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void RejectsWidthNotAMultipleOfHeadsAndShortBuffers()
    {
        var y = new float[10];
        var ex = Assert.Throws<ArgumentException>(() => CachedAttention.Forward(y, new float[10], new float[20], new float[20], 2, 10, 3, new float[2]));
        Assert.Contains("heads (3)", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => CachedAttention.Forward(y, new float[10], new float[19], new float[20], 2, 10, 2, new float[2]));
        Assert.Contains("keys", ex.Message);
    }
}
