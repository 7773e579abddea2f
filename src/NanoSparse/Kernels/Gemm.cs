namespace NanoSparse.Kernels;

/// <summary>
/// Dense single-precision matrix multiply, row-major:
/// C (m×n) = alpha · op(A) · op(B) + beta · C, where op(A) is m×k and op(B) is k×n.
/// A is stored m×k (row stride lda) or, when transA, k×m; B is stored k×n (ldb) or, when transB, n×k.
/// When beta == 0, C is not read (NaN in C does not propagate).
/// </summary>
public static class Gemm
{
    public static void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        // Placeholder: a plain triple loop. Replaced by the blocked, packed, SIMD kernel.
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            float sum = 0;
            for (int p = 0; p < k; p++)
            {
                float av = transA ? a[p * lda + i] : a[i * lda + p];
                float bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                sum += av * bv;
            }
            c[i * ldc + j] = beta == 0 ? alpha * sum : alpha * sum + beta * c[i * ldc + j];
        }
    }
}
