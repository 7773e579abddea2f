using System.Buffers.Binary;
using System.Text;
using NanoSparse.IO;

namespace NanoSparse.Tests.IO;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nanosparse-st-" + Guid.NewGuid().ToString("N"));
    private static readonly string Fixture = Path.Combine(AppContext.BaseDirectory, "Fixtures", "safetensors", "reference.safetensors");

    public SafeTensorsTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    private string P(string name) => Path.Combine(_dir, name);

    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 8 - 4);
        return a;
    }

    [Fact]
    public void F32RoundTripIsBitExactAndZeroCopy()
    {
        var a = Random(3 * 5, 1);
        var b = Random(7, 2);
        SafeTensors.Write(P("a.safetensors"), [new SafeTensor("w", [3, 5], a), new SafeTensor("b", [7], b), new SafeTensor("s", [], new float[] { 42 })]);
        using var f = SafeTensorsFile.Open(P("a.safetensors"));
        Assert.Equal(3, f.Tensors.Count);
        Assert.Equal(new[] { 3, 5 }, f.Get("w").Shape);
        Assert.Equal(SafeTensorsDtype.F32, f.Get("w").Dtype);
        Assert.True(f.GetFloat32("w").SequenceEqual(a));
        Assert.True(f.GetFloat32("b").SequenceEqual(b));
        Assert.Equal(42f, f.GetFloat32("s")[0]);
        var dst = new float[7];
        f.ReadInto("b", dst);
        Assert.Equal(b, dst);
        // Header is padded so the data section starts 8-byte aligned.
        var bytes = File.ReadAllBytes(P("a.safetensors"));
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8);
    }

    [Theory]
    [InlineData(SafeTensorsDtype.F16)]
    [InlineData(SafeTensorsDtype.BF16)]
    public void HalfDtypesRoundTripWithinPrecisionAndRoundTripExactlyOnSecondPass(SafeTensorsDtype dtype)
    {
        var a = Random(64, 3);
        SafeTensors.Write(P("h.safetensors"), [new SafeTensor("x", [8, 8], a, dtype)]);
        float[] back;
        using (var f = SafeTensorsFile.Open(P("h.safetensors")))
        {
            Assert.Equal(dtype, f.Get("x").Dtype);
            Assert.Equal(128, f.Get("x").ByteLength);
            back = f.ReadFloat32Array("x");
            Assert.Throws<InvalidOperationException>(() => f.GetFloat32("x").Length);
        }
        double rel = dtype == SafeTensorsDtype.F16 ? Math.Pow(2, -11) : Math.Pow(2, -8);
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - back[i]) <= rel * Math.Abs(a[i]) + 1e-7, $"{i}: {a[i]} vs {back[i]}");
        // Values already representable survive a second write/read unchanged.
        SafeTensors.Write(P("h2.safetensors"), [new SafeTensor("x", [8, 8], back, dtype)]);
        using var g = SafeTensorsFile.Open(P("h2.safetensors"));
        Assert.Equal(back, g.ReadFloat32Array("x"));
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["step"] = "123", ["unicode"] = "héllo \"quoted\" ✓" };
        SafeTensors.Write(P("m.safetensors"), [new SafeTensor("x", [2], new float[] { 1, 2 })], meta);
        using var f = SafeTensorsFile.Open(P("m.safetensors"));
        Assert.Equal(meta.OrderBy(k => k.Key), f.Metadata.OrderBy(k => k.Key));
        Assert.False(f.Contains("__metadata__"));
    }

    [Fact]
    public void WriteIsAtomicAndOverwrites()
    {
        SafeTensors.Write(P("o.safetensors"), [new SafeTensor("x", [1], new float[] { 1 })]);
        SafeTensors.Write(P("o.safetensors"), [new SafeTensor("y", [2], new float[] { 2, 3 })]);
        using (var f = SafeTensorsFile.Open(P("o.safetensors")))
        {
            Assert.False(f.Contains("x"));
            Assert.Equal(new float[] { 2, 3 }, f.ReadFloat32Array("y"));
        }
        Assert.Single(Directory.GetFiles(_dir)); // no temp file left behind
        var e = Assert.Throws<ArgumentException>(() => SafeTensors.Write(P("o.safetensors"), [new SafeTensor("bad", [2, 2], new float[3])]));
        Assert.Contains("bad", e.Message);
        using var g = SafeTensorsFile.Open(P("o.safetensors"));
        Assert.True(g.Contains("y"));
    }

    [Fact]
    public void MissingTensorAndWrongDestinationAreNamed()
    {
        SafeTensors.Write(P("n.safetensors"), [new SafeTensor("w", [2, 3], new float[6])]);
        using var f = SafeTensorsFile.Open(P("n.safetensors"));
        var e = Assert.Throws<KeyNotFoundException>(() => f.Get("nope"));
        Assert.Contains("nope", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => f.ReadInto("w", new float[5]));
        Assert.Contains("'w'", e2.Message);
        Assert.Contains("5", e2.Message);
    }

    [Fact]
    public void PyTorchFixtureReadsAndNanoSparseWritesTheSameBytes()
    {
        using var f = SafeTensorsFile.Open(Fixture);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal("héllo", f.Metadata["note"]);
        var src = f.GetFloat32("src").ToArray();
        Assert.Equal(42, src.Length);
        // Widening F16/BF16 equals PyTorch's own widening, bit for bit.
        Assert.Equal(f.GetFloat32("x_f16_widened").ToArray(), f.ReadFloat32Array("x_f16"));
        Assert.Equal(f.GetFloat32("x_bf16_widened").ToArray(), f.ReadFloat32Array("x_bf16"));
        Assert.Equal(2.5f, f.GetFloat32("scalar")[0]);
        Assert.Empty(f.Get("scalar").Shape);
        Assert.Equal(new[] { 0, 3 }, f.Get("empty").Shape);
        Assert.Equal(new float[] { 0, 1, 2, 3, 4 }, f.ReadFloat32Array("vec"));

        // Narrowing with round-to-nearest-even and the file layout match PyTorch + the format's conventions byte for byte.
        var tensors = new List<SafeTensor>
        {
            new("src", [6, 7], src),
            new("x_f16", [6, 7], src, SafeTensorsDtype.F16),
            new("x_bf16", [6, 7], src, SafeTensorsDtype.BF16),
            new("x_f16_widened", [6, 7], f.ReadFloat32Array("x_f16")),
            new("x_bf16_widened", [6, 7], f.ReadFloat32Array("x_bf16")),
            new("scalar", [], new float[] { 2.5f }),
            new("empty", [0, 3], Array.Empty<float>()),
            new("vec", [5], new float[] { 0, 1, 2, 3, 4 }),
        };
        SafeTensors.Write(P("mine.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "héllo" });
        Assert.Equal(File.ReadAllBytes(Fixture), File.ReadAllBytes(P("mine.safetensors")));
    }

    [Fact]
    public void BFloat16RoundsToNearestEven()
    {
        Assert.Equal(0x3F80, SafeTensors.FloatToBFloat16(1f + MathF.Pow(2, -8)));            // tie → even (down)
        Assert.Equal(0x3F82, SafeTensors.FloatToBFloat16(1f + 3 * MathF.Pow(2, -8)));        // tie → even (up)
        Assert.Equal(0x3F81, SafeTensors.FloatToBFloat16(1f + MathF.Pow(2, -8) + MathF.Pow(2, -20))); // above tie → up
        Assert.True(float.IsNaN(SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(float.NaN))));
        Assert.Equal(float.PositiveInfinity, SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(float.PositiveInfinity)));
    }

    // ---- corruption: each is rejected with InvalidDataException naming the file and the problem ----

    private static byte[] Build(string headerJson, int dataBytes, ulong? lengthOverride = null)
    {
        var h = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthOverride ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    private InvalidDataException Reject(byte[] bytes, string name = "bad.safetensors")
    {
        File.WriteAllBytes(P(name), bytes);
        var e = Assert.Throws<InvalidDataException>(() => { using var f = SafeTensorsFile.Open(P(name)); });
        Assert.Contains(name, e.Message);
        return e;
    }

    private const string Good = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""";

    [Fact]
    public void WellFormedHandBuiltFileOpens()
    {
        File.WriteAllBytes(P("good.safetensors"), Build(Good, 12));
        using var f = SafeTensorsFile.Open(P("good.safetensors"));
        Assert.Equal(["a", "b"], f.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void TruncatedFileIsRejected()
    {
        var full = Build(Good, 12);
        Assert.Contains("truncated", Reject(full[..^4]).Message);
        Assert.Contains("shorter than the 8-byte", Reject(full[..5], "tiny.safetensors").Message);
    }

    [Fact]
    public void HeaderLengthBeyondFileIsRejected()
    {
        var e = Reject(Build(Good, 12, lengthOverride: 100_000));
        Assert.Contains("header length", e.Message);
        Assert.Contains("100000", e.Message);
    }

    [Fact]
    public void OverlappingOffsetsAreRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8));
        Assert.Contains("overlap", e.Message);
        Assert.Contains("'b'", e.Message);
        Assert.Contains("'a'", e.Message);
    }

    [Fact]
    public void GapIsRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}""", 16));
        Assert.Contains("gap of 4 bytes", e.Message);
        Assert.Contains("'b'", e.Message);
        var e2 = Reject(Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12), "trailing.safetensors");
        Assert.Contains("unaccounted", e2.Message);
    }

    [Fact]
    public void UnknownDtypeIsRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}""", 8));
        Assert.Contains("dtype 'F99'", e.Message);
        Assert.Contains("'a'", e.Message);
    }

    [Fact]
    public void ShapeByteCountDisagreementIsRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8));
        Assert.Contains("needs 12 bytes", e.Message);
        Assert.Contains("'a'", e.Message);
        var e2 = Reject(Build("""{"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}}""", 16), "f16.safetensors");
        Assert.Contains("needs 8 bytes", e2.Message);
    }

    [Fact]
    public void NegativeShapeIsRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8));
        Assert.Contains("negative", e.Message);
    }

    [Fact]
    public void OffsetsBeyondDataSectionAreRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8));
        Assert.Contains("beyond the data section", e.Message);
    }

    [Fact]
    public void BadJsonIsRejected()
    {
        var e = Reject(Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]""", 8));
        Assert.Contains("not well-formed JSON", e.Message);
        var e2 = Reject(Build("""[1,2]   """, 0), "array.safetensors");
        Assert.Contains("must be a JSON object", e2.Message);
    }
}

public sealed class SafeTensorsOtherDtypeTests
{
    [Fact]
    public void NonFloatDtypesOpenButCannotBeReadAsFloats()
    {
        string path = Path.Combine(Path.GetTempPath(), $"nanosparse-st-bool-{Guid.NewGuid():N}.safetensors");
        var h = Encoding.UTF8.GetBytes("""{"mask":{"dtype":"BOOL","shape":[2,2],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""");
        var bytes = new byte[8 + h.Length + 8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        try
        {
            using var f = SafeTensorsFile.Open(path);
            Assert.Equal(SafeTensorsDtype.BOOL, f.Get("mask").Dtype);
            var e = Assert.Throws<InvalidOperationException>(() => f.ReadInto("mask", new float[4]));
            Assert.Contains("'mask'", e.Message);
            Assert.Equal(0f, f.GetFloat32("w")[0]);
        }
        finally { File.Delete(path); }
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [new SafeTensor("x", [1], new float[1], SafeTensorsDtype.I32)]));
    }
}
