using FsCheck.Xunit;
using NanoSparse.Sparse;

namespace NanoSparse.Tests.Sparse;

public class FormatRoundTripTests
{
    [Property(MaxTest = 200)]
    public bool CsrRoundTripsDense(int a, int b, int c, bool shortIndices)
    {
        var (rows, cols, d) = SparseTestData.Shape(a, b, c);
        var dense = SparseTestData.RandomDense(rows, cols, d, (ulong)(a ^ b * 31 ^ c * 7));
        var csr = CsrMatrix.FromDense(dense, rows, cols, shortIndices);
        return csr.HasShortIndices == shortIndices && csr.ToDense().AsSpan().SequenceEqual(dense)
            && csr.NonZeroCount == dense.Count(v => v != 0);
    }

    [Property(MaxTest = 200)]
    public bool CooRoundTripsDenseAndCsr(int a, int b, int c)
    {
        var (rows, cols, d) = SparseTestData.Shape(a, b, c);
        var dense = SparseTestData.RandomDense(rows, cols, d, (ulong)(a * 3 + b + c));
        var coo = CooMatrix.FromDense(dense, rows, cols);
        return coo.ToDense().AsSpan().SequenceEqual(dense) && coo.ToCsr().ToDense().AsSpan().SequenceEqual(dense);
    }

    [Property(MaxTest = 200)]
    public bool CscRoundTripsDenseAndCsr(int a, int b, int c, bool shortIndices)
    {
        var (rows, cols, d) = SparseTestData.Shape(a, b, c);
        var dense = SparseTestData.RandomDense(rows, cols, d, (ulong)(a + b * 5 + c));
        var csc = CscMatrix.FromDense(dense, rows, cols, shortIndices);
        return csc.HasShortIndices == shortIndices && csc.ToDense().AsSpan().SequenceEqual(dense)
            && csc.ToCsr().ToDense().AsSpan().SequenceEqual(dense);
    }

    [Property(MaxTest = 200)]
    public bool BsrRoundTripsDense(int a, int b, int c, int blockShape)
    {
        int br = 1 + Math.Abs(blockShape % 4), bc = 1 + Math.Abs(blockShape / 4 % 4);
        var (r, k, d) = SparseTestData.Shape(a, b, c, 6);
        int rows = r * br, cols = k * bc;
        var dense = SparseTestData.RandomDense(rows, cols, d, (ulong)(a + b + c * 11));
        var bsr = BsrMatrix.FromDense(dense, rows, cols, br, bc);
        return bsr.ToDense().AsSpan().SequenceEqual(dense) && bsr.ToCsr().ToDense().AsSpan().SequenceEqual(dense);
    }

    [Property(MaxTest = 200)]
    public bool BitmapRoundTripsDense(int a, int b, int c)
    {
        var (rows, cols, d) = SparseTestData.Shape(a, b, c, 150);
        var dense = SparseTestData.RandomDense(rows, cols, d, (ulong)(a + b * 13 + c));
        var bitmap = BitmapMatrix.FromDense(dense, rows, cols);
        return bitmap.ToDense().AsSpan().SequenceEqual(dense) && bitmap.ToCsr().ToDense().AsSpan().SequenceEqual(dense)
            && BitmapMatrix.FromCsr(CsrMatrix.FromDense(dense, rows, cols)).ToDense().AsSpan().SequenceEqual(dense);
    }

    [Property(MaxTest = 200)]
    public bool SellRoundTripsDenseAndCsr(int a, int b, int c)
    {
        // Up to 150 rows and columns: several slices of 16 rows and blocks of 32 columns, partial ones included.
        var (rows, cols, d) = SparseTestData.Shape(a, b, c, 150);
        var dense = SparseTestData.RandomDense(rows, cols, d, (ulong)(a * 17 + b + c * 3));
        var sell = SellMatrix.FromDense(dense, rows, cols);
        return sell.ToDense().AsSpan().SequenceEqual(dense) && sell.ToCsr().ToDense().AsSpan().SequenceEqual(dense)
            && sell.NonZeroCount == dense.Count(v => v != 0) && sell.StoredSlots >= sell.NonZeroCount
            && sell.Validate() == sell.NonZeroCount;
    }

    [Theory]
    [InlineData(2, 4)]
    [InlineData(1, 4)]
    [InlineData(2, 8)]
    [InlineData(3, 8)]
    [InlineData(1, 2)]
    [InlineData(4, 4)]
    [InlineData(5, 16)]
    public void NmPruneKeepsLargestAndRoundTrips(int n, int m)
    {
        foreach (var (rows, groups) in new[] { (0, 3), (3, 0), (1, 1), (7, 5), (16, 24) })
        {
            int cols = groups * m;
            var dense = SparseTestData.RandomDense(rows, cols, 0.9, (ulong)(rows * 100 + cols + n));
            var nm = NmSparseMatrix.Prune(dense, rows, cols, n, m);
            var pruned = nm.ToDense();
            for (int i = 0; i < rows; i++)
                for (int g = 0; g < groups; g++)
                {
                    // Reference: a kept value is never smaller in magnitude than a dropped one of its group.
                    var kept = new List<float>();
                    var dropped = new List<float>();
                    for (int j = 0; j < m; j++)
                    {
                        int at = i * cols + g * m + j;
                        if (pruned[at] == dense[at] && pruned[at] != 0) kept.Add(MathF.Abs(dense[at]));
                        else if (pruned[at] == 0) dropped.Add(MathF.Abs(dense[at]));
                        else Assert.Fail($"pruned value differs at {at}");
                    }
                    Assert.True(kept.Count <= n);
                    if (kept.Count > 0 && dropped.Count > 0) Assert.True(kept.Min() >= dropped.Max());
                }
            // Exact conversion of an N:M-conforming matrix round-trips.
            var exact = NmSparseMatrix.FromDense(pruned, rows, cols, n, m);
            Assert.Equal(pruned, exact.ToDense());
            Assert.Equal(pruned, NmSparseMatrix.FromCsr(exact.ToCsr(), n, m).ToDense());
        }
    }

    [Fact]
    public void TripletsWithDuplicatesAreSummed()
    {
        int[] r = [2, 0, 2, 1, 0, 2];
        int[] c = [1, 3, 1, 0, 3, 0];
        float[] v = [1f, 2f, 10f, 4f, -2f, 5f];
        var csr = CsrMatrix.FromTriplets(3, 4, r, c, v);
        var expected = new float[12];
        for (int p = 0; p < r.Length; p++) expected[r[p] * 4 + c[p]] += v[p];
        Assert.Equal(expected, csr.ToDense());
        Assert.Equal(4, csr.NonZeroCount); // (0,3) sums to an explicit zero, kept
        Assert.Equal([0, 1, 2, 4], csr.RowPointers);
    }

    [Property(MaxTest = 100)]
    public bool TripletsMatchDenseAccumulation(int a, int b, int c)
    {
        var (rows, cols, _) = SparseTestData.Shape(a, b, c);
        if (rows == 0 || cols == 0) return true;
        var rng = new NanoSparse.Numerics.Rng((ulong)(a + 7 * b + 13 * c));
        int count = Math.Abs(c % 60);
        var ri = new int[count]; var ci = new int[count]; var vi = new float[count];
        var expected = new double[rows * cols];
        for (int p = 0; p < count; p++)
        {
            ri[p] = rng.NextInt(rows); ci[p] = rng.NextInt(cols); vi[p] = rng.NextInt(9) - 4;
            expected[ri[p] * cols + ci[p]] += vi[p];
        }
        var dense = CooMatrix.FromTriplets(rows, cols, ri, ci, vi).ToDense();
        return dense.Select(x => (double)x).SequenceEqual(expected);
    }

    [Fact]
    public void TransposeMatchesDenseTranspose()
    {
        var dense = SparseTestData.RandomDense(7, 5, 0.4, 3);
        var t = CsrMatrix.FromDense(dense, 7, 5).Transpose().ToDense();
        for (int i = 0; i < 7; i++) for (int j = 0; j < 5; j++) Assert.Equal(dense[i * 5 + j], t[j * 7 + i]);
    }

    [Fact]
    public void FootprintsCountMetadataAndBreakEvenIsWhereBytesMatchDense()
    {
        var dense = SparseTestData.RandomDense(64, 96, 0.1, 5);
        var csr = CsrMatrix.FromDense(dense, 64, 96);
        Assert.Equal(4 * 65 + csr.NonZeroCount * 6, csr.FootprintBytes);
        Assert.Equal(4 * 65 + csr.NonZeroCount * 8, csr.WithIndexWidth(false).FootprintBytes);
        double d = CsrMatrix.BreakEvenDensity(64, 96, true);
        Assert.Equal(DenseFootprint.Bytes(64, 96), CsrMatrix.Footprint(64, (long)Math.Round(d * 64 * 96), true), 8.0);
        Assert.Equal(12 * csr.NonZeroCount, csr.ToCoo().FootprintBytes);
        var nm = NmSparseMatrix.Prune(dense, 64, 96, 2, 4);
        Assert.Equal(4L * 64 * 48 + (64 * 48 * 2 + 7) / 8 + 1, nm.FootprintBytes);
        var bitmap = BitmapMatrix.FromDense(dense, 64, 96);
        Assert.Equal(8 * 64 * 2 + 4 * 65 + 4 * csr.NonZeroCount, bitmap.FootprintBytes);
        var bsr = BsrMatrix.FromDense(dense, 64, 96, 4, 4);
        Assert.Equal(4 * 17 + bsr.BlockCount * (64 + 2), bsr.FootprintBytes);
    }

    [Fact]
    public void SixteenBitIndicesChosenWhenTheDimensionAllows()
    {
        Assert.True(CsrMatrix.FromDense(new float[65536], 1, 65536).HasShortIndices);
        Assert.False(CsrMatrix.FromDense(new float[65537], 1, 65537).HasShortIndices);
        var dense = new float[65537];
        dense[65536] = 3;
        var wide = CsrMatrix.FromDense(dense, 1, 65537);
        Assert.Equal(65536, wide.ColumnIndex(0));
        Assert.Throws<SparseFormatException>(() => CsrMatrix.FromDense(dense, 1, 65537, shortIndices: true));
    }
}
