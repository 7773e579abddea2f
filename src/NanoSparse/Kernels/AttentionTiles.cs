using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Register-tiled products for one attention head whose size is a multiple of 16 (AVX-512). A head's products are
/// tiny (T×T×hs, e.g. 64×64×32): through the general GEMM they pay for packing and dispatch more than for the math.
/// Here every product is "4 rows of C += Σ_p a_r[p] · (row p of B)": the B rows (K or V transposed into a scratch,
/// or V, K, Q, dY read in place) are loaded as whole vectors, the four A entries are broadcast, and the four output
/// rows stay in 4·NV zmm accumulators for the whole reduction. The A entries of row r sit at a_r + p·aStep, so the
/// same tile serves A (aStep = 1, rows of a row-major matrix) and Aᵀ (aStep = lda, columns): no transposed copies of
/// P or dS. Rows past the end of a block point at a valid row for A and at a discard row for C.
/// </summary>
internal static unsafe class AttentionTiles
{
    /// <summary>Column vectors per tile: 4 (64 floats) when that many columns remain, then 2, then 1.</summary>
    public static void Rows4(int kLen, float* a0, float* a1, float* a2, float* a3, int aStep, float* b, int ldb,
        int cols, float* c0, float* c1, float* c2, float* c3, float alpha)
    {
        int j = 0;
        for (; j + 64 <= cols; j += 64)
            Tile4x4(kLen, a0, a1, a2, a3, aStep, b + j, ldb, c0 + j, c1 + j, c2 + j, c3 + j, alpha);
        for (; j + 32 <= cols; j += 32)
            Tile4x2(kLen, a0, a1, a2, a3, aStep, b + j, ldb, c0 + j, c1 + j, c2 + j, c3 + j, alpha);
        for (; j < cols; j += 16)
            Tile4x1(kLen, a0, a1, a2, a3, aStep, b + j, ldb, c0 + j, c1 + j, c2 + j, c3 + j, alpha);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4x4(int kLen, float* a0, float* a1, float* a2, float* a3, int aStep, float* b, int ldb,
        float* c0, float* c1, float* c2, float* c3, float alpha)
    {
        Vector512<float> x00 = default, x01 = default, x02 = default, x03 = default;
        Vector512<float> x10 = default, x11 = default, x12 = default, x13 = default;
        Vector512<float> x20 = default, x21 = default, x22 = default, x23 = default;
        Vector512<float> x30 = default, x31 = default, x32 = default, x33 = default;
        for (int p = 0; p < kLen; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var b3 = Vector512.Load(b + 48);
            var s = Vector512.Create(*a0);
            x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01);
            x02 = Vector512.FusedMultiplyAdd(s, b2, x02); x03 = Vector512.FusedMultiplyAdd(s, b3, x03);
            s = Vector512.Create(*a1);
            x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11);
            x12 = Vector512.FusedMultiplyAdd(s, b2, x12); x13 = Vector512.FusedMultiplyAdd(s, b3, x13);
            s = Vector512.Create(*a2);
            x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21);
            x22 = Vector512.FusedMultiplyAdd(s, b2, x22); x23 = Vector512.FusedMultiplyAdd(s, b3, x23);
            s = Vector512.Create(*a3);
            x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31);
            x32 = Vector512.FusedMultiplyAdd(s, b2, x32); x33 = Vector512.FusedMultiplyAdd(s, b3, x33);
            a0 += aStep; a1 += aStep; a2 += aStep; a3 += aStep;
            b += ldb;
        }
        Store(c0, x00, alpha); Store(c0 + 16, x01, alpha); Store(c0 + 32, x02, alpha); Store(c0 + 48, x03, alpha);
        Store(c1, x10, alpha); Store(c1 + 16, x11, alpha); Store(c1 + 32, x12, alpha); Store(c1 + 48, x13, alpha);
        Store(c2, x20, alpha); Store(c2 + 16, x21, alpha); Store(c2 + 32, x22, alpha); Store(c2 + 48, x23, alpha);
        Store(c3, x30, alpha); Store(c3 + 16, x31, alpha); Store(c3 + 32, x32, alpha); Store(c3 + 48, x33, alpha);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4x2(int kLen, float* a0, float* a1, float* a2, float* a3, int aStep, float* b, int ldb,
        float* c0, float* c1, float* c2, float* c3, float alpha)
    {
        Vector512<float> x00 = default, x01 = default, x10 = default, x11 = default;
        Vector512<float> x20 = default, x21 = default, x30 = default, x31 = default;
        for (int p = 0; p < kLen; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var s = Vector512.Create(*a0);
            x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01);
            s = Vector512.Create(*a1);
            x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11);
            s = Vector512.Create(*a2);
            x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21);
            s = Vector512.Create(*a3);
            x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31);
            a0 += aStep; a1 += aStep; a2 += aStep; a3 += aStep;
            b += ldb;
        }
        Store(c0, x00, alpha); Store(c0 + 16, x01, alpha);
        Store(c1, x10, alpha); Store(c1 + 16, x11, alpha);
        Store(c2, x20, alpha); Store(c2 + 16, x21, alpha);
        Store(c3, x30, alpha); Store(c3 + 16, x31, alpha);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4x1(int kLen, float* a0, float* a1, float* a2, float* a3, int aStep, float* b, int ldb,
        float* c0, float* c1, float* c2, float* c3, float alpha, bool accumulate = false)
    {
        Vector512<float> x0 = default, x1 = default, x2 = default, x3 = default;
        for (int p = 0; p < kLen; p++)
        {
            var b0 = Vector512.Load(b);
            x0 = Vector512.FusedMultiplyAdd(Vector512.Create(*a0), b0, x0);
            x1 = Vector512.FusedMultiplyAdd(Vector512.Create(*a1), b0, x1);
            x2 = Vector512.FusedMultiplyAdd(Vector512.Create(*a2), b0, x2);
            x3 = Vector512.FusedMultiplyAdd(Vector512.Create(*a3), b0, x3);
            a0 += aStep; a1 += aStep; a2 += aStep; a3 += aStep;
            b += ldb;
        }
        Store(c0, x0, alpha, accumulate); Store(c1, x1, alpha, accumulate);
        Store(c2, x2, alpha, accumulate); Store(c3, x3, alpha, accumulate);
    }

    /// <summary>
    /// Eight rows of C (c + r·ldc, r &lt; rows; the rest go to discard) = alpha · Σ_p a_r[p·aStep] · (row p of B) with
    /// a_r = a + min(r, rows − 1)·lda, over cols (a multiple of 16) columns. For the products whose output is one head
    /// wide (P·V, dS·K, Pᵀ·dY, dSᵀ·Q): 8 rows × 2 vectors keep 16 accumulators, so each loaded B vector feeds 8
    /// multiply-adds instead of the 4-row tile's 4. accumulate: C += alpha · Σ ... instead (the discard row is cleared
    /// first when some tile rows go there, so it holds no stale values).
    /// </summary>
    public static void Rows8(int kLen, float* a, long lda, int aStep, int rows, float* b, int ldb, int cols,
        float* c, int ldc, float* discard, float alpha, bool accumulate = false)
    {
        if (accumulate && rows < 8) new Span<float>(discard, cols).Clear();
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * lda, a2 = a + Math.Min(2, rows - 1) * lda, a3 = a + Math.Min(3, rows - 1) * lda;
        float* a4 = a + Math.Min(4, rows - 1) * lda, a5 = a + Math.Min(5, rows - 1) * lda, a6 = a + Math.Min(6, rows - 1) * lda;
        float* a7 = a + Math.Min(7, rows - 1) * lda;
        var rowsOut = stackalloc float*[8];
        for (int r = 0; r < 8; r++) rowsOut[r] = r < rows ? c + (long)r * ldc : discard;
        int j = 0;
        for (; j + 32 <= cols; j += 32)
            Tile8x2(kLen, a0, a1, a2, a3, a4, a5, a6, a7, aStep, b + j, ldb, rowsOut, j, alpha, accumulate);
        for (; j < cols; j += 16)
        {
            Tile4x1(kLen, a0, a1, a2, a3, aStep, b + j, ldb, rowsOut[0] + j, rowsOut[1] + j, rowsOut[2] + j, rowsOut[3] + j, alpha, accumulate);
            Tile4x1(kLen, a4, a5, a6, a7, aStep, b + j, ldb, rowsOut[4] + j, rowsOut[5] + j, rowsOut[6] + j, rowsOut[7] + j, alpha, accumulate);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile8x2(int kLen, float* a0, float* a1, float* a2, float* a3, float* a4, float* a5, float* a6, float* a7,
        int aStep, float* b, int ldb, float** c, int j, float alpha, bool accumulate)
    {
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
        Store(c[0] + j, x00, alpha, accumulate); Store(c[0] + j + 16, x01, alpha, accumulate);
        Store(c[1] + j, x10, alpha, accumulate); Store(c[1] + j + 16, x11, alpha, accumulate);
        Store(c[2] + j, x20, alpha, accumulate); Store(c[2] + j + 16, x21, alpha, accumulate);
        Store(c[3] + j, x30, alpha, accumulate); Store(c[3] + j + 16, x31, alpha, accumulate);
        Store(c[4] + j, x40, alpha, accumulate); Store(c[4] + j + 16, x41, alpha, accumulate);
        Store(c[5] + j, x50, alpha, accumulate); Store(c[5] + j + 16, x51, alpha, accumulate);
        Store(c[6] + j, x60, alpha, accumulate); Store(c[6] + j + 16, x61, alpha, accumulate);
        Store(c[7] + j, x70, alpha, accumulate); Store(c[7] + j + 16, x71, alpha, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* c, Vector512<float> x, float alpha) => (x * Vector512.Create(alpha)).Store(c);

    /// <summary>c = alpha · x, or c += alpha · x when accumulating.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* c, Vector512<float> x, float alpha, bool accumulate) =>
        (accumulate ? Vector512.FusedMultiplyAdd(x, Vector512.Create(alpha), Vector512.Load(c)) : x * Vector512.Create(alpha)).Store(c);

    /// <summary>
    /// dst (cols × rowsPadded) = srcᵀ for src (rows × cols, row stride ld; cols a multiple of 4); columns
    /// rows..rowsPadded of dst are 0. 4×4 blocks go through registers (the SSE unpack/movlh/movhl transpose).
    /// </summary>
    public static void Transpose(float* src, int rows, int cols, int ld, float* dst, int rowsPadded)
    {
        int full = rows & ~3;
        for (int t = 0; t < full; t += 4)
        {
            float* s0 = src + (long)t * ld;
            for (int p = 0; p < cols; p += 4)
            {
                var r0 = Vector128.Load(s0 + p);
                var r1 = Vector128.Load(s0 + ld + p);
                var r2 = Vector128.Load(s0 + 2L * ld + p);
                var r3 = Vector128.Load(s0 + 3L * ld + p);
                var t0 = System.Runtime.Intrinsics.X86.Sse.UnpackLow(r0, r1);   // a0 b0 a1 b1
                var t1 = System.Runtime.Intrinsics.X86.Sse.UnpackLow(r2, r3);   // c0 d0 c1 d1
                var t2 = System.Runtime.Intrinsics.X86.Sse.UnpackHigh(r0, r1);  // a2 b2 a3 b3
                var t3 = System.Runtime.Intrinsics.X86.Sse.UnpackHigh(r2, r3);  // c2 d2 c3 d3
                float* d = dst + (long)p * rowsPadded + t;
                System.Runtime.Intrinsics.X86.Sse.MoveLowToHigh(t0, t1).Store(d);
                System.Runtime.Intrinsics.X86.Sse.MoveHighToLow(t1, t0).Store(d + rowsPadded);
                System.Runtime.Intrinsics.X86.Sse.MoveLowToHigh(t2, t3).Store(d + 2L * rowsPadded);
                System.Runtime.Intrinsics.X86.Sse.MoveHighToLow(t3, t2).Store(d + 3L * rowsPadded);
            }
        }
        for (int p = 0; p < cols; p++)
        {
            float* d = dst + (long)p * rowsPadded;
            for (int t = full; t < rows; t++) d[t] = src[(long)t * ld + p];
            for (int t = rows; t < rowsPadded; t++) d[t] = 0f;
        }
    }

    static readonly Vector512<int> Iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>Lanes j0..j0+15 that are causal keys of query t (j ≤ t).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Causal(int j0, int t) =>
        Vector512.LessThanOrEqual(Iota + Vector512.Create(j0), Vector512.Create(t)).AsSingle();

    /// <summary>
    /// Softmax of the scores row[0..t] in place, the rest of the row up to cols (a multiple of 16) set to 0; returns
    /// the log-partition max + log Σ exp(s − max). One call and three vector passes instead of a library call per step.
    /// </summary>
    public static float SoftmaxRow(float* row, int t, int cols)
    {
        var ninf = Vector512.Create(float.NegativeInfinity);
        var mx = ninf;
        for (int j = 0; j <= t; j += 16)
            mx = Vector512.Max(mx, Vector512.ConditionalSelect(Causal(j, t), Vector512.Load(row + j), ninf));
        float max = HorizontalMax(mx);
        var m = Vector512.Create(max);
        var sum = Vector512<float>.Zero;
        for (int j = 0; j < cols; j += 16)
        {
            var e = Vector512.ConditionalSelect(Causal(j, t), VectorExp.Exp(Vector512.Load(row + j) - m), Vector512<float>.Zero);
            e.Store(row + j);
            sum += e;
        }
        float total = Vector512.Sum(sum);
        var inv = Vector512.Create(1f / total);
        for (int j = 0; j <= t; j += 16) (Vector512.Load(row + j) * inv).Store(row + j);
        return max + MathF.Log(total);
    }

    /// <summary>The largest of 16 lanes by halving (4 steps instead of 15 lane extracts).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float HorizontalMax(Vector512<float> x)
    {
        var m8 = Vector256.Max(x.GetLower(), x.GetUpper());
        var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
        var m2 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m2.ToScalar(), m2.GetElement(1));
    }

    /// <summary>
    /// Softmax backward over a row of cols (p is 0 past the causal keys): ds = p ⊙ (dp − Σ p·dp) · scale, in place of dp.
    /// </summary>
    public static void SoftmaxGradRow(float* p, float* dp, int cols, float scale)
    {
        var acc = Vector512<float>.Zero;
        for (int j = 0; j < cols; j += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(p + j), Vector512.Load(dp + j), acc);
        var dot = Vector512.Create(Vector512.Sum(acc));
        var sc = Vector512.Create(scale);
        for (int j = 0; j < cols; j += 16)
            (Vector512.Load(p + j) * (Vector512.Load(dp + j) - dot) * sc).Store(dp + j);
    }
}
