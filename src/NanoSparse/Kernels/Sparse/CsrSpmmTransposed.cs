using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.Intrinsics;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y = Sᵀ·X with S (M×K) in CSR, X (M×N), Y (K×N), without materialising Sᵀ: a sparse Linear's backward with
/// respect to its input. Walking S by rows makes this a scatter: nonzero (i, k) adds S[i,k]·X[i,:] into Y[k,:].
/// Choice: parallelise over column blocks of Y. Each work item owns a tile of Y's columns for all K rows, so no
/// two threads write the same float (no atomics, no per-thread copies of Y, no allocation), the tile of X[i,:] is
/// loaded into registers once per row of S, and the item's K×tile slab of Y stays in L2 while it is updated.
/// The price is that every item reads all of S's indices. When Sᵀ·X is needed every step, converting S to CSC
/// once (<see cref="CscSpmm.MultiplyTransposed"/>) turns this into CSR's gather kernel, which is faster.
/// </summary>
public static unsafe class CsrSpmmTransposed
{
    public static void Multiply(CsrMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Cols, s.Rows, x.Length, n, y.Length);
        fixed (int* rp = s.RowPointers)
        fixed (float* v = s.Values, px = x, py = y)
        {
            if (s.ColumnIndices16 is { } c16) fixed (ushort* ci = c16) Run(s.Rows, s.Cols, rp, ci, v, px, n, py);
            else fixed (int* ci = s.ColumnIndices32) Run(s.Rows, s.Cols, rp, ci, v, px, n, py);
        }
    }

    struct Args<TIndex> where TIndex : unmanaged
    {
        public int* RowPointers;
        public TIndex* Index;
        public float* Values, X, Y;
        public int Rows, Cols, N, Tile;
    }

    internal static void Run<TIndex>(int rows, int cols, int* rowPointers, TIndex* index, float* values, float* x, int n, float* y)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        if (cols == 0 || n == 0) return;
        // Tile: a multiple of 16 columns, at most 128 (8 registers), small enough to give every thread an item.
        int threads = KernelThreads.ThreadsFor(n);
        int vectors = (n + 15) / 16;
        int tile = 16 * Math.Clamp((vectors + threads - 1) / threads, 1, 8);
        var args = new Args<TIndex> { RowPointers = rowPointers, Index = index, Values = values, X = x, Y = y, Rows = rows, Cols = cols, N = n, Tile = tile };
        KernelThreads.For((n + tile - 1) / tile, ref args, &Body);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body<TIndex>(ref Args<TIndex> a, int item) where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int j0 = item * a.Tile;
        int w = Math.Min(a.Tile, a.N - j0);
        int n = a.N;
        float* y = a.Y + j0;
        for (int k = 0; k < a.Cols; k++) new Span<float>(y + (long)k * n, w).Clear();
        int* rp = a.RowPointers;
        for (int i = 0; i < a.Rows; i++)
        {
            int start = rp[i], count = rp[i + 1] - start;
            if (count == 0) continue;
            Scatter(a.Index + start, a.Values + start, count, a.X + (long)i * n + j0, y, n, w);
        }
    }

    /// <summary>y[index[p]·ldy + 0..w) += values[p]·xRow[0..w) for every p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scatter<TIndex>(TIndex* index, float* values, int count, float* xRow, float* y, int ldy, int w)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 64 <= w; j += 64)
            {
                var x0 = Vector512.Load(xRow + j); var x1 = Vector512.Load(xRow + j + 16);
                var x2 = Vector512.Load(xRow + j + 32); var x3 = Vector512.Load(xRow + j + 48);
                for (int p = 0; p < count; p++)
                {
                    float* r = y + (long)int.CreateTruncating(index[p]) * ldy + j;
                    var v = Vector512.Create(values[p]);
                    Vector512.FusedMultiplyAdd(v, x0, Vector512.Load(r)).Store(r);
                    Vector512.FusedMultiplyAdd(v, x1, Vector512.Load(r + 16)).Store(r + 16);
                    Vector512.FusedMultiplyAdd(v, x2, Vector512.Load(r + 32)).Store(r + 32);
                    Vector512.FusedMultiplyAdd(v, x3, Vector512.Load(r + 48)).Store(r + 48);
                }
            }
            for (; j + 16 <= w; j += 16)
            {
                var x0 = Vector512.Load(xRow + j);
                for (int p = 0; p < count; p++)
                {
                    float* r = y + (long)int.CreateTruncating(index[p]) * ldy + j;
                    Vector512.FusedMultiplyAdd(Vector512.Create(values[p]), x0, Vector512.Load(r)).Store(r);
                }
            }
        }
        for (; j < w; j++)
        {
            float xv = xRow[j];
            if (xv == 0) continue;
            for (int p = 0; p < count; p++) y[(long)int.CreateTruncating(index[p]) * ldy + j] += values[p] * xv;
        }
    }
}
