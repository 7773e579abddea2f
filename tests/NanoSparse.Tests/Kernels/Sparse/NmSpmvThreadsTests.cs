using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The 2:4 decode SpMV over thread chunks (rows split evenly into 4 chunks per thread, odd row counts) at one and two
/// threads, and rows of an odd number of 32-column stretches, against a double product of the pruned dense matrix.
/// </summary>
[Collection("KernelThreads")]
public class NmSpmvThreadsTests
{
    [Theory]
    [InlineData(1, 1027, 768)]
    [InlineData(2, 1027, 768)]
    [InlineData(2, 771, 3072)]
    [InlineData(1, 771, 3072)]
    [InlineData(1, 19, 32)]      // one 32-column stretch: the row kernel's odd tail alone
    [InlineData(1, 37, 96)]      // three: one pair, then the tail
    [InlineData(2, 37, 160)]
    public void TwoFourSpmv_EqualsDoubleReference(int threads, int rows, int cols)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var dense = SparseTestData.RandomDense(rows, cols, 1, (ulong)(rows + cols));
            var nm = NmSparseMatrix.Prune(dense, rows, cols, 2, 4);
            var pruned = nm.ToDense();
            var x = SparseTestData.RandomDense(cols, 1, 1, 9);
            var y = new float[rows];
            Array.Fill(y, float.NaN);
            NmSpmm.Multiply(nm, x, 1, y);
            for (int i = 0; i < rows; i++)
            {
                double sum = 0, abs = 0;
                for (int j = 0; j < cols; j++)
                {
                    sum += (double)pruned[(long)i * cols + j] * x[j];
                    abs += Math.Abs((double)pruned[(long)i * cols + j] * x[j]);
                }
                Assert.True(Math.Abs(y[i] - sum) <= 1e-5 * abs + 1e-6, $"{threads} thread(s), {rows}x{cols}, row {i}: {y[i]} vs {sum}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }
}
