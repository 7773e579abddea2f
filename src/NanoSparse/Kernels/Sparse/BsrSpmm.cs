using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y (M×N) = S·X with S in BSR (blocks r×c), X (K×N) row-major. Register-blocked (AVX-512, N ≥ 16): four rows of a
/// block row at once over a 64-column tile of Y, 16 accumulators; each of a block's c rows of X is loaded once
/// (4 vectors) and feeds 4 rows × 4 FMAs, so a 4×4 block costs 16 loads for 64 FMAs where a nonzero-at-a-time kernel
/// needs one load per FMA. Rows of a block row beyond a multiple of 4 go one at a time. Otherwise (N = 1, narrow N,
/// no AVX-512) each row's stored blocks are laid out as one CSR-like row in a stack buffer and run through the CSR
/// micro-kernel. Block rows are split over threads by stored blocks.
/// </summary>
public static unsafe class BsrSpmm
{
    const int Segment = 4096;

    public static void Multiply(BsrMatrix s, ReadOnlySpan<float> x, int n, Span<float> y) => Multiply(s, s.Values, x, n, y);

    /// <summary>As <see cref="Multiply(BsrMatrix, ReadOnlySpan{float}, int, Span{float})"/> with the block values taken from <paramref name="values"/> (S.Values' layout) instead of S.Values.</summary>
    internal static void Multiply(BsrMatrix s, ReadOnlySpan<float> values, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        long blockValues = (long)s.BlockCount * s.BlockSize;   // s.Values is empty for a structure-only matrix
        if (values.Length != blockValues) throw new ArgumentException($"values has {values.Length} elements, expected the {blockValues} block values", nameof(values));
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        fixed (int* bp = s.BlockRowPointers)
        fixed (float* v = values, px = x, py = y)
        {
            int[] idx32 = s.BlockColumnIndices32 ?? [];
            ushort[] idx16 = s.BlockColumnIndices16 ?? [];
            fixed (int* i32 = idx32)
            fixed (ushort* i16 = idx16)
            {
                var args = new Args
                {
                    Pointers = bp, Index32 = s.HasShortIndices ? null : i32, Index16 = s.HasShortIndices ? i16 : null, Values = v, X = px, Y = py,
                    BlockRowCount = s.BlockRowCount, R = s.BlockRows, C = s.BlockCols, K = s.Cols, N = n,
                    Chunks = SpmmMicroKernel.ChunkCount(s.BlockRowCount, (blockValues + s.Rows) * n),
                };
                KernelThreads.For(args.Chunks, ref args, &Body);
            }
        }
    }

    struct Args
    {
        public int* Pointers, Index32;
        public ushort* Index16;
        public float* Values, X, Y;
        public int BlockRowCount, R, C, K, N, Chunks;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = SpmmMicroKernel.ChunkStart(a.Pointers, a.BlockRowCount, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.Pointers, a.BlockRowCount, chunk + 1, a.Chunks);
        if (Vector512.IsHardwareAccelerated && a.N >= 16)
        {
            if (a.Index16 != null) Blocked(ref a, a.Index16, first, last);
            else Blocked(ref a, a.Index32, first, last);
            return;
        }
        int blocksPerSegment = Math.Max(1, Segment / a.C);
        int* index = stackalloc int[blocksPerSegment * a.C];
        float* value = stackalloc float[blocksPerSegment * a.C];
        int tile = SpmmMicroKernel.TileWidth(a.K);
        int rc = a.R * a.C;
        for (int b = first; b < last; b++)
            for (int r = 0; r < a.R; r++)
            {
                float* yRow = a.Y + ((long)b * a.R + r) * a.N;
                int p0 = a.Pointers[b], p1 = a.Pointers[b + 1];
                bool written = false;
                for (int ps = p0; ps < p1 || !written; ps += blocksPerSegment)
                {
                    int pe = Math.Min(p1, ps + blocksPerSegment);
                    int count = 0;
                    for (int p = ps; p < pe; p++)
                    {
                        int col0 = (a.Index16 != null ? a.Index16[p] : a.Index32[p]) * a.C;
                        float* blockRow = a.Values + (long)p * rc + r * a.C;
                        for (int q = 0; q < a.C; q++) { index[count] = col0 + q; value[count++] = blockRow[q]; }
                    }
                    if (a.N == 1)
                    {
                        float dot = SpmmMicroKernel.RowDot(index, value, count, a.X);
                        *yRow = written ? *yRow + dot : dot;
                    }
                    else
                        for (int j = 0; j < a.N; j += tile)
                            SpmmMicroKernel.RowTile(index, value, count, a.X + j, a.N, yRow + j, Math.Min(tile, a.N - j), add: written);
                    written = true;
                }
            }
    }

    /// <summary>The register-blocked path over block rows [first, last): Y's columns in tiles of 64, then 16, then a scalar tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Blocked<TIndex>(ref Args a, TIndex* index, int first, int last) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int n = a.N, r = a.R, c = a.C, rc = r * c;
        int n16 = n / 16 * 16;
        // Column tiles outer: the K×64 panel of X stays in L2 while every block row of the chunk uses it.
        for (int j = 0; j < n16; j += 64)
        {
            int w = Math.Min(64, n16 - j);
            for (int b = first; b < last; b++)
            {
                int p0 = a.Pointers[b], count = a.Pointers[b + 1] - p0;
                float* v = a.Values + (long)p0 * rc;
                float* x = a.X + j;
                int row = 0;
                for (; row + 4 <= r; row += 4)
                {
                    float* y = a.Y + ((long)b * r + row) * n + j;
                    if (w == 64) Rows4x64(index + p0, count, v + row * c, rc, c, x, n, y);
                    else for (int t = 0; t < w; t += 16) Rows4x16(index + p0, count, v + row * c, rc, c, x + t, n, y + t);
                }
                for (; row < r; row++)
                {
                    float* y = a.Y + ((long)b * r + row) * n + j;
                    for (int t = 0; t < w; t += 16) Row1x16(index + p0, count, v + row * c, rc, c, x + t, n, y + t);
                }
            }
        }
        if (n16 == n) return;
        for (int b = first; b < last; b++)
        {
            int p0 = a.Pointers[b], p1 = a.Pointers[b + 1];
            for (int row = 0; row < r; row++)
            {
                float* y = a.Y + ((long)b * r + row) * n;
                for (int jj = n16; jj < n; jj++)
                {
                    float sum = 0;
                    for (int p = p0; p < p1; p++)
                    {
                        float* xb = a.X + (long)int.CreateTruncating(index[p]) * c * n + jj;
                        float* vr = a.Values + (long)p * rc + row * c;
                        for (int q = 0; q < c; q++) sum += vr[q] * xb[(long)q * n];
                    }
                    y[jj] = sum;
                }
            }
        }
    }

    /// <summary>y[row 0..4][0..64) = Σ over the blocks and their c columns of v[row, q]·X[col·c + q, 0..64); v is row 0's slice of the first block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4x64<TIndex>(TIndex* index, int count, float* v, int rc, int c, float* x, int ldx, float* y)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int p = 0; p < count; p++)
        {
            float* xb = x + (long)int.CreateTruncating(index[p]) * c * ldx;
            float* vb = v + (long)p * rc;
            for (int q = 0; q < c; q++)
            {
                float* xr = xb + (long)q * ldx;
                var x0 = Vector512.Load(xr); var x1 = Vector512.Load(xr + 16);
                var x2 = Vector512.Load(xr + 32); var x3 = Vector512.Load(xr + 48);
                var v0 = Vector512.Create(vb[q]);
                a00 = Vector512.FusedMultiplyAdd(v0, x0, a00); a01 = Vector512.FusedMultiplyAdd(v0, x1, a01);
                a02 = Vector512.FusedMultiplyAdd(v0, x2, a02); a03 = Vector512.FusedMultiplyAdd(v0, x3, a03);
                var v1 = Vector512.Create(vb[c + q]);
                a10 = Vector512.FusedMultiplyAdd(v1, x0, a10); a11 = Vector512.FusedMultiplyAdd(v1, x1, a11);
                a12 = Vector512.FusedMultiplyAdd(v1, x2, a12); a13 = Vector512.FusedMultiplyAdd(v1, x3, a13);
                var v2 = Vector512.Create(vb[2 * c + q]);
                a20 = Vector512.FusedMultiplyAdd(v2, x0, a20); a21 = Vector512.FusedMultiplyAdd(v2, x1, a21);
                a22 = Vector512.FusedMultiplyAdd(v2, x2, a22); a23 = Vector512.FusedMultiplyAdd(v2, x3, a23);
                var v3 = Vector512.Create(vb[3 * c + q]);
                a30 = Vector512.FusedMultiplyAdd(v3, x0, a30); a31 = Vector512.FusedMultiplyAdd(v3, x1, a31);
                a32 = Vector512.FusedMultiplyAdd(v3, x2, a32); a33 = Vector512.FusedMultiplyAdd(v3, x3, a33);
            }
        }
        a00.Store(y); a01.Store(y + 16); a02.Store(y + 32); a03.Store(y + 48); y += ldx;
        a10.Store(y); a11.Store(y + 16); a12.Store(y + 32); a13.Store(y + 48); y += ldx;
        a20.Store(y); a21.Store(y + 16); a22.Store(y + 32); a23.Store(y + 48); y += ldx;
        a30.Store(y); a31.Store(y + 16); a32.Store(y + 32); a33.Store(y + 48);
    }

    /// <summary>As <see cref="Rows4x64"/> over 16 columns (the tail of N below a multiple of 64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4x16<TIndex>(TIndex* index, int count, float* v, int rc, int c, float* x, int ldx, float* y)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int p = 0; p < count; p++)
        {
            float* xb = x + (long)int.CreateTruncating(index[p]) * c * ldx;
            float* vb = v + (long)p * rc;
            for (int q = 0; q < c; q++)
            {
                var xv = Vector512.Load(xb + (long)q * ldx);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[q]), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[c + q]), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[2 * c + q]), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[3 * c + q]), xv, a3);
            }
        }
        a0.Store(y); a1.Store(y + ldx); a2.Store(y + 2 * ldx); a3.Store(y + 3 * ldx);
    }

    /// <summary>One row of a block row over 16 columns (block heights not a multiple of 4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row1x16<TIndex>(TIndex* index, int count, float* v, int rc, int c, float* x, int ldx, float* y)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a0 = default, a1 = default;
        for (int p = 0; p < count; p++)
        {
            float* xb = x + (long)int.CreateTruncating(index[p]) * c * ldx;
            float* vb = v + (long)p * rc;
            int q = 0;
            for (; q + 1 < c; q += 2)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[q]), Vector512.Load(xb + (long)q * ldx), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[q + 1]), Vector512.Load(xb + (long)(q + 1) * ldx), a1);
            }
            if (q < c) a0 = Vector512.FusedMultiplyAdd(Vector512.Create(vb[q]), Vector512.Load(xb + (long)q * ldx), a0);
        }
        (a0 + a1).Store(y);
    }
}
