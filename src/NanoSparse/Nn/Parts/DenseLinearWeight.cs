using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Every position of W (Out, In) stored, row-major as PyTorch's Linear.weight: the products are <see cref="Linear"/>'s
/// blocked GEMMs with their fused epilogues (the residual added in forward, dx scaled by an activation's derivative in
/// backward); a forward of at most <see cref="Gemv.MaxRows"/> rows (decode) is <see cref="Gemv"/>'s matrix-vector
/// product instead, which reads W once at memory speed where the GEMM's packing cost 7–9x.
/// </summary>
public sealed class DenseLinearWeight : ILinearWeight
{
    public DenseLinearWeight(int outFeatures, int inFeatures)
    {
        if (outFeatures <= 0 || inFeatures <= 0)
            throw new ArgumentException($"a Linear weight needs positive out and in features, got ({outFeatures}, {inFeatures})");
        if ((long)outFeatures * inFeatures > Array.MaxLength)
            throw new ArgumentException($"a dense ({outFeatures}, {inFeatures}) weight has more values than one array holds");
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

    public string Layout => LinearWeightLayouts.Dense;
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount => OutFeatures * InFeatures;

    public long WorkspaceFloats(int rows) => 0;

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        if (rows >= 1 && rows <= Gemv.MaxRows) Gemv.Forward(y, x, values, bias, rows, InFeatures, OutFeatures, residual);
        else Linear.Forward(y, x, values, bias, rows, InFeatures, OutFeatures, residual);
    }

    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace) =>
        Linear.Backward(dx, dValues, dBias, dy, x, values, rows, InFeatures, OutFeatures, dxScale);

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense)
    {
        Check.Length(values, StoredCount, nameof(values));
        Check.Length(dense, StoredCount, nameof(dense));
        values.CopyTo(dense);
    }
}
