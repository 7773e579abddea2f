using System.Numerics.Tensors;

namespace NanoSparse.Numerics;

/// <summary>
/// Dense Cholesky factorization and the triangular pieces SparseGPT needs, in double precision, row-major n×n.
/// </summary>
public static unsafe class Cholesky
{
    /// <summary>
    /// Factors the symmetric positive definite A = L·Lᵀ in place: on return the lower triangle holds L and the strict
    /// upper triangle is zeroed. Reads only the lower triangle of A. Throws when a pivot is not positive (A is not
    /// positive definite, e.g. too little dampening), naming the pivot.
    /// </summary>
    /// <remarks>Row-oriented (L[i][j] = (A[i][j] − L[i][0:j]·L[j][0:j]) / L[j][j]): every dot product runs over two
    /// contiguous row prefixes.</remarks>
    public static void FactorLower(Span<double> a, int n)
    {
        if (a.Length < (long)n * n) throw new ArgumentException($"matrix holds {a.Length} values, expected {n}×{n}");
        for (int i = 0; i < n; i++)
        {
            var li = a.Slice(i * n, n);
            for (int j = 0; j < i; j++)
            {
                var lj = a.Slice(j * n, j);
                li[j] = (li[j] - TensorPrimitives.Dot(li[..j], lj)) / a[j * n + j];
            }
            double d = li[i] - TensorPrimitives.Dot(li[..i], li[..i]);
            if (!(d > 0))
                throw new ArithmeticException($"Cholesky pivot {i} is {d:G6}, expected > 0 (matrix not positive definite)");
            li[i] = Math.Sqrt(d);
            li[(i + 1)..].Clear();
        }
    }

    /// <summary>
    /// The inverse X = L⁻¹ of a lower-triangular L (n×n): row i of X from X·L = I,
    /// X[i][j] = (δ_ij − Σ_{k=j+1..i} X[i][k]·L[k][j]) / L[j][j], for j = i down to 0, with Lᵀ copied once so the sum
    /// reads contiguous rows. Rows are independent and run in parallel.
    /// </summary>
    public static unsafe void InvertLower(ReadOnlySpan<double> l, int n, Span<double> inverse)
    {
        if (l.Length < (long)n * n || inverse.Length < (long)n * n)
            throw new ArgumentException($"matrices hold {l.Length} and {inverse.Length} values, expected {n}×{n}");
        var lt = new double[(long)n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
                lt[j * n + i] = l[i * n + j];
        fixed (double* pl = lt, px = inverse)
        {
            var args = new InvertArgs { Lt = pl, X = px, N = n };
            Kernels.RowParallel.For(n, (long)n * n / 4, ref args, &InvertRows);
        }
    }

    struct InvertArgs { public double* Lt; public double* X; public int N; }

    static unsafe void InvertRows(ref InvertArgs a, int start, int end)
    {
        int n = a.N;
        for (int i = start; i < end; i++)
        {
            var x = new Span<double>(a.X + (long)i * n, n);
            x.Clear();
            for (int j = i; j >= 0; j--)
            {
                double s = j == i ? 1 : 0;
                if (j < i)
                    s -= TensorPrimitives.Dot(x.Slice(j + 1, i - j), new ReadOnlySpan<double>(a.Lt + (long)j * n + j + 1, i - j));
                x[j] = s / a.Lt[(long)j * n + j];
            }
        }
    }

    /// <summary>
    /// The upper-triangular U with H⁻¹ = Uᵀ·U (the upper Cholesky factor of the inverse) of a symmetric positive
    /// definite H, without forming H⁻¹: with J the order-reversing permutation, factor J·H·J = M·Mᵀ; then
    /// J·H⁻¹·J = M⁻ᵀ·M⁻¹, so H⁻¹ = (J·M⁻¹·J)ᵀ·(J·M⁻¹·J) and U = J·M⁻¹·J (upper, positive diagonal, hence the unique
    /// factor). One Cholesky and one triangular inverse instead of two Cholesky factorizations and an inverse.
    /// Reads only the lower triangle of <paramref name="h"/>; writes U (n×n, strict lower triangle zero).
    /// </summary>
    public static void UpperFactorOfInverse(ReadOnlySpan<double> h, int n, Span<double> upper)
    {
        if (h.Length < (long)n * n || upper.Length < (long)n * n)
            throw new ArgumentException($"matrices hold {h.Length} and {upper.Length} values, expected {n}×{n}");
        var m = new double[(long)n * n];
        // (J·H·J)[a][b] = H[n−1−a][n−1−b]; the lower triangle of the reversed matrix is the upper of H, read as H's
        // lower triangle transposed so only H's lower triangle is used.
        for (int a = 0; a < n; a++)
            for (int b = 0; b <= a; b++)
                m[a * n + b] = h[(n - 1 - b) * n + (n - 1 - a)];
        FactorLower(m, n);
        var mi = new double[(long)n * n];
        InvertLower(m, n, mi);
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                upper[a * n + b] = mi[(n - 1 - a) * n + (n - 1 - b)];
    }
}
