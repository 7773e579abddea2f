using System.Globalization;

namespace NanoSparse.Nn.Parts;

/// <summary>Element type of an index tensor in a file: the narrowest that holds the layout's indices.</summary>
public enum IndexWidth { U8, U16, I32 }

/// <summary>One index tensor of a sparse layout's structure: <c>{weight name}.{Suffix}</c>, 1-D, stored as <see cref="Width"/>.</summary>
public sealed record IndexTensor(string Suffix, IndexWidth Width, int[] Values)
{
    public long Bytes => (long)Values.Length * (Width switch { IndexWidth.U8 => 1, IndexWidth.U16 => 2, _ => 4 });
}

/// <summary>
/// The structure of a sparse Linear weight as a file holds it (the values are a separate F32 tensor of StoredCount):
/// the layout name (<see cref="Format"/>), the logical shape (Out, In), the format's parameters as strings (N:M's "n"
/// and "m", BSR's "block" = "RxC") and its index tensors by suffix. <see cref="Name"/> is the weight's tensor name,
/// used in every error message, so a bad file names the tensor that is wrong.
/// </summary>
public sealed record SparseStructure(string Name, string Format, int OutFeatures, int InFeatures,
    IReadOnlyDictionary<string, string> Parameters, IReadOnlyDictionary<string, IndexTensor> Indices)
{
    /// <summary>The index tensor <paramref name="suffix"/>, which must be present with one of the allowed widths and length.</summary>
    public int[] Require(string suffix, long expectedLength, params IndexWidth[] widths)
    {
        if (!Indices.TryGetValue(suffix, out var t))
            throw new InvalidDataException($"tensor '{Name}.{suffix}' is missing; format {Format} stores it");
        if (!widths.Contains(t.Width))
            throw new InvalidDataException($"tensor '{Name}.{suffix}' has dtype {t.Width}, expected {string.Join(" or ", widths)}");
        if (expectedLength >= 0 && t.Values.Length != expectedLength)
            throw Fail(suffix, $"has {t.Values.Length} elements, expected {expectedLength}");
        return t.Values;
    }

    /// <summary>An integer parameter of the format (metadata <c>{Name}.{key}</c>).</summary>
    public int IntParameter(string key)
    {
        if (!Parameters.TryGetValue(key, out var text))
            throw new InvalidDataException($"metadata '{Name}.{key}' is missing; format {Format} needs it");
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
            ? v : throw new InvalidDataException($"metadata '{Name}.{key}' is '{text}', expected an integer");
    }

    /// <summary>A parameter of the form "RxC" (metadata <c>{Name}.{key}</c>).</summary>
    public (int Rows, int Cols) PairParameter(string key)
    {
        if (!Parameters.TryGetValue(key, out var text))
            throw new InvalidDataException($"metadata '{Name}.{key}' is missing; format {Format} needs it");
        var p = text.Split('x');
        return p.Length == 2 && int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int r)
            && int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int c)
            ? (r, c) : throw new InvalidDataException($"metadata '{Name}.{key}' is '{text}', expected RxC (e.g. 4x4)");
    }

    public InvalidDataException Fail(string suffix, string problem) => new($"tensor '{Name}.{suffix}' {problem}");

    /// <summary>
    /// Checks a compressed-row structure: pointers (rows + 1) start at 0 and never decrease; the indices of each row lie in
    /// [0, cols) and strictly increase (an equal one is a duplicate, a smaller one unsorted). Returns the entry count.
    /// </summary>
    public int CheckCompressedRows(string pointerSuffix, int[] pointers, string indexSuffix, int[] indices, int rows, int cols, string what)
    {
        if (pointers[0] != 0) throw Fail(pointerSuffix, $"starts at {pointers[0]}, expected 0");
        for (int r = 0; r < rows; r++)
            if (pointers[r + 1] < pointers[r])
                throw Fail(pointerSuffix, $"decreases at {what} row {r}: {pointers[r + 1]} after {pointers[r]}, expected non-decreasing");
        if (pointers[rows] != indices.Length)
            throw Fail(pointerSuffix, $"ends at {pointers[rows]}, but '{Name}.{indexSuffix}' has {indices.Length} elements; expected equal");
        for (int r = 0; r < rows; r++)
        {
            int previous = -1;
            for (int p = pointers[r]; p < pointers[r + 1]; p++)
            {
                int c = indices[p];
                if (c < 0 || c >= cols)
                    throw Fail(indexSuffix, $"holds {c} at element {p} ({what} row {r}), out of range: expected 0 <= index < {cols}");
                if (c == previous)
                    throw Fail(indexSuffix, $"holds {c} twice in {what} row {r} (element {p}): duplicated index");
                if (c < previous)
                    throw Fail(indexSuffix, $"holds {c} after {previous} in {what} row {r} (element {p}): indices must be sorted ascending within a row");
                previous = c;
            }
        }
        return indices.Length;
    }

    public static IndexWidth WidthFor(int maxExclusive) => maxExclusive <= 256 ? IndexWidth.U8 : maxExclusive <= 65536 ? IndexWidth.U16 : IndexWidth.I32;
}

/// <summary>
/// A sparse Linear layout that can be saved and rebuilt: it exports its structure (index tensors and format
/// parameters; values are the model's stored values, in the layout's order) and its class has a static
/// <c>FromStructure(SparseStructure)</c> registered in <see cref="SparseLinearFormats"/> under <see cref="ILinearWeight.Layout"/>.
/// </summary>
public interface ISparseLinearStructure : ILinearWeight
{
    /// <summary>The weight_layouts string naming this layout with its structural arguments: "csr", "nm:2:4", "bsr:4x4".</summary>
    string LayoutString { get; }

    /// <summary>Format parameters written to the file's metadata as <c>{name}.{key}</c> (empty for CSR).</summary>
    IReadOnlyDictionary<string, string> FormatParameters { get; }

    /// <summary>The index tensors that, with the format parameters and shape, rebuild this structure exactly.</summary>
    IReadOnlyList<IndexTensor> ExportIndices();

    /// <summary>values (StoredCount) = dense (Out × In) at the stored positions.</summary>
    void Gather(ReadOnlySpan<float> dense, Span<float> values);

    /// <summary>Bytes of index arrays the layout holds in memory (its own structure and any copy it keeps for the backward pass or decode).</summary>
    long IndexBytesInMemory { get; }
}
