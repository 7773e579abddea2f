using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace NanoSparse.IO;

/// <summary>
/// Element types of safetensors files. NanoSparse writes and reads (widening to float) F32, F16 and BF16; the others
/// are recognised so files holding e.g. BOOL mask buffers open, but their values cannot be read as floats.
/// </summary>
public enum SafeTensorsDtype { F32, F16, BF16, F64, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 }

/// <summary>One tensor to write: its name, PyTorch shape, float data (row-major) and the dtype to store it as.</summary>
public sealed record SafeTensor(string Name, int[] Shape, ReadOnlyMemory<float> Data, SafeTensorsDtype Dtype = SafeTensorsDtype.F32)
{
    /// <summary>The little-endian bytes of an integer tensor (U8, U16, I32); empty for a float tensor, which writes Data.</summary>
    public ReadOnlyMemory<byte> Bytes { get; init; }

    public bool IsInteger => Dtype is SafeTensorsDtype.U8 or SafeTensorsDtype.U16 or SafeTensorsDtype.I32;

    /// <summary>A 1-D integer tensor of <paramref name="values"/> stored as U8, U16 or I32 (each value must fit).</summary>
    public static SafeTensor Integers(string name, SafeTensorsDtype dtype, ReadOnlySpan<int> values)
    {
        int size = SafeTensors.ElementSize(dtype);
        var bytes = new byte[(long)values.Length * size];
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            switch (dtype)
            {
                case SafeTensorsDtype.U8:
                    bytes[i] = v is >= 0 and <= byte.MaxValue ? (byte)v : throw new ArgumentOutOfRangeException(nameof(values), v, $"tensor '{name}': value {v} at {i} does not fit U8");
                    break;
                case SafeTensorsDtype.U16:
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), v is >= 0 and <= ushort.MaxValue ? (ushort)v
                        : throw new ArgumentOutOfRangeException(nameof(values), v, $"tensor '{name}': value {v} at {i} does not fit U16"));
                    break;
                case SafeTensorsDtype.I32:
                    BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * i), v);
                    break;
                default:
                    throw new ArgumentException($"tensor '{name}': integer tensors are U8, U16 or I32, not {dtype}", nameof(dtype));
            }
        }
        return new SafeTensor(name, [values.Length], ReadOnlyMemory<float>.Empty, dtype) { Bytes = bytes };
    }

    internal long ByteCount => IsInteger ? Bytes.Length : Data.Length * (long)SafeTensors.ElementSize(Dtype);
}

/// <summary>Where a tensor lies in a safetensors file: Begin/End are byte offsets into the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorsDtype Dtype, int[] Shape, long Begin, long End)
{
    /// <summary>Number of elements (product of Shape; 1 for a scalar).</summary>
    public long ElementCount => SafeTensors.ElementCount(Shape);
    public long ByteLength => End - Begin;
}

/// <summary>
/// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
/// N bytes of UTF-8 JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
/// padded with spaces so the data section starts 8-byte aligned, then the data section (little-endian, row-major).
/// </summary>
public static class SafeTensors
{
    public const string MetadataKey = "__metadata__";

    /// <summary>Writes the tensors (in the given order) atomically: temp file in the same folder, flush, rename over path.</summary>
    public static void Write(string path, IEnumerable<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in list)
        {
            if (string.IsNullOrEmpty(t.Name)) throw new ArgumentException($"safetensors '{path}': a tensor has an empty name");
            if (t.Name == MetadataKey) throw new ArgumentException($"safetensors '{path}': '{MetadataKey}' is reserved and cannot name a tensor");
            if (!names.Add(t.Name)) throw new ArgumentException($"safetensors '{path}': tensor '{t.Name}' appears twice");
            foreach (int d in t.Shape)
                if (d < 0) throw new ArgumentException($"safetensors '{path}': tensor '{t.Name}' has a negative dimension in shape [{string.Join(", ", t.Shape)}]");
            if (t.Dtype is not (SafeTensorsDtype.F32 or SafeTensorsDtype.F16 or SafeTensorsDtype.BF16) && !t.IsInteger)
                throw new ArgumentException($"safetensors '{path}': tensor '{t.Name}' cannot be written as {t.Dtype} (supported: F32, F16, BF16, and U8, U16, I32 from SafeTensor.Integers)");
            long n = ElementCount(t.Shape);
            if (t.IsInteger && n * ElementSize(t.Dtype) != t.Bytes.Length)
                throw new ArgumentException($"safetensors '{path}': tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}] ({n} elements) but {t.Bytes.Length} bytes of {t.Dtype}");
            if (!t.IsInteger && n != t.Data.Length)
                throw new ArgumentException($"safetensors '{path}': tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}] ({n} elements) but {t.Data.Length} values");
        }

        byte[] header = BuildHeader(list, metadata);
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                fs.Write(len);
                fs.Write(header);
                byte[] buffer = new byte[1 << 16];
                foreach (var t in list)
                    if (t.IsInteger) fs.Write(t.Bytes.Span);
                    else WriteData(fs, t.Data.Span, t.Dtype, buffer);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch { /* best effort: the original error matters more */ }
            throw;
        }
    }

    /// <summary>Bytes per element of a dtype.</summary>
    public static int ElementSize(SafeTensorsDtype dtype) => dtype switch
    {
        SafeTensorsDtype.F32 => 4,
        SafeTensorsDtype.F16 => 2,
        SafeTensorsDtype.BF16 => 2,
        SafeTensorsDtype.F64 or SafeTensorsDtype.I64 or SafeTensorsDtype.U64 => 8,
        SafeTensorsDtype.I32 or SafeTensorsDtype.U32 => 4,
        SafeTensorsDtype.I16 or SafeTensorsDtype.U16 => 2,
        SafeTensorsDtype.I8 or SafeTensorsDtype.U8 or SafeTensorsDtype.BOOL or SafeTensorsDtype.F8_E4M3 or SafeTensorsDtype.F8_E5M2 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    public static long ElementCount(int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n = checked(n * d);
        return n;
    }

    /// <summary>float → bfloat16 with round-to-nearest-even (NaN stays a quiet NaN).</summary>
    public static ushort FloatToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint lsb = (bits >> 16) & 1;
        return (ushort)((bits + 0x7FFFu + lsb) >> 16);
    }

    public static float BFloat16ToFloat(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);

    private static byte[] BuildHeader(List<SafeTensor> list, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in list)
            {
                long bytes = t.ByteCount;
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.Dtype.ToString());
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int len = (int)ms.Length;
        int padded = (len + 7) & ~7;
        byte[] header = new byte[padded];
        ms.GetBuffer().AsSpan(0, len).CopyTo(header);
        header.AsSpan(len).Fill((byte)' ');
        return header;
    }

    private static void WriteData(Stream s, ReadOnlySpan<float> data, SafeTensorsDtype dtype, byte[] buffer)
    {
        if (dtype == SafeTensorsDtype.F32 && BitConverter.IsLittleEndian)
        {
            s.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        int size = ElementSize(dtype);
        int chunk = buffer.Length / size;
        for (int i = 0; i < data.Length; i += chunk)
        {
            var src = data.Slice(i, Math.Min(chunk, data.Length - i));
            var dst = buffer.AsSpan(0, src.Length * size);
            switch (dtype)
            {
                case SafeTensorsDtype.F32:
                    for (int j = 0; j < src.Length; j++) BinaryPrimitives.WriteSingleLittleEndian(dst.Slice(4 * j), src[j]);
                    break;
                case SafeTensorsDtype.F16:
                    // (Half)float rounds to nearest even per IEEE 754.
                    for (int j = 0; j < src.Length; j++) BinaryPrimitives.WriteHalfLittleEndian(dst.Slice(2 * j), (Half)src[j]);
                    break;
                case SafeTensorsDtype.BF16:
                    for (int j = 0; j < src.Length; j++) BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * j), FloatToBFloat16(src[j]));
                    break;
            }
            s.Write(dst);
        }
    }

    private static readonly Dictionary<string, SafeTensorsDtype> DtypeNames =
        Enum.GetValues<SafeTensorsDtype>().ToDictionary(d => d.ToString(), StringComparer.Ordinal);

    internal static bool TryParseDtype(string s, out SafeTensorsDtype dtype) => DtypeNames.TryGetValue(s, out dtype);
}
