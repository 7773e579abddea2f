using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// SDDMM when B is split into K blocks: each row's run of nonzeros in a block ends where a forward scan (sixteen 16-bit
/// or eight 32-bit indices per compare, then one by one) finds the first column past the block. Rows here have
/// densities from 0 to 100%, so runs per 256-column block go from empty to full (several vector steps, the end inside a
/// vector at every offset, rows that end inside a block). Both blocked bodies: per-thread copies (D = 512) and cursors
/// over one shared copy or B in place (D = 128, D = 16), on one and two threads.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class SddmmBlockRunTests
{
    [Theory]
    [InlineData(300, 2000, 512, true, 2)]   // per-thread copies of the blocks, 16-bit indices
    [InlineData(300, 2000, 512, false, 2)]  // per-thread copies, 32-bit indices
    [InlineData(300, 2000, 512, true, 1)]   // one thread: cursors over one packed copy
    [InlineData(300, 2000, 128, true, 2)]   // D < 256: cursors over one shared copy
    [InlineData(300, 2000, 128, false, 2)]
    [InlineData(300, 2000, 128, false, 1)]
    [InlineData(10, 20000, 16, true, 2)]    // B (1.3 MB) used too little to pack: cursors over B in place
    public void RunsOfEveryLengthPerBlockMatchDoubleReference(int m, int k, int d, bool shortIndices, int threads)
    {
        var rng = new Rng(41);
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            double density = i % 11 / 10.0;
            for (int j = 0; j < k; j++)
                if (rng.NextDouble() < density) columns.Add(j);
            rowPointers[i + 1] = columns.Count;
        }
        Check(m, k, d, shortIndices, threads, rowPointers, columns, 42);
    }

    [Fact]
    public void LastBlockOfSixteenBitColumnsReachesColumn65535()
    {
        // K = 65536 with 16-bit indices: the last block ends at column 65536, past what a 16-bit compare can hold, so
        // its runs end at the row's end; rows are dense near the end, including column 65535.
        const int m = 5, k = 65536, d = 16;
        var rng = new Rng(43);
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < k; j++)
                if (rng.NextDouble() < (j >= k - 1200 ? 0.9 : 0.02) || j == k - 1) columns.Add(j);
            rowPointers[i + 1] = columns.Count;
        }
        foreach (int threads in new[] { 1, 2 })
            Check(m, k, d, true, threads, rowPointers, columns, 44);
    }

    static void Check(int m, int k, int d, bool shortIndices, int threads, int[] rowPointers, List<int> columns, ulong seed)
    {
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), new float[columns.Count], shortIndices);
        var a = SparseTestData.RandomDense(m, d, 1, seed);
        var b = SparseTestData.RandomDense(k, d, 1, seed + 1);
        var output = new float[columns.Count];
        Array.Fill(output, float.NaN);
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            Sddmm.Compute(s, a, b, d, output);
        }
        finally { KernelThreads.Max = saved; }
        SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, d, output);
    }
}
