using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>The sparse-input product against a double-precision sum over the kept inputs.</summary>
[Collection("KernelThreads")]
public sealed class SparseInputGemvTests : IDisposable
{
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose() => KernelThreads.Max = _savedThreads;

    static float[] Gaussian(Rng rng, int n, double std = 1)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextGaussian() * std);
        return a;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 5)]
    [InlineData(64, 48)]
    [InlineData(300, 257)]
    [InlineData(768, 100)]
    [InlineData(129, 1030)]
    public void ForwardEqualsDoubleReferenceAtEveryKeptFractionSplitAndThreadCount(int inFeatures, int outFeatures)
    {
        var rng = new Rng((ulong)(inFeatures * 1000 + outFeatures));
        var wt = Gaussian(rng, inFeatures * outFeatures, 0.1);   // (In, Out)
        var x = Gaussian(rng, inFeatures);
        var bias = Gaussian(rng, outFeatures);
        var residual = Gaussian(rng, outFeatures);
        foreach (double keptFraction in new[] { 0.0, 0.1, 0.5, 0.9, 1.0 })
        {
            // keep a random subset of exactly round(f·In) inputs
            int keep = (int)Math.Round(keptFraction * inFeatures);
            var order = Enumerable.Range(0, inFeatures).OrderBy(_ => rng.NextUInt64()).Take(keep).Order().ToArray();
            var thresholds = Enumerable.Repeat(float.PositiveInfinity, inFeatures).ToArray();
            foreach (int i in order) thresholds[i] = 0f;
            var indices = new int[inFeatures];
            var values = new float[inFeatures];
            int count = SparseInputGemv.Gather(x, thresholds, indices, values);
            Assert.Equal(keep, count);
            Assert.Equal(order, indices.Take(count));

            foreach (bool withBias in new[] { false, true })
            {
                var reference = new double[outFeatures];
                for (int o = 0; o < outFeatures; o++)
                {
                    double s = (withBias ? bias[o] : 0) + residual[o];
                    foreach (int i in order) s += (double)x[i] * wt[(long)i * outFeatures + o];
                    reference[o] = s;
                }
                foreach (int threads in new[] { 1, 2 })
                    foreach (var split in new[] { SparseInputSplit.Outputs, SparseInputSplit.Inputs })
                    {
                        KernelThreads.Max = threads;
                        var y = new float[outFeatures];
                        var partials = new float[SparseInputGemv.PartialFloats(outFeatures)];
                        SparseInputGemv.Forward(y, wt, inFeatures, outFeatures, indices, values, count, withBias ? bias : default, residual, partials, split);
                        for (int o = 0; o < outFeatures; o++)
                            Assert.True(Math.Abs(y[o] - reference[o]) <= 1e-5 * (1 + Math.Abs(reference[o])) + 1e-5 * Math.Sqrt(count),
                                $"In {inFeatures} Out {outFeatures} kept {count} {split} {threads} thr: y[{o}] = {y[o]}, reference {reference[o]}");
                        // residual added in place (y aliasing the residual) gives the same result
                        var inPlace = residual.ToArray();
                        SparseInputGemv.Forward(inPlace, wt, inFeatures, outFeatures, indices, values, count, withBias ? bias : default, inPlace, partials, split);
                        Assert.Equal(y, inPlace);
                    }
            }
        }
    }

    [Fact]
    public void GatherKeepsExactlyTheEntriesAtOrAboveTheirThreshold()
    {
        float[] x = [0.5f, -2f, 0f, 1f, -1f, 3f];
        float[] t = [0.5f, 2.5f, 0f, float.PositiveInfinity, 1f, 0f];
        var indices = new int[6];
        var values = new float[6];
        int n = SparseInputGemv.Gather(x, t, indices, values);
        Assert.Equal([0, 2, 4, 5], indices.Take(n));
        Assert.Equal([0.5f, 0f, -1f, 3f], values.Take(n));
    }

    [Fact]
    public void ForwardRefusesAKeptIndexOutsideTheInputs()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            SparseInputGemv.Forward(new float[2], new float[6], 3, 2, [3], [1f], 1, default, default));
        Assert.Contains("[0, 3)", e.Message);
    }
}
