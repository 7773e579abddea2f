using FsCheck.Xunit;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>Every sparse kernel against a double-precision dense reference.</summary>
public class SparseKernelTests
{
    static readonly int[] Ns = [0, 1, 2, 15, 16, 17, 33, 64, 129, 200];

    /// <summary>Y = op(S)·X in double; also Σ|s||x| per output for a rounding-aware tolerance.</summary>
    static (double[] Y, double[] Abs) Reference(float[] s, int m, int k, float[] x, int n, bool transposeS)
    {
        int rows = transposeS ? k : m, inner = transposeS ? m : k;
        var y = new double[rows * n];
        var abs = new double[rows * n];
        for (int i = 0; i < rows; i++)
            for (int t = 0; t < inner; t++)
            {
                double sv = transposeS ? s[t * k + i] : s[i * k + t];
                if (sv == 0) continue;
                for (int j = 0; j < n; j++)
                {
                    y[i * n + j] += sv * x[t * n + j];
                    abs[i * n + j] += Math.Abs(sv * x[t * n + j]);
                }
            }
        return (y, abs);
    }

    static void AssertClose(double[] expected, double[] abs, ReadOnlySpan<float> actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-5 * abs[i] + 1e-6;
            if (!(Math.Abs(actual[i] - expected[i]) <= tol))
                Assert.Fail($"{what}: element {i}: got {actual[i]}, expected {expected[i]} (tolerance {tol})");
        }
    }

    static float[] Poisoned(int length)
    {
        var y = new float[length];
        Array.Fill(y, float.NaN); // kernels overwrite Y; a skipped element would stay NaN
        return y;
    }

    static void CheckAllFormats(int m, int k, double density, int n, ulong seed)
    {
        var dense = SparseTestData.RandomDense(m, k, density, seed);
        var x = SparseTestData.RandomDense(k, n, 1, seed + 1);
        var (yRef, abs) = Reference(dense, m, k, x, n, transposeS: false);
        string what = $"{m}x{k} d={density} N={n}";

        foreach (bool shortIdx in k <= 65536 ? new[] { true, false } : new[] { false })
        {
            var csr = CsrMatrix.FromDense(dense, m, k, shortIdx);
            var y = Poisoned(m * n);
            CsrSpmm.Multiply(csr, x, n, y);
            AssertClose(yRef, abs, y, "CSR S·X " + what);

            var csc = csr.ToCsc(shortIdx && m <= 65536);
            y = Poisoned(m * n);
            CscSpmm.Multiply(csc, x, n, y);
            AssertClose(yRef, abs, y, "CSC S·X " + what);
        }

        var yc = Poisoned(m * n);
        CooSpmm.Multiply(CooMatrix.FromDense(dense, m, k), x, n, yc);
        AssertClose(yRef, abs, yc, "COO S·X " + what);

        var yb = Poisoned(m * n);
        BitmapSpmm.Multiply(BitmapMatrix.FromDense(dense, m, k), x, n, yb);
        AssertClose(yRef, abs, yb, "Bitmap S·X " + what);

        var ys = Poisoned(m * n);
        SellSpmm.Multiply(SellMatrix.FromDense(dense, m, k), x, n, ys);
        AssertClose(yRef, abs, ys, "SELL S·X " + what);

        var yz = Poisoned(m * n);
        ZeroSkippingGemm.Multiply(m, n, k, dense, x, yz);
        AssertClose(yRef, abs, yz, "zero-skipping GEMM " + what);

        // Sᵀ·X with X (M×N).
        var xt = SparseTestData.RandomDense(m, n, 1, seed + 2);
        var (ytRef, tAbs) = Reference(dense, m, k, xt, n, transposeS: true);
        foreach (bool shortIdx in k <= 65536 ? new[] { true, false } : new[] { false })
        {
            var csr = CsrMatrix.FromDense(dense, m, k, shortIdx);
            var yt = Poisoned(k * n);
            CsrSpmmTransposed.Multiply(csr, xt, n, yt);
            AssertClose(ytRef, tAbs, yt, "CSR Sᵀ·X " + what);
            yt = Poisoned(k * n);
            CscSpmm.MultiplyTransposed(csr.ToCsc(shortIdx && m <= 65536), xt, n, yt);
            AssertClose(ytRef, tAbs, yt, "CSC Sᵀ·X " + what);
        }
    }

    [Theory]
    [InlineData(400, 48, 0.5, 33, true)]
    [InlineData(2000, 20, 0.1, 200, true)]
    [InlineData(200, 3000, 0.05, 128, true)]
    [InlineData(768, 768, 0.1, 16, false)]  // X small (48 KiB) and rows used < 128 times: in place
    [InlineData(40, 400, 0.1, 16, false)]   // rows of X used < 8 times: in place
    public void PackedXCasesTakeThePackedPath(int m, int k, double density, int n, bool packed)
    {
        // Keeps the packed-X cases above meaningful: they must reach the path they are named for.
        long nnz = CsrMatrix.FromDense(SparseTestData.RandomDense(m, k, density, 99), m, k).NonZeroCount;
        Assert.Equal(packed && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated, AlignedPanels.Pays(nnz, k, n));
    }

    [Theory]
    [InlineData(0)]   // 64-byte aligned, N % 16 == 0: X used in place
    [InlineData(4)]
    [InlineData(16)]
    [InlineData(48)]
    public unsafe void CsrAndSddmmMatchReferenceWhateverTheAlignmentOfTheDenseOperand(int offsetBytes)
    {
        const int m = 400, k = 48, n = 32;
        var dense = SparseTestData.RandomDense(m, k, 0.5, 21);
        var x = SparseTestData.RandomDense(k, n, 1, 22);
        var (yRef, abs) = Reference(dense, m, k, x, n, transposeS: false);
        var s = CsrMatrix.FromDense(dense, m, k);
        Assert.True(AlignedPanels.Pays(s.NonZeroCount, k, n) || !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated);
        byte* raw = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(x.Length * 4 + 64), 64);
        try
        {
            var xs = new Span<float>(raw + offsetBytes, x.Length);
            x.CopyTo(xs);
            var y = Poisoned(m * n);
            CsrSpmm.Multiply(s, xs, n, y);
            AssertClose(yRef, abs, y, $"CSR S·X, X at +{offsetBytes} bytes");

            // SDDMM with B = X at the same offset, A = Y's reference rounded to float.
            var a = Array.ConvertAll(yRef, v => (float)v);
            var output = Poisoned(s.NonZeroCount);
            Sddmm.Compute(s, a, xs, n, output);
            for (int i = 0; i < m; i++)
                for (int p = s.RowPointers[i]; p < s.RowPointers[i + 1]; p++)
                {
                    int j = s.ColumnIndex(p);
                    double sum = 0, sumAbs = 0;
                    for (int t = 0; t < n; t++) { sum += (double)a[i * n + t] * x[j * n + t]; sumAbs += Math.Abs((double)a[i * n + t] * x[j * n + t]); }
                    Assert.True(Math.Abs(output[p] - sum) <= 1e-5 * sumAbs + 1e-6, $"SDDMM ({i},{j}), B at +{offsetBytes}: got {output[p]}, expected {sum}");
                }
        }
        finally { System.Runtime.InteropServices.NativeMemory.AlignedFree(raw); }
    }

    [Property(MaxTest = 60)]
    public bool UnstructuredKernelsMatchDenseReference(int a, int b, int c, int nPick)
    {
        var (m, k, d) = SparseTestData.Shape(a, b, c, 40);
        CheckAllFormats(m, k, d, Ns[Math.Abs(nPick % Ns.Length)], (ulong)(a * 7 + b * 3 + c));
        return true;
    }

    [Theory]
    [InlineData(300, 1500, 0.1, 130)]  // long K: 64-column tiles; enough work for several threads
    [InlineData(513, 768, 0.05, 1)]    // SpMV over 16-bit indices (8-way unrolled row dot + tail), parallel (≥ 16K nonzeros)
    [InlineData(2000, 40, 0.2, 1)]     // SpMV split over threads, many short and some empty rows
    [InlineData(300, 300, 0.1, 1)]     // SpMV below the parallel threshold (one chunk)
    [InlineData(257, 300, 0.3, 128)]
    [InlineData(64, 70000, 0.001, 3)]  // K > 65536: 32-bit indices only
    [InlineData(5, 9000, 0.9, 17)]     // rows longer than one stack segment (bitmap, zero-skipping)
    [InlineData(200, 1300, 0.3, 200)]  // CSR blocked along K (dense-enough rows, K×tile panel beyond L2 budget)
    [InlineData(400, 48, 0.5, 33)]     // CSR over packed X: one 33-column panel (row stride 48), a scalar column
    [InlineData(2000, 20, 0.1, 200)]   // packed X: panels of 128 and 72 columns; ~12% empty rows
    [InlineData(200, 3000, 0.05, 128)] // packed X, tile narrowed to 64 for long K: two panels
    [InlineData(300, 1000, 0.1, 64)]   // N = 64: one tile over all of K
    [InlineData(97, 600, 0.07, 130)]   // a 128-column tile and a 2-column scalar tile
    [InlineData(1, 2000, 0.5, 100)]    // one row, K blocked (dense row)
    [InlineData(150, 257, 0.9, 64)]    // dense-ish rows, K = 257
    public void LargerShapesMatchDenseReference(int m, int k, double density, int n) => CheckAllFormats(m, k, density, n, 99);

    [Theory]
    [InlineData(2, 4, 0, 0, 5)]
    [InlineData(2, 4, 1, 4, 1)]
    [InlineData(2, 4, 3, 12, 16)]     // K/2 not a multiple of 4: general index decoding
    [InlineData(2, 4, 37, 64, 130)]
    [InlineData(2, 4, 200, 768, 128)]
    [InlineData(1, 4, 19, 40, 33)]
    [InlineData(2, 8, 23, 80, 1)]
    [InlineData(2, 8, 23, 80, 64)]
    [InlineData(3, 8, 10, 9000, 17)]  // rows longer than one stack segment
    [InlineData(5, 16, 7, 96, 20)]
    [InlineData(2, 4, 16, 8, 16)]      // 2:4 register-blocked path (16-row blocks): smallest case
    [InlineData(2, 4, 35, 264, 37)]    // blocked path: 3 leftover rows, N not a multiple of 16, K over one K block (scalar S packing)
    [InlineData(2, 4, 48, 1032, 300)]  // blocked path: several K blocks, padded last tile (scalar S packing)
    [InlineData(2, 4, 33, 288, 40)]    // blocked path, gathered S packing: a short last K block (8 groups)
    [InlineData(2, 4, 35, 1280, 530)]  // blocked path, gathered S packing: 5 K blocks, two column panels, leftover rows
    [InlineData(2, 4, 32, 12, 64)]     // K not a multiple of 8: per-row path
    [InlineData(2, 4, 3, 32, 1)]       // 2:4 SpMV permute path: one 16-value step per row
    [InlineData(2, 4, 37, 96, 1)]      // 2:4 SpMV permute path: odd step count (tail step)
    [InlineData(2, 4, 40, 768, 1)]     // 2:4 SpMV permute path: even step count
    [InlineData(2, 4, 7, 96, 1)]       // 2:4 SpMV: seven rows, three steps each (odd count)
    [InlineData(2, 4, 17, 296, 20)]    // blocked path, K % 32 != 0: scalar packing of S's block
    [InlineData(2, 4, 37, 264, 64)]    // 2:4 L1-tiled path (N % 64 == 0): three K blocks, the last 8 columns
    [InlineData(2, 4, 1, 136, 128)]    // L1-tiled path, one row: two 64-column panels, a 128- and an 8-column K block
    [InlineData(2, 4, 5, 8, 192)]      // L1-tiled path, K = 8: one index byte per row, three panels
    [InlineData(2, 4, 40, 1024, 512)]  // L1-tiled path, several chunks over threads
    public void NmKernelMatchesDenseReference(int keep, int group, int m, int k, int n)
    {
        var dense = SparseTestData.RandomDense(m, k, 1, (ulong)(m + k + n));
        var nm = NmSparseMatrix.Prune(dense, m, k, keep, group);
        var pruned = nm.ToDense();
        var x = SparseTestData.RandomDense(k, n, 1, 5);
        var (yRef, abs) = Reference(pruned, m, k, x, n, false);
        var y = Poisoned(m * n);
        NmSpmm.Multiply(nm, x, n, y);
        AssertClose(yRef, abs, y, $"{keep}:{group} S·X {m}x{k} N={n}");
    }

    [Theory]
    [InlineData(8, 12, 1, 1, 5)]
    [InlineData(8, 12, 2, 3, 16)]
    [InlineData(64, 96, 4, 4, 130)]
    [InlineData(128, 1536, 8, 1, 1)]
    [InlineData(32, 64, 4, 8, 40)]     // register-blocked: two 16-column tiles of 4 rows, 8 scalar columns
    [InlineData(24, 48, 6, 2, 80)]     // 6-row blocks: 4 rows at once + 2 single rows; a 64- and a 16-column tile
    [InlineData(12, 30, 3, 5, 64)]     // 3-row blocks: single rows only
    [InlineData(16, 16, 4, 4, 17)]     // one 16-column tile + 1 scalar column
    [InlineData(200, 256, 4, 4, 128)]  // several chunks over threads
    public void BsrKernelMatchesDenseReference(int m, int k, int br, int bc, int n)
    {
        // Block-structured pattern: about a quarter of the blocks present, each partly filled.
        var blocks = SparseTestData.RandomDense(m / br, k / bc, 0.25, 3);
        var fill = SparseTestData.RandomDense(m, k, 0.7, 4);
        var dense = new float[m * k];
        for (int i = 0; i < m; i++) for (int j = 0; j < k; j++) if (blocks[(i / br) * (k / bc) + j / bc] != 0) dense[i * k + j] = fill[i * k + j];
        var x = SparseTestData.RandomDense(k, n, 1, 6);
        var (yRef, abs) = Reference(dense, m, k, x, n, false);
        foreach (bool shortIdx in new[] { true, false })
        {
            var y = Poisoned(m * n);
            BsrSpmm.Multiply(BsrMatrix.FromDense(dense, m, k, br, bc, shortIdx), x, n, y);
            AssertClose(yRef, abs, y, $"BSR {br}x{bc} S·X {m}x{k} N={n} short={shortIdx}");
        }
    }

    [Property(MaxTest = 60)]
    public bool SddmmMatchesDenseProductAtTheNonzeros(int a, int b, int c, int dPick)
    {
        var (m, k, density) = SparseTestData.Shape(a, b, c, 40);
        int d = Ns[Math.Abs(dPick % Ns.Length)];
        CheckSddmm(m, k, density, d, (ulong)(a + b + c));
        return true;
    }

    [Theory]
    [InlineData(400, 700, 0.1, 128)]
    [InlineData(100, 70000, 0.001, 20)]
    [InlineData(1000, 100, 0.2, 40)]   // B packed into aligned rows of 48 (D not a multiple of 16: scalar tail)
    [InlineData(400, 1600, 0.05, 200)] // B packed, K×D beyond L2 (one panel: splitting D measured slower)
    [InlineData(2000, 300, 0.05, 1)]   // D = 1 (scalar products), split over threads
    [InlineData(90, 1600, 0.1, 130)]   // B beyond the L2 budget: 256-row K blocks (short last block), D % 16 != 0
    [InlineData(1, 2000, 0.6, 100)]    // K-blocked, one row: runs of 4 split across block edges
    [InlineData(900, 800, 0.05, 256)]  // B beyond the budget but M > K: unblocked
    [InlineData(300, 700, 0.08, 512)]  // K-blocked at D = 512 (B 1.4 MiB), several chunks
    public void SddmmLargerShapes(int m, int k, double density, int d) => CheckSddmm(m, k, density, d, 8);

    [Fact]
    public void SddmmKBlockedWithMoreRowsPerChunkThanTheCursorsHold()
    {
        // 40000 rows, K = 40000, D = 16 (B 2.4 MiB): K-blocked; a chunk holds more than the 16384 rows whose cursors
        // fit on the stack at once, so rows are taken in several runs, each copying B's blocks again.
        const int m = 40000, k = 40000, d = 16;
        var rng = new Rng(31);
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            var picked = new SortedSet<int>();
            int count = i % 5;
            while (picked.Count < count) picked.Add((int)(rng.NextDouble() * k));
            columns.AddRange(picked);
            rowPointers[i + 1] = columns.Count;
        }
        var values = new float[columns.Count];
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), values);
        var a = SparseTestData.RandomDense(m, d, 1, 32);
        var b = SparseTestData.RandomDense(k, d, 1, 33);
        var output = Poisoned(s.NonZeroCount);
        Sddmm.Compute(s, a, b, d, output);
        SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, d, output);
    }

    static void CheckSddmm(int m, int k, double density, int d, ulong seed)
    {
        var pattern = SparseTestData.RandomDense(m, k, density, seed);
        var a = SparseTestData.RandomDense(m, d, 1, seed + 1);
        var bm = SparseTestData.RandomDense(k, d, 1, seed + 2);
        foreach (bool shortIdx in k <= 65536 ? new[] { true, false } : new[] { false })
        {
            var s = CsrMatrix.FromDense(pattern, m, k, shortIdx);
            var output = Poisoned(s.NonZeroCount);
            Sddmm.Compute(s, a, bm, d, output);
            for (int i = 0; i < m; i++)
                for (int p = s.RowPointers[i]; p < s.RowPointers[i + 1]; p++)
                {
                    int j = s.ColumnIndex(p);
                    double sum = 0, abs = 0;
                    for (int t = 0; t < d; t++) { sum += (double)a[i * d + t] * bm[j * d + t]; abs += Math.Abs((double)a[i * d + t] * bm[j * d + t]); }
                    Assert.True(Math.Abs(output[p] - sum) <= 1e-5 * abs + 1e-6, $"SDDMM ({i},{j}) d={d}: got {output[p]}, expected {sum}");
                }
        }
    }

    [Fact]
    public void KernelsRejectShortBuffersNamingTheOperand()
    {
        var s = CsrMatrix.FromDense(new float[] { 1, 0, 0, 2 }, 2, 2);
        var e = Assert.Throws<ArgumentException>(() => CsrSpmm.Multiply(s, new float[3], 2, new float[4]));
        Assert.Contains("X has 3 elements", e.Message);
        e = Assert.Throws<ArgumentException>(() => Sddmm.Compute(s, new float[4], new float[4], 2, new float[1]));
        Assert.Contains("output", e.Message);
    }

    [Fact]
    public void KernelsAllocateNothing()
    {
        var dense = SparseTestData.RandomDense(256, 512, 0.1, 1);
        var csr = CsrMatrix.FromDense(dense, 256, 512);
        var nm = NmSparseMatrix.Prune(dense, 256, 512, 2, 4);
        var x = SparseTestData.RandomDense(512, 64, 1, 2);
        var xt = SparseTestData.RandomDense(256, 64, 1, 3);
        var y = new float[256 * 64];
        var yt = new float[512 * 64];
        var grad = new float[csr.NonZeroCount];
        void All()
        {
            CsrSpmm.Multiply(csr, x, 64, y);
            CsrSpmm.Multiply(csr, x, 1, y);
            CsrSpmmTransposed.Multiply(csr, xt, 64, yt);
            Sddmm.Compute(csr, y, x, 64, grad);
            NmSpmm.Multiply(nm, x, 64, y);
            ZeroSkippingGemm.Multiply(256, 64, 512, dense, x, y);
        }
        All();
        Assert.Equal(0, Allocations.SteadyState(() => { for (int r = 0; r < 3; r++) All(); }));
    }
}
