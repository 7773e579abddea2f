using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// Y (T × M) = (X (T × K) · Sᵀ + bias + add) ⊙ scale on row-major activations (CsrSpmmTokenMajor, 64-token panels):
/// token counts that are a multiple of 64 and ones with a short last panel (zero-padded), K past 1536 (blocks of 768 rows of the panel
/// with 16-bit indices; one block with 32-bit ones), rows of every parity and empty rows, S's row count not a multiple
/// of 8 (the tile's transposed store takes its scalar edge), each epilogue term present or absent, add being Y itself,
/// at 1, 2 and 3 threads (ranges of S's rows, or of token panels from two panels per thread on) and both index widths;
/// against a double-precision reference.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class CsrSpmmTokenMajorTests
{
    [Theory]
    [InlineData(300, 768, 0.1, 128)]   // two full panels of tokens: ranges of token panels at 2 threads
    [InlineData(257, 1000, 0.2, 77)]   // a full panel and a 13-token one
    [InlineData(37, 29, 0.4, 1)]       // one token: a panel of 63 zero columns
    [InlineData(90, 64, 0.5, 65)]      // a 1-token last panel
    [InlineData(301, 1537, 0.05, 40)]  // K past the limit: blocks of 768, 768 and 1 rows
    [InlineData(130, 3072, 0.1, 192)]  // four K blocks, three full panels
    [InlineData(50, 2304, 0.6, 35)]    // dense rows: every row crosses every block boundary
    [InlineData(3, 200, 0.3, 70)]      // fewer rows than some thread counts' ranges would like
    [InlineData(300, 768, 0.1, 456)]   // 8 panels: ranges of token panels at 2 and 3 threads, the last of 8 tokens
    [InlineData(40, 2000, 0.3, 513)]   // token panel ranges with K blocks (the split table shared by the ranges), 1-token last panel
    [InlineData(130, 3072, 0.1, 288)]  // 5 panels: token ranges at 2 threads, ranges of rows at 3
    [InlineData(70, 768, 0.1, 320)]    // 5 full panels, S's rows not a multiple of 16 (the tile's scalar edge)
    [InlineData(20, 2000, 0.0, 70)]    // one nonzero in every 5th row, 768-row K blocks: most rows' blocks empty, row 0's too
    public void MatchesDoubleReference(int m, int k, double density, int tokens)
    {
        if (!CsrSpmmTokenMajor.Supported) return;   // the layouts fall back to FeatureMajor (their own tests)
        var dense = SparseTestData.RandomDense(m, k, density, (ulong)(m * 31 + k));
        for (int i = 0; i < m; i++)
        {
            if (i % 7 == 3) Array.Clear(dense, i * k, k);
            else if (i % 5 == 1) { float keep = dense[i * k + i % k]; Array.Clear(dense, i * k, k); dense[i * k + i % k] = keep == 0 ? 1.5f : keep; }
        }
        var x = SparseTestData.RandomDense(tokens, k, 1, 77);
        var bias = SparseTestData.RandomDense(1, m, 1, 78);
        var add = SparseTestData.RandomDense(tokens, m, 1, 79);
        var scale = SparseTestData.RandomDense(tokens, m, 1, 80);
        var (product, abs) = Reference(dense, m, k, x, tokens);
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            foreach (bool shortIndices in new[] { true, false })
            foreach (int epilogue in new[] { 0, 1, 2 })   // none; bias + add (add = a separate array); add = Y itself and scale
            {
                KernelThreads.Max = threads;
                var csr = CsrMatrix.FromDense(dense, m, k, shortIndices);
                var got = new float[tokens * m];
                if (epilogue == 2) add.CopyTo(got, 0); else Array.Fill(got, float.NaN);
                Run(csr, x, tokens, got, epilogue == 1 ? bias : null, epilogue == 1 ? add : epilogue == 2 ? got : null, epilogue == 2 ? scale : null);
                for (int e = 0; e < got.Length; e++)
                {
                    int t = e / m, i = e % m;
                    double expected = epilogue switch
                    {
                        0 => product[e],
                        1 => product[e] + bias[i] + add[e],
                        _ => (product[e] + add[e]) * scale[e],
                    };
                    double tol = (1e-5 * abs[e] + 1e-6) * (epilogue == 2 ? Math.Abs(scale[e]) + 1 : 1) + (epilogue == 0 ? 0 : 1e-6 * (Math.Abs(add[e]) + Math.Abs(bias[i])));
                    if (!(Math.Abs(got[e] - expected) <= tol))
                        Assert.Fail($"{m}x{k} T={tokens} threads={threads} short={shortIndices} epilogue={epilogue}: Y[{t},{i}] = {got[e]}, expected {expected}");
                }
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// K in blocks chosen by density (CsrSpmmTokenMajor.KBlockRows): 256-row blocks of the panel where rows average at
    /// least 10 nonzeros per block (full blocks, a short last block, one of 8 rows, twelve blocks; RowBlock rows at a
    /// time, so 600 rows pass through the blocks in three groups), CsrSpmm's 768-row blocks or none below that; the case
    /// asserts which blocking it exercises, then runs the reference comparison above. Every 7th row is empty and every
    /// 5th holds one nonzero, so the densities here are ~0.66x the ones named.
    /// </summary>
    [Theory]
    [InlineData(100, 768, 0.3, 130, 256)]    // three full blocks, two full token panels and a 2-token one, 100 rows
    [InlineData(77, 1000, 0.4, 64, 256)]     // a last block of 232 rows
    [InlineData(600, 520, 0.35, 70, 256)]    // a last block of 8 rows
    [InlineData(600, 520, 0.1, 70, 256)]     // short blocks: three groups of rows, the last of 88
    [InlineData(45, 3072, 0.5, 200, 256)]    // twelve blocks
    [InlineData(61, 2304, 0.45, 129, 256)]   // nine blocks, a 1-token last panel
    [InlineData(300, 768, 0.1, 128, 256)]    // ~6.6% dense: 17 nonzeros per 256 columns, blocked
    [InlineData(300, 768, 0.05, 128, 768)]   // ~3.3% dense: 8.5 nonzeros per 256 columns, so unblocked
    [InlineData(130, 3072, 0.05, 64, 768)]   // 5%: CsrSpmm's 768-row blocks
    [InlineData(64, 1536, 0.05, 96, 1536)]   // 5% at K = 1536: unblocked
    public void MatchesDoubleReferenceWithKBlocksChosenByDensity(int m, int k, double density, int tokens, int blockRows)
    {
        var dense = SparseTestData.RandomDense(m, k, density, (ulong)(m * 31 + k));
        for (int i = 0; i < m; i++)
        {
            if (i % 7 == 3) Array.Clear(dense, i * k, k);
            else if (i % 5 == 1) { float keep = dense[i * k + i % k]; Array.Clear(dense, i * k, k); dense[i * k + i % k] = keep == 0 ? 1.5f : keep; }
        }
        long nnz = dense.Count(v => v != 0);
        Assert.Equal(blockRows, CsrSpmmTokenMajor.KBlockRows(nnz, m, k));
        MatchesDoubleReference(m, k, density, tokens);
    }

    /// <summary>
    /// An infinite x or an infinite weight reaches only the outputs whose stored terms hold it: the slots past a row's
    /// (or a K block's) last nonzero read the zero row under weight 0, so neither 0·∞ nor ∞·0 turns another sum into NaN.
    /// Rows 3 and 5 store column 20 (x[5, 20] = ∞) as the second of two entries and alone, rows 4 and 6 store an infinite
    /// weight the same way: in K blocks (30% and 10% dense: RowsWideBlock) and in whole rows (3%, unblocked: RowsWide)
    /// the padded slots read exactly those entries. Finite outputs must match the double reference, the others must equal it (±∞).
    /// </summary>
    [Theory]
    [InlineData(0.3, 256)]    // K blocks (RowsWideBlock), even and odd counts per block
    [InlineData(0.1, 256)]    // short K blocks
    [InlineData(0.03, 768)]   // one pass (RowsWide)
    public void InfiniteInputsAndWeightsReachOnlyTheirOwnOutputs(double density, int blockRows)
    {
        if (!CsrSpmmTokenMajor.Supported) return;
        int m = 48, k = 768, tokens = 64;
        var dense = SparseTestData.RandomDense(m, k, density, 11);
        foreach (int row in new[] { 3, 4, 5, 6 }) Array.Clear(dense, row * k, k);
        dense[3 * k + 10] = 0.5f; dense[3 * k + 20] = -1.5f;
        dense[5 * k + 20] = 2f;
        dense[4 * k + 30] = 2f; dense[4 * k + 40] = float.PositiveInfinity;
        dense[6 * k + 40] = float.PositiveInfinity;
        var x = SparseTestData.RandomDense(tokens, k, 1, 12);
        x[5 * k + 20] = float.PositiveInfinity;
        var (product, abs) = Reference(dense, m, k, x, tokens);
        Assert.Equal(blockRows, CsrSpmmTokenMajor.KBlockRows(dense.Count(v => v != 0), m, k));
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (bool shortIndices in new[] { true, false })
            {
                KernelThreads.Max = threads;
                var got = new float[tokens * m];
                Run(CsrMatrix.FromDense(dense, m, k, shortIndices), x, tokens, got, null, null, null);
                int infinite = 0;
                for (int e = 0; e < got.Length; e++)
                {
                    if (double.IsFinite(product[e])) Assert.True(Math.Abs(got[e] - product[e]) <= 1e-5 * abs[e] + 1e-6, $"Y[{e / m},{e % m}] = {got[e]}, expected {product[e]}");
                    else { Assert.Equal(product[e], (double)got[e]); infinite++; }
                }
                Assert.True(infinite >= 2 * tokens + 2, $"{infinite} infinite outputs");   // rows 4 and 6 everywhere, rows 3 and 5 at token 5
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>Nothing stored, K past 1536 (where K blocks would start): Y is bias + add alone, no entry is read.</summary>
    [Fact]
    public void NothingStoredGivesTheEpilogueAlone()
    {
        if (!CsrSpmmTokenMajor.Supported) return;
        int m = 9, k = 2000, tokens = 70;
        var csr = CsrMatrix.FromDense(new float[m * k], m, k, true);
        var x = SparseTestData.RandomDense(tokens, k, 1, 5);
        var bias = SparseTestData.RandomDense(1, m, 1, 6);
        var add = SparseTestData.RandomDense(tokens, m, 1, 7);
        var got = new float[tokens * m];
        Run(csr, x, tokens, got, bias, add, null);
        for (int e = 0; e < got.Length; e++) Assert.Equal(bias[e % m] + add[e], got[e]);
    }

    /// <summary>product[t, i] = Σ_j S[i, j]·x[t, j] over S's stored entries and Σ|terms| (the tolerance's scale), in double.</summary>
    static (double[] Product, double[] Abs) Reference(float[] dense, int m, int k, float[] x, int tokens)
    {
        var product = new double[tokens * m];
        var abs = new double[tokens * m];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < k; j++)
            {
                double s = dense[i * k + j];
                if (s == 0) continue;
                for (int t = 0; t < tokens; t++) { product[t * m + i] += s * x[t * k + j]; abs[t * m + i] += Math.Abs(s * x[t * k + j]); }
            }
        return (product, abs);
    }

    static unsafe void Run(CsrMatrix s, float[] x, int tokens, float[] y, float[]? bias, float[]? add, float[]? scale)
    {
        fixed (int* rp = s.RowPointers)
        fixed (float* v = s.Values, px = x, py = y, pb = bias, pa = add, ps = scale)
        {
            if (s.ColumnIndices16 is { } c16)
                fixed (ushort* ci = c16) CsrSpmmTokenMajor.Run(s.Rows, s.Cols, rp, ci, v, px, s.Cols, tokens, py, s.Rows, pb, pa, ps);
            else
                fixed (int* ci = s.ColumnIndices32) CsrSpmmTokenMajor.Run(s.Rows, s.Cols, rp, ci, v, px, s.Cols, tokens, py, s.Rows, pb, pa, ps);
        }
    }
}
