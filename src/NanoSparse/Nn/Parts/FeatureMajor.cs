using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Activations in the sparse kernels' layout: feature-major, xᵀ (features × columns), with the token rows padded to
/// a multiple of 16 columns (zeros). The CSR/N:M/BSR kernels work on 16-column vectors of X; a narrower or ragged
/// X takes their scalar tails, which measured 3–8x slower per column than padding (768×3072 at 50%, one thread:
/// 8 rows 24 ms unpadded, 16 rows 3.1 ms).
/// </summary>
public static class FeatureMajor
{
    /// <summary>
    /// Token rows per panel: a layer's pass runs panel by panel (transpose in, product, transpose out), so the
    /// feature-major copies stay cache-sized and SDDMM's operands (xᵀ: In × columns) fit L2 (768 × 256 floats =
    /// 768 KiB) instead of streaming from memory once per nonzero (In × 2048 = 6 MiB).
    /// </summary>
    public static int PanelRows
    {
        get => _panelRows;
        set => _panelRows = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "panel rows must be at least 1");
    }

    static int _panelRows = 256;

    /// <summary>Floats of one panel's feature-major copy of <paramref name="features"/> features for a call with <paramref name="rows"/> rows.</summary>
    public static long PanelFloats(int rows, int features) => (long)Columns(Math.Min(rows, PanelRows)) * features;

    /// <summary>Columns of the feature-major copy of <paramref name="rows"/> token rows.</summary>
    public static int Columns(int rows) => (rows + 15) / 16 * 16;

    /// <summary>xT (features × Columns(rows)) = xᵀ for x (rows × features), padding columns zero.</summary>
    public static void From(ReadOnlySpan<float> x, int rows, int features, Span<float> xT)
    {
        int columns = Columns(rows);
        Transpose.Run(x, features, features, rows, xT, columns);
        if (columns == rows) return;
        for (int f = 0; f < features; f++) xT.Slice(f * columns + rows, columns - rows).Clear();
    }

    /// <summary>y (rows × features) = (yTᵀ + bias + add) ⊙ scale for yT (features × Columns(rows)); each extra optional.</summary>
    public static void To(ReadOnlySpan<float> yT, int rows, int features, Span<float> y,
        ReadOnlySpan<float> bias = default, ReadOnlySpan<float> add = default, ReadOnlySpan<float> scale = default) =>
        Transpose.Run(yT, Columns(rows), rows, features, y, features, bias, add, scale);
    /// <summary>
    /// y (rows, Out) = x (rows, In) · Wᵀ + bias + residual for a sparse layout whose kernel computes
    /// Y (Out, columns) = W · X (In, columns): a handful of rows go through the kernel one row at a time on x as it is
    /// (the two transposes would cost more), more rows through feature-major panels of <see cref="PanelRows"/>.
    /// workspace holds at least <see cref="PanelFloats"/>(rows, In) + PanelFloats(rows, Out) floats.
    /// </summary>
    internal static void Forward<TKernel>(TKernel kernel, Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values,
        ReadOnlySpan<float> bias, ReadOnlySpan<float> residual, int rows, int inFeatures, int outFeatures, int rowwiseMaxRows,
        Span<float> workspace) where TKernel : ISparseKernel
    {
        int n = inFeatures, m = outFeatures;
        if (rows <= Math.Min(rowwiseMaxRows, PanelRows))
        {
            var product = workspace.Slice(0, rows * m);
            for (int t = 0; t < rows; t++)
                kernel.Multiply(values, x.Slice(t * n, n), 1, product.Slice(t * m, m));
            LinearChecks.AddBiasResidual(y, product, bias, residual, rows, m);
            return;
        }
        var xT = workspace.Slice(0, (int)PanelFloats(rows, n));               // (In, columns) per panel
        var yT = workspace.Slice(xT.Length, (int)PanelFloats(rows, m));       // (Out, columns)
        for (int t0 = 0; t0 < rows; t0 += PanelRows)
        {
            int r = Math.Min(PanelRows, rows - t0), columns = Columns(r);
            From(x.Slice(t0 * n, r * n), r, n, xT);
            kernel.Multiply(values, xT.Slice(0, columns * n), columns, yT.Slice(0, columns * m));
            To(yT, r, m, y.Slice(t0 * m, r * m), bias, residual.IsEmpty ? default : residual.Slice(t0 * m, r * m));
        }
    }
}

/// <summary>A sparse layout's forward kernel: Y (Out, columns) = W · X (In, columns), W's stored values given.</summary>
internal interface ISparseKernel
{
    void Multiply(ReadOnlySpan<float> values, ReadOnlySpan<float> x, int columns, Span<float> y);
}
