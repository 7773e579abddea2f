using NanoSparse.Sparse;

namespace NanoSparse.Tests.Sparse;

/// <summary>Every kind of broken structure is rejected, and the message names the invariant.</summary>
public class ValidationTests
{
    static void Rejects(string invariant, Action build)
    {
        var e = Assert.Throws<SparseFormatException>(build);
        Assert.Equal(invariant, e.Invariant);
        Assert.Contains(invariant, e.Message);
    }

    [Fact]
    public void CsrRejectsBrokenStructure()
    {
        Rejects("row pointer length = rows + 1", () => new CsrMatrix(2, 3, [0, 1], new int[1], new float[1]));
        Rejects("row pointers start at 0", () => new CsrMatrix(2, 3, [1, 1, 2], new int[1], new float[1]));
        Rejects("monotone row pointers", () => new CsrMatrix(2, 3, [0, 2, 1], new int[1], new float[1]));
        Rejects("column index count = nnz", () => new CsrMatrix(2, 3, [0, 1, 2], new int[3], new float[2]));
        Rejects("value count = nnz", () => new CsrMatrix(2, 3, [0, 1, 2], new int[] { 0, 1 }, new float[1]));
        Rejects("column indices in range", () => new CsrMatrix(2, 3, [0, 1, 2], new int[] { 0, 3 }, new float[2]));
        Rejects("column indices in range", () => new CsrMatrix(2, 3, [0, 1, 2], new int[] { -1, 0 }, new float[2]));
        Rejects("sorted unique column indices per row", () => new CsrMatrix(2, 3, [0, 2, 2], new int[] { 1, 1 }, new float[2]));
        Rejects("sorted unique column indices per row", () => new CsrMatrix(2, 3, [0, 2, 2], new ushort[] { 2, 0 }, new float[2]));
        Rejects("non-negative shape", () => new CsrMatrix(-1, 3, [0], new int[0], new float[0]));
        Rejects("16-bit indices only when cols <= 65536", () => new CsrMatrix(1, 70000, [0, 0], new ushort[0], new float[0]));
        var e = Assert.Throws<SparseFormatException>(() => new CsrMatrix(3, 4, [0, 1, 3, 3], new int[] { 0, 3, 2 }, new float[3]));
        Assert.Contains("row 1", e.Message);
    }

    [Fact]
    public void CscRejectsBrokenStructure()
    {
        Rejects("monotone column pointers", () => new CscMatrix(3, 2, [0, 2, 1], new int[1], new float[1]));
        Rejects("row indices in range", () => new CscMatrix(3, 2, [0, 1, 2], new int[] { 0, 5 }, new float[2]));
        Rejects("sorted unique row indices per column", () => new CscMatrix(3, 2, [0, 2, 2], new int[] { 2, 1 }, new float[2]));
        Rejects("column pointer length = cols + 1", () => new CscMatrix(3, 2, [0, 0], new int[0], new float[0]));
    }

    [Fact]
    public void CooRejectsBrokenStructure()
    {
        Rejects("row indices in range", () => new CooMatrix(2, 2, [2], [0], [1f]));
        Rejects("column indices in range", () => new CooMatrix(2, 2, [0], [-1], [1f]));
        Rejects("entries sorted by (row, column) without duplicates", () => new CooMatrix(2, 2, [1, 0], [0, 0], [1f, 2f]));
        Rejects("entries sorted by (row, column) without duplicates", () => new CooMatrix(2, 2, [0, 0], [1, 1], [1f, 2f]));
        Rejects("column index count = nnz", () => new CooMatrix(2, 2, [0], [0, 1], [1f]));
        Rejects("row indices in range", () => CooMatrix.FromTriplets(2, 2, [0, 3], [0, 0], [1f, 1f]));
    }

    [Fact]
    public void BsrRejectsBrokenStructure()
    {
        Rejects("rows divisible by block rows", () => new BsrMatrix(3, 4, 2, 2, [0, 0], new int[0], new float[0]));
        Rejects("cols divisible by block cols", () => new BsrMatrix(4, 3, 2, 2, [0, 0, 0], new int[0], new float[0]));
        Rejects("positive block shape", () => new BsrMatrix(4, 4, 0, 2, [0], new int[0], new float[0]));
        Rejects("monotone block row pointers", () => new BsrMatrix(4, 4, 2, 2, [0, 1, 0], new int[0], new float[0]));
        Rejects("value count = stored blocks x block size", () => new BsrMatrix(4, 4, 2, 2, [0, 1, 1], new int[] { 0 }, new float[3]));
        Rejects("block column indices in range", () => new BsrMatrix(4, 4, 2, 2, [0, 1, 1], new int[] { 2 }, new float[4]));
        Rejects("sorted unique block column indices per block row", () => new BsrMatrix(4, 4, 2, 2, [0, 2, 2], new int[] { 1, 0 }, new float[8]));
    }

    [Fact]
    public void NmRejectsBrokenPattern()
    {
        var ok = NmSparseMatrix.Prune(SparseTestData.RandomDense(2, 8, 1, 1), 2, 8, 2, 4);
        Rejects("cols divisible by M", () => new NmSparseMatrix(2, 6, 2, 4, new float[6], new byte[3]));
        Rejects("kept count N in [1, M]", () => new NmSparseMatrix(2, 8, 5, 4, new float[8], new byte[3]));
        Rejects("value count = rows x cols/M x N", () => new NmSparseMatrix(2, 8, 2, 4, new float[7], ok.Indices));
        Rejects("index byte count = ceil(slots x bits / 8) + 1", () => new NmSparseMatrix(2, 8, 2, 4, ok.Values, new byte[2]));
        // All indices zero: the second slot of each group repeats index 0.
        Rejects("sorted unique in-group indices (N:M pattern)", () => new NmSparseMatrix(2, 8, 2, 4, ok.Values, new byte[ok.Indices.Length]));
        // 3 bits per index for M = 6: index 7 is out of the group.
        var bad = new byte[NmSparseMatrix.IndexBytes(1, 6)];
        bad[0] = 7;
        Rejects("in-group indices < M", () => new NmSparseMatrix(1, 6, 1, 6, new float[1], bad));
        var dense = new float[8];
        dense[0] = dense[1] = dense[2] = 1;
        var e = Assert.Throws<SparseFormatException>(() => NmSparseMatrix.FromDense(dense, 1, 8, 2, 4));
        Assert.Equal("at most N nonzeros per group of M", e.Invariant);
        Assert.Contains("row 0, group 0", e.Message);
    }

    [Fact]
    public void BitmapRejectsBrokenStructure()
    {
        Rejects("bit words = rows x ceil(cols/64)", () => new BitmapMatrix(2, 10, new ulong[1], [0, 0, 0], new float[0]));
        Rejects("no bits set past the last column", () => new BitmapMatrix(1, 10, [1UL << 10], [0, 1], new float[1]));
        Rejects("row offsets = popcount of the rows before", () => new BitmapMatrix(2, 10, [1UL, 1UL], [0, 0, 2], new float[2]));
        Rejects("value count = set bits", () => new BitmapMatrix(1, 10, [3UL], [0, 2], new float[1]));
        Rejects("row offset length = rows + 1", () => new BitmapMatrix(1, 10, [3UL], [0], new float[2]));
    }

    [Fact]
    public void SellRejectsBrokenStructure()
    {
        // 20×40: two slices (the second with 4 real rows), two blocks (the second with 8 real columns).
        // Row 0: columns 0, 5 (block 0, steps 0-1) and 33 (block 1); row 17: column 1. Other rows empty.
        var dense = new float[20 * 40];
        dense[0] = 1; dense[5] = 2; dense[33] = 3; dense[17 * 40 + 1] = 4;
        var good = SellMatrix.FromDense(dense, 20, 40);
        Assert.Equal(4, good.NonZeroCount);
        Assert.Equal(new byte[] { 2, 1, 1, 0 }, good.Steps);
        int slice1 = 64 * good.GroupStart[1];
        SellMatrix Build(Action<byte[], int[], int[], byte[], float[]> mutate, int extraIndices = 0, int extraValues = 0)
        {
            byte[] steps = (byte[])good.Steps.Clone();
            int[] stepStart = (int[])good.StepStart.Clone(), groupStart = (int[])good.GroupStart.Clone();
            byte[] idx = new byte[good.Indices.Length + extraIndices];
            Array.Fill(idx, SellMatrix.Padding);
            good.Indices.CopyTo(idx);
            float[] val = new float[good.Values.Length + extraValues];
            good.Values.CopyTo(val);
            mutate(steps, stepStart, groupStart, idx, val);
            return new SellMatrix(20, 40, steps, stepStart, groupStart, idx, val);
        }
        Assert.Equal(4, Build((_, _, _, _, _) => { }).NonZeroCount);
        Rejects("steps length = slices x blocks", () => new SellMatrix(20, 40, new byte[3], [0, 0, 0], [0, 0, 0], [], []));
        Rejects("step start length = slices + 1", () => new SellMatrix(20, 40, new byte[4], [0, 0], [0, 0, 0], [], []));
        Rejects("group start length = slices + 1", () => new SellMatrix(20, 40, new byte[4], [0, 0, 0], [0, 0], [], []));
        Rejects("step and group starts begin at 0", () => Build((_, st, _, _, _) => st[0] = 1));
        Rejects("steps per block <= block width (32)", () => Build((steps, _, _, _, _) => steps[0] = 33));
        Rejects("step start = steps of the slices before", () => Build((_, st, _, _, _) => st[1]++));
        Rejects("group start = index groups of the slices before", () => Build((_, _, gs, _, _) => gs[1]++));
        Rejects("index bytes = 64 x groups", () => Build((_, _, _, _, _) => { }, extraIndices: 64));
        Rejects("values = 16 x steps", () => Build((_, _, _, _, _) => { }, extraValues: 16));
        Rejects("padding holds +0", () => Build((_, _, _, _, v) => v[2] = 1));                     // row 2, step 0
        Rejects("padding holds +0", () => Build((_, _, _, _, v) => v[2] = -0f));
        Rejects("index byte is a column in the block (< 32) or padding (0x80)", () => Build((_, _, _, i, _) => i[0] = 40));
        Rejects("a lane's padding comes after its entries", () => Build((_, _, _, i, v) => { i[0] = SellMatrix.Padding; v[0] = 0; }));
        Rejects("sorted unique columns per lane and block", () => Build((_, _, _, i, _) => i[1] = 0));
        Rejects("rows past the last hold only padding", () => Build((_, _, _, i, v) => { i[slice1 + 4 * 5] = 2; v[16 * good.StepStart[1] + 5] = 1; }));
        Rejects("column index in range", () => Build((_, _, _, i, _) => i[64] = 10));            // row 0's column 33 → 42
        Rejects("unused bytes of a block's last group are padding", () => Build((_, _, _, i, _) => i[2] = 1));
        Rejects("a block's steps = its longest lane", () => Build((_, _, _, i, v) => { i[slice1 + 4 * 1] = SellMatrix.Padding; v[16 * good.StepStart[1] + 1] = 0; }));
        var e = Assert.Throws<SparseFormatException>(() => Build((_, _, _, i, _) => i[1] = 0));
        Assert.Contains("slice 0, block 0, row 0, step 1", e.Message);
    }
}
