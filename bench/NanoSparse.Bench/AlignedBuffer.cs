using System.Runtime.CompilerServices;

namespace NanoSparse.Bench;

/// <summary>
/// Floats whose first element sits on a 64-byte boundary (one cache line, one AVX-512 vector), in a pinned array so the
/// offset stays valid. The dense yardstick's operands live in these, as the Python peer's do: OpenBLAS's sger measured
/// 1.4–1.65x slower on rows that start mid-line (768×768: 0.031 against 0.043–0.045 ms; 768×3072: 0.12–0.13 against
/// 0.20–0.21 ms; one thread, fastest of 25 samples, the same library from Python), and a .NET array's elements start
/// 16 bytes past an 8-byte-aligned header, so most arrays are misaligned.
/// </summary>
internal sealed unsafe class AlignedBuffer
{
    const int Alignment = 64;
    readonly float[] _array;
    readonly int _offset;

    public AlignedBuffer(int length)
    {
        Length = length;
        _array = GC.AllocateArray<float>(length + Alignment / sizeof(float), pinned: true);
        nint address = (nint)Unsafe.AsPointer(ref _array[0]);
        _offset = (int)((Alignment - (address & (Alignment - 1))) & (Alignment - 1)) / sizeof(float);
    }

    public AlignedBuffer(ReadOnlySpan<float> source) : this(source.Length) => source.CopyTo(Span);

    public int Length { get; }

    public Span<float> Span => _array.AsSpan(_offset, Length);

    /// <summary>The first element's address (the array is pinned for its whole life).</summary>
    public float* Pointer => (float*)Unsafe.AsPointer(ref _array[_offset]);
}
