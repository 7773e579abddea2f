using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// CSR SpMV (N = 1) over every row length the row dot distinguishes: 16 nonzeros per main step, 4 per short step,
/// then one at a time, so rows of 0..40 nonzeros cover each combination (and empty rows), on one thread and split.
/// </summary>
public class SpmvRowLengthTests
{
    [Theory]
    [InlineData(41, 300, true)]
    [InlineData(41, 300, false)]
    [InlineData(1, 300, true)]      // one row
    [InlineData(2050, 700, true)]   // enough nonzeros (~41K) for several threads
    [InlineData(2050, 70000, false)] // 32-bit indices (K > 65536)
    [InlineData(41, 65536, true)]   // 16-bit indices up to 65535: four split from one 64-bit load, top bits included
    public void EveryRowLengthMatchesDoubleReference(int m, int k, bool shortIndices)
    {
        var rng = new Rng(5);
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        var values = new List<float>();
        for (int i = 0; i < m; i++)
        {
            int count = Math.Min(k, i % 41);
            // Distinct sorted columns spread over all of K (so the x lookups jump around).
            var picked = new SortedSet<int>();
            while (picked.Count < count) picked.Add((int)(rng.NextDouble() * k));
            foreach (int c in picked) { columns.Add(c); values.Add((float)rng.NextGaussian()); }
            rowPointers[i + 1] = columns.Count;
        }
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), values.ToArray(), shortIndices);
        var x = new float[k];
        for (int j = 0; j < k; j++) x[j] = (float)rng.NextGaussian();
        var y = new float[m];
        Array.Fill(y, float.NaN);
        CsrSpmm.Multiply(s, x, 1, y);
        for (int i = 0; i < m; i++)
        {
            double sum = 0, abs = 0;
            for (int p = rowPointers[i]; p < rowPointers[i + 1]; p++)
            {
                sum += (double)values[p] * x[columns[p]];
                abs += Math.Abs((double)values[p] * x[columns[p]]);
            }
            Assert.True(Math.Abs(y[i] - sum) <= 1e-5 * abs + 1e-6, $"row {i} ({rowPointers[i + 1] - rowPointers[i]} nonzeros): got {y[i]}, expected {sum}");
        }
    }
}
