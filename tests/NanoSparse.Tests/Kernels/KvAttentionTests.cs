using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

/// <summary>Bitmap-packed keys and values (Mustafar) against a brute-force top-|x| selection and dense double products.</summary>
public class KvAttentionTests
{
    static float[] RandomVector(Random r, int n) => Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();

    // the kept set by brute force: indices ordered by |x| descending, then index ascending; the first keep
    static HashSet<int> BruteForceKept(float[] x, int keep) =>
        Enumerable.Range(0, x.Length).OrderByDescending(i => Math.Abs(x[i])).ThenBy(i => i).Take(keep).ToHashSet();

    [Theory]
    [InlineData(32, 0.7)]
    [InlineData(64, 0.7)]
    [InlineData(48, 0.5)]
    [InlineData(128, 0.9)]
    [InlineData(20, 0.7)]   // not a multiple of 16: the scalar path
    [InlineData(16, 0.0)]
    public void PackKeepsExactlyTheLargestMagnitudesAndProductsMatchDense(int hs, double sparsity)
    {
        var r = new Random(hs);
        int keep = KvAttention.KeepCount(hs, sparsity);
        Assert.Equal(Math.Max(1, hs - (int)Math.Round(sparsity * hs, MidpointRounding.AwayFromZero)), keep);
        for (int trial = 0; trial < 20; trial++)
        {
            var x = RandomVector(r, hs);
            if (trial % 3 == 0) { x[1] = 0.5f; x[2] = -0.5f; x[hs - 1] = 0.5f; }   // ties
            var bits = new ulong[KvAttention.BitmapWords(hs)];
            var packed = new float[keep];
            KvAttention.Pack(x, keep, bits, packed);
            Assert.Equal(keep, bits.Sum(b => System.Numerics.BitOperations.PopCount(b)));
            var kept = BruteForceKept(x, keep);
            var dense = new double[hs];
            int n = 0;
            for (int b = 0; b < hs; b++)
            {
                bool set = (bits[b >> 6] >> (b & 63) & 1) != 0;
                Assert.Equal(kept.Contains(b), set);
                if (set) { Assert.Equal(x[b], packed[n++]); dense[b] = x[b]; }
            }

            var q = RandomVector(r, hs);
            double dot = 0;
            for (int b = 0; b < hs; b++) dot += q[b] * dense[b];
            Assert.Equal(dot, KvAttention.Dot(q, bits, packed), 1e-5);

            var y = RandomVector(r, hs);
            var expected = y.Select((v, b) => v + 0.37 * dense[b]).ToArray();
            KvAttention.MultiplyAdd(y, 0.37f, bits, packed);
            for (int b = 0; b < hs; b++) Assert.Equal(expected[b], y[b], 1e-6);
        }
    }

    [Fact]
    public void PackRefusesAKeepCountOutsideTheHead()
    {
        var x = new float[8];
        Assert.Throws<ArgumentOutOfRangeException>(() => KvAttention.Pack(x, 0, new ulong[1], new float[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => KvAttention.Pack(x, 9, new ulong[1], new float[9]));
    }
}
