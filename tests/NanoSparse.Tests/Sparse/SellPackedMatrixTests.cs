using NanoSparse.Sparse;

namespace NanoSparse.Tests.Sparse;

/// <summary>SELL-128 without padding: round trips against the dense matrix it came from, its bytes against SELL-128-σ's, and the invariants its validation names.</summary>
public class SellPackedMatrixTests
{
    [Theory]
    [InlineData(1, 1, 1.0)]
    [InlineData(17, 300, 0.1)]      // partial slice and block
    [InlineData(40, 600, 0.9)]      // nearly dense
    [InlineData(64, 256, 1.0)]      // full blocks: 128 entries per lane, every step full
    [InlineData(33, 520, 0.02)]     // many empty (slice, block)s and rows
    [InlineData(50, 70, 0.0)]       // no entries at all
    public void RoundTripsTheDenseMatrix(int rows, int cols, double density)
    {
        foreach (int window in new[] { 1, 32 })
        {
            var dense = SparseTestData.RandomDense(rows, cols, density, (ulong)(rows * 7 + cols));
            var m = SellPackedMatrix.FromDense(dense, rows, cols, window);
            Assert.Equal(dense, m.ToDense());
            Assert.Equal(dense.Count(v => v != 0), m.NonZeroCount);
            // No padding: the streams hold exactly the entries.
            Assert.Equal(m.NonZeroCount, 16L * m.FullStart[^1] + m.TailStart[^1]);
        }
    }

    [Fact]
    public void ReadsAFifthFewerBytesThanSell128AtTenPercent()
    {
        // The reason for the format: SELL-128-σ reads ~6.5 bytes per value at 10% density, this one 5 plus its headers.
        var dense = SparseTestData.RandomDense(3072, 768, 0.1, 5);
        var packed = SellPackedMatrix.FromDense(dense, 3072, 768, SellRowOrder.DefaultWindow);
        var sell = SellWideMatrix.FromDense(dense, 3072, 768, 128, SellRowOrder.DefaultWindow);
        double perValue = (double)packed.BytesRead / packed.NonZeroCount;
        Assert.InRange(perValue, 5.0, 5.3);
        Assert.True(packed.BytesRead < 0.85 * sell.BytesRead, $"packed {packed.BytesRead} bytes, SELL-128-σ {sell.BytesRead}");
    }

    static void Rejects(string invariant, Action build)
    {
        var e = Assert.Throws<SparseFormatException>(build);
        Assert.Equal(invariant, e.Invariant);
    }

    [Fact]
    public void RejectsBrokenStructure()
    {
        // 20×300: two slices (the second with 4 real rows), three blocks (the last with 44 real columns).
        // Row 0: columns 0, 5 (block 0) and 257 (block 2); row 1: column 9; row 17: column 1.
        var dense = new float[20 * 300];
        dense[0] = 1; dense[5] = 2; dense[257] = 3; dense[300 + 9] = 5; dense[17 * 300 + 1] = 4;
        var good = SellPackedMatrix.FromDense(dense, 20, 300);
        SellPackedMatrix Build(Action<byte[], int[], int[], byte[], float[], byte[], float[]> mutate, int[]? order = null)
        {
            var h = (byte[])good.Headers.Clone();
            var fs = (int[])good.FullStart.Clone();
            var ts = (int[])good.TailStart.Clone();
            var fi = good.FullIndices.ToArray(); var fv = good.FullValues.ToArray();
            var ti = good.TailIndices.ToArray(); var tv = good.TailValues.ToArray();
            mutate(h, fs, ts, fi, fv, ti, tv);
            return new SellPackedMatrix(20, 300, h, fs, ts, fi, fv, ti, tv, order);
        }
        Assert.Equal(5, Build((_, _, _, _, _, _, _) => { }).NonZeroCount);
        // Slice 0, block 0: row lane 0 holds 2 entries, row lane 1 one: block lanes 0 and 1, all in the tail (the shortest lane is empty).
        Assert.Equal(new byte[] { 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, good.Headers.AsSpan(0, 16).ToArray());
        Assert.Equal(0, good.FullStart[^1]);
        Rejects("headers length = 32 x slices x blocks", () => new SellPackedMatrix(20, 300, new byte[32 * 5], [0, 0, 0], [0, 0, 0], [], [], [], []));
        Rejects("full and tail starts of length slices + 1", () => new SellPackedMatrix(20, 300, new byte[32 * 6], [0, 0], [0, 0, 0], [], [], [], []));
        Rejects("starts begin at 0", () => Build((_, fs, _, _, _, _, _) => fs[0] = 1));
        Rejects("lane counts longest first", () => Build((h, _, _, _, _, _, _) => { h[0] = 1; h[1] = 2; }));
        Rejects("placements are a permutation of the 16 lanes", () => Build((h, _, _, _, _, _, _) => h[17] = 0));
        Rejects("placements are a permutation of the 16 lanes", () => Build((h, _, _, _, _, _, _) => h[17] = 16));
        Rejects("sorted unique columns per lane and block", () => Build((_, _, _, _, _, ti, _) => ti[2] = 0));   // row 0's second entry: column 5 -> 0
        Rejects("column index in range", () => Build((_, _, _, _, _, ti, _) => ti[3] = 50));                  // row 0's column 257 -> 306
        // slice 1, block 0: row lane 5 (row 21) swapped onto block lane 0, the lane with row 17's entry
        Rejects("rows past the last hold no entries", () => Build((h, _, _, _, _, _, _) => { h[32 * 3 + 16 + 5] = 0; h[32 * 3 + 16 + 1] = 5; }));
        Rejects("starts = steps and slots of the slices before", () => Build((_, _, ts, _, _, _, _) => ts[1]++));
        Rejects("tail streams = tail slots", () => new SellPackedMatrix(20, 300, good.Headers, good.FullStart, good.TailStart, [], [],
            [.. good.TailIndices.ToArray(), 0], [.. good.TailValues.ToArray(), 0f]));
        Rejects("row order is a permutation of the rows", () => Build((_, _, _, _, _, _, _) => { }, order: new int[20]));
    }
}
