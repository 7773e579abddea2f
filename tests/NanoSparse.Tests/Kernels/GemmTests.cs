using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

// KernelThreads.Max is process-wide: tests that change it must not run beside other Gemm tests.
[CollectionDefinition(nameof(GemmCollection), DisableParallelization = true)]
public sealed class GemmCollection;

[Collection(nameof(GemmCollection))]
public sealed class GemmTests
{
    /// <summary>C = alpha·op(A)·op(B) + beta·C in double precision, straight from the definition.</summary>
    static double[] Reference(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        var result = new double[m * n];
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double sum = 0;
            for (int p = 0; p < k; p++)
            {
                double av = transA ? a[p * lda + i] : a[i * lda + p];
                double bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                sum += av * bv;
            }
            result[i * n + j] = alpha * sum + (beta == 0 ? 0 : beta * (double)c[i * ldc + j]);
        }
        return result;
    }

    static float[] Random(int length, Random rng)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Runs Gemm on random operands with padded leading dimensions and compares with the reference.</summary>
    static void Check(bool transA, bool transB, int m, int n, int k, float alpha, float beta, int pad = 0, int seed = 1)
    {
        var rng = new Random(seed);
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        var a = Random(Math.Max(1, aRows * lda), rng);
        var b = Random(Math.Max(1, bRows * ldb), rng);
        var c = beta == 0 ? Enumerable.Repeat(float.NaN, Math.Max(1, m * ldc)).ToArray() : Random(Math.Max(1, m * ldc), rng);
        var expected = Reference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        var cBefore = (float[])c.Clone();

        Gemm.Multiply(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

        // Entries are O(|alpha|·sqrt(k) + |beta|); fp32 rounding grows like sqrt(k) relative to that.
        double rootK = Math.Sqrt(Math.Max(k, 1));
        double tolerance = 2e-6 * rootK * (Math.Abs(alpha) * rootK + Math.Abs(beta)) + 1e-6;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double got = c[i * ldc + j], want = expected[i * n + j];
                Assert.True(Math.Abs(got - want) <= tolerance + 1e-5 * Math.Abs(want),
                    $"{(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} m={m} n={n} k={k} alpha={alpha} beta={beta}: C[{i},{j}] = {got}, expected {want}");
            }
            // Padding between rows of C stays untouched.
            for (int j = n; j < ldc && i * ldc + j < c.Length; j++)
                Assert.Equal(cBefore[i * ldc + j], c[i * ldc + j]);
        }
    }

    public static IEnumerable<object[]> Shapes()
    {
        int[][] shapes =
        [
            [1, 1, 1], [1, 7, 13], [7, 1, 13], [7, 13, 1], [7, 13, 31], [31, 97, 13], [97, 131, 7],
            [13, 31, 97], [131, 97, 31], [6, 32, 5], [12, 64, 256], [17, 33, 257], [65, 200, 300],
            [300, 257, 515], [5, 700, 600], [250, 40, 1100],
            [29, 85, 77], [14, 20, 300], [40, 53, 300], [25, 100, 90],   // column tails of 21, 20, 21 and 4
        ];
        foreach (var s in shapes)
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
            yield return [ta, tb, s[0], s[1], s[2]];
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesDoubleReferenceForEveryTransposeAndAwkwardShape(bool transA, bool transB, int m, int n, int k)
    {
        Check(transA, transB, m, n, k, alpha: 1, beta: 0);
        Check(transA, transB, m, n, k, alpha: 0.5f, beta: 1, pad: 3, seed: 2);
    }

    // Full 12-row panels of op(A) are read in place: A row-major through the rows kernel when n is a multiple of 32,
    // Aᵀ with each k step a run of 12 stored floats. Partial last panels, edge columns, several k slices and padded
    // rows mix the in-place and packed paths; row strides of 1024 (rows kernel) or over 1024 (Aᵀ) take the packed path.
    [Theory]
    [InlineData(false, true, 61, 96, 300, 0)]
    [InlineData(false, false, 50, 64, 520, 3)]
    [InlineData(false, true, 36, 64, 64, 0)]
    [InlineData(true, false, 61, 40, 300, 0)]
    [InlineData(true, true, 100, 64, 270, 5)]
    [InlineData(false, true, 24, 32, 1024, 0)]
    [InlineData(true, false, 30, 32, 100, 1000)]
    public void ReadsFullPanelsOfAInPlace(bool transA, bool transB, int m, int n, int k, int pad)
    {
        Check(transA, transB, m, n, k, 0.5f, 0f, pad);
        Check(transA, transB, m, n, k, -1.25f, 1.5f, pad, seed: 2);
    }

    [Theory]
    [InlineData(1f, 1f)]
    [InlineData(-2f, 0.25f)]
    [InlineData(0.75f, -1f)]
    [InlineData(1.5f, 0f)]
    public void AppliesAlphaAndBeta(float alpha, float beta)
    {
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        {
            Check(ta, tb, 37, 71, 45, alpha, beta, pad: 5);
            Check(ta, tb, 200, 130, 300, alpha, beta, pad: 1);
        }
    }

    [Theory]
    [InlineData(false, true, 7, 13, 5, true)]        // tiny: the direct loops, then the epilogue pass
    [InlineData(false, true, 97, 85, 131, true)]     // packed, edge tiles in both directions
    [InlineData(false, false, 97, 85, 131, false)]
    [InlineData(true, false, 40, 53, 300, true)]
    [InlineData(false, false, 384, 512, 128, false)] // several row items and a shared op(B) pack
    [InlineData(true, true, 130, 100, 600, false)]   // k sliced: the epilogue runs once, after the last slice
    public void EpiloguesAddOrMultiplyTheFinishedProduct(bool transA, bool transB, int m, int n, int k, bool add)
    {
        var rng = new Random(m + n + k);
        int lda = (transA ? m : k) + 1, ldb = (transB ? k : n) + 2, ldc = n + 3, lde = n + 1;
        var a = Random((transA ? k : m) * lda, rng);
        var b = Random((transB ? n : k) * ldb, rng);
        var e = Random(m * lde, rng);
        var c = Enumerable.Repeat(float.NaN, m * ldc).ToArray();
        var product = Reference(transA, transB, m, n, k, 0.5f, a, lda, b, ldb, 0f, new float[m * n], n);
        if (add) Gemm.MultiplyAdd(transA, transB, m, n, k, 0.5f, a, lda, b, ldb, e, lde, c, ldc);
        else Gemm.MultiplyScaled(transA, transB, m, n, k, 0.5f, a, lda, b, ldb, e, lde, c, ldc);
        double tolerance = 2e-6 * k + 1e-5;
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double want = add ? product[i * n + j] + e[i * lde + j] : product[i * n + j] * e[i * lde + j];
            Assert.True(Math.Abs(c[i * ldc + j] - want) <= tolerance * (1 + Math.Abs(want)),
                $"{(add ? "add" : "multiply")} C[{i},{j}] = {c[i * ldc + j]}, expected {want}");
        }
    }

    [Fact]
    public void EpilogueMatrixMustNotOverlapC()
    {
        var a = new float[64 * 64];
        var c = new float[64 * 64];
        var ex = Assert.Throws<ArgumentException>(() => Gemm.MultiplyAdd(false, false, 64, 64, 64, 1f, a, 64, a, 64, c, 64, c, 64));
        Assert.Contains("overlap", ex.Message);
        Assert.Throws<ArgumentException>(() => Gemm.MultiplyScaled(false, false, 64, 64, 64, 1f, a, 64, a, 64, new float[10], 64, c, 64));
    }

    [Fact]
    public void BetaZeroIgnoresNaNInC()
    {
        // Check fills C with NaN when beta == 0; both the small path and the packed path.
        Check(false, false, 3, 4, 5, 1, 0);
        Check(true, true, 100, 100, 100, 1, 0);
    }

    [Fact]
    public void ZeroDepthScalesC()
    {
        var c = new float[] { 1, 2, 3, 4 };
        Gemm.Multiply(false, false, 2, 2, 0, 1, [], 1, [], 2, 2, c, 2);
        Assert.Equal(new float[] { 2, 4, 6, 8 }, c);
        var d = new float[] { float.NaN, float.NaN };
        Gemm.Multiply(false, false, 1, 2, 0, 1, [], 1, [], 2, 0, d, 2);
        Assert.Equal(new float[] { 0, 0 }, d);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void ThreadCountDoesNotChangeResult(int threads)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            Check(false, true, 768, 384, 128, 1, 0);    // forward of a baby Linear: split over rows
            Check(true, false, 100, 384, 700, 1, 1);    // dW of lm_head: wide and short, split over columns
            Check(false, false, 301, 130, 257, 1, 0.5f);
            Check(true, true, 50, 600, 300, -1, 0);
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ItemsPackingTheirOwnBMatchReference(int threads)
    {
        // With the shared-pack limit at 0 every work item packs its own blocks of op(B) (the path for huge op(B)).
        int savedThreads = KernelThreads.Max;
        long savedLimit = Gemm.SharedPackLimit;
        try
        {
            KernelThreads.Max = threads;
            Gemm.SharedPackLimit = 0;
            foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
            {
                Check(ta, tb, 400, 100, 300, 1, 0);
                Check(ta, tb, 30, 600, 520, 0.5f, 2, pad: 2);
            }
        }
        finally
        {
            KernelThreads.Max = savedThreads;
            Gemm.SharedPackLimit = savedLimit;
        }
    }

    [Fact]
    public void SecondCallAllocatesNothing()
    {
        const int size = 512;
        var a = new float[size * size];
        var b = new float[size * size];
        var c = new float[size * size];
        for (int i = 0; i < a.Length; i++) { a[i] = i % 7; b[i] = i % 5; }
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
            Gemm.Multiply(ta, tb, size, size, size, 1, a, size, b, size, 0, c, size);

        Assert.Equal(0, Allocations.SteadyState(() =>
        {
            for (int t = 0; t < 4; t++)
                Gemm.Multiply(t % 2 == 1, t / 2 == 1, size, size, size, 1, a, size, b, size, 1, c, size);
        }));
    }

    [Fact]
    public void RejectsTooShortOperandsNamingThem()
    {
        var a = new float[7];
        var b = new float[12];
        var c = new float[6];
        var e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 3, 4, 1, a, 4, b, 3, 0, c, 3));
        Assert.Contains("a has 7 elements", e.Message);
        var f = Assert.ThrowsAny<ArgumentException>(() => Gemm.Multiply(false, false, 2, 3, 4, 1, new float[8], 4, b, 2, 0, c, 3));
        Assert.Contains("ldb", f.Message);
    }
}
