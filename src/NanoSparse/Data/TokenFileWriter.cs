using System.Buffers.Binary;

namespace NanoSparse.Data;

/// <summary>Writes token ids as a flat little-endian uint16/uint32 file (nanoGPT's train.bin format).</summary>
public static class TokenFileWriter
{
    /// <summary>Writes <paramref name="ids"/> to <paramref name="stream"/>, checking each id fits the dtype and vocabulary.</summary>
    public static void Write(Stream stream, ReadOnlySpan<int> ids, TokenDtype dtype, int vocabSize, string nameForErrors = "token stream")
    {
        if (dtype == TokenDtype.UInt16 && vocabSize > 65536)
            throw new ArgumentException($"{nameForErrors}: vocab_size {vocabSize} does not fit dtype uint16 (at most 65536); use uint32");
        int size = dtype.SizeInBytes();
        // A 1 MiB staging buffer: big sequential writes, not one call per token.
        byte[] buffer = new byte[1 << 20];
        int perChunk = buffer.Length / size;
        for (int start = 0; start < ids.Length; start += perChunk)
        {
            int n = Math.Min(perChunk, ids.Length - start);
            ReadOnlySpan<int> chunk = ids.Slice(start, n);
            for (int i = 0; i < n; i++)
            {
                int id = chunk[i];
                if ((uint)id >= (uint)vocabSize)
                    throw new ArgumentOutOfRangeException(nameof(ids),
                        $"{nameForErrors}: token {start + i} has id {id}, outside the vocabulary [0, {vocabSize})");
                if (dtype == TokenDtype.UInt16) BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2 * i), (ushort)id);
                else BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(4 * i), (uint)id);
            }
            stream.Write(buffer, 0, n * size);
        }
    }

    /// <summary>Atomically writes <paramref name="ids"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, ReadOnlyMemory<int> ids, TokenDtype dtype, int vocabSize) =>
        AtomicFile.Write(path, fs => Write(fs, ids.Span, dtype, vocabSize, path));
}
