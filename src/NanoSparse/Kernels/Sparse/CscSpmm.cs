using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Products with S (M×K) stored in CSC. CSC's arrays are the CSR arrays of Sᵀ, so
/// Sᵀ·X (K×N) is the CSR gather kernel run on them (fast: Y rows accumulate in registers), and
/// S·X (M×N) is the transposed (scatter) kernel run on them.
/// </summary>
public static unsafe class CscSpmm
{
    /// <summary>Y (M×N) = S·X, X (K×N).</summary>
    public static void Multiply(CscMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        fixed (int* cp = s.ColumnPointers)
        fixed (float* v = s.Values, px = x, py = y)
        {
            if (s.RowIndices16 is { } r16) fixed (ushort* ri = r16) CsrSpmmTransposed.Run(s.Cols, s.Rows, cp, ri, v, px, n, py);
            else fixed (int* ri = s.RowIndices32) CsrSpmmTransposed.Run(s.Cols, s.Rows, cp, ri, v, px, n, py);
        }
    }

    /// <summary>Y (K×N) = Sᵀ·X, X (M×N).</summary>
    public static void MultiplyTransposed(CscMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Cols, s.Rows, x.Length, n, y.Length);
        fixed (int* cp = s.ColumnPointers)
        fixed (float* v = s.Values, px = x, py = y)
        {
            if (s.RowIndices16 is { } r16) fixed (ushort* ri = r16) CsrSpmm.Run(s.Cols, s.Rows, cp, ri, v, px, n, py);
            else fixed (int* ri = s.RowIndices32) CsrSpmm.Run(s.Cols, s.Rows, cp, ri, v, px, n, py);
        }
    }
}
