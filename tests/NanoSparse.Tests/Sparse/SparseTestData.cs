using NanoSparse.Numerics;

namespace NanoSparse.Tests.Sparse;

/// <summary>Random dense matrices with a chosen density; special densities 0 and 1 give all-zero and all-nonzero.</summary>
public static class SparseTestData
{
    public static float[] RandomDense(int rows, int cols, double density, ulong seed)
    {
        var rng = new Rng(seed);
        var a = new float[rows * cols];
        for (int i = 0; i < a.Length; i++)
            if (rng.NextDouble() < density)
            {
                float v = (float)rng.NextGaussian();
                a[i] = v == 0 ? 1 : v;
            }
        return a;
    }

    /// <summary>Shape and density from arbitrary FsCheck integers: 0..max rows/cols, density in {0, 0.1, ..., 1}.</summary>
    public static (int Rows, int Cols, double Density) Shape(int a, int b, int c, int max = 19) =>
        (Math.Abs(a % (max + 1)), Math.Abs(b % (max + 1)), Math.Abs(c % 11) / 10.0);

    /// <summary>
    /// Asserts that SDDMM output[p] equals Σ_t a[i, t]·b[j, t] (double reference, relative to Σ|terms|) at every
    /// nonzero p = (i, j) of the CSR structure (rowPointers, columns); a and b are row-major with d columns.
    /// </summary>
    public static void AssertSddmm(int m, int[] rowPointers, IReadOnlyList<int> columns, float[] a, float[] b, int d,
        float[] output)
    {
        for (int i = 0; i < m; i++)
            for (int p = rowPointers[i]; p < rowPointers[i + 1]; p++)
            {
                int j = columns[p];
                double sum = 0, abs = 0;
                for (int t = 0; t < d; t++) { sum += (double)a[i * d + t] * b[j * d + t]; abs += Math.Abs((double)a[i * d + t] * b[j * d + t]); }
                Assert.True(Math.Abs(output[p] - sum) <= 1e-5 * abs + 1e-6,
                    $"SDDMM ({i},{j}), row of {rowPointers[i + 1] - rowPointers[i]}, D = {d}: got {output[p]}, expected {sum}");
            }
    }
}
