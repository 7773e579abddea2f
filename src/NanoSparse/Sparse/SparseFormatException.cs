namespace NanoSparse.Sparse;

/// <summary>
/// A sparse structure breaks one of its format's invariants. <see cref="Invariant"/> names the rule
/// (e.g. "sorted unique column indices per row") and the message says where it breaks and what was found.
/// </summary>
public sealed class SparseFormatException : ArgumentException
{
    public string Format { get; }
    public string Invariant { get; }

    public SparseFormatException(string format, string invariant, string where)
        : base($"{format}: invariant '{invariant}' broken at {where}")
    {
        Format = format;
        Invariant = invariant;
    }

    internal static void Fail(string format, string invariant, string where) =>
        throw new SparseFormatException(format, invariant, where);

    internal static void CheckShape(string format, int rows, int cols)
    {
        if (rows < 0) Fail(format, "non-negative shape", $"rows = {rows}");
        if (cols < 0) Fail(format, "non-negative shape", $"cols = {cols}");
    }

    internal static void CheckDense(string format, int rows, int cols, int length)
    {
        CheckShape(format, rows, cols);
        if ((long)rows * cols != length)
            throw new ArgumentException($"{format}: dense array has {length} elements, expected rows*cols = {rows}*{cols} = {(long)rows * cols}");
    }
}

/// <summary>Storage cost of dense float32 storage, the yardstick every format's footprint is compared with.</summary>
public static class DenseFootprint
{
    public static long Bytes(int rows, int cols) => 4L * rows * cols;
}
