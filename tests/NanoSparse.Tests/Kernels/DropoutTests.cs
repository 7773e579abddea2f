using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

public class DropoutTests
{
    [Fact]
    public void KeepsAboutOneMinusPAndScalesByItsInverse()
    {
        var x = new float[100_000];
        x.AsSpan().Fill(1f);
        Dropout.Apply(x, 0.2f, 99);
        int kept = x.Count(v => v != 0);
        Assert.InRange(kept / (double)x.Length, 0.79, 0.81);
        Assert.All(x.Where(v => v != 0), v => Assert.Equal(1.25f, v, 6));
        // Same seed, same mask (what the backward pass relies on); another seed, another mask.
        var again = new float[x.Length];
        again.AsSpan().Fill(1f);
        Dropout.Apply(again, 0.2f, 99);
        Assert.Equal(x, again);
        var other = new float[x.Length];
        other.AsSpan().Fill(1f);
        Dropout.Apply(other, 0.2f, 100);
        Assert.NotEqual(x, other);
    }
}

public unsafe class DropoutRowTests
{
    // The vector row kernels must reproduce Keep's mask bit for bit: the backward pass, the shards and resumed
    // runs all regenerate masks and rely on every path giving the same one.
    [Theory]
    [InlineData(0.2f, 0UL, 0L, 37)]
    [InlineData(0.1f, 12345UL, 17L, 16)]
    [InlineData(0.5f, ulong.MaxValue, 1L << 40, 1000)]
    [InlineData(0.9f, 0x5EEDUL, 3L, 15)]
    [InlineData(0.2f, 99UL, -5L, 64)]
    public void RowKernelsGiveExactlyTheScalarMask(float p, ulong seed, long baseIndex, int count)
    {
        var rng = new Random(7);
        var src = new float[count + 3];
        for (int i = 0; i < src.Length; i++) src[i] = (float)(rng.NextDouble() * 4 - 2);
        src[1] = float.PositiveInfinity;
        src[2] = float.NaN;
        float scale = 1f / (1f - p);
        var expected = new float[count];
        for (int i = 0; i < count; i++)
            expected[i] = Dropout.Keep(seed, baseIndex + i, p) ? src[i] * scale : 0f;

        var dst = new float[count];
        var dp = (float[])src.Clone();
        var pd = new float[count];
        fixed (float* ps = src, pdst = dst, pdp = dp, ppd = pd)
        {
            Dropout.ApplyRow(pdst, ps, count, seed, baseIndex, p, scale);
            Dropout.ApplyRowPair(ppd, ps, pdp, count, seed, baseIndex, p, scale);
        }
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(dst[i]));
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(pd[i]));
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(dp[i]));
        }
        Assert.Equal(src[count..], dp[count..]);   // nothing past count is touched
    }

    [Fact]
    public void ApplyInPlaceEqualsTheScalarMaskOverManyBlocks()
    {
        var x = new float[3 * 4096 + 21];
        var rng = new Random(3);
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextDouble() + 0.5f;
        var expected = new float[x.Length];
        for (int i = 0; i < x.Length; i++) expected[i] = Dropout.Keep(42, 1000 + i, 0.3f) ? x[i] * (1f / 0.7f) : 0f;
        Dropout.Apply(x, 0.3f, 42, 1000);
        Assert.Equal(expected, x);
    }
}
