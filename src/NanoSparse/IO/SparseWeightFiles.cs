using System.Buffers.Binary;
using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.IO;

/// <summary>
/// How a sparse Linear weight W (Out, In) named NAME (e.g. transformer.h.0.mlp.c_fc.weight) lies in a safetensors
/// file. Instead of the dense tensor NAME the file holds
///   NAME.values                 F32 [stored]       the stored values, in the layout's order
///   NAME.{index suffix}         U8/U16/I32 [len]   the layout's index tensors (<see cref="ISparseLinearStructure.ExportIndices"/>):
///                                                  csr: row_ptr (I32, Out + 1), col_indices (U16 if In ≤ 65536, else I32; stored)
///                                                  nm:  indices (U8; stored): the in-group input index of each value
///                                                  bsr: block_row_ptr (I32, Out/R + 1), block_col_indices (U16/I32; blocks)
/// and the metadata (all strings)
///   NAME.format    "csr" | "nm" | "bsr"            (a name registered in <see cref="SparseLinearFormats"/>)
///   NAME.shape     "[Out, In]"                     the logical (PyTorch) shape
///   NAME.density   stored / (Out·In), round-trip   checked against the structure when read
///   NAME.{param}   the format's parameters: nm: n, m; bsr: block ("RxC")
/// A dense weight keeps its nanoGPT tensor NAME and no metadata, so a dense file is unchanged.
/// Reading checks every piece and throws InvalidDataException naming the tensor or metadata key at fault.
/// </summary>
public static class SparseWeightFiles
{
    public const string ValuesSuffix = "values";

    /// <summary>The tensors (values, then indices) that store a sparse weight.</summary>
    public static IEnumerable<SafeTensor> Tensors(string name, ISparseLinearStructure weight, ReadOnlyMemory<float> values)
    {
        if (values.Length != weight.StoredCount)
            throw new ArgumentException($"weight '{name}': {values.Length} values for a structure storing {weight.StoredCount}", nameof(values));
        yield return new SafeTensor($"{name}.{ValuesSuffix}", [values.Length], values);
        foreach (var index in weight.ExportIndices())
            yield return SafeTensor.Integers($"{name}.{index.Suffix}", DtypeOf(index.Width), index.Values);
    }

    /// <summary>Adds a sparse weight's metadata entries (format, shape, density, format parameters).</summary>
    public static void AddMetadata(IDictionary<string, string> metadata, string name, ISparseLinearStructure weight)
    {
        metadata[$"{name}.format"] = weight.Layout;
        metadata[$"{name}.shape"] = $"[{weight.OutFeatures}, {weight.InFeatures}]";
        metadata[$"{name}.density"] = Density(weight).ToString("R", CultureInfo.InvariantCulture);
        foreach (var (key, value) in weight.FormatParameters) metadata[$"{name}.{key}"] = value;
    }

    public static double Density(ILinearWeight weight) => weight.StoredCount / ((double)weight.OutFeatures * weight.InFeatures);

    /// <summary>Whether the file stores <paramref name="name"/> sparse (its metadata names a format).</summary>
    public static bool IsSparse(SafeTensorsFile file, string name) => file.Metadata.ContainsKey($"{name}.format");

    /// <summary>Whether any weight of the file is stored sparse.</summary>
    public static bool AnySparse(SafeTensorsFile file) => file.Metadata.Keys.Any(k => k.EndsWith(".format", StringComparison.Ordinal) && k != "format");

    /// <summary>
    /// The sparse layouts of the blocks' Linear weights stored sparse in <paramref name="file"/>, by state_dict name,
    /// rebuilt from the stored structure and checked (see the class comment). Weights stored dense are absent.
    /// </summary>
    public static Dictionary<string, ILinearWeight> ReadLayouts(SafeTensorsFile file, string path, GptConfig config)
    {
        var result = new Dictionary<string, ILinearWeight>(StringComparer.Ordinal);
        foreach (var (name, outFeatures, inFeatures) in LinearWeights(config))
            if (IsSparse(file, name)) result[name] = Read(file, path, name, outFeatures, inFeatures);
        CheckNoStrays(file, path, result.Keys, config);
        return result;
    }

    /// <summary>The blocks' Linear weights of a config: state_dict name and (Out, In).</summary>
    public static IEnumerable<(string Name, int OutFeatures, int InFeatures)> LinearWeights(GptConfig config)
    {
        int C = config.NEmbd;
        for (int l = 0; l < config.NLayer; l++)
        {
            string h = $"transformer.h.{l}.";
            int A = config.AttentionWidth(l), H = config.MlpHidden(l);   // C and 4C unless structured pruning narrowed the layer
            yield return (h + "attn.c_attn.weight", 3 * A, C);
            yield return (h + "attn.c_proj.weight", C, A);
            yield return (h + "mlp.c_fc.weight", H, C);
            yield return (h + "mlp.c_proj.weight", C, H);
        }
    }

    /// <summary>Sparse metadata or tensors for a name that is not one of the model's Linear weights are refused, not ignored.</summary>
    static void CheckNoStrays(SafeTensorsFile file, string path, IEnumerable<string> read, GptConfig config)
    {
        var known = new HashSet<string>(read, StringComparer.Ordinal);
        foreach (var key in file.Metadata.Keys)
            if (key.EndsWith(".format", StringComparison.Ordinal) && key != "format" && !known.Contains(key[..^".format".Length]))
                throw new InvalidDataException($"{path}: metadata '{key}' names a sparse weight that is not a Linear weight of this {config.NLayer}-layer model (transformer.h.L.attn.c_attn.weight, ...)");
        foreach (var t in file.Tensors)
            if (t.Name.EndsWith("." + ValuesSuffix, StringComparison.Ordinal) && !known.Contains(t.Name[..^(ValuesSuffix.Length + 1)]))
                throw new InvalidDataException($"{path}: tensor '{t.Name}' has no metadata '{t.Name[..^(ValuesSuffix.Length + 1)]}.format'; expected a sparse weight's format beside its values");
    }

    /// <summary>One sparse weight's layout, rebuilt and checked; its values tensor is checked too (read it with <see cref="ReadValues"/>).</summary>
    public static ISparseLinearStructure Read(SafeTensorsFile file, string path, string name, int outFeatures, int inFeatures)
    {
        try
        {
            var meta = file.Metadata;
            string format = meta[$"{name}.format"];
            if (file.Contains(name))
                throw new InvalidDataException($"tensor '{name}' is stored dense, but metadata '{name}.format' says {format}; expected one or the other");
            string expectedShape = $"[{outFeatures}, {inFeatures}]";
            if (!meta.TryGetValue($"{name}.shape", out var shape))
                throw new InvalidDataException($"metadata '{name}.shape' is missing; expected {expectedShape}");
            if (shape.Replace(" ", "") != expectedShape.Replace(" ", ""))
                throw new InvalidDataException($"metadata '{name}.shape' is {shape}, expected {expectedShape}");
            var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
            var indices = new Dictionary<string, IndexTensor>(StringComparer.Ordinal);
            string prefix = name + ".";
            foreach (var (key, value) in meta)
                if (key.StartsWith(prefix, StringComparison.Ordinal) && key[prefix.Length..] is var k && k is not ("format" or "shape" or "density"))
                    parameters[k] = value;
            foreach (var t in file.Tensors)
                if (t.Name.StartsWith(prefix, StringComparison.Ordinal) && t.Name[prefix.Length..] is var suffix && suffix != ValuesSuffix)
                    indices[suffix] = new IndexTensor(suffix, WidthOf(t, path), ReadIntegers(file, t));
            var weight = SparseLinearFormats.FromStructure(new SparseStructure(name, format, outFeatures, inFeatures, parameters, indices));
            var known = weight.ExportIndices().Select(i => i.Suffix).ToHashSet();
            foreach (var suffix in indices.Keys)
                if (!known.Contains(suffix))
                    throw new InvalidDataException($"tensor '{name}.{suffix}' is not part of format {format} (expected {string.Join(", ", known.Select(s => $"'{name}.{s}'"))})");
            CheckDensity(meta, name, weight);
            CheckValues(file, name, weight);
            return weight;
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    static void CheckDensity(IReadOnlyDictionary<string, string> meta, string name, ISparseLinearStructure weight)
    {
        if (weight.StoredCount == 0)
            throw new InvalidDataException($"tensor '{name}.{ValuesSuffix}' is empty: the structure stores no value (density 0), expected a density in (0, 1]");
        if (!meta.TryGetValue($"{name}.density", out var text)) return;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || !(d > 0 && d <= 1))
            throw new InvalidDataException($"metadata '{name}.density' is '{text}', expected a number in (0, 1]");
        double actual = Density(weight);
        if (Math.Abs(d - actual) > 1e-9)
            throw new InvalidDataException($"metadata '{name}.density' is {text}, but the structure stores {weight.StoredCount} of {(long)weight.OutFeatures * weight.InFeatures} values ({actual.ToString("R", CultureInfo.InvariantCulture)})");
    }

    static void CheckValues(SafeTensorsFile file, string name, ISparseLinearStructure weight)
    {
        string values = $"{name}.{ValuesSuffix}";
        if (!file.TryGet(values, out var info))
            throw new InvalidDataException($"tensor '{values}' is missing; expected F32 [{weight.StoredCount}] (the stored values of {weight.Layout} weight '{name}')");
        if (info.Dtype != SafeTensorsDtype.F32)
            throw new InvalidDataException($"tensor '{values}' has dtype {info.Dtype}, expected F32");
        if (info.Shape.Length != 1 || info.Shape[0] != weight.StoredCount)
            throw new InvalidDataException($"tensor '{values}' has shape [{string.Join(", ", info.Shape)}], expected [{weight.StoredCount}] (the count the {weight.Layout} structure stores); wrong length");
    }

    /// <summary>Reads a sparse weight's values (checked by <see cref="Read"/>) into <paramref name="destination"/>.</summary>
    public static void ReadValues(SafeTensorsFile file, string name, Span<float> destination) => file.ReadInto($"{name}.{ValuesSuffix}", destination);

    /// <summary>A sparse weight as the dense (Out, In) matrix, zeros where nothing is stored (export).</summary>
    public static float[] ReadDense(SafeTensorsFile file, string path, string name, int outFeatures, int inFeatures)
    {
        var weight = Read(file, path, name, outFeatures, inFeatures);
        var values = new float[weight.StoredCount];
        ReadValues(file, name, values);
        var dense = new float[(long)outFeatures * inFeatures];
        weight.ToDense(values, dense);
        return dense;
    }

    /// <summary>Bytes a weight's tensors take in the file's data section (NAME, or NAME.values and its index tensors).</summary>
    public static long BytesOnDisk(SafeTensorsFile file, string name)
    {
        if (file.TryGet(name, out var dense)) return dense.ByteLength;
        string prefix = name + ".";
        return file.Tensors.Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal) && !t.Name[prefix.Length..].Contains('.')).Sum(t => t.ByteLength);
    }

    static SafeTensorsDtype DtypeOf(IndexWidth width) => width switch
    {
        IndexWidth.U8 => SafeTensorsDtype.U8,
        IndexWidth.U16 => SafeTensorsDtype.U16,
        _ => SafeTensorsDtype.I32,
    };

    static IndexWidth WidthOf(SafeTensorInfo t, string path) => t.Dtype switch
    {
        SafeTensorsDtype.U8 => IndexWidth.U8,
        SafeTensorsDtype.U16 => IndexWidth.U16,
        SafeTensorsDtype.I32 => IndexWidth.I32,
        _ => throw new InvalidDataException($"tensor '{t.Name}' has dtype {t.Dtype}, expected an index dtype (U8, U16 or I32)"),
    };

    static int[] ReadIntegers(SafeTensorsFile file, SafeTensorInfo t)
    {
        if (t.Shape.Length != 1)
            throw new InvalidDataException($"tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}], expected a 1-D index tensor");
        var bytes = file.GetBytes(t);
        var result = new int[t.Shape[0]];
        switch (t.Dtype)
        {
            case SafeTensorsDtype.U8:
                for (int i = 0; i < result.Length; i++) result[i] = bytes[i];
                break;
            case SafeTensorsDtype.U16:
                for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(2 * i));
                break;
            default:
                for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.Slice(4 * i));
                break;
        }
        return result;
    }
}
