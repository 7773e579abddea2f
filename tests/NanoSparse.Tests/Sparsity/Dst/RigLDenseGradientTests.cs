using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Sparsity.Dst;

/// <summary>
/// RigL ranks regrowth by |dL/dW| of the dense weight. What the CSR layers capture on an update step must be that
/// gradient for the whole model: every block weight, every position (stored or not), summed over the iteration's
/// micro-batches and data-parallel shards. The reference is the dense twin (the same weights, zeros where nothing is
/// stored) run through the dense backward on the same batches.
/// </summary>
[Collection("KernelThreads")]
public sealed class RigLDenseGradientTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 2)]
    [InlineData(2, 2)]
    public void TheCapturedGradientIsTheDenseModelsGradientAtEveryPosition(int threads, int accumulation)
    {
        var c = _data.Config($"capture-{threads}-{accumulation}", maxIters: 4);
        c.Sparsity = 0.7f;
        c.SparsityDistribution = "erk";
        c.Dst = "rigl";
        c.DstInterval = 2;
        c.DstStop = 10;
        c.Dropout = 0;
        c.Prefetch = false;
        c.Threads = threads;
        c.GradientAccumulationSteps = accumulation;
        c.NLayer = 2;
        using var t = new Trainer(c);
        t.TrainIteration((float)t.LearningRateAt(0), out _);   // weights away from their initial values
        var (dense, _) = SparseTrainingTests.DenseTwin(t.Model);

        var layers = t.Model.Parameters.Where(p => p.Layout is CsrLinearWeight).ToList();
        Assert.Equal(2 * 4, layers.Count);
        var captures = layers.Select(p => new float[p.LogicalLength]).ToArray();
        for (int k = 0; k < layers.Count; k++) ((CsrLinearWeight)layers[k].Layout!).DenseGradientCapture = captures[k];

        using var train = TokenFile.OpenSplit(c.Dataset, "train", t.Meta);
        var sampler = new BatchSampler(train, c.BatchSize, c.BlockSize, c.Seed + 1);
        int n = c.BatchSize * c.BlockSize;
        var (x, y) = (new int[n], new int[n]);
        t.Model.ZeroGrad();
        dense.ZeroGrad();
        for (int micro = 0; micro < accumulation; micro++)
        {
            sampler.Next(x, y);
            t.Model.Forward(x, y, training: true);
            t.Model.Backward();
            dense.Forward(x, y, training: true);
            dense.Backward();
        }
        foreach (var p in layers) ((CsrLinearWeight)p.Layout!).DenseGradientCapture = null;

        for (int k = 0; k < layers.Count; k++)
        {
            var d = dense.Parameters.Single(q => q.Name == layers[k].Name);
            var expected = dense.GradientData.Slice(d.Offset, (int)d.LogicalLength);
            float scale = 0, worst = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                scale = Math.Max(scale, Math.Abs(expected[i]));
                worst = Math.Max(worst, Math.Abs(expected[i] - captures[k][i]));
            }
            Assert.True(scale > 0, $"{d.Name}: the dense gradient is all zero");
            Assert.True(worst <= 1e-4f * scale, $"{d.Name}: max |captured − dense dL/dW| {worst} > 1e-4 × max |dL/dW| {scale}");
        }
    }
}
