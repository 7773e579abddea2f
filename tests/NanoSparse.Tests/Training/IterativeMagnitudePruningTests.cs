using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Pruning;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

[Collection("KernelThreads")]
public sealed class IterativeMagnitudePruningTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    [Theory]
    [InlineData(0.5, false)]   // below prune_switch_sparsity: masked dense
    [InlineData(0.8, true)]    // above: CSR
    public void RewindingRestoresTheSavedWeightsBitExactlyAtKeptPositions(double sparsity, bool sparse)
    {
        var c = _data.Config("imp-a", maxIters: 6);
        RewindPoint? point = null;
        float[][] masks;
        string[] names;
        using (var a = new Trainer(c))
        {
            a.IterationStarting = t => { if (t.Step == 2) point ??= t.CaptureRewindPoint(); };
            a.Run();
            var idx = GradualPruning.PrunableIndices(a.Model);
            names = idx.Select(i => a.Model.Parameters[i].Name).ToArray();
            var weights = idx.Select(i => GradualPruning.DenseValues(a.Model.Parameters[i])).ToList();
            masks = weights.Select(w => Enumerable.Repeat(1f, w.Length).ToArray()).ToArray();
            MagnitudeMask.Prune(weights, masks, sparsity, global: false);
        }
        Assert.NotNull(point);
        Assert.Equal(2, point!.Step);

        var b = _data.Config("imp-b", maxIters: 6);
        b.Seed = 7;   // another initialisation: everything must come from the rewind point
        using var t = new Trainer(b);
        t.RewindTo(point);
        t.SetPruningMasks(masks);
        Assert.Equal(2, t.Step);
        Assert.Equal(sparse, t.Pruning!.Switched);
        Assert.Equal(0, t.Optimizer.StepCount);
        Assert.All(t.Optimizer.M.ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal(point.DropoutState, t.Model.DropoutRng.State);
        foreach (var p in t.Model.Parameters)
        {
            var saved = point.Values[p.Name];
            var now = GradualPruning.DenseValues(p);
            int k = Array.IndexOf(names, p.Name);
            Assert.Equal(sparse && k >= 0, p.Layout is ISparseLinearStructure);
            for (int i = 0; i < now.Length; i++)
            {
                if (k < 0 || masks[k][i] != 0) Assert.Equal(BitConverter.SingleToInt32Bits(saved[i]), BitConverter.SingleToInt32Bits(now[i]));
                else Assert.Equal(0f, now[i]);
            }
        }
    }

    [Fact]
    public void RoundsPruneTheRateOfTheRemainingWeightsAndRetrainFromTheRewindStep()
    {
        var c = _data.Config("imp", maxIters: 6);
        c.EvalInterval = 3;
        string outDir = Path.Combine(_data.Root, "imp-out");
        var rounds = IterativeMagnitudePruning.Run(c, rounds: 2, rate: 0.5, rewindStep: 2, outDir);
        Assert.Equal(3, rounds.Count);
        Assert.Equal(0.0, rounds[0].Sparsity);
        // Round r prunes ⌊(1 − 0.5^r)·n⌋ of every weight (tiny weights: 16×48, 16×16, 64×16, 16×64).
        long[] sizes = [48 * 16, 16 * 16, 64 * 16, 16 * 64];
        for (int r = 1; r <= 2; r++)
        {
            double s = 1 - Math.Pow(0.5, r);
            double expected = (double)sizes.Sum(n => (long)(s * n)) / sizes.Sum();
            Assert.True(rounds[r].Sparsity >= expected - 1e-12, $"round {r}: {rounds[r].Sparsity} < {expected}");
            Assert.True(rounds[r].Sparsity < expected + 0.01);
        }
        Assert.False(rounds[1].Sparse);   // 50% < prune_switch_sparsity 0.7
        Assert.True(rounds[2].Sparse);    // 75%
        Assert.All(rounds, r => Assert.True(float.IsFinite(r.ValLoss)));
        for (int r = 0; r <= 2; r++)
        {
            string dir = Path.Combine(outDir, $"round-{r}");
            Assert.True(Checkpoint.Exists(dir));
            var state = Checkpoint.ReadState(dir);
            Assert.Equal(6, state.IterNum);
            Assert.Equal(r == 2, state.Model.WeightLayouts is not null);
            var firstIteration = File.ReadAllLines(Path.Combine(dir, TrainingLog.FileName)).Skip(1).First(l => l.Split(',')[2].Length == 0);
            Assert.StartsWith(r == 0 ? "0," : "2,", firstIteration);
        }
    }

    [Theory]
    [InlineData(0, 0.2, 1, "--rounds (0) must be at least 1")]
    [InlineData(2, 1.0, 1, "--rate (1) must be in (0, 1)")]
    [InlineData(2, 0.2, 6, "--rewind-step (6) must be in [0, max_iters = 6)")]
    public void BadArgumentsAreRefusedByName(int rounds, double rate, int rewind, string expected)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => IterativeMagnitudePruning.Run(_data.Config("imp-bad", maxIters: 6), rounds, rate, rewind, Path.Combine(_data.Root, "x")));
        Assert.Contains(expected, e.Message);
    }
}
