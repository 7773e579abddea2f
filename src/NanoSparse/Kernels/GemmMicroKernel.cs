using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// The register-blocked inner kernel of <see cref="Gemm"/>: one MR×NR (12×32) tile of C from a packed A micro-panel
/// (kc steps of MR values, one per row, broadcast) and a packed B micro-panel (kc steps of NR values, loaded as
/// vectors). Per k step: 2 vector loads of B, MR broadcasts of A, 2·MR fused multiply-adds (Goto and van de
/// Geijn, "Anatomy of High-Performance Matrix Multiplication", 2008; BLIS micro-kernel of Van Zee et al.).
/// Tile = alpha·acc + beta·tile (beta == 0: the tile is not read).
/// </summary>
static unsafe class GemmMicroKernel
{
    /// <summary>Rows of the C tile (broadcast dimension).</summary>
    public const int MR = 12;
    /// <summary>Columns of the C tile (vector dimension): two 16-float vectors.</summary>
    public const int NR = 32;

    static readonly bool UseAvx512 = Avx512F.IsSupported;
    static readonly bool UseAvx2 = Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Name of the instruction set the kernel runs with, for benchmark tables.</summary>
    public static string InstructionSet => UseAvx512 ? "avx512" : UseAvx2 ? "avx2" : "scalar";

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        if (UseAvx512) Kernel12x32Avx512(kc, ap, 1, aStep, bp, c, ldc, alpha, beta);
        else if (UseAvx2)
        {
            // 16 ymm registers hold a 6×16 tile (12 accumulators), so the 12×32 tile is four passes.
            float* c6 = c + 6 * ldc;
            Kernel6x16Avx2(kc, ap, aStep, bp, c, ldc, alpha, beta);
            Kernel6x16Avx2(kc, ap, aStep, bp + 16, c + 16, ldc, alpha, beta);
            Kernel6x16Avx2(kc, ap + 6, aStep, bp, c6, ldc, alpha, beta);
            Kernel6x16Avx2(kc, ap + 6, aStep, bp + 16, c6 + 16, ldc, alpha, beta);
        }
        else KernelScalar(kc, ap, aStep, bp, c, ldc, alpha, beta);
    }

    /// <summary>The MR×16 tile of the first 16 columns of the B micro-panel (for panels cut by the edge of C).</summary>
    public static void RunHalf(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        if (UseAvx512) Kernel12x16Avx512(kc, ap, aStep, bp, c, ldc, alpha, beta);
        else if (UseAvx2)
        {
            Kernel6x16Avx2(kc, ap, aStep, bp, c, ldc, alpha, beta);
            Kernel6x16Avx2(kc, ap + 6, aStep, bp, c + 6 * ldc, ldc, alpha, beta);
        }
        else KernelScalar(kc, ap, aStep, bp, c, ldc, alpha, beta);
    }

    /// <summary>
    /// The MR×w tile of the first w ≥ cols columns of the B micro-panel, w the narrowest of 8, 16, 24 and 32 that
    /// holds cols (for panels cut by the edge of C: a 21-column tail runs 24 columns, not 32; a 4-column tail 8, not 16).
    /// </summary>
    public static void RunColumns(int cols, int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        if (UseAvx512 && cols <= 8) Kernel12x8Avx512(kc, ap, aStep, bp, c, ldc, alpha, beta);
        else if (cols <= NR / 2) RunHalf(kc, ap, aStep, bp, c, ldc, alpha, beta);
        else if (UseAvx512 && cols <= 24) Kernel12x24Avx512(kc, ap, aStep, bp, c, ldc, alpha, beta);
        else Run(kc, ap, aStep, bp, c, ldc, alpha, beta);
    }

    // 8 columns: ymm accumulators (half the multiply-add cost of a zmm on this kind of core).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel12x8Avx512(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector256<float> c6 = default, c7 = default, c8 = default, c9 = default, ca = default, cb = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(bp);
            c0 = Fma.MultiplyAdd(Vector256.Create(ap[0]), b0, c0);
            c1 = Fma.MultiplyAdd(Vector256.Create(ap[1]), b0, c1);
            c2 = Fma.MultiplyAdd(Vector256.Create(ap[2]), b0, c2);
            c3 = Fma.MultiplyAdd(Vector256.Create(ap[3]), b0, c3);
            c4 = Fma.MultiplyAdd(Vector256.Create(ap[4]), b0, c4);
            c5 = Fma.MultiplyAdd(Vector256.Create(ap[5]), b0, c5);
            c6 = Fma.MultiplyAdd(Vector256.Create(ap[6]), b0, c6);
            c7 = Fma.MultiplyAdd(Vector256.Create(ap[7]), b0, c7);
            c8 = Fma.MultiplyAdd(Vector256.Create(ap[8]), b0, c8);
            c9 = Fma.MultiplyAdd(Vector256.Create(ap[9]), b0, c9);
            ca = Fma.MultiplyAdd(Vector256.Create(ap[10]), b0, ca);
            cb = Fma.MultiplyAdd(Vector256.Create(ap[11]), b0, cb);
            ap += aStep;
            bp += NR;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        Put8(c, c0, va, vb, beta); c += ldc; Put8(c, c1, va, vb, beta); c += ldc;
        Put8(c, c2, va, vb, beta); c += ldc; Put8(c, c3, va, vb, beta); c += ldc;
        Put8(c, c4, va, vb, beta); c += ldc; Put8(c, c5, va, vb, beta); c += ldc;
        Put8(c, c6, va, vb, beta); c += ldc; Put8(c, c7, va, vb, beta); c += ldc;
        Put8(c, c8, va, vb, beta); c += ldc; Put8(c, c9, va, vb, beta); c += ldc;
        Put8(c, ca, va, vb, beta); c += ldc; Put8(c, cb, va, vb, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put8(float* c, Vector256<float> x, Vector256<float> va, Vector256<float> vb, float beta)
    {
        if (beta == 0) Vector256.Store(x * va, c);
        else Vector256.Store(Fma.MultiplyAdd(x, va, Vector256.Load(c) * vb), c);
    }

    // 24 columns: a zmm and a ymm accumulator per row (the ymm multiply-adds cost half).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel12x24Avx512(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        Vector512<float> c00 = default, c10 = default, c20 = default, c30 = default, c40 = default, c50 = default;
        Vector512<float> c60 = default, c70 = default, c80 = default, c90 = default, ca0 = default, cb0 = default;
        Vector256<float> c01 = default, c11 = default, c21 = default, c31 = default, c41 = default, c51 = default;
        Vector256<float> c61 = default, c71 = default, c81 = default, c91 = default, ca1 = default, cb1 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(bp);
            var b1 = Vector256.Load(bp + 16);
            var a = Vector512.Create(ap[0]);
            c00 = Avx512F.FusedMultiplyAdd(a, b0, c00); c01 = Fma.MultiplyAdd(a.GetLower(), b1, c01);
            a = Vector512.Create(ap[1]);
            c10 = Avx512F.FusedMultiplyAdd(a, b0, c10); c11 = Fma.MultiplyAdd(a.GetLower(), b1, c11);
            a = Vector512.Create(ap[2]);
            c20 = Avx512F.FusedMultiplyAdd(a, b0, c20); c21 = Fma.MultiplyAdd(a.GetLower(), b1, c21);
            a = Vector512.Create(ap[3]);
            c30 = Avx512F.FusedMultiplyAdd(a, b0, c30); c31 = Fma.MultiplyAdd(a.GetLower(), b1, c31);
            a = Vector512.Create(ap[4]);
            c40 = Avx512F.FusedMultiplyAdd(a, b0, c40); c41 = Fma.MultiplyAdd(a.GetLower(), b1, c41);
            a = Vector512.Create(ap[5]);
            c50 = Avx512F.FusedMultiplyAdd(a, b0, c50); c51 = Fma.MultiplyAdd(a.GetLower(), b1, c51);
            a = Vector512.Create(ap[6]);
            c60 = Avx512F.FusedMultiplyAdd(a, b0, c60); c61 = Fma.MultiplyAdd(a.GetLower(), b1, c61);
            a = Vector512.Create(ap[7]);
            c70 = Avx512F.FusedMultiplyAdd(a, b0, c70); c71 = Fma.MultiplyAdd(a.GetLower(), b1, c71);
            a = Vector512.Create(ap[8]);
            c80 = Avx512F.FusedMultiplyAdd(a, b0, c80); c81 = Fma.MultiplyAdd(a.GetLower(), b1, c81);
            a = Vector512.Create(ap[9]);
            c90 = Avx512F.FusedMultiplyAdd(a, b0, c90); c91 = Fma.MultiplyAdd(a.GetLower(), b1, c91);
            a = Vector512.Create(ap[10]);
            ca0 = Avx512F.FusedMultiplyAdd(a, b0, ca0); ca1 = Fma.MultiplyAdd(a.GetLower(), b1, ca1);
            a = Vector512.Create(ap[11]);
            cb0 = Avx512F.FusedMultiplyAdd(a, b0, cb0); cb1 = Fma.MultiplyAdd(a.GetLower(), b1, cb1);
            ap += aStep;
            bp += NR;
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        var va8 = va.GetLower();
        var vb8 = vb.GetLower();
        Put16(c, c00, va, vb, beta); Put8(c + 16, c01, va8, vb8, beta); c += ldc;
        Put16(c, c10, va, vb, beta); Put8(c + 16, c11, va8, vb8, beta); c += ldc;
        Put16(c, c20, va, vb, beta); Put8(c + 16, c21, va8, vb8, beta); c += ldc;
        Put16(c, c30, va, vb, beta); Put8(c + 16, c31, va8, vb8, beta); c += ldc;
        Put16(c, c40, va, vb, beta); Put8(c + 16, c41, va8, vb8, beta); c += ldc;
        Put16(c, c50, va, vb, beta); Put8(c + 16, c51, va8, vb8, beta); c += ldc;
        Put16(c, c60, va, vb, beta); Put8(c + 16, c61, va8, vb8, beta); c += ldc;
        Put16(c, c70, va, vb, beta); Put8(c + 16, c71, va8, vb8, beta); c += ldc;
        Put16(c, c80, va, vb, beta); Put8(c + 16, c81, va8, vb8, beta); c += ldc;
        Put16(c, c90, va, vb, beta); Put8(c + 16, c91, va8, vb8, beta); c += ldc;
        Put16(c, ca0, va, vb, beta); Put8(c + 16, ca1, va8, vb8, beta); c += ldc;
        Put16(c, cb0, va, vb, beta); Put8(c + 16, cb1, va8, vb8, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel12x16Avx512(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> c6 = default, c7 = default, c8 = default, c9 = default, ca = default, cb = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(bp);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[0]), b0, c0);
            c1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[1]), b0, c1);
            c2 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[2]), b0, c2);
            c3 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[3]), b0, c3);
            c4 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[4]), b0, c4);
            c5 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[5]), b0, c5);
            c6 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[6]), b0, c6);
            c7 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[7]), b0, c7);
            c8 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[8]), b0, c8);
            c9 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[9]), b0, c9);
            ca = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[10]), b0, ca);
            cb = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[11]), b0, cb);
            ap += aStep;
            bp += NR;
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Put16(c, c0, va, vb, beta); c += ldc; Put16(c, c1, va, vb, beta); c += ldc;
        Put16(c, c2, va, vb, beta); c += ldc; Put16(c, c3, va, vb, beta); c += ldc;
        Put16(c, c4, va, vb, beta); c += ldc; Put16(c, c5, va, vb, beta); c += ldc;
        Put16(c, c6, va, vb, beta); c += ldc; Put16(c, c7, va, vb, beta); c += ldc;
        Put16(c, c8, va, vb, beta); c += ldc; Put16(c, c9, va, vb, beta); c += ldc;
        Put16(c, ca, va, vb, beta); c += ldc; Put16(c, cb, va, vb, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put16(float* c, Vector512<float> x, Vector512<float> va, Vector512<float> vb, float beta)
    {
        if (beta == 0) Vector512.Store(x * va, c);
        else Vector512.Store(Avx512F.FusedMultiplyAdd(x, va, Vector512.Load(c) * vb), c);
    }

    /// <summary>
    /// The 12×32 tile with A element (r, p) at a[r·rowStride + p·kStep]: a packed micro-panel (1, MR), Aᵀ read in
    /// place (1, lda: each k step is 12 contiguous floats of a stored row) or A read in place (lda, 1: 12 stored rows,
    /// no transposing copy). The 12 row addresses are 4 pointers (rows 0, 3, 6, 9) plus 0, rowStride or 2·rowStride,
    /// so each broadcast is one load with a base + scaled index address, and a k step advances the 4 pointers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Kernel12x32Avx512(int kc, float* a, long rowStride, long kStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        // 24 accumulators + 2 B vectors + 1 broadcast = 27 of the 32 zmm registers.
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        PrefetchRows(c, ldc, MR);
        long r1 = rowStride, r2 = 2 * rowStride;
        float* a0 = a, a3 = a + 3 * rowStride, a6 = a + 6 * rowStride, a9 = a + 9 * rowStride;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(bp);
            var b1 = Vector512.Load(bp + 16);
            var x = Vector512.Create(a0[0]);
            c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a0[r1]);
            c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a0[r2]);
            c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[0]);
            c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a3[r1]);
            c40 = Avx512F.FusedMultiplyAdd(x, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a3[r2]);
            c50 = Avx512F.FusedMultiplyAdd(x, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a6[0]);
            c60 = Avx512F.FusedMultiplyAdd(x, b0, c60); c61 = Avx512F.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a6[r1]);
            c70 = Avx512F.FusedMultiplyAdd(x, b0, c70); c71 = Avx512F.FusedMultiplyAdd(x, b1, c71);
            x = Vector512.Create(a6[r2]);
            c80 = Avx512F.FusedMultiplyAdd(x, b0, c80); c81 = Avx512F.FusedMultiplyAdd(x, b1, c81);
            x = Vector512.Create(a9[0]);
            c90 = Avx512F.FusedMultiplyAdd(x, b0, c90); c91 = Avx512F.FusedMultiplyAdd(x, b1, c91);
            x = Vector512.Create(a9[r1]);
            ca0 = Avx512F.FusedMultiplyAdd(x, b0, ca0); ca1 = Avx512F.FusedMultiplyAdd(x, b1, ca1);
            x = Vector512.Create(a9[r2]);
            cb0 = Avx512F.FusedMultiplyAdd(x, b0, cb0); cb1 = Avx512F.FusedMultiplyAdd(x, b1, cb1);
            a0 += kStep; a3 += kStep; a6 += kStep; a9 += kStep;
            bp += NR;
        }
        var va = Vector512.Create(alpha);
        if (beta == 0)
        {
            Put(c, c00, c01, va); c += ldc; Put(c, c10, c11, va); c += ldc;
            Put(c, c20, c21, va); c += ldc; Put(c, c30, c31, va); c += ldc;
            Put(c, c40, c41, va); c += ldc; Put(c, c50, c51, va); c += ldc;
            Put(c, c60, c61, va); c += ldc; Put(c, c70, c71, va); c += ldc;
            Put(c, c80, c81, va); c += ldc; Put(c, c90, c91, va); c += ldc;
            Put(c, ca0, ca1, va); c += ldc; Put(c, cb0, cb1, va);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Update(c, c00, c01, va, vb); c += ldc; Update(c, c10, c11, va, vb); c += ldc;
            Update(c, c20, c21, va, vb); c += ldc; Update(c, c30, c31, va, vb); c += ldc;
            Update(c, c40, c41, va, vb); c += ldc; Update(c, c50, c51, va, vb); c += ldc;
            Update(c, c60, c61, va, vb); c += ldc; Update(c, c70, c71, va, vb); c += ldc;
            Update(c, c80, c81, va, vb); c += ldc; Update(c, c90, c91, va, vb); c += ldc;
            Update(c, ca0, ca1, va, vb); c += ldc; Update(c, cb0, cb1, va, vb);
        }
    }

    /// <summary>
    /// Starts loading the first 128 bytes of each of `rows` rows (stride ld): a tile of C, which a kernel stores (or
    /// reads and stores) only after its k loop, or an epilogue's tile. In a model step these are often buffers last
    /// touched a whole pass ago, out in L3; the k loop hides the loads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchRows(float* c, int ld, int rows)
    {
        if (!Sse.IsSupported) return;
        for (int r = 0; r < rows; r++, c += ld)
        {
            Sse.Prefetch0(c);
            Sse.Prefetch0(c + 16);
        }
    }

    /// <summary>Whether <see cref="Kernel12x32Avx512"/> can run on this machine (A read as stored rows needs it).</summary>
    public static bool HasStridedKernel => UseAvx512;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* c, Vector512<float> x0, Vector512<float> x1, Vector512<float> va)
    {
        Vector512.Store(x0 * va, c);
        Vector512.Store(x1 * va, c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Update(float* c, Vector512<float> x0, Vector512<float> x1, Vector512<float> va, Vector512<float> vb)
    {
        Vector512.Store(Avx512F.FusedMultiplyAdd(x0, va, Vector512.Load(c) * vb), c);
        Vector512.Store(Avx512F.FusedMultiplyAdd(x1, va, Vector512.Load(c + 16) * vb), c + 16);
    }

    /// <summary>6×16 tile at columns [0,16) of a packed B micro-panel of row stride NR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel6x16Avx2(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var a = Vector256.Create(ap[0]);
            c00 = Fma.MultiplyAdd(a, b0, c00); c01 = Fma.MultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[1]);
            c10 = Fma.MultiplyAdd(a, b0, c10); c11 = Fma.MultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[2]);
            c20 = Fma.MultiplyAdd(a, b0, c20); c21 = Fma.MultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[3]);
            c30 = Fma.MultiplyAdd(a, b0, c30); c31 = Fma.MultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[4]);
            c40 = Fma.MultiplyAdd(a, b0, c40); c41 = Fma.MultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[5]);
            c50 = Fma.MultiplyAdd(a, b0, c50); c51 = Fma.MultiplyAdd(a, b1, c51);
            ap += aStep;
            bp += NR;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        Store(c, c00, c01, va, vb, beta); c += ldc;
        Store(c, c10, c11, va, vb, beta); c += ldc;
        Store(c, c20, c21, va, vb, beta); c += ldc;
        Store(c, c30, c31, va, vb, beta); c += ldc;
        Store(c, c40, c41, va, vb, beta); c += ldc;
        Store(c, c50, c51, va, vb, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* c, Vector256<float> x0, Vector256<float> x1, Vector256<float> va, Vector256<float> vb, float beta)
    {
        if (beta == 0)
        {
            Vector256.Store(x0 * va, c);
            Vector256.Store(x1 * va, c + 8);
        }
        else
        {
            Vector256.Store(Fma.MultiplyAdd(x0, va, Vector256.Load(c) * vb), c);
            Vector256.Store(Fma.MultiplyAdd(x1, va, Vector256.Load(c + 8) * vb), c + 8);
        }
    }

    static void KernelScalar(int kc, float* ap, int aStep, float* bp, float* c, int ldc, float alpha, float beta)
    {
        float* acc = stackalloc float[MR * NR];
        new Span<float>(acc, MR * NR).Clear();
        for (int p = 0; p < kc; p++)
        {
            for (int r = 0; r < MR; r++)
            {
                float av = ap[r];
                float* row = acc + r * NR;
                for (int j = 0; j < NR; j++) row[j] += av * bp[j];
            }
            ap += aStep;
            bp += NR;
        }
        for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++)
        {
            float* cr = c + r * ldc + j;
            *cr = beta == 0 ? alpha * acc[r * NR + j] : alpha * acc[r * NR + j] + beta * *cr;
        }
    }
}
