using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

public class DsnotTests
{
    const int Rows = 24, Cols = 64;

    static LayerPruneRequest Pruned(string method, float[] w, float[] x, SparsityTarget target, bool gram)
    {
        var stats = PruningLayers.Stats(x, Cols, gram);
        var req = new LayerPruneRequest("layer", (float[])w.Clone(), Rows, Cols, target, stats, new Rng(1));
        if (method == "sparsegpt")
        {
            var s = PruningLayers.Stats(x, Cols, true);
            var sg = new LayerPruneRequest("layer", (float[])w.Clone(), Rows, Cols, target, s, new Rng(1));
            new SparseGptPruner().Prune(sg);
            sg.Weight.CopyTo(req.Weight, 0);
            sg.Mask.CopyTo(req.Mask, 0);
            return req;
        }
        var p = method == "wanda" ? PruningLayers.Wanda(w, x, Rows, Cols, target) : PruningLayers.Magnitude(w, Rows, Cols, target);
        p.CopyTo(req.Weight, 0);
        for (int i = 0; i < w.Length; i++) req.Mask[i] = p[i] == 0 ? (byte)0 : (byte)1;
        return req;
    }

    public static TheoryData<string, double, int, int> Cases => new()
    {
        { "wanda", 0.5, 0, 0 }, { "magnitude", 0.7, 0, 0 }, { "sparsegpt", 0.6, 0, 0 },
        { "wanda", 0, 2, 4 }, { "magnitude", 0, 4, 8 }, { "sparsegpt", 0, 2, 4 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void KeepsTheSparsityExactlyAndNeverIncreasesTheReconstructionError(string method, double sparsity, int n, int m)
    {
        var (w, x) = PruningLayers.Make(Rows, Cols, 400, 21);
        var target = new SparsityTarget(sparsity, n, m);
        var req = Pruned(method, w, x, target, gram: true);
        var inputMask = (byte[])req.Mask.Clone();
        var inputWeight = (float[])req.Weight.Clone();
        double before = PruningLayers.ReconstructionError(w, req.Weight, x, Rows, Cols);
        var dsnot = new Dsnot();
        dsnot.Refine(req, w);
        double after = PruningLayers.ReconstructionError(w, req.Weight, x, Rows, Cols);

        Assert.True(after <= before * (1 + 1e-6), $"{method} {target}: error {before} → {after}");
        Assert.Equal(inputMask.Count(b => b == 0), req.Mask.Count(b => b == 0));
        for (int r = 0; r < Rows; r++)
            Assert.Equal(inputMask.AsSpan(r * Cols, Cols).ToArray().Count(b => b == 0), req.Mask.AsSpan(r * Cols, Cols).ToArray().Count(b => b == 0));
        if (target.IsNm)
            for (int g = 0; g < w.Length; g += m)
                Assert.Equal(n, req.Mask.AsSpan(g, m).ToArray().Count(b => b == 1));
        for (int i = 0; i < w.Length; i++)
        {
            Assert.True(req.Mask[i] is 0 or 1);
            if (req.Mask[i] == 0) Assert.Equal(0f, req.Weight[i]);
            else Assert.Equal(inputMask[i] == 1 ? inputWeight[i] : w[i], req.Weight[i]);
        }
        if (method != "sparsegpt") Assert.True(dsnot.LastSwaps > 0, $"{method} {target}: no swap made");
    }

    [Fact]
    public void TheMeanErrorAlwaysMovesTowardZeroWithoutTheGramGuard()
    {
        var (w, x) = PruningLayers.Make(Rows, Cols, 400, 22);
        var req = Pruned("wanda", w, x, new SparsityTarget(0.5), gram: false);
        var mean = new double[Cols];
        for (int t = 0; t < 400; t++) for (int j = 0; j < Cols; j++) mean[j] += x[t * Cols + j] / 400.0;
        double[] RowErrors()
        {
            var e = new double[Rows];
            for (int r = 0; r < Rows; r++)
                for (int j = 0; j < Cols; j++) e[r] += ((double)w[r * Cols + j] - req.Weight[r * Cols + j]) * mean[j];
            return e;
        }
        var before = RowErrors();
        var dsnot = new Dsnot(new DsnotOptions { GuardWithGram = false });
        dsnot.Refine(req, w);
        var after = RowErrors();
        Assert.True(dsnot.LastSwaps > 0);
        for (int r = 0; r < Rows; r++)
        {
            Assert.True(Math.Abs(after[r]) <= Math.Abs(before[r]) + 1e-9, $"row {r}: |e| {before[r]} → {after[r]}");
            Assert.True(after[r] == before[r] || Math.Sign(after[r]) == Math.Sign(before[r]));
        }
    }

    [Fact]
    public void AHandWorkedRowSwapsOnceThenStopsWhenTheSignWouldFlip()
    {
        // Two tokens, every input 2 then 0: E[x] = 1, Var = 1, ‖x‖ = 2 for every feature.
        // Dense row [1, 2, −0.3, 0.5, 3, −2], inputs 0 and 3 pruned: e = 1·1 + 0.5·1 = 1.5.
        // Cycle 1 (e > 0): grow the pruned weight with the largest w·E[x]/Var: input 0 (1); prune the kept weight with
        // a negative w·E[x] of lowest |w|·‖x‖: input 2 (−0.3); e → 1.5 − 0.3 − 1 = 0.2, same sign: swap.
        // Cycle 2: grow input 3 (0.5), prune input 5 (−2): e → 0.2 − 2 − 0.5 < 0, sign flips: stop.
        float[] dense = [1, 2, -0.3f, 0.5f, 3, -2];
        var stats = new LayerInputStats(6, false);
        stats.Accumulate([2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0], 2);
        var req = new LayerPruneRequest("h", [0, 2, -0.3f, 0, 3, -2], 1, 6, new SparsityTarget(2.0 / 6), stats, new Rng(1));
        byte[] inputMask = [0, 1, 1, 0, 1, 1];
        inputMask.CopyTo(req.Mask, 0);
        var dsnot = new Dsnot(new DsnotOptions { GuardWithGram = false });
        dsnot.Refine(req, dense);
        Assert.Equal(1, dsnot.LastSwaps);
        Assert.Equal(new byte[] { 1, 1, 0, 0, 1, 1 }, req.Mask);
        Assert.Equal(new float[] { 1, 2, 0, 0, 3, -2 }, req.Weight);
    }

    [Fact]
    public void ARowWhoseErrorIsWithinTheThresholdIsLeftAlone()
    {
        float[] dense = [1, 2, -0.3f, 0.05f, 3, -2];
        var stats = new LayerInputStats(6, false);
        stats.Accumulate([2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0], 2);
        var req = new LayerPruneRequest("h", [1, 2, -0.3f, 0, 3, -2], 1, 6, new SparsityTarget(1.0 / 6), stats, new Rng(1));
        byte[] inputMask = [1, 1, 1, 0, 1, 1];
        inputMask.CopyTo(req.Mask, 0);
        var dsnot = new Dsnot();
        dsnot.Refine(req, dense);
        Assert.Equal(0, dsnot.LastSwaps);
        Assert.Equal(inputMask, req.Mask);
    }
}
