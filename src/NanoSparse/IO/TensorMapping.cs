namespace NanoSparse.IO;

/// <summary>Shared import logic: match a file's tensors against the canonical layout, reporting every problem by name.</summary>
internal static class TensorMapping
{
    public static List<SafeTensor> Import(SafeTensorsFile file, GptDims dims, string format,
        Func<string, string> toCanonical, Func<string, bool> isBuffer, Func<string, bool> transposed)
    {
        var layout = NanoGptFormat.Layout(dims);
        var expected = layout.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var found = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var extra = new List<string>();
        SafeTensorInfo? lmHead = null;
        foreach (var info in file.Tensors)
        {
            string name = toCanonical(info.Name);
            if (name == NanoGptFormat.LmHead) { lmHead = info; continue; }
            if (expected.ContainsKey(name))
            {
                if (!found.TryAdd(name, info))
                    throw new InvalidDataException($"{format} weights '{file.Path}': tensors '{found[name].Name}' and '{info.Name}' both map to '{name}'");
                continue;
            }
            if (isBuffer(name)) continue;
            extra.Add(info.Name);
        }

        var missing = layout.Where(s => !found.ContainsKey(s.Name)).Select(s => s.Name).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{format} weights '{file.Path}': {missing.Count} tensor(s) the config needs are missing: {List(missing)}"
                + (dims.Bias && missing.All(m => m.EndsWith(".bias", StringComparison.Ordinal)) ? " (is the config's bias=true right?)" : ""));
        if (extra.Count > 0)
            throw new InvalidDataException($"{format} weights '{file.Path}': {extra.Count} unexpected tensor(s) the config does not describe: {List(extra)}"
                + (!dims.Bias && extra.All(m => m.EndsWith(".bias", StringComparison.Ordinal)) ? " (the config says bias=false)" : ""));

        var result = new List<SafeTensor>(layout.Count);
        foreach (var spec in layout)
        {
            var info = found[spec.Name];
            bool t = transposed(spec.Name);
            int[] want = t ? [spec.Shape[1], spec.Shape[0]] : spec.Shape;
            if (!info.Shape.SequenceEqual(want))
                throw new InvalidDataException($"{format} weights '{file.Path}': tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}] but the config needs [{string.Join(", ", want)}]");
            var data = new float[info.ElementCount];
            file.ReadInto(info.Name, data);
            int bad = FirstNonFinite(data);
            if (bad >= 0)
                throw new InvalidDataException($"{format} weights '{file.Path}': tensor '{info.Name}' holds {Show(data[bad])} at element {bad}; NaN and infinite weights are refused");
            if (t) data = Transpose(data, want[0], want[1]);
            result.Add(new SafeTensor(spec.Name, spec.Shape, data));
        }

        if (lmHead != null)
        {
            // nanoGPT and GPT-2 tie the output head to the token embedding; an untied head cannot be represented.
            var wte = (float[])result[0].Data.ToArray();
            if (!lmHead.Shape.SequenceEqual(result[0].Shape))
                throw new InvalidDataException($"{format} weights '{file.Path}': tensor '{lmHead.Name}' has shape [{string.Join(", ", lmHead.Shape)}] but must equal the tied transformer.wte.weight [{string.Join(", ", result[0].Shape)}]");
            var head = new float[lmHead.ElementCount];
            file.ReadInto(lmHead.Name, head);
            for (int i = 0; i < head.Length; i++)
                if (BitConverter.SingleToInt32Bits(head[i]) != BitConverter.SingleToInt32Bits(wte[i]))
                    throw new InvalidDataException($"{format} weights '{file.Path}': tensor '{lmHead.Name}' differs from transformer.wte.weight at element {i} ({head[i]} vs {wte[i]}); NanoSparse needs the output head tied to the embedding");
        }
        return result;
    }

    static string Show(float v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Index of the first NaN or infinity, or -1.</summary>
    public static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    /// <summary>
    /// Refuses to write a tensor holding NaN or infinity, or a finite value that <paramref name="dtype"/> cannot hold
    /// (above 65,504 in magnitude for F16 it rounds to infinity; near float's limit for BF16), naming the file and tensor.
    /// </summary>
    public static void EnsureWritable(IEnumerable<SafeTensor> tensors, string path, SafeTensorsDtype dtype)
    {
        foreach (var t in tensors)
        {
            var v = t.Data.Span;
            int bad = FirstNonFinite(v);
            if (bad >= 0)
                throw new InvalidDataException($"{path}: tensor '{t.Name}' holds {Show(v[bad])} at element {bad}; NaN and infinite weights are refused");
            if (dtype == SafeTensorsDtype.F32) continue;
            for (int i = 0; i < v.Length; i++)
            {
                float narrowed = dtype == SafeTensorsDtype.F16 ? (float)(Half)v[i] : SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(v[i]));
                if (!float.IsFinite(narrowed))
                    throw new InvalidDataException($"{path}: tensor '{t.Name}' holds {Show(v[i])} at element {i}, beyond the range of {dtype} (it would be stored as {Show(narrowed)}); export as f32");
            }
        }
    }

    /// <summary>(rows, cols) row-major → (cols, rows) row-major.</summary>
    public static float[] Transpose(ReadOnlySpan<float> src, int rows, int cols)
    {
        var dst = new float[src.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                dst[c * rows + r] = src[r * cols + c];
        return dst;
    }

    private static string List(List<string> names) =>
        string.Join(", ", names.Take(8).Select(n => $"'{n}'")) + (names.Count > 8 ? $", ... ({names.Count - 8} more)" : "");
}
