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
    [InlineData(20, 17000, 0.01)]   // 133 and 266 blocks: block numbers past one byte
    public void RoundTripsTheDenseMatrix(int rows, int cols, double density)
    {
        foreach (int width in new[] { SellPackedMatrix.WideBlock, SellPackedMatrix.NarrowBlock })
        foreach (int window in new[] { 1, 32 })
        {
            var dense = SparseTestData.RandomDense(rows, cols, density, (ulong)(rows * 7 + cols));
            var m = SellPackedMatrix.FromDense(dense, rows, cols, window, width);
            Assert.Equal(width, m.BlockWidth);
            Assert.Equal((cols + width - 1) / width, m.Blocks);
            Assert.Equal(dense, m.ToDense());
            Assert.Equal(dense.Count(v => v != 0), m.NonZeroCount);
            // No padding: the stream holds exactly the entries, and the control stream's step widths add up to them.
            Assert.Equal(m.NonZeroCount, m.Values.Length);
            Assert.Equal(m.NonZeroCount, m.SlotStart[^1]);
            AssertControlMatchesHeaders(m);
        }
    }

    /// <summary>The kernel's control stream against the headers: per slice, a record for every block that holds
    /// entries and none other, in kernel order (t descending, ties by block); each with t = the longest count, the
    /// block, the placements, and widths k_u whose lanes-above-i counts give back each lane's count.</summary>
    static void AssertControlMatchesHeaders(SellPackedMatrix m)
    {
        const int H = SellPackedMatrix.SliceHeight;
        var control = m.Control;
        int at = 0;
        long steps = 0, slots = 0;
        for (int s = 0; s < m.Slices; s++)
        {
            Assert.Equal(m.ControlStart[s], at);
            var seen = new HashSet<int>();
            int lastT = int.MaxValue, lastB = -1;
            while (at < m.ControlStart[s + 1])
            {
                int t = control[at], b = control[at + 1] | control[at + 2] << 8;
                at += 3;
                Assert.True(b < m.Blocks && seen.Add(b), $"slice {s}: block {b} out of range or repeated");
                Assert.True(t < lastT || (t == lastT && b > lastB), $"slice {s}: block {b} (t = {t}) after block {lastB} (t = {lastT})");
                (lastT, lastB) = (t, b);
                var h = m.Headers.AsSpan(SellPackedMatrix.HeaderBytes * (s * m.Blocks + b), SellPackedMatrix.HeaderBytes);
                Assert.Equal(h[0], t);
                Assert.True(t > 0);
                Assert.Equal(h[H..].ToArray(), control.Slice(at, H).ToArray());
                at += H;
                var widths = control.Slice(at, t).ToArray();
                at += t;
                for (int i = 0; i < H; i++) Assert.Equal(h[i], widths.Count(k => k > i));
                steps += t;
                foreach (byte k in widths) slots += k;
            }
            for (int b = 0; b < m.Blocks; b++)
                Assert.Equal(m.Headers[SellPackedMatrix.HeaderBytes * (s * m.Blocks + b)] > 0, seen.Contains(b));
        }
        Assert.Equal(m.ControlStart[^1], at);
        Assert.Equal(control.Length, at);
        Assert.Equal(m.StepCount, steps);
        Assert.Equal(m.NonZeroCount, slots);
    }

    [Fact]
    public void StoresASlicesBlocksLongestFirst()
    {
        // 16×192 in 64-column blocks, all in row 0: block 0 one entry (t = 1), block 1 three (t = 3), block 2 two
        // (t = 2). The stream and the control records take block 1, then 2, then 0; the kernel's product is unchanged.
        var dense = new float[16 * 192];
        dense[10] = 1;
        dense[64 + 1] = 2; dense[64 + 2] = 3; dense[64 + 40] = 4;
        dense[128 + 5] = 5; dense[128 + 63] = 6;
        var m = SellPackedMatrix.FromDense(dense, 16, 192, blockWidth: SellPackedMatrix.NarrowBlock);
        Assert.Equal(new float[] { 2, 3, 4, 5, 6, 1 }, m.Values.ToArray());
        Assert.Equal(new byte[] { 1, 2, 40, 5, 63, 10 }, m.Indices.ToArray());
        var control = m.Control;
        Assert.Equal(new byte[] { 3, 1, 0 }, control[..3].ToArray());
        Assert.Equal(new byte[] { 2, 2, 0 }, control.Slice(SellPackedMatrix.RecordBytes + 3, 3).ToArray());
        Assert.Equal(new byte[] { 1, 0, 0 }, control.Slice(2 * SellPackedMatrix.RecordBytes + 5, 3).ToArray());
        AssertControlMatchesHeaders(m);
        Assert.Equal(dense, m.ToDense());
        var x = Enumerable.Range(0, 192).Select(i => (float)(i % 7) - 3).ToArray();
        var y = new float[16];
        NanoSparse.Kernels.Sparse.SellPackedSpmv.Multiply(m, x, y);
        double expected = 0;
        for (int c = 0; c < 192; c++) expected += (double)dense[c] * x[c];
        Assert.Equal((float)expected, y[0]);
        Assert.All(y[1..], v => Assert.Equal(0f, v));
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
        SellPackedMatrix Build(Action<byte[], byte[], float[]> mutate, int[]? order = null)
        {
            var h = (byte[])good.Headers.Clone();
            var idx = good.Indices.ToArray(); var val = good.Values.ToArray();
            mutate(h, idx, val);
            return new SellPackedMatrix(20, 300, h, idx, val, order);
        }
        Assert.Equal(5, Build((_, _, _) => { }).NonZeroCount);
        // Slice 0, block 0: row lane 0 holds 2 entries, row lane 1 one: block lanes 0 and 1. Then block 2 (row 0's
        // column 257) and slice 1's block 0 (row 17's column 1): the stream is columns 0, 9 (step 0), 5 (step 1), 257, 1.
        Assert.Equal(new byte[] { 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, good.Headers.AsSpan(0, 16).ToArray());
        Assert.Equal(new byte[] { 0, 9, 5, 1, 1 }, good.Indices.ToArray());
        Assert.Equal(new float[] { 1, 5, 2, 3, 4 }, good.Values.ToArray());
        // Control: per block that holds entries, t, the block (two bytes), the 16 placements and t step widths. Slice 0:
        // block 0 (t = 2, identity placement, widths 2, 1), then block 2 (t = 1, widths 1); slice 1: block 0 (row lane 1 first).
        byte[] identity = [.. Enumerable.Range(0, 16).Select(i => (byte)i)];
        byte[] rowLane1First = [1, 0, .. identity[2..]];
        byte[] control = [2, 0, 0, .. identity, 2, 1, 1, 2, 0, .. identity, 1, 1, 0, 0, .. rowLane1First, 1];
        Assert.Equal(control, good.Control.ToArray());
        Assert.Equal(new[] { 0, 4, 5 }, good.SlotStart);
        Assert.Equal(new[] { 0, 41, 61 }, good.ControlStart);
        Assert.Equal(4, good.StepCount);
        Rejects("headers length = 32 x slices x blocks", () => new SellPackedMatrix(20, 300, new byte[32 * 5], [], []));
        Rejects("lane counts longest first", () => Build((h, _, _) => { h[0] = 1; h[1] = 2; }));
        Rejects("placements are a permutation of the 16 lanes", () => Build((h, _, _) => h[17] = 0));
        Rejects("placements are a permutation of the 16 lanes", () => Build((h, _, _) => h[17] = 16));
        Rejects("sorted unique columns per lane and block", () => Build((_, idx, _) => idx[2] = 0));   // row 0's second entry: column 5 -> 0
        Rejects("column index in range", () => Build((_, idx, _) => idx[3] = 50));                   // row 0's column 257 -> 306
        // slice 1, block 0: row lane 5 (row 21) swapped onto block lane 0, the lane with row 17's entry
        Rejects("rows past the last hold no entries", () => Build((h, _, _) => { h[32 * 3 + 16 + 5] = 0; h[32 * 3 + 16 + 1] = 5; }));
        Rejects("streams = the headers' entries", () => new SellPackedMatrix(20, 300, good.Headers, [.. good.Indices.ToArray(), 0], [.. good.Values.ToArray(), 0f]));
        Rejects("streams = the headers' entries", () => new SellPackedMatrix(20, 300, good.Headers, good.Indices, good.Values[..4]));
        Rejects("streams = the headers' entries", () => Build((h, _, _) => h[1] = 2));   // a third entry counted in slice 0, block 0
        Rejects("row order is a permutation of the rows", () => Build((_, _, _) => { }, order: new int[20]));
        Rejects("block width 128 or 64", () => new SellPackedMatrix(20, 300, good.Headers, good.Indices, good.Values, blockWidth: 96));
        Rejects("block width 128 or 64", () => SellPackedMatrix.FromDense(dense, 20, 300, blockWidth: 32));
        // The same headers read as 64-column blocks: 20x300 has five blocks of 64, so the header length no longer fits.
        Rejects("headers length = 32 x slices x blocks", () => new SellPackedMatrix(20, 300, good.Headers, good.Indices, good.Values, blockWidth: 64));
        // A 64-column layout whose lane claims 65 entries in one block.
        var narrow = SellPackedMatrix.FromDense(new float[16 * 64], 16, 64, blockWidth: 64);
        var full = (byte[])narrow.Headers.Clone();
        full[0] = 65;
        Rejects("lane count <= block width", () => new SellPackedMatrix(16, 64, full, new byte[65], new float[65], blockWidth: 64));
        // A control record holds its block in two bytes: a row of more than 65,536 blocks is refused by name.
        int wide = 64 * (SellPackedMatrix.MaxBlocks + 1);
        Rejects($"at most {SellPackedMatrix.MaxBlocks} blocks", () => new SellPackedMatrix(1, wide, new byte[32 * (SellPackedMatrix.MaxBlocks + 1)], [], [], blockWidth: 64));
        Rejects($"at most {SellPackedMatrix.MaxBlocks} blocks", () => SellPackedMatrix.FromCsr(1, wide, [0, 0], _ => 0, [], blockWidth: 64));
    }
}
