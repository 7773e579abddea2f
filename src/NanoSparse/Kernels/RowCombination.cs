using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NanoSparse.Kernels;

/// <summary>
/// out (C) += Σ_j coef[j] · rows[j, :] over a run of rows of a row-major (R, C) matrix: a matrix-vector product that
/// reads only the rows whose coefficient is wanted. With W (C, R) stored transposed (R, C), "neuron-major", this is
/// c_proj restricted to the active neurons or heads: each active neuron's row streams once, skipped ones are not read.
/// Four rows per pass over out, so out is loaded and stored a quarter as often as with one axpy per row.
/// </summary>
public static class RowCombination
{
    /// <summary>out (C) += Σ_{j &lt; count} coef[j] · rows[j·C .. j·C + C).</summary>
    public static void AddTo(Span<float> output, ReadOnlySpan<float> coef, ReadOnlySpan<float> rows, int count)
    {
        int C = output.Length;
        Check.Length(coef, count, nameof(coef));
        Check.Length(rows, (long)count * C, nameof(rows));
        ref float o = ref MemoryMarshal.GetReference(output);
        ref float w = ref MemoryMarshal.GetReference(rows);
        int W = Vector<float>.Count;
        int j = 0;
        for (; j + 4 <= count; j += 4)
        {
            float a0 = coef[j], a1 = coef[j + 1], a2 = coef[j + 2], a3 = coef[j + 3];
            ref float r0 = ref Unsafe.Add(ref w, (nint)j * C);
            ref float r1 = ref Unsafe.Add(ref r0, C);
            ref float r2 = ref Unsafe.Add(ref r1, C);
            ref float r3 = ref Unsafe.Add(ref r2, C);
            var v0 = new Vector<float>(a0); var v1 = new Vector<float>(a1); var v2 = new Vector<float>(a2); var v3 = new Vector<float>(a3);
            int c = 0;
            for (; c + W <= C; c += W)
            {
                var acc = Vector.LoadUnsafe(ref o, (nuint)c);
                acc += v0 * Vector.LoadUnsafe(ref r0, (nuint)c) + v1 * Vector.LoadUnsafe(ref r1, (nuint)c)
                    + v2 * Vector.LoadUnsafe(ref r2, (nuint)c) + v3 * Vector.LoadUnsafe(ref r3, (nuint)c);
                acc.StoreUnsafe(ref o, (nuint)c);
            }
            for (; c < C; c++)
                Unsafe.Add(ref o, c) += a0 * Unsafe.Add(ref r0, c) + a1 * Unsafe.Add(ref r1, c) + a2 * Unsafe.Add(ref r2, c) + a3 * Unsafe.Add(ref r3, c);
        }
        for (; j < count; j++)
        {
            float a = coef[j];
            ref float r = ref Unsafe.Add(ref w, (nint)j * C);
            var v = new Vector<float>(a);
            int c = 0;
            for (; c + W <= C; c += W)
                (Vector.LoadUnsafe(ref o, (nuint)c) + v * Vector.LoadUnsafe(ref r, (nuint)c)).StoreUnsafe(ref o, (nuint)c);
            for (; c < C; c++) Unsafe.Add(ref o, c) += a * Unsafe.Add(ref r, c);
        }
    }

    /// <summary>dst (C, R) = src (R, C) transposed: a neuron-major copy of a (C, R) weight, or back.</summary>
    public static void Transpose(Span<float> dst, ReadOnlySpan<float> src, int rows, int cols)
    {
        Check.Length(src, (long)rows * cols, nameof(src));
        Check.Length(dst, (long)rows * cols, nameof(dst));
        const int T = 16;
        for (int r0 = 0; r0 < rows; r0 += T)
            for (int c0 = 0; c0 < cols; c0 += T)
                for (int r = r0; r < Math.Min(r0 + T, rows); r++)
                    for (int c = c0; c < Math.Min(c0 + T, cols); c++)
                        dst[c * rows + r] = src[r * cols + c];
    }
}
