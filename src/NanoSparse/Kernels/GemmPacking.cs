using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// Copies blocks of op(A) and op(B) into the contiguous micro-panel order the micro-kernel reads, so that the
/// kernel's loads are unit-stride whatever the transposes. Rows/columns past the matrix edge are zero-filled
/// so that edge tiles run the same kernel.
/// </summary>
static unsafe class GemmPacking
{
    const int MR = GemmMicroKernel.MR;
    const int NR = GemmMicroKernel.NR;

    /// <summary>
    /// Packs op(A)[i0..i0+mc, p0..p0+kc] as ceil(mc/MR) micro-panels; panel q holds, for each p, the MR values
    /// op(A)[i0+q·MR+r, p0+p] (r = 0..MR-1) at dst[q·MR·kc + p·MR + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(bool transA, float* a, int lda, int i0, int mc, int p0, int kc, float* dst)
    {
        int full = mc / MR * MR;
        if (transA && full > 0)
        {
            // op(A)(i, p) = a[p·lda + i]: source row p holds the k step p of every panel, so read each source row
            // once, front to back, and deal its 12-float pieces out to the panels (a panel-by-panel walk would
            // stride through the rows again for every panel).
            float* srcRow = a + (long)p0 * lda + i0;
            for (int p = 0; p < kc; p++, srcRow += lda)
            {
                float* d = dst + p * MR;
                for (int ir = 0; ir < full; ir += MR, d += MR * kc)
                {
                    Vector256.Store(Vector256.Load(srcRow + ir), d);
                    Vector128.Store(Vector128.Load(srcRow + ir + 8), d + 8);
                }
            }
            if (full == mc) return;
        }
        for (int ir = transA ? full : 0; ir < mc; ir += MR)
        {
            int rows = Math.Min(MR, mc - ir);
            float* panel = dst + ir * kc;
            if (transA)
            {
                // op(A)(i, p) = a[p·lda + i]: each k step is MR (12) contiguous floats.
                float* src = a + (long)p0 * lda + i0 + ir;
                if (rows == MR)
                {
                    for (int p = 0; p < kc; p++, src += lda, panel += MR)
                    {
                        Vector256.Store(Vector256.Load(src), panel);
                        Vector128.Store(Vector128.Load(src + 8), panel + 8);
                    }
                }
                else
                {
                    for (int p = 0; p < kc; p++, src += lda, panel += MR)
                        for (int r = 0; r < MR; r++) panel[r] = r < rows ? src[r] : 0f;
                }
            }
            else
            {
                // op(A)(i, p) = a[i·lda + p]: row r of the block becomes lane r of every k step.
                float* src = a + (long)(i0 + ir) * lda + p0;
                if (rows == MR && Sse.IsSupported)
                {
                    Transpose4x4Panel(src, lda, MR, kc, panel, MR);
                    continue;
                }
                if (rows < MR) new Span<float>(panel, kc * MR).Clear();
                for (int r = 0; r < rows; r++, src += lda)
                {
                    float* d = panel + r;
                    int p = 0;
                    for (; p + 4 <= kc; p += 4)
                    {
                        d[(p + 0) * MR] = src[p + 0];
                        d[(p + 1) * MR] = src[p + 1];
                        d[(p + 2) * MR] = src[p + 2];
                        d[(p + 3) * MR] = src[p + 3];
                    }
                    for (; p < kc; p++) d[p * MR] = src[p];
                }
            }
        }
    }

    /// <summary>
    /// rows (a multiple of 4) stored rows of length ≥ kc become the lanes of a panel: panel[p·width + r] = src[r·ld + p].
    /// 4×4 blocks (4 rows × 4 k steps) are transposed in registers (unpack + movlh/movhl, the SSE 4×4 transpose), so
    /// loads and stores are 4 floats wide instead of 1. Serves full A panels (width MR) and full panels of a
    /// transposed B (width NR: the weights of Y = X·Wᵀ).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Transpose4x4Panel(float* src, int ld, int rows, int kc, float* panel, int width)
    {
        int p = 0;
        for (; p + 4 <= kc; p += 4)
        {
            float* d = panel + p * width;
            for (int q = 0; q < rows; q += 4)
            {
                float* s0 = src + (long)q * ld + p;
                var r0 = Sse.LoadVector128(s0);
                var r1 = Sse.LoadVector128(s0 + ld);
                var r2 = Sse.LoadVector128(s0 + 2L * ld);
                var r3 = Sse.LoadVector128(s0 + 3L * ld);
                var t0 = Sse.UnpackLow(r0, r1);   // a0 b0 a1 b1
                var t1 = Sse.UnpackLow(r2, r3);   // c0 d0 c1 d1
                var t2 = Sse.UnpackHigh(r0, r1);  // a2 b2 a3 b3
                var t3 = Sse.UnpackHigh(r2, r3);  // c2 d2 c3 d3
                Sse.Store(d + q, Sse.MoveLowToHigh(t0, t1));              // a0 b0 c0 d0
                Sse.Store(d + width + q, Sse.MoveHighToLow(t1, t0));      // a1 b1 c1 d1
                Sse.Store(d + 2 * width + q, Sse.MoveLowToHigh(t2, t3));  // a2 b2 c2 d2
                Sse.Store(d + 3 * width + q, Sse.MoveHighToLow(t3, t2));  // a3 b3 c3 d3
            }
        }
        for (; p < kc; p++)
            for (int r = 0; r < rows; r++) panel[p * width + r] = src[(long)r * ld + p];
    }

    /// <summary>
    /// Packs op(B)[p0..p0+kc, j0..j0+nc] as ceil(nc/NR) micro-panels; panel q holds, for each p, the NR values
    /// op(B)[p0+p, j0+q·NR+j] (j = 0..NR-1) at dst[q·NR·kc + p·NR + j].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(bool transB, float* b, int ldb, int p0, int kc, int j0, int nc, float* dst)
    {
        int full = nc / NR * NR;
        if (!transB && full > 0)
        {
            // op(B)(p, j) = b[p·ldb + j]: read each stored row once, front to back (a stream the hardware prefetches
            // well when B is cold, as a layer's saved input is in the backward pass), dealing its 32-float pieces out
            // to the panels; a panel-by-panel walk would return to every row once per panel.
            float* srcRow = b + (long)p0 * ldb + j0;
            for (int p = 0; p < kc; p++, srcRow += ldb)
            {
                float* d = dst + p * NR;
                for (int jr = 0; jr < full; jr += NR, d += NR * kc)
                {
                    float* src = srcRow + jr;
                    Vector256.Store(Vector256.Load(src), d);
                    Vector256.Store(Vector256.Load(src + 8), d + 8);
                    Vector256.Store(Vector256.Load(src + 16), d + 16);
                    Vector256.Store(Vector256.Load(src + 24), d + 24);
                }
            }
            if (full == nc) return;
        }
        for (int jr = transB ? 0 : full; jr < nc; jr += NR)
        {
            int cols = Math.Min(NR, nc - jr);
            float* panel = dst + jr * kc;
            if (!transB)
            {
                // op(B)(p, j) = b[p·ldb + j]: each k step is NR contiguous floats.
                float* src = b + (long)p0 * ldb + j0 + jr;
                if (cols == NR)
                {
                    for (int p = 0; p < kc; p++, src += ldb, panel += NR)
                    {
                        Vector256.Store(Vector256.Load(src), panel);
                        Vector256.Store(Vector256.Load(src + 8), panel + 8);
                        Vector256.Store(Vector256.Load(src + 16), panel + 16);
                        Vector256.Store(Vector256.Load(src + 24), panel + 24);
                    }
                }
                else
                {
                    for (int p = 0; p < kc; p++, src += ldb, panel += NR)
                    {
                        int j = 0;
                        for (; j < cols; j++) panel[j] = src[j];
                        for (; j < NR; j++) panel[j] = 0f;
                    }
                }
            }
            else
            {
                // op(B)(p, j) = b[j·ldb + p]: row j of the stored B becomes column j of the panel.
                float* src = b + (long)(j0 + jr) * ldb + p0;
                if (cols == NR && Sse.IsSupported)
                {
                    Transpose4x4Panel(src, ldb, NR, kc, panel, NR);
                    continue;
                }
                if (cols < NR) new Span<float>(panel, kc * NR).Clear();
                for (int j = 0; j < cols; j++, src += ldb)
                {
                    float* d = panel + j;
                    int p = 0;
                    for (; p + 4 <= kc; p += 4)
                    {
                        d[(p + 0) * NR] = src[p + 0];
                        d[(p + 1) * NR] = src[p + 1];
                        d[(p + 2) * NR] = src[p + 2];
                        d[(p + 3) * NR] = src[p + 3];
                    }
                    for (; p < kc; p++) d[p * NR] = src[p];
                }
            }
        }
    }
}
