using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// dst (rows × cols) = srcᵀ for src (cols × rows), both row-major, with an optional elementwise epilogue:
///   dst[r, c] = (src[c, r] + bias[c] + add[r, c]) · scale[r, c]      (each of bias, add, scale optional)
/// Sparse Linear weights run their kernels on feature-major activations (xᵀ: In × rows) and use this to move between
/// the model's row-major activations and that layout, adding the bias and residual (forward) or applying the
/// activation derivative (backward) while each tile is in registers. 8×8 tiles go through AVX registers (the
/// unpack/shuffle/permute transpose); each work item is 16 rows of dst, so every 64-byte line of src it reads is used
/// whole. add and scale may be dst itself (each element is read before it is written) but must not overlap it
/// otherwise; src must not overlap dst.
/// </summary>
public static unsafe class Transpose
{
    struct Args { public float* Src, Dst, Bias, Add, Scale; public int Rows, Cols, LdSrc, LdDst; }

    const int RowsPerItem = 16;

    /// <summary>Elements below which the transpose runs on the calling thread only (a region costs a few µs).</summary>
    const long ParallelMinElements = 1 << 16;

    public static void Run(ReadOnlySpan<float> src, int rows, int cols, Span<float> dst,
        ReadOnlySpan<float> bias = default, ReadOnlySpan<float> add = default, ReadOnlySpan<float> scale = default) =>
        Run(src, rows, rows, cols, dst, cols, bias, add, scale);

    /// <summary>
    /// As <see cref="Run(ReadOnlySpan{float}, int, int, Span{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float})"/>
    /// with row strides: src row c at c·ldSrc (ldSrc ≥ rows), dst, add and scale row r at r·ldDst (ldDst ≥ cols); the
    /// columns of dst past cols are not written.
    /// </summary>
    public static void Run(ReadOnlySpan<float> src, int ldSrc, int rows, int cols, Span<float> dst, int ldDst,
        ReadOnlySpan<float> bias = default, ReadOnlySpan<float> add = default, ReadOnlySpan<float> scale = default)
    {
        if (rows < 0 || cols < 0) throw new ArgumentOutOfRangeException(nameof(rows), $"shape ({rows}, {cols}) must be non-negative");
        if (ldSrc < rows) throw new ArgumentOutOfRangeException(nameof(ldSrc), ldSrc, $"ldSrc must be at least rows = {rows}");
        if (ldDst < cols) throw new ArgumentOutOfRangeException(nameof(ldDst), ldDst, $"ldDst must be at least cols = {cols}");
        if (rows == 0 || cols == 0) return;
        long srcCount = (long)(cols - 1) * ldSrc + rows, dstCount = (long)(rows - 1) * ldDst + cols;
        Check.Length(src, srcCount, nameof(src));
        Check.Length(dst, dstCount, nameof(dst));
        if (!bias.IsEmpty) Check.Length(bias, cols, nameof(bias));
        if (!add.IsEmpty) Check.Length(add, dstCount, nameof(add));
        if (!scale.IsEmpty) Check.Length(scale, dstCount, nameof(scale));
        if (src.Slice(0, (int)srcCount).Overlaps(dst.Slice(0, (int)dstCount))) throw new ArgumentException("src must not overlap dst", nameof(src));
        fixed (float* s = src, d = dst, b = bias, a = add, sc = scale)
        {
            var args = new Args { Src = s, Dst = d, Bias = b, Add = a, Scale = sc, Rows = rows, Cols = cols, LdSrc = ldSrc, LdDst = ldDst };
            int items = (rows + RowsPerItem - 1) / RowsPerItem;
            if ((long)rows * cols < ParallelMinElements)
                for (int i = 0; i < items; i++) Body(ref args, i);
            else
                KernelThreads.For(items, ref args, &Body);
        }
    }

    /// <summary>
    /// <see cref="Run(ReadOnlySpan{float}, int, int, int, Span{float}, int, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float})"/>
    /// on the calling thread, unchecked, over pointers (null: no bias, add or scale): for kernels that transpose a
    /// tile inside their own work item (see CsrSpmmTokenMajor).
    /// </summary>
    internal static unsafe void Serial(float* src, int ldSrc, int rows, int cols, float* dst, int ldDst, float* bias = null, float* add = null, float* scale = null)
    {
        var args = new Args { Src = src, Dst = dst, Bias = bias, Add = add, Scale = scale, Rows = rows, Cols = cols, LdSrc = ldSrc, LdDst = ldDst };
        int items = (rows + RowsPerItem - 1) / RowsPerItem;
        for (int i = 0; i < items; i++) Body(ref args, i);
    }

    static void Body(ref Args a, int item)
    {
        int r0 = item * RowsPerItem, r1 = Math.Min(a.Rows, r0 + RowsPerItem);
        int cols = a.Cols;
        int fullRows = Avx.IsSupported ? r0 + (r1 - r0) / 8 * 8 : r0;
        int fullCols = cols / 8 * 8;
        for (int c = 0; c < fullCols; c += 8)
            for (int r = r0; r < fullRows; r += 8)
                Tile8(ref a, r, c);
        // Leftover columns of the full 8-row strips, then leftover rows (all columns), one element at a time.
        for (int r = r0; r < fullRows; r++)
            for (int c = fullCols; c < cols; c++) Element(ref a, r, c);
        for (int r = fullRows; r < r1; r++)
            for (int c = 0; c < cols; c++) Element(ref a, r, c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Element(ref Args a, int r, int c)
    {
        long at = (long)r * a.LdDst + c;
        float v = a.Src[(long)c * a.LdSrc + r];
        if (a.Bias != null) v += a.Bias[c];
        if (a.Add != null) v += a.Add[at];
        if (a.Scale != null) v *= a.Scale[at];
        a.Dst[at] = v;
    }

    /// <summary>dst rows [r, r+8) × cols [c, c+8) from src rows [c, c+8) × cols [r, r+8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile8(ref Args a, int r, int c)
    {
        long ld = a.LdSrc;
        float* s = a.Src + (long)c * ld + r;
        var x0 = Avx.LoadVector256(s);
        var x1 = Avx.LoadVector256(s + ld);
        var x2 = Avx.LoadVector256(s + 2 * ld);
        var x3 = Avx.LoadVector256(s + 3 * ld);
        var x4 = Avx.LoadVector256(s + 4 * ld);
        var x5 = Avx.LoadVector256(s + 5 * ld);
        var x6 = Avx.LoadVector256(s + 6 * ld);
        var x7 = Avx.LoadVector256(s + 7 * ld);
        // Pairs of rows interleaved, then pairs of pairs, then 128-bit halves exchanged: row i of the result is column i.
        var t0 = Avx.UnpackLow(x0, x1); var t1 = Avx.UnpackHigh(x0, x1);
        var t2 = Avx.UnpackLow(x2, x3); var t3 = Avx.UnpackHigh(x2, x3);
        var t4 = Avx.UnpackLow(x4, x5); var t5 = Avx.UnpackHigh(x4, x5);
        var t6 = Avx.UnpackLow(x6, x7); var t7 = Avx.UnpackHigh(x6, x7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Store(ref a, r + 0, c, Avx.Permute2x128(u0, u4, 0x20));
        Store(ref a, r + 1, c, Avx.Permute2x128(u1, u5, 0x20));
        Store(ref a, r + 2, c, Avx.Permute2x128(u2, u6, 0x20));
        Store(ref a, r + 3, c, Avx.Permute2x128(u3, u7, 0x20));
        Store(ref a, r + 4, c, Avx.Permute2x128(u0, u4, 0x31));
        Store(ref a, r + 5, c, Avx.Permute2x128(u1, u5, 0x31));
        Store(ref a, r + 6, c, Avx.Permute2x128(u2, u6, 0x31));
        Store(ref a, r + 7, c, Avx.Permute2x128(u3, u7, 0x31));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(ref Args a, int r, int c, Vector256<float> v)
    {
        long at = (long)r * a.LdDst + c;
        if (a.Bias != null) v += Vector256.Load(a.Bias + c);
        if (a.Add != null) v += Vector256.Load(a.Add + at);
        if (a.Scale != null) v *= Vector256.Load(a.Scale + at);
        v.Store(a.Dst + at);
    }
}
