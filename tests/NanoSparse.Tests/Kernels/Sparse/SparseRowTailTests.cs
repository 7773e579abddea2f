using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The last partial step of a row in the token-major training kernels: SpmmMicroKernel.RowsWide takes a row's last 1–3
/// nonzeros in one step of four whose spare slots read a zero panel row with weight 0; SddmmTiled takes a run's last 1–4
/// in one step of four and its last 5–7 in one step of eight, with masked loads and stores. Rows of every length 0..13
/// (every remainder, with and without whole steps before it), at 1 and 2 threads, both index widths, K in one block and
/// in 768-row blocks:
///   - against a double-precision reference;
///   - an infinite activation in one column reaches only the rows that store that column (a spare slot reading a real
///     panel row with weight 0 would turn it into NaN elsewhere), and an infinite last weight gives ±∞, not NaN (its
///     spare slots must not reuse the weight);
///   - the SDDMM writes nothing past a run's end (guard values after the last output stay as they were).
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class SparseRowTailTests
{
    [Theory]
    [InlineData(140, 200, 70, true)]     // one K block, a full 64-token panel and a 6-token one
    [InlineData(140, 200, 70, false)]
    [InlineData(61, 1600, 130, true)]    // 16-bit indices past 1536: blocks of 768, 768 and 64 rows; rows not a multiple of 16
    [InlineData(61, 1600, 130, false)]
    public void SpmmRowTailsMatchDoubleReferenceAndKeepInfinitiesWhereTheyBelong(int m, int k, int tokens, bool shortIndices)
    {
        if (!CsrSpmmTokenMajor.Supported) return;   // the layouts take the feature-major panels (their own tests)
        var rng = new Rng((ulong)(m * 7 + k));
        int infColumn = k / 3;
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            var picked = new SortedSet<int>();
            while (picked.Count < i % 14) picked.Add((int)(rng.NextDouble() * k));
            if (i % 9 == 2) { picked.Add(infColumn); while (picked.Count > Math.Max(1, i % 14)) picked.Remove(picked.Max == infColumn ? picked.Min : picked.Max); }
            columns.AddRange(picked);
            rowPointers[i + 1] = columns.Count;
        }
        var values = new float[columns.Count];
        for (int p = 0; p < values.Length; p++) values[p] = (float)rng.NextGaussian();
        // Rows of 5 and 7 nonzeros (a step of four, then a remainder of 1 or 3): an infinite last weight.
        var infiniteWeightRows = new HashSet<int>();
        for (int i = 0; i < m; i++)
            if ((i % 14 == 5 || i % 14 == 7) && i % 9 != 2 && rowPointers[i + 1] > rowPointers[i])
            {
                values[rowPointers[i + 1] - 1] = float.PositiveInfinity;
                infiniteWeightRows.Add(i);
            }
        var x = SparseTestData.RandomDense(tokens, k, 1, 31);
        var finiteX = (float[])x.Clone();
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), values, shortIndices);
        int saved = KernelThreads.Max;
        try
        {
            foreach (bool infiniteActivation in new[] { false, true })
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                var xs = (float[])finiteX.Clone();
                if (infiniteActivation) for (int t = 0; t < tokens; t++) xs[t * k + infColumn] = float.PositiveInfinity;
                var got = new float[tokens * m];
                Array.Fill(got, float.NaN);
                RunSpmm(s, xs, tokens, got);
                for (int i = 0; i < m; i++)
                {
                    bool touchesInf = false;
                    for (int p = rowPointers[i]; p < rowPointers[i + 1]; p++) touchesInf |= columns[p] == infColumn;
                    for (int t = 0; t < tokens; t++)
                    {
                        double sum = 0, abs = 0;
                        for (int p = rowPointers[i]; p < rowPointers[i + 1]; p++)
                        {
                            double term = (double)values[p] * xs[t * k + columns[p]];
                            sum += term;
                            abs += Math.Abs(term);
                        }
                        float g = got[t * m + i];
                        string at = $"{m}x{k} T={tokens} short={shortIndices} threads={threads} infX={infiniteActivation}: Y[{t},{i}] (row of {rowPointers[i + 1] - rowPointers[i]})";
                        if (double.IsInfinity(sum) || double.IsNaN(sum))
                        {
                            Assert.True(infiniteWeightRows.Contains(i) || (infiniteActivation && touchesInf), $"{at}: the reference is not finite");
                            Assert.True(g.Equals((float)sum), $"{at} = {g}, expected {sum}");
                        }
                        else
                            Assert.True(Math.Abs(g - sum) <= 1e-5 * abs + 1e-6, $"{at} = {g}, expected {sum}");
                    }
                }
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(150, 300, 64, true)]
    [InlineData(150, 300, 45, false)]    // a short token block (zero-padded)
    [InlineData(61, 1000, 130, true)]    // four K tiles; runs split at the boundaries
    public void SddmmRunTailsMatchDoubleReferenceAndWriteNothingPastTheEnd(int m, int k, int tokens, bool shortIndices)
    {
        if (!CsrSpmmTokenMajor.Supported) return;
        var rng = new Rng((ulong)(m * 5 + k + tokens));
        var rowPointers = new int[m + 1];
        var columns = new List<int>();
        for (int i = 0; i < m; i++)
        {
            var picked = new SortedSet<int>();
            while (picked.Count < i % 14 + (i % 3 == 0 ? 8 : 0)) picked.Add((int)(rng.NextDouble() * k));
            columns.AddRange(picked);
            rowPointers[i + 1] = columns.Count;
        }
        int nnz = columns.Count;
        Assert.True((rowPointers[m] - rowPointers[m - 1]) % 8 != 0, "the last row must end in a partial step");
        var s = CsrMatrix.Create(m, k, rowPointers, columns.ToArray(), new float[nnz], shortIndices);
        var dy = SparseTestData.RandomDense(tokens, m, 1, 41);
        var x = SparseTestData.RandomDense(tokens, k, 1, 42);
        var a = new float[m * tokens];
        var b = new float[k * tokens];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < m; i++) a[i * tokens + t] = dy[t * m + i];
            for (int j = 0; j < k; j++) b[j * tokens + t] = x[t * k + j];
        }
        const float Guard = 12345.5f;
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                // Token-major (adds into the output): start from zero, guards after the end.
                var output = new float[nnz + 8];
                Array.Fill(output, Guard, nnz, 8);
                RunTokenMajor(s, dy, x, tokens, output);
                for (int g = nnz; g < output.Length; g++) Assert.Equal(Guard, output[g]);
                SparseTestData.AssertSddmm(m, rowPointers, columns, a, b, tokens, output[..nnz]);
                // Feature-major tiles (the first 64-column piece stores, the rest add), D = tokens rounded up to 64.
                int d = (tokens + 63) / 64 * 64;
                var ap = new float[m * d];
                var bp = new float[k * d];
                for (int i = 0; i < m; i++) Array.Copy(a, i * tokens, ap, i * d, tokens);
                for (int j = 0; j < k; j++) Array.Copy(b, j * tokens, bp, j * d, tokens);
                var stored = new float[nnz + 8];
                Array.Fill(stored, float.NaN, 0, nnz);
                Array.Fill(stored, Guard, nnz, 8);
                RunTiled(s, ap, bp, d, stored);
                for (int g = nnz; g < stored.Length; g++) Assert.Equal(Guard, stored[g]);
                SparseTestData.AssertSddmm(m, rowPointers, columns, ap, bp, d, stored[..nnz]);
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    static unsafe void RunSpmm(CsrMatrix s, float[] x, int tokens, float[] y)
    {
        fixed (int* rp = s.RowPointers)
        fixed (float* v = s.Values, px = x, py = y)
        {
            if (s.ColumnIndices16 is { } c16)
                fixed (ushort* ci = c16) CsrSpmmTokenMajor.Run(s.Rows, s.Cols, rp, ci, v, px, s.Cols, tokens, py, s.Rows, null, null, null);
            else
                fixed (int* ci = s.ColumnIndices32) CsrSpmmTokenMajor.Run(s.Rows, s.Cols, rp, ci, v, px, s.Cols, tokens, py, s.Rows, null, null, null);
        }
    }

    static unsafe void RunTokenMajor(CsrMatrix s, float[] dy, float[] x, int tokens, float[] output)
    {
        fixed (int* rp = s.RowPointers)
        fixed (float* pdy = dy, px = x, po = output)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) SddmmTiled.RunTokenMajor(s.Rows, s.Cols, rp, ci, pdy, s.Rows, px, s.Cols, tokens, po, null);
            else fixed (int* ci = s.ColumnIndices32) SddmmTiled.RunTokenMajor(s.Rows, s.Cols, rp, ci, pdy, s.Rows, px, s.Cols, tokens, po, null);
        }
    }

    static unsafe void RunTiled(CsrMatrix s, float[] a, float[] b, int d, float[] output)
    {
        fixed (int* rp = s.RowPointers)
        fixed (float* pa = a, pb = b, po = output)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) SddmmTiled.Run(s.Rows, s.Cols, rp, ci, pa, pb, d, po);
            else fixed (int* ci = s.ColumnIndices32) SddmmTiled.Run(s.Rows, s.Cols, rp, ci, pa, pb, d, po);
        }
    }
}
