using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

public class SparseGptPrunerTests
{
    static LayerPruneRequest Request(float[] w, int rows, int cols, SparsityTarget target, LayerInputStats stats) =>
        new("layer", (float[])w.Clone(), rows, cols, target, stats, new Rng(1));

    public static TheoryData<double, int, int, int> Targets => new()
    {
        { 0.5, 0, 0, 128 }, { 0.7, 0, 0, 128 }, { 0.5, 0, 0, 16 }, { 0, 2, 4, 128 }, { 0, 4, 8, 16 },
    };

    [Theory]
    [MemberData(nameof(Targets))]
    public void ReconstructionErrorOnTheCalibrationInputsIsAtMostMagnitudesAndWandas(double sparsity, int n, int m, int block)
    {
        const int rows = 24, cols = 64;
        var (w, x) = PruningLayers.Make(rows, cols, 400, 7);
        var target = new SparsityTarget(sparsity, n, m);
        var req = Request(w, rows, cols, target, PruningLayers.Stats(x, cols, true));
        new SparseGptPruner(new SparseGptOptions { BlockSize = block }).Prune(req);
        double ours = PruningLayers.ReconstructionError(w, req.Weight, x, rows, cols);
        double magnitude = PruningLayers.ReconstructionError(w, PruningLayers.Magnitude(w, rows, cols, target), x, rows, cols);
        double wanda = PruningLayers.ReconstructionError(w, PruningLayers.Wanda(w, x, rows, cols, target), x, rows, cols);
        Assert.True(ours <= magnitude, $"sparsegpt {ours} > magnitude {magnitude}");
        Assert.True(ours <= wanda, $"sparsegpt {ours} > wanda {wanda}");
    }

    [Theory]
    [InlineData(0.37, 16)]
    [InlineData(0.5, 7)]
    [InlineData(0.9, 128)]
    [InlineData(0.0, 16)]
    public void UnstructuredPrunesExactlyTheTargetCountAndZeroesEveryPrunedWeight(double sparsity, int block)
    {
        const int rows = 13, cols = 40;
        var (w, x) = PruningLayers.Make(rows, cols, 100, 3);
        var target = new SparsityTarget(sparsity);
        var req = Request(w, rows, cols, target, PruningLayers.Stats(x, cols, true));
        new SparseGptPruner(new SparseGptOptions { BlockSize = block }).Prune(req);
        Assert.Equal(target.PrunedCount(rows * cols), req.Mask.LongCount(b => b == 0));
        for (int i = 0; i < w.Length; i++)
        {
            Assert.True(req.Mask[i] is 0 or 1);
            if (req.Mask[i] == 0) Assert.Equal(0f, req.Weight[i]);
            else Assert.NotEqual(0f, req.Weight[i]);
        }
    }

    [Theory]
    [InlineData(2, 4, 128)]
    [InlineData(1, 4, 6)]
    [InlineData(4, 8, 16)]
    [InlineData(3, 5, 10)]
    public void NmKeepsExactlyNWeightsInEveryGroupOfM(int n, int m, int block)
    {
        const int rows = 9;
        int cols = 8 * m;
        var (w, x) = PruningLayers.Make(rows, cols, 120, 5);
        var req = Request(w, rows, cols, new SparsityTarget(0, n, m), PruningLayers.Stats(x, cols, true));
        new SparseGptPruner(new SparseGptOptions { BlockSize = block }).Prune(req);
        for (int g = 0; g < w.Length; g += m)
        {
            Assert.Equal(n, req.Mask.AsSpan(g, m).ToArray().Count(b => b == 1));
            for (int k = 0; k < m; k++)
                Assert.Equal(req.Mask[g + k] == 0, req.Weight[g + k] == 0f);
        }
    }

    [Theory]
    [InlineData(0.5, 0, 0, 4)]
    [InlineData(0.6, 0, 0, 5)]
    [InlineData(0.0, 2, 4, 4)]
    [InlineData(0.0, 2, 4, 8)]
    public void EqualsTheRowByRowObsReferenceOnATinyLayer(double sparsity, int n, int m, int block)
    {
        const int rows = 5, cols = 12;
        var (w, x) = PruningLayers.Make(rows, cols, 60, 11);
        // One input that is never nonzero: its weights must come out 0, as the paper's H_ii = 1 rule makes them.
        for (int t = 0; t < 60; t++) x[t * cols + 9] = 0;
        var target = new SparsityTarget(sparsity, n, m);
        var stats = PruningLayers.Stats(x, cols, true);
        var req = Request(w, rows, cols, target, stats);
        new SparseGptPruner(new SparseGptOptions { BlockSize = block }).Prune(req);
        var (refW, refMask) = ObsReference(w, rows, cols, x, target, block, 0.01);
        Assert.Equal(refMask, req.Mask);
        for (int i = 0; i < w.Length; i++)
            Assert.True(Math.Abs(refW[i] - req.Weight[i]) <= 1e-5 * (1 + Math.Abs(refW[i])), $"weight {i}: reference {refW[i]}, ours {req.Weight[i]}");
        for (int r = 0; r < rows; r++) Assert.Equal(0f, req.Weight[r * cols + 9]);
    }

    /// <summary>
    /// SparseGPT from the paper's equations, in double and without Cholesky, lazy batching or blocks of rows:
    /// H = 2/n Σ x xᵀ (+ dead-input rule, + λI); H_F⁻¹ for F = {j, j+1, ...} by eliminating one column at a time
    /// (H_{F∖j}⁻¹ = H_F⁻¹ − H_F⁻¹[:, j]·H_F⁻¹[j, :] / H_F⁻¹[j, j], the paper's eq. 3 recursion); column j of every row:
    /// if pruned, δ = −w_j / [H_F⁻¹]_jj · H_F⁻¹[j, :] (the OBS update, eq. 2) applied to the columns j..; the mask at
    /// block starts from w²/[H_F_c⁻¹]_cc (unstructured: lowest over rows × block with the pruned count ⌊rows·end·p⌋ after
    /// the block; N:M: per row, per group when it starts).
    /// </summary>
    static (float[] W, byte[] Mask) ObsReference(float[] w0, int rows, int cols, float[] x, SparsityTarget target, int block, double percDamp)
    {
        int tokens = x.Length / cols;
        var h = new double[cols, cols];
        for (int t = 0; t < tokens; t++)
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < cols; j++) h[i, j] += 2.0 / tokens * x[t * cols + i] * x[t * cols + j];
        var w = new double[rows, cols];
        for (int r = 0; r < rows; r++) for (int j = 0; j < cols; j++) w[r, j] = w0[r * cols + j];
        double mean = 0;
        for (int i = 0; i < cols; i++)
        {
            if (h[i, i] == 0) { h[i, i] = 1; for (int r = 0; r < rows; r++) w[r, i] = 0; }
            mean += h[i, i] / cols;
        }
        for (int i = 0; i < cols; i++) h[i, i] += percDamp * mean;
        var hinv = GaussJordanInverse(h, cols);
        // rowF[j] = H_{F_j}⁻¹[j, :] with F_j = {j, ..., cols − 1}
        var rowF = new double[cols][];
        for (int j = 0; j < cols; j++)
        {
            rowF[j] = new double[cols];
            for (int c = 0; c < cols; c++) rowF[j][c] = hinv[j, c];
            double d = hinv[j, j];
            var next = new double[cols, cols];
            for (int a = 0; a < cols; a++)
                for (int b = 0; b < cols; b++) next[a, b] = hinv[a, b] - hinv[a, j] * hinv[j, b] / d;
            hinv = next;
        }
        var mask = new byte[rows * cols];
        Array.Fill(mask, (byte)1);
        long prunedSoFar = 0;
        for (int j = 0; j < cols; j++)
        {
            if (!target.IsNm && j % block == 0 && target.Sparsity > 0)
            {
                int end = Math.Min(cols, j + block);
                long cumulative = (long)((double)rows * end * target.Sparsity);
                var cells = new List<(double Score, int Pos, int R, int C)>();
                for (int r = 0; r < rows; r++)
                    for (int c = j; c < end; c++)
                        cells.Add((w[r, c] * w[r, c] / rowF[c][c], r * (end - j) + c - j, r, c));
                foreach (var cell in cells.OrderBy(e => e.Score).ThenBy(e => e.Pos).Take((int)(cumulative - prunedSoFar)))
                    mask[cell.R * cols + cell.C] = 0;
                prunedSoFar = cumulative;
            }
            for (int r = 0; r < rows; r++)
            {
                if (target.IsNm && j % target.M == 0)
                    foreach (int c in Enumerable.Range(j, target.M).OrderBy(c => w[r, c] * w[r, c] / rowF[c][c]).ThenBy(c => c).Take(target.M - target.N))
                        mask[r * cols + c] = 0;
                if (mask[r * cols + j] == 0)
                {
                    double f = w[r, j] / rowF[j][j];
                    for (int c = j; c < cols; c++) w[r, c] -= f * rowF[j][c];
                    w[r, j] = 0;
                }
            }
        }
        var outW = new float[rows * cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) outW[r * cols + c] = (float)w[r, c];
        return (outW, mask);
    }

    static double[,] GaussJordanInverse(double[,] a, int n)
    {
        var m = (double[,])a.Clone();
        var inv = new double[n, n];
        for (int i = 0; i < n; i++) inv[i, i] = 1;
        for (int c = 0; c < n; c++)
        {
            int p = c;
            for (int r = c + 1; r < n; r++) if (Math.Abs(m[r, c]) > Math.Abs(m[p, c])) p = r;
            for (int k = 0; k < n; k++)
            {
                (m[c, k], m[p, k]) = (m[p, k], m[c, k]);
                (inv[c, k], inv[p, k]) = (inv[p, k], inv[c, k]);
            }
            double d = m[c, c];
            for (int k = 0; k < n; k++) { m[c, k] /= d; inv[c, k] /= d; }
            for (int r = 0; r < n; r++)
            {
                if (r == c) continue;
                double f = m[r, c];
                if (f == 0) continue;
                for (int k = 0; k < n; k++) { m[r, k] -= f * m[c, k]; inv[r, k] -= f * inv[c, k]; }
            }
        }
        return inv;
    }

    [Fact]
    public void BadTargetsAndMissingStatisticsAreOneLineErrorsNamingTheLayer()
    {
        var (w, x) = PruningLayers.Make(4, 10, 20, 1);
        var stats = PruningLayers.Stats(x, 10, true);
        var p = new SparseGptPruner();
        var e = Assert.Throws<ArgumentException>(() => p.Prune(Request(w, 4, 10, new SparsityTarget(0, 2, 4), stats)));
        Assert.Contains("layer", e.Message);
        Assert.Contains("10", e.Message);
        Assert.Throws<ArgumentException>(() => p.Prune(Request(w, 4, 10, new SparsityTarget(1.0), stats)));
        Assert.Throws<ArgumentException>(() => p.Prune(Request(w, 4, 10, new SparsityTarget(0.5), PruningLayers.Stats(x, 10, false))));
        Assert.Throws<ArgumentException>(() => p.Prune(new LayerPruneRequest("layer", w, 4, 10, new SparsityTarget(0.5), null, new Rng(1))));
    }
}
