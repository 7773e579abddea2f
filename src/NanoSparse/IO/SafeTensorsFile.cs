using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace NanoSparse.IO;

/// <summary>
/// A safetensors file opened read-only and memory-mapped. The header is validated on Open (every problem throws
/// InvalidDataException naming the file, the tensor and the problem). Spans returned by GetBytes/GetFloat32 point
/// into the mapping and are valid until Dispose.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the reference implementation uses 100 MB too).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;          // start of the file mapping (null when the file has no data section)
    private readonly long _dataStart;
    private readonly long _dataLength;
    private readonly Dictionary<string, SafeTensorInfo> _byName;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>All tensors, ordered by their offset in the data section.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    private SafeTensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long dataStart, long dataLength,
        Dictionary<string, string> metadata, List<SafeTensorInfo> tensors)
    {
        Path = path;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        _dataLength = dataLength;
        Metadata = metadata;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        if (_view != null)
        {
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
    }

    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file '{path}' does not exist", path);
        byte[] header;
        long fileLength;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            fileLength = fs.Length;
            if (fileLength < 8)
                throw Bad(path, $"the file is {fileLength} bytes, shorter than the 8-byte header length field (truncated file?)");
            Span<byte> lenBytes = stackalloc byte[8];
            fs.ReadExactly(lenBytes);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
            if (n > (ulong)(fileLength - 8))
                throw Bad(path, $"the header length field says {n} bytes but only {fileLength - 8} bytes follow it (truncated file?)");
            if (n > MaxHeaderBytes)
                throw Bad(path, $"the header length {n} exceeds the limit of {MaxHeaderBytes} bytes");
            if (n < 2)
                throw Bad(path, $"the header length {n} is too small for a JSON object");
            header = new byte[n];
            fs.ReadExactly(header);
        }
        long dataStart = 8 + header.Length;
        long dataLength = fileLength - dataStart;
        var (metadata, tensors) = ParseHeader(path, header, dataLength);

        if (dataLength == 0) return new SafeTensorsFile(path, null, null, dataStart, 0, metadata, tensors);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(0, fileLength, MemoryMappedFileAccess.Read);
            return new SafeTensorsFile(path, map, view, dataStart, dataLength, metadata, tensors);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public bool TryGet(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    public SafeTensorInfo Get(string name)
    {
        if (_byName.TryGetValue(name, out var info)) return info;
        throw new KeyNotFoundException($"safetensors '{Path}': tensor '{name}' is missing (the file holds {_byName.Count} tensors)");
    }

    /// <summary>The raw little-endian bytes of a tensor, zero-copy; valid until Dispose.</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => GetBytes(Get(name));

    public ReadOnlySpan<byte> GetBytes(SafeTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_base == null && _view != null, this);
        if (info.ByteLength == 0) return ReadOnlySpan<byte>.Empty;
        return new ReadOnlySpan<byte>(_base + _dataStart + info.Begin, checked((int)info.ByteLength));
    }

    /// <summary>An F32 tensor's values, zero-copy from the mapping; valid until Dispose.</summary>
    public ReadOnlySpan<float> GetFloat32(string name)
    {
        var info = Get(name);
        if (info.Dtype != SafeTensorsDtype.F32)
            throw new InvalidOperationException($"safetensors '{Path}': tensor '{name}' is {info.Dtype}, not F32; use ReadInto to widen it");
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("zero-copy F32 access needs a little-endian machine");
        return MemoryMarshal.Cast<byte, float>(GetBytes(info));
    }

    /// <summary>Copies a tensor into destination (whose length must equal the element count), widening F16/BF16 to float.</summary>
    public void ReadInto(string name, Span<float> destination)
    {
        var info = Get(name);
        if (info.Dtype is not (SafeTensorsDtype.F32 or SafeTensorsDtype.F16 or SafeTensorsDtype.BF16))
            throw new InvalidOperationException($"safetensors '{Path}': tensor '{name}' is {info.Dtype}; only F32, F16 and BF16 can be read as floats");
        long count = info.ElementCount;
        if (destination.Length != count)
            throw new ArgumentException($"safetensors '{Path}': tensor '{name}' has shape [{string.Join(", ", info.Shape)}] ({count} elements) but the destination holds {destination.Length}");
        var bytes = GetBytes(info);
        switch (info.Dtype)
        {
            case SafeTensorsDtype.F32:
                if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
                else for (int i = 0; i < destination.Length; i++) destination[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(4 * i));
                break;
            case SafeTensorsDtype.F16:
                if (BitConverter.IsLittleEndian) TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), destination);
                else for (int i = 0; i < destination.Length; i++) destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.Slice(2 * i));
                break;
            case SafeTensorsDtype.BF16:
                for (int i = 0; i < destination.Length; i++)
                    destination[i] = SafeTensors.BFloat16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(2 * i)));
                break;
            default:
                throw new InvalidOperationException($"safetensors '{Path}': tensor '{name}' is {info.Dtype}; only F32, F16 and BF16 can be read as floats");
        }
    }

    /// <summary>A new float array with the tensor's values (widened if F16/BF16).</summary>
    public float[] ReadFloat32Array(string name)
    {
        var info = Get(name);
        var result = new float[checked((int)info.ElementCount)];
        ReadInto(name, result);
        return result;
    }

    public void Dispose()
    {
        if (_view != null && _base != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }

    private static InvalidDataException Bad(string path, string problem) =>
        new($"safetensors '{path}': {problem}");

    private static (Dictionary<string, string>, List<SafeTensorInfo>) ParseHeader(string path, byte[] header, long dataLength)
    {
        // The format requires a UTF-8 header; System.Text.Json would only notice bad bytes when a name is read.
        JsonText.Check(header, $"safetensors '{path}'", "the header");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw Bad(path, $"the header is not well-formed JSON: {e.Message}");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Bad(path, $"the header must be a JSON object but is {root.ValueKind}");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafeTensorInfo>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in root.EnumerateObject())
            {
                string name = prop.Name;
                if (!seen.Add(name)) throw Bad(path, $"key '{name}' appears twice in the header");
                if (name == SafeTensors.MetadataKey)
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw Bad(path, $"'{SafeTensors.MetadataKey}' must be an object of strings but is {prop.Value.ValueKind}");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw Bad(path, $"'{SafeTensors.MetadataKey}' entry '{m.Name}' must be a string but is {m.Value.ValueKind}");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                tensors.Add(ParseTensor(path, name, prop.Value, dataLength));
            }
            CheckLayout(path, tensors, dataLength);
            return (metadata, tensors);
        }
    }

    private static SafeTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw Bad(path, $"tensor '{name}': the entry must be an object but is {e.ValueKind}");
        if (!e.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw Bad(path, $"tensor '{name}': field 'dtype' is missing or not a string");
        string dtypeText = dtypeEl.GetString()!;
        if (!SafeTensors.TryParseDtype(dtypeText, out var dtype))
            throw Bad(path, $"tensor '{name}': unknown dtype '{dtypeText}' (known: {string.Join(", ", Enum.GetNames<SafeTensorsDtype>())})");

        if (!e.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw Bad(path, $"tensor '{name}': field 'shape' is missing or not an array");
        var shape = new int[shapeEl.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim))
                throw Bad(path, $"tensor '{name}': shape entry {i} is not an integer ({d.GetRawText()})");
            if (dim < 0)
                throw Bad(path, $"tensor '{name}': shape entry {i} is negative ({dim})");
            if (dim > int.MaxValue)
                throw Bad(path, $"tensor '{name}': shape entry {i} ({dim}) is too large");
            shape[i++] = (int)dim;
        }

        if (!e.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{name}': field 'data_offsets' is missing or not an array of two integers");
        long begin = ReadOffset(path, name, offEl[0]), end = ReadOffset(path, name, offEl[1]);
        if (end < begin)
            throw Bad(path, $"tensor '{name}': data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw Bad(path, $"tensor '{name}': data_offsets [{begin}, {end}] reach beyond the data section of {dataLength} bytes (truncated file?)");

        long count;
        try { count = SafeTensors.ElementCount(shape); }
        catch (OverflowException) { throw Bad(path, $"tensor '{name}': shape [{string.Join(", ", shape)}] has too many elements"); }
        long expected = count > long.MaxValue / 4 ? long.MaxValue : count * SafeTensors.ElementSize(dtype);
        if (expected != end - begin)
            throw Bad(path, $"tensor '{name}': dtype {dtypeText} with shape [{string.Join(", ", shape)}] needs {expected} bytes but data_offsets [{begin}, {end}] span {end - begin} bytes");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static long ReadOffset(string path, string name, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v) || v < 0)
            throw Bad(path, $"tensor '{name}': data_offsets entry {e.GetRawText()} is not a non-negative integer");
        return v;
    }

    /// <summary>Tensors must tile the data section exactly: sorted by offset, each begins where the previous ends.</summary>
    private static void CheckLayout(string path, List<SafeTensorInfo> tensors, long dataLength)
    {
        tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long pos = 0;
        SafeTensorInfo? prev = null;
        foreach (var t in tensors)
        {
            if (t.Begin < pos)
                throw Bad(path, $"tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}] overlap tensor '{prev!.Name}' [{prev.Begin}, {prev.End}]");
            if (t.Begin > pos)
                throw Bad(path, prev == null
                    ? $"tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}] leave a gap of {t.Begin} bytes at the start of the data section"
                    : $"tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}] leave a gap of {t.Begin - pos} bytes after tensor '{prev.Name}' [{prev.Begin}, {prev.End}]");
            pos = t.End;
            prev = t;
        }
        if (pos != dataLength)
            throw Bad(path, prev == null
                ? $"the header lists no tensors but the data section holds {dataLength} bytes"
                : $"the data section holds {dataLength} bytes but the tensors end at {pos} (after tensor '{prev.Name}'): {dataLength - pos} bytes unaccounted for");
    }
}
