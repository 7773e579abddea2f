namespace NanoSparse.Nn.Parts;

/// <summary>
/// A Linear weight layout that holds structures only training needs (the transposed structure the input gradient
/// runs on, copies of the values) and can drop them once the model only runs forward: sampling, evaluation, decode
/// benchmarks (<see cref="Gpt.PrepareForInference"/>). What stays is the structure the forward kernels read, beside the
/// values in the model's parameter buffer.
/// </summary>
public interface IInferenceLayout : ILinearWeight
{
    /// <summary>True after <see cref="ReleaseTrainingStructures"/>: Forward works, Backward throws InvalidOperationException.</summary>
    bool IsInferenceOnly { get; }

    /// <summary>The format decoding (rows = 1) reads once released, e.g. "csr16", "nm 2:4 (2-bit indices)".</summary>
    string DecodeFormat { get; }

    /// <summary>Drops the training structures (idempotent; not undone: load the model again to train it).</summary>
    void ReleaseTrainingStructures();

    /// <summary>Bytes of every array the layout itself holds now (the stored values, in the model's buffer, not counted).</summary>
    long HeldBytes { get; }
}

internal static class InferenceLayout
{
    public static InvalidOperationException BackwardAfterRelease(ILinearWeight w) =>
        new($"{w.Layout} weight ({w.OutFeatures}x{w.InFeatures}) was prepared for inference only (Gpt.PrepareForInference released its training structures): Backward needs them; load the model again to train it");
}
