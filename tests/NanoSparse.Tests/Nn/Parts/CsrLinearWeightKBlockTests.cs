using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// A CSR Linear wide enough for the token-major products to cut K into 256-row blocks in both directions (forward:
/// K = In = 768; dx: K = Out = 600, a short last block), 30% and 10% dense (77 and 26 nonzeros per row and block;
/// RowsWideBlock, 256 rows at a time: three groups of 600 rows forward), 100 tokens (a full 64-token
/// panel and a short one), on one and two threads: dx and dValues against central finite differences of Σ g ⊙ y. The masked-dense double
/// references of the kernel are in CsrSpmmTokenMajorTests and of the whole training step in SparseTrainingTests.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class CsrLinearWeightKBlockTests
{
    [Theory]
    [InlineData(1, 0.3)]
    [InlineData(2, 0.3)]
    [InlineData(1, 0.1)]
    [InlineData(2, 0.1)]
    public void GradientsWithKInBlocksMatchFiniteDifferences(int threads, double density)
    {
        const int outFeatures = 600, inFeatures = 768, rows = 100;
        var rng = new Rng(5);
        var dense = new float[outFeatures * inFeatures];
        for (int i = 0; i < dense.Length; i++)
            if (rng.NextDouble() < density) dense[i] = (float)rng.NextGaussian() + (rng.NextDouble() < 0.5 ? -0.5f : 0.5f);
        var (w, values) = CsrLinearWeight.FromDense(outFeatures, inFeatures, dense);
        // The case must exercise the blocked kernel both ways.
        Assert.Equal(CsrSpmmTokenMajor.DenseKBlock, CsrSpmmTokenMajor.KBlockRows(w.StoredCount, outFeatures, inFeatures));
        Assert.Equal(CsrSpmmTokenMajor.DenseKBlock, CsrSpmmTokenMajor.KBlockRows(w.StoredCount, inFeatures, outFeatures));
        var random = new Random(23);
        var x = GradCheck.RandomArray(random, rows * inFeatures);
        var lossWeights = GradCheck.RandomArray(random, rows * outFeatures);
        var workspace = new float[w.WorkspaceFloats(rows)];
        var y = new float[rows * outFeatures];
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            double Loss()
            {
                w.Forward(y, x, values, [], [], rows, workspace);
                return GradCheck.WeightedSum(y, lossWeights);
            }
            var dx = new float[rows * inFeatures];
            var dValues = new float[w.StoredCount];
            w.Backward(dx, dValues, [], lossWeights, x, values, [], rows, workspace);
            GradCheck.Assert($"dx, {threads} threads", x, dx, Loss, maxChecks: 60, seed: threads);
            GradCheck.Assert($"dValues, {threads} threads", values, dValues, Loss, maxChecks: 60, seed: threads);
        }
        finally { KernelThreads.Max = saved; }
    }
}
