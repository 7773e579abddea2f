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
}
