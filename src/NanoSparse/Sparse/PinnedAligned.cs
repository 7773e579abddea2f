using System.Runtime.CompilerServices;

namespace NanoSparse.Sparse;

/// <summary>Copies of arrays that kernels read through pointers with 64-byte aligned loads.</summary>
internal static unsafe class PinnedAligned
{
    /// <summary>
    /// <paramref name="data"/> copied into a pinned array (it never moves, so the offset found now keeps it aligned)
    /// at the first 64-byte boundary, followed by at least <paramref name="spareBytes"/> zeroed bytes that loads running
    /// past the data's end may touch.
    /// </summary>
    public static (T[] Array, int Start) Copy<T>(ReadOnlySpan<T> data, int spareBytes) where T : unmanaged
    {
        var array = GC.AllocateArray<T>(data.Length + (64 + spareBytes) / sizeof(T), pinned: true);
        int start = (int)((64 - ((nint)Unsafe.AsPointer(ref array[0]) & 63)) & 63) / sizeof(T);
        data.CopyTo(array.AsSpan(start));
        Kernels.HugePages.Advise(array);   // the decode copies: streamed once per token
        return (array, start);
    }
}
