using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// SDDMM over every row length its row loop distinguishes: eight nonzeros per step (D a multiple of 16), then four,
/// then one at a time, so rows of 0..20 nonzeros cover each combination (and empty rows); D = 1 takes four lookups per
/// step. Shapes reach the unblocked path, the K-blocked path with per-thread copies of B, and 16- and 32-bit indices.
/// </summary>
public class SddmmRunLengthTests
{
    [Theory]
    [InlineData(63, 300, 16, true)]
    [InlineData(63, 300, 48, false)]
    [InlineData(63, 300, 1, true)]      // D = 1: four 16-bit indices per load, then one at a time
    [InlineData(63, 300, 1, false)]
    [InlineData(630, 2000, 512, true)]  // B 3.9 MiB: K-blocked; too few nonzeros to copy B (cursors over B in place)
    [InlineData(2000, 2000, 512, true)] // K-blocked, each thread copying the blocks it reads
    [InlineData(2000, 2000, 128, false)] // K-blocked at D = 128 (B 1 MiB) over one shared copy, 32-bit indices
    [InlineData(630, 700, 17, true)]    // D % 16 != 0: four at a time with a scalar tail
    public void EveryRunLengthMatchesDoubleReference(int m, int k, int d, bool shortIndices)
    {
        var rng = new Rng(17);
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            int count = Math.Min(k, i % 21);
            var picked = new SortedSet<int>();
            while (picked.Count < count) picked.Add((int)(rng.NextDouble() * k));
            columns.AddRange(picked);
            rowPointers[i + 1] = columns.Count;
        }
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), new float[columns.Count], shortIndices);
        var a = SparseTestData.RandomDense(m, d, 1, 18);
        var b = SparseTestData.RandomDense(k, d, 1, 19);
        var output = new float[columns.Count];
        Array.Fill(output, float.NaN);
        Sddmm.Compute(s, a, b, d, output);
        SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, d, output);
    }
}
