using System.Numerics.Tensors;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Argument checks of <see cref="ILinearWeight.Forward"/> and <see cref="ILinearWeight.Backward"/> shared by the
/// layouts: a buffer of the wrong size throws an ArgumentException naming the layout, the buffer, its length and the
/// length expected, before anything is written.
/// </summary>
internal static class LinearChecks
{
    public static void Forward(ILinearWeight w, Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values,
        ReadOnlySpan<float> bias, ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, $"{Describe(w)}: rows must be non-negative");
        Values(w, values);
        Length(w, x, (long)rows * w.InFeatures, "x", "rows x in");
        Length(w, y, (long)rows * w.OutFeatures, "y", "rows x out");
        if (!bias.IsEmpty) Exact(w, bias.Length, w.OutFeatures, "bias", "out");
        if (!residual.IsEmpty) Length(w, residual, (long)rows * w.OutFeatures, "residual", "rows x out");
        Length(w, workspace, w.WorkspaceFloats(rows), "workspace", "WorkspaceFloats(rows)");
    }

    public static void Backward(ILinearWeight w, Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy,
        ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, $"{Describe(w)}: rows must be non-negative");
        Values(w, values);
        Exact(w, dValues.Length, w.StoredCount, "dValues", "the stored count");
        Length(w, dy, (long)rows * w.OutFeatures, "dy", "rows x out");
        Length(w, x, (long)rows * w.InFeatures, "x", "rows x in");
        if (!dBias.IsEmpty) Exact(w, dBias.Length, w.OutFeatures, "dBias", "out");
        if (!dx.IsEmpty) Length(w, dx, (long)rows * w.InFeatures, "dx", "rows x in");
        if (!dxScale.IsEmpty)
        {
            if (dx.IsEmpty) throw new ArgumentException($"{Describe(w)}: dxScale given without dx", nameof(dxScale));
            Length(w, dxScale, (long)rows * w.InFeatures, "dxScale", "rows x in");
        }
        Length(w, workspace, w.WorkspaceFloats(rows), "workspace", "WorkspaceFloats(rows)");
    }

    public static void Values(ILinearWeight w, ReadOnlySpan<float> values) =>
        Exact(w, values.Length, w.StoredCount, "values", "the stored count");

    static string Describe(ILinearWeight w) => $"{w.Layout} weight ({w.OutFeatures}x{w.InFeatures})";

    static void Exact(ILinearWeight w, int length, long expected, string name, string what)
    {
        if (length != expected)
            throw new ArgumentException($"{Describe(w)}: {name} has {length} elements, expected {what} = {expected}", name);
    }

    static void Length(ILinearWeight w, ReadOnlySpan<float> span, long expected, string name, string what)
    {
        if (span.Length < expected)
            throw new ArgumentException($"{Describe(w)}: {name} has {span.Length} elements, expected at least {what} = {expected}", name);
    }

    /// <summary>y (rows, out) = product + residual + bias; residual may be y itself.</summary>
    public static void AddBiasResidual(Span<float> y, Span<float> product, ReadOnlySpan<float> bias, ReadOnlySpan<float> residual, int rows, int outFeatures)
    {
        for (int t = 0; t < rows; t++)
        {
            var p = product.Slice(t * outFeatures, outFeatures);
            var row = y.Slice(t * outFeatures, outFeatures);
            if (!residual.IsEmpty) TensorPrimitives.Add(p, residual.Slice(t * outFeatures, outFeatures), p);
            if (!bias.IsEmpty) TensorPrimitives.Add(p, bias, row);
            else p.CopyTo(row);
        }
    }
}
