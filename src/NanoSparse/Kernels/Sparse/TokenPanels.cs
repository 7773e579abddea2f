using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// The two transposes of the token-major sparse products (CsrSpmmTokenMajor), on 16×16 blocks in AVX-512 registers:
///   In   panel (K × width, row stride width) = X[width tokens, 0..K)ᵀ
///   Out  Y[tokens, rows] = (tileᵀ + bias + add) ⊙ scale for a tile (rows × ldt, row stride ldt: 32 or 64)
/// Transpose (8×8 blocks in AVX registers: 24 shuffles per 64 floats) spent about a fifth of a token-major product's
/// time in these (a perf profile of the wide training step at 90%); a 16×16 block takes 64 shuffles per 256 floats
/// (unpack, shuffle within 128-bit lanes, then two rounds of 128-bit lane shuffles) and whole-vector loads and stores.
/// Edges that are not whole 16×16 blocks (K or rows not a multiple of 16, a short last panel) go to Transpose.Serial.
/// </summary>
internal static unsafe class TokenPanels
{
    public static bool Supported => Avx512F.IsSupported;

    /// <summary>panel[f·width + t] = x[t·ldx + f] for t &lt; w, f &lt; k; panel columns w..width zero (width a multiple of 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void In(float* x, int ldx, int k, int w, float* panel, int width)
    {
        if (w < width || !Supported)
        {
            Transpose.Serial(x, ldx, k, w, panel, width);
            if (w < width)
                for (int f = 0; f < k; f++) new Span<float>(panel + (long)f * width + w, width - w).Clear();
            return;
        }
        int full = k / 16 * 16;
        // 16 token rows at a time along all of K: 16 sequential read streams, which the prefetchers follow (K outermost
        // read all 64 rows at once, 64 streams). Measured on Zen 5 (scratch, one thread, 2048 × 3072 activations, best of
        // 20 alternating rounds): 1.18 against 1.73 ms; 2048 × 768: 0.13 against 0.16 ms.
        for (int t0 = 0; t0 < width; t0 += 16)
            for (int f0 = 0; f0 < full; f0 += 16)
                Block(x + (long)t0 * ldx + f0, ldx, panel + (long)f0 * width + t0, width, null, null, null);
        if (full < k) Transpose.Serial(x + full, ldx, k - full, width, panel + (long)full * width, width);
    }

    /// <summary>y[t·ldy + r] = (tile[r·ldt + t] + bias[r] + add[t·ldy + r]) · scale[t·ldy + r] for t &lt; w ≤ ldt, r &lt; count (each extra optional: null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Out(float* tile, int count, int w, float* y, int ldy, float* bias, float* add, float* scale, int ldt = 32)
    {
        int full = Supported ? count / 16 * 16 : 0;
        for (int t0 = 0; t0 + 16 <= w; t0 += 16)
            for (int r0 = 0; r0 < full; r0 += 16)
            {
                long at = (long)t0 * ldy + r0;
                Block(tile + (long)r0 * ldt + t0, ldt, y + at, ldy, bias == null ? null : bias + r0, add == null ? null : add + at, scale == null ? null : scale + at);
            }
        int fullTokens = Supported ? w / 16 * 16 : 0;
        if (fullTokens < w)   // the last tokens, every row
        {
            long at = (long)fullTokens * ldy;
            Transpose.Serial(tile + fullTokens, ldt, w - fullTokens, count, y + at, ldy, bias, add == null ? null : add + at, scale == null ? null : scale + at);
        }
        if (full < count && fullTokens > 0)   // the last rows of the full token blocks
            Transpose.Serial(tile + (long)full * ldt, ldt, fullTokens, count - full, y + full, ldy,
                bias == null ? null : bias + full, add == null ? null : add + full, scale == null ? null : scale + full);
    }

    /// <summary>
    /// dst row c (c &lt; 16, stride ldd) = (column c of the 16×16 block at src (row stride lds) + bias + add row c) ⊙ scale row c,
    /// add and scale with dst's stride.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Block(float* src, long lds, float* dst, long ldd, float* bias, float* add, float* scale)
    {
        var r0 = Vector512.Load(src); var r1 = Vector512.Load(src + lds);
        var r2 = Vector512.Load(src + 2 * lds); var r3 = Vector512.Load(src + 3 * lds);
        var r4 = Vector512.Load(src + 4 * lds); var r5 = Vector512.Load(src + 5 * lds);
        var r6 = Vector512.Load(src + 6 * lds); var r7 = Vector512.Load(src + 7 * lds);
        var r8 = Vector512.Load(src + 8 * lds); var r9 = Vector512.Load(src + 9 * lds);
        var r10 = Vector512.Load(src + 10 * lds); var r11 = Vector512.Load(src + 11 * lds);
        var r12 = Vector512.Load(src + 12 * lds); var r13 = Vector512.Load(src + 13 * lds);
        var r14 = Vector512.Load(src + 14 * lds); var r15 = Vector512.Load(src + 15 * lds);
        // Within each 128-bit lane l: pairs of rows interleaved, then the four columns 4l + m of each group of four
        // rows gathered: g{group}{m} holds, in lane l, column 4l + m of rows 4·group .. 4·group + 3.
        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5);
        var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        var t8 = Avx512F.UnpackLow(r8, r9); var t9 = Avx512F.UnpackHigh(r8, r9);
        var t10 = Avx512F.UnpackLow(r10, r11); var t11 = Avx512F.UnpackHigh(r10, r11);
        var t12 = Avx512F.UnpackLow(r12, r13); var t13 = Avx512F.UnpackHigh(r12, r13);
        var t14 = Avx512F.UnpackLow(r14, r15); var t15 = Avx512F.UnpackHigh(r14, r15);
        var g00 = Avx512F.Shuffle(t0, t2, 0x44); var g01 = Avx512F.Shuffle(t0, t2, 0xEE);
        var g02 = Avx512F.Shuffle(t1, t3, 0x44); var g03 = Avx512F.Shuffle(t1, t3, 0xEE);
        var g10 = Avx512F.Shuffle(t4, t6, 0x44); var g11 = Avx512F.Shuffle(t4, t6, 0xEE);
        var g12 = Avx512F.Shuffle(t5, t7, 0x44); var g13 = Avx512F.Shuffle(t5, t7, 0xEE);
        var g20 = Avx512F.Shuffle(t8, t10, 0x44); var g21 = Avx512F.Shuffle(t8, t10, 0xEE);
        var g22 = Avx512F.Shuffle(t9, t11, 0x44); var g23 = Avx512F.Shuffle(t9, t11, 0xEE);
        var g30 = Avx512F.Shuffle(t12, t14, 0x44); var g31 = Avx512F.Shuffle(t12, t14, 0xEE);
        var g32 = Avx512F.Shuffle(t13, t15, 0x44); var g33 = Avx512F.Shuffle(t13, t15, 0xEE);
        // Column 4l + m: lane l of g0m, g1m, g2m, g3m (a 4×4 transpose of 128-bit lanes).
        Lanes(g00, g10, g20, g30, dst, ldd, 0, bias, add, scale);
        Lanes(g01, g11, g21, g31, dst, ldd, 1, bias, add, scale);
        Lanes(g02, g12, g22, g32, dst, ldd, 2, bias, add, scale);
        Lanes(g03, g13, g23, g33, dst, ldd, 3, bias, add, scale);
    }

    /// <summary>dst rows m, 4 + m, 8 + m, 12 + m = lanes 0, 1, 2, 3 gathered from a0..a3 (each lane l of the result row 4l + m takes lane l of a0..a3 in turn).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Lanes(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3, float* dst, long ldd, int m,
        float* bias, float* add, float* scale)
    {
        var b0 = Avx512F.Shuffle4x128(a0, a1, 0x88);   // [a0.l0, a0.l2, a1.l0, a1.l2]
        var b1 = Avx512F.Shuffle4x128(a0, a1, 0xDD);   // [a0.l1, a0.l3, a1.l1, a1.l3]
        var b2 = Avx512F.Shuffle4x128(a2, a3, 0x88);
        var b3 = Avx512F.Shuffle4x128(a2, a3, 0xDD);
        Store(Avx512F.Shuffle4x128(b0, b2, 0x88), dst, ldd, m, bias, add, scale);        // lane 0 of each: column m
        Store(Avx512F.Shuffle4x128(b1, b3, 0x88), dst, ldd, 4 + m, bias, add, scale);    // lane 1: column 4 + m
        Store(Avx512F.Shuffle4x128(b0, b2, 0xDD), dst, ldd, 8 + m, bias, add, scale);    // lane 2: column 8 + m
        Store(Avx512F.Shuffle4x128(b1, b3, 0xDD), dst, ldd, 12 + m, bias, add, scale);   // lane 3: column 12 + m
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(Vector512<float> v, float* dst, long ldd, int c, float* bias, float* add, float* scale)
    {
        long at = c * ldd;
        if (bias != null) v += Vector512.Load(bias);
        if (add != null) v += Vector512.Load(add + at);
        if (scale != null) v *= Vector512.Load(scale + at);
        v.Store(dst + at);
    }
}
