using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The transposing reductions (several horizontal sums of 16-float vectors at once) against double-precision sums of
/// each vector's lanes, on random vectors whose lanes differ in scale (so a lane taken twice or missed shows), and
/// with every vector but one zero (so a sum landing in another vector's slot shows).
/// </summary>
public class SddmmReductionTests
{
    static Vector512<float>[] RandomVectors(Rng rng, int count)
    {
        var v = new Vector512<float>[count];
        for (int i = 0; i < count; i++)
        {
            var lanes = new float[16];
            for (int l = 0; l < 16; l++) lanes[l] = (float)(rng.NextGaussian() * Math.Pow(2, l % 5) * (i + 1));
            v[i] = Vector512.Create(lanes);
        }
        return v;
    }

    static double Sum(Vector512<float> v) { double s = 0; for (int l = 0; l < 16; l++) s += v[l]; return s; }

    [Fact]
    public void Reduce4AndReduce8EqualTheLaneSums()
    {
        if (!Avx512F.IsSupported) return;
        var rng = new Rng(17);
        for (int trial = 0; trial < 50; trial++)
        {
            var v = RandomVectors(rng, 8);
            if (trial % 10 == 9)   // one non-zero vector at a time
                for (int i = 0; i < 8; i++) if (i != trial / 10 % 8) v[i] = Vector512<float>.Zero;
            var four = Sddmm.Reduce4(v[0], v[1], v[2], v[3]);
            var eight = Sddmm.Reduce8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
            for (int i = 0; i < 8; i++)
            {
                double expected = Sum(v[i]), bound = 1e-5 * Enumerable.Range(0, 16).Sum(l => Math.Abs((double)v[i][l])) + 1e-30;
                if (i < 4) Assert.True(Math.Abs(four[i] - expected) <= bound, $"Reduce4 sum {i}: {four[i]} against {expected} (trial {trial})");
                Assert.True(Math.Abs(eight[i] - expected) <= bound, $"Reduce8 sum {i}: {eight[i]} against {expected} (trial {trial})");
            }
        }
    }
}
