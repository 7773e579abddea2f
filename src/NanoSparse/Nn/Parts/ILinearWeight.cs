namespace NanoSparse.Nn.Parts;

/// <summary>
/// The weight of one Linear layer, W (OutFeatures × InFeatures, PyTorch's layout), held in some storage layout
/// (dense, CSR, N:M, BSR, ...). The layout owns the structure (which positions are stored); the stored values live in
/// the model's flat parameter buffer (a span of <see cref="StoredCount"/> floats handed to every call), so AdamW,
/// weight decay and gradient clipping see exactly the stored values and a step allocates nothing.
/// Activations are row-major (rows = token positions): x (rows, In), y (rows, Out).
/// A new layout is one class implementing this interface plus one line in <see cref="LinearWeightLayouts"/>.
/// </summary>
public interface ILinearWeight
{
    /// <summary>Registered layout name: "dense", "csr", "nm", "bsr", ...</summary>
    string Layout { get; }
    int OutFeatures { get; }
    int InFeatures { get; }
    /// <summary>Number of stored values: the length of the values span (OutFeatures·InFeatures when dense).</summary>
    int StoredCount { get; }

    /// <summary>Scratch floats a call with <paramref name="rows"/> rows needs (0 when none).</summary>
    long WorkspaceFloats(int rows);

    /// <summary>
    /// y (rows, Out) = x (rows, In) · Wᵀ + bias (Out, or empty) + residual (rows, Out, or empty).
    /// </summary>
    void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace);

    /// <summary>
    /// Backward of <see cref="Forward"/> given dy (rows, Out):
    ///   dValues (StoredCount) += dW at the stored positions only (dW = dyᵀ · x, SDDMM when sparse)   (accumulated)
    ///   dBias (Out)           += Σ_rows dy                                                          (accumulated; skipped when empty)
    ///   dx (rows, In)          = dy · W  ⊙ dxScale (rows, In, when not empty)                       (written; skipped when empty)
    /// dx may alias x (the input is no longer needed after): the weight gradient is then formed first.
    /// </summary>
    void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace);

    /// <summary>W as a dense (Out, In) matrix with zeros at the positions not stored.</summary>
    void ToDense(ReadOnlySpan<float> values, Span<float> dense);
}
