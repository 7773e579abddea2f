using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Register tiles for attention over gathered query rows (the rows of one head that selected a key block, scattered
/// over the sequence), the companions of <see cref="AttentionTiles"/> (AVX-512, cols a multiple of 16):
///   <see cref="Rows8ScaledAdd"/>: C_r = β_r · C_r + Σ_p a_r[p·aStep] · B_p with the eight output rows given as pointers
///     (P·V into each row's running output, rescaled by its online-softmax factor in the same pass; dS·K into dQ rows);
///   <see cref="Rows8GatheredB"/>: C_r += Σ_p a_r[p·aStep] · B_p with the reduction's B rows given as pointers
///     (Pᵀ·dO and dSᵀ·Q of the gathered rows into a key block's dV and dK).
/// Both keep 8 rows × 2 vectors in 16 accumulators, so each loaded B vector feeds 8 multiply-adds, and both touch
/// each output row once per call: nothing is copied into or out of a contiguous staging tile.
/// </summary>
internal static unsafe class GatheredTiles
{
    /// <summary>
    /// For r &lt; 8: c[r] (cols floats) = beta[r] · c[r] + Σ_{p &lt; kLen} a_r[p·aStep] · (b + p·ldb)[0 .. cols), where
    /// a_r = a + min(r, rows − 1)·lda; beta null reads as 1. Rows r ≥ rows must all point at one scratch row (cleared here).
    /// </summary>
    public static void Rows8ScaledAdd(int kLen, float* a, long lda, int aStep, int rows, float* b, long ldb, int cols, float** c, float* beta)
    {
        if (rows < 8) new Span<float>(c[rows], cols).Clear();
        float** ar = stackalloc float*[8];
        for (int r = 0; r < 8; r++) ar[r] = a + Math.Min(r, rows - 1) * lda;
        float* one = stackalloc float[8];
        if (beta == null) { for (int r = 0; r < 8; r++) one[r] = 1f; beta = one; }
        int j = 0;
        for (; j + 32 <= cols; j += 32) ScaledAdd8x2(kLen, ar, aStep, b + j, ldb, c, j, beta);
        for (; j < cols; j += 16) ScaledAdd8x1(kLen, ar, aStep, b + j, ldb, c, j, beta);
    }

    /// <summary>
    /// For r &lt; rows: (c + r·ldc)[0 .. cols) += Σ_{p &lt; kLen} a_r[p·aStep] · bRows[p][0 .. cols), a_r = a + r·lda.
    /// Rows r ≥ rows go to discard (cols floats).
    /// </summary>
    public static void Rows8GatheredB(int kLen, float* a, long lda, int aStep, int rows, float** bRows, int cols, float* c, int ldc, float* discard)
    {
        float** ar = stackalloc float*[8];
        float** cr = stackalloc float*[8];
        for (int r = 0; r < 8; r++)
        {
            ar[r] = a + Math.Min(r, rows - 1) * lda;
            cr[r] = r < rows ? c + (long)r * ldc : discard;
        }
        if (rows < 8) new Span<float>(discard, cols).Clear();
        int j = 0;
        for (; j + 32 <= cols; j += 32) GatheredB8x2(kLen, ar, aStep, bRows, j, cr);
        for (; j < cols; j += 16) GatheredB8x1(kLen, ar, aStep, bRows, j, cr);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ScaledAdd8x2(int kLen, float** ar, int aStep, float* b, long ldb, float** c, int j, float* beta)
    {
        float* a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3], a4 = ar[4], a5 = ar[5], a6 = ar[6], a7 = ar[7];
        Vector512<float> x00 = default, x01 = default, x10 = default, x11 = default;
        Vector512<float> x20 = default, x21 = default, x30 = default, x31 = default;
        Vector512<float> x40 = default, x41 = default, x50 = default, x51 = default;
        Vector512<float> x60 = default, x61 = default, x70 = default, x71 = default;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += aStep)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var s = Vector512.Create(a0[off]);
            x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01);
            s = Vector512.Create(a1[off]);
            x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11);
            s = Vector512.Create(a2[off]);
            x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21);
            s = Vector512.Create(a3[off]);
            x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31);
            s = Vector512.Create(a4[off]);
            x40 = Vector512.FusedMultiplyAdd(s, b0, x40); x41 = Vector512.FusedMultiplyAdd(s, b1, x41);
            s = Vector512.Create(a5[off]);
            x50 = Vector512.FusedMultiplyAdd(s, b0, x50); x51 = Vector512.FusedMultiplyAdd(s, b1, x51);
            s = Vector512.Create(a6[off]);
            x60 = Vector512.FusedMultiplyAdd(s, b0, x60); x61 = Vector512.FusedMultiplyAdd(s, b1, x61);
            s = Vector512.Create(a7[off]);
            x70 = Vector512.FusedMultiplyAdd(s, b0, x70); x71 = Vector512.FusedMultiplyAdd(s, b1, x71);
            b += ldb;
        }
        Scaled(c[0] + j, x00, x01, beta[0]); Scaled(c[1] + j, x10, x11, beta[1]);
        Scaled(c[2] + j, x20, x21, beta[2]); Scaled(c[3] + j, x30, x31, beta[3]);
        Scaled(c[4] + j, x40, x41, beta[4]); Scaled(c[5] + j, x50, x51, beta[5]);
        Scaled(c[6] + j, x60, x61, beta[6]); Scaled(c[7] + j, x70, x71, beta[7]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ScaledAdd8x1(int kLen, float** ar, int aStep, float* b, long ldb, float** c, int j, float* beta)
    {
        float* a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3], a4 = ar[4], a5 = ar[5], a6 = ar[6], a7 = ar[7];
        Vector512<float> x0 = default, x1 = default, x2 = default, x3 = default, x4 = default, x5 = default, x6 = default, x7 = default;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += aStep)
        {
            var b0 = Vector512.Load(b);
            x0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[off]), b0, x0);
            x1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[off]), b0, x1);
            x2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[off]), b0, x2);
            x3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[off]), b0, x3);
            x4 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[off]), b0, x4);
            x5 = Vector512.FusedMultiplyAdd(Vector512.Create(a5[off]), b0, x5);
            x6 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[off]), b0, x6);
            x7 = Vector512.FusedMultiplyAdd(Vector512.Create(a7[off]), b0, x7);
            b += ldb;
        }
        Scaled(c[0] + j, x0, beta[0]); Scaled(c[1] + j, x1, beta[1]); Scaled(c[2] + j, x2, beta[2]); Scaled(c[3] + j, x3, beta[3]);
        Scaled(c[4] + j, x4, beta[4]); Scaled(c[5] + j, x5, beta[5]); Scaled(c[6] + j, x6, beta[6]); Scaled(c[7] + j, x7, beta[7]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GatheredB8x2(int kLen, float** ar, int aStep, float** bRows, int j, float** c)
    {
        float* a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3], a4 = ar[4], a5 = ar[5], a6 = ar[6], a7 = ar[7];
        Vector512<float> x00 = default, x01 = default, x10 = default, x11 = default;
        Vector512<float> x20 = default, x21 = default, x30 = default, x31 = default;
        Vector512<float> x40 = default, x41 = default, x50 = default, x51 = default;
        Vector512<float> x60 = default, x61 = default, x70 = default, x71 = default;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += aStep)
        {
            float* b = bRows[p] + j;
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var s = Vector512.Create(a0[off]);
            x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01);
            s = Vector512.Create(a1[off]);
            x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11);
            s = Vector512.Create(a2[off]);
            x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21);
            s = Vector512.Create(a3[off]);
            x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31);
            s = Vector512.Create(a4[off]);
            x40 = Vector512.FusedMultiplyAdd(s, b0, x40); x41 = Vector512.FusedMultiplyAdd(s, b1, x41);
            s = Vector512.Create(a5[off]);
            x50 = Vector512.FusedMultiplyAdd(s, b0, x50); x51 = Vector512.FusedMultiplyAdd(s, b1, x51);
            s = Vector512.Create(a6[off]);
            x60 = Vector512.FusedMultiplyAdd(s, b0, x60); x61 = Vector512.FusedMultiplyAdd(s, b1, x61);
            s = Vector512.Create(a7[off]);
            x70 = Vector512.FusedMultiplyAdd(s, b0, x70); x71 = Vector512.FusedMultiplyAdd(s, b1, x71);
        }
        Scaled(c[0] + j, x00, x01, 1f); Scaled(c[1] + j, x10, x11, 1f);
        Scaled(c[2] + j, x20, x21, 1f); Scaled(c[3] + j, x30, x31, 1f);
        Scaled(c[4] + j, x40, x41, 1f); Scaled(c[5] + j, x50, x51, 1f);
        Scaled(c[6] + j, x60, x61, 1f); Scaled(c[7] + j, x70, x71, 1f);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GatheredB8x1(int kLen, float** ar, int aStep, float** bRows, int j, float** c)
    {
        float* a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3], a4 = ar[4], a5 = ar[5], a6 = ar[6], a7 = ar[7];
        Vector512<float> x0 = default, x1 = default, x2 = default, x3 = default, x4 = default, x5 = default, x6 = default, x7 = default;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += aStep)
        {
            var b0 = Vector512.Load(bRows[p] + j);
            x0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[off]), b0, x0);
            x1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[off]), b0, x1);
            x2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[off]), b0, x2);
            x3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[off]), b0, x3);
            x4 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[off]), b0, x4);
            x5 = Vector512.FusedMultiplyAdd(Vector512.Create(a5[off]), b0, x5);
            x6 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[off]), b0, x6);
            x7 = Vector512.FusedMultiplyAdd(Vector512.Create(a7[off]), b0, x7);
        }
        Scaled(c[0] + j, x0, 1f); Scaled(c[1] + j, x1, 1f); Scaled(c[2] + j, x2, 1f); Scaled(c[3] + j, x3, 1f);
        Scaled(c[4] + j, x4, 1f); Scaled(c[5] + j, x5, 1f); Scaled(c[6] + j, x6, 1f); Scaled(c[7] + j, x7, 1f);
    }

    /// <summary>c[0 .. 32) = beta · c + (x0, x1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Scaled(float* c, Vector512<float> x0, Vector512<float> x1, float beta)
    {
        var bv = Vector512.Create(beta);
        Vector512.FusedMultiplyAdd(Vector512.Load(c), bv, x0).Store(c);
        Vector512.FusedMultiplyAdd(Vector512.Load(c + 16), bv, x1).Store(c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Scaled(float* c, Vector512<float> x, float beta) => Vector512.FusedMultiplyAdd(Vector512.Load(c), Vector512.Create(beta), x).Store(c);

    /// <summary>
    /// dst (cols × ldDst, columns 0 .. rowsPadded) = srcᵀ for src (rows × cols, row stride ld; cols a multiple of 4):
    /// dst[p·ldDst + t] = src[t·ld + p] for t &lt; rows, 0 for rows ≤ t &lt; rowsPadded. 4×4 blocks go through registers.
    /// Unlike <see cref="AttentionTiles.Transpose"/> the destination stride is free, so a chunk of keys can land inside
    /// a wider transposed matrix.
    /// </summary>
    public static void TransposeInto(float* src, int rows, int cols, long ld, float* dst, long ldDst, int rowsPadded)
    {
        int full = rows & ~3;
        for (int t = 0; t < full; t += 4)
        {
            float* s0 = src + t * ld;
            for (int p = 0; p < cols; p += 4)
            {
                var r0 = Vector128.Load(s0 + p);
                var r1 = Vector128.Load(s0 + ld + p);
                var r2 = Vector128.Load(s0 + 2 * ld + p);
                var r3 = Vector128.Load(s0 + 3 * ld + p);
                var t0 = System.Runtime.Intrinsics.X86.Sse.UnpackLow(r0, r1);   // a0 b0 a1 b1
                var t1 = System.Runtime.Intrinsics.X86.Sse.UnpackLow(r2, r3);   // c0 d0 c1 d1
                var t2 = System.Runtime.Intrinsics.X86.Sse.UnpackHigh(r0, r1);  // a2 b2 a3 b3
                var t3 = System.Runtime.Intrinsics.X86.Sse.UnpackHigh(r2, r3);  // c2 d2 c3 d3
                float* d = dst + p * ldDst + t;
                System.Runtime.Intrinsics.X86.Sse.MoveLowToHigh(t0, t1).Store(d);
                System.Runtime.Intrinsics.X86.Sse.MoveHighToLow(t1, t0).Store(d + ldDst);
                System.Runtime.Intrinsics.X86.Sse.MoveLowToHigh(t2, t3).Store(d + 2 * ldDst);
                System.Runtime.Intrinsics.X86.Sse.MoveHighToLow(t3, t2).Store(d + 3 * ldDst);
            }
        }
        for (int p = 0; p < cols; p++)
        {
            float* d = dst + p * ldDst;
            for (int t = full; t < rows; t++) d[t] = src[t * ld + p];
            for (int t = rows; t < rowsPadded; t++) d[t] = 0f;
        }
    }
}
