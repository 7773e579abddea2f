using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace NanoSparse.Data;

/// <summary>
/// A read-only, memory-mapped flat token file (little-endian uint16 or uint32, as nanoGPT's train.bin).
/// Nothing is copied at open: the OS pages the file in on access. But pages a process has mapped stay in its
/// resident set until the kernel reclaims them, and one page fault maps more than the page asked for (fault-around
/// maps 64 KiB, a large page-cache folio up to 2 MiB), so random windows over a multi-GiB file would soon make the
/// whole file resident. Hence on Linux, once the reads since the last release may have mapped
/// <see cref="TrimIntervalBytes"/> (each read counted as the 2 MiB blocks it touches), the mapping's pages are
/// released with madvise(MADV_DONTNEED): the data stays in the page cache and the next access is a minor fault.
/// Resident memory therefore stays bounded whatever the file size. Every read checks ids against the vocabulary.
/// Reads are safe from several threads at once.
/// </summary>
public sealed unsafe class TokenFile : IDisposable
{
    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    readonly byte* _base;      // start of the mapping (page aligned), for madvise
    readonly long _mappedBytes;
    readonly byte* _data;      // first token
    long _bytesSinceTrim;
    bool _disposed;

    public string Path { get; }
    public TokenDtype Dtype { get; }
    public int VocabSize { get; }
    /// <summary>Number of tokens.</summary>
    public long Length { get; }

    /// <summary>
    /// Upper bound on the bytes reads may have mapped before the mapping's resident pages are released (Linux);
    /// 0 disables releasing. Each read counts as the 2 MiB-aligned blocks it touches.
    /// </summary>
    public long TrimIntervalBytes { get; set; } = 32L << 20;

    TokenFile(string path, TokenDtype dtype, int vocabSize, long fileBytes)
    {
        Path = path; Dtype = dtype; VocabSize = vocabSize;
        Length = fileBytes / dtype.SizeInBytes();
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            _view = _map.CreateViewAccessor(0, fileBytes, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p;
            _mappedBytes = (long)_view.SafeMemoryMappedViewHandle.ByteLength;
            _data = p + _view.PointerOffset;
            // Training reads random windows; readahead of neighbouring pages would only waste I/O.
            if (OperatingSystem.IsLinux()) _ = Posix.madvise(_base, (nuint)_mappedBytes, Posix.MADV_RANDOM);
        }
        catch
        {
            _view?.Dispose();
            _map.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens <paramref name="path"/>. Throws <see cref="FileNotFoundException"/> naming the path when it is missing,
    /// <see cref="InvalidDataException"/> when it is empty or its length is not a multiple of the dtype's size
    /// (truncated), and, with <paramref name="fullScan"/>, when any id is not below <paramref name="vocabSize"/>.
    /// </summary>
    public static TokenFile Open(string path, TokenDtype dtype, int vocabSize, bool fullScan = false)
    {
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocab_size must be positive");
        if (dtype == TokenDtype.UInt16 && vocabSize > 65536)
            throw new ArgumentException($"{path}: vocab_size {vocabSize} does not fit dtype uint16 (at most 65536)", nameof(vocabSize));
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"{path}: token file not found", path);
        long bytes = info.Length;
        int size = dtype.SizeInBytes();
        if (bytes == 0) throw new InvalidDataException($"{path}: token file is empty (0 bytes); expected at least one {dtype.ToJsonName()} token");
        if (bytes % size != 0)
            throw new InvalidDataException(
                $"{path}: token file is truncated: its length {bytes} bytes is not a multiple of {size} (the size of {dtype.ToJsonName()})");
        var file = new TokenFile(path, dtype, vocabSize, bytes);
        if (fullScan)
        {
            try { file.Scan(); }
            catch { file.Dispose(); throw; }
        }
        return file;
    }

    /// <summary>Opens split "train" or "val" of a dataset folder, checking its length against meta.json.</summary>
    public static TokenFile OpenSplit(string datasetDir, string split, DatasetMeta meta, bool fullScan = false)
    {
        long expected = meta.TokensOf(split);
        string path = System.IO.Path.Combine(datasetDir, split + ".bin");
        var file = Open(path, meta.Dtype, meta.VocabSize, fullScan);
        if (file.Length != expected)
        {
            file.Dispose();
            throw new InvalidDataException(
                $"{path}: holds {file.Length} tokens but {System.IO.Path.Combine(datasetDir, DatasetMeta.FileName)} says {split}_tokens = {expected}");
        }
        return file;
    }

    /// <summary>Checks every id is below VocabSize, a chunk at a time (trimming as it goes).</summary>
    public void Scan()
    {
        Span<int> chunk = new int[1 << 16];
        for (long o = 0; o < Length; o += chunk.Length)
        {
            int n = (int)Math.Min(chunk.Length, Length - o);
            Read(o, chunk[..n]);
        }
    }

    /// <summary>Copies tokens [offset, offset + dst.Length) into <paramref name="dst"/> as ints.</summary>
    public void Read(long offset, Span<int> dst)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || offset > Length - dst.Length)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"{Path}: cannot read {dst.Length} tokens at offset {offset}; the file holds {Length} tokens");
        uint vocab = (uint)VocabSize;
        uint bad = 0;
        int badAt = -1;
        if (Dtype == TokenDtype.UInt16)
        {
            var src = new ReadOnlySpan<ushort>(_data + 2 * offset, dst.Length);
            for (int i = 0; i < dst.Length; i++)
            {
                uint id = BitConverter.IsLittleEndian ? src[i] : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(src[i]);
                dst[i] = (int)id;
                if (id >= vocab && badAt < 0) { badAt = i; bad = id; }
            }
        }
        else
        {
            var src = new ReadOnlySpan<uint>(_data + 4 * offset, dst.Length);
            for (int i = 0; i < dst.Length; i++)
            {
                uint id = BitConverter.IsLittleEndian ? src[i] : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(src[i]);
                dst[i] = (int)id;
                if (id >= vocab && badAt < 0) { badAt = i; bad = id; }
            }
        }
        if (badAt >= 0)
            throw new InvalidDataException(
                $"{Path}: token at offset {offset + badAt} has id {bad}; expected an id below vocab_size {VocabSize}");
        NoteRead(offset * Dtype.SizeInBytes(), (long)dst.Length * Dtype.SizeInBytes());
    }

    /// <summary>Reads one token.</summary>
    public int this[long offset]
    {
        get { Span<int> one = stackalloc int[1]; Read(offset, one); return one[0]; }
    }

    const long MappingBlock = 2L << 20; // the most one page fault maps: a PMD-sized large folio

    void NoteRead(long byteOffset, long bytes)
    {
        long interval = TrimIntervalBytes;
        if (interval <= 0 || bytes == 0 || !OperatingSystem.IsLinux()) return;
        long blocks = (byteOffset + bytes - 1) / MappingBlock - byteOffset / MappingBlock + 1;
        if (Interlocked.Add(ref _bytesSinceTrim, blocks * MappingBlock) >= interval)
        {
            Interlocked.Exchange(ref _bytesSinceTrim, 0);
            ReleaseResidentPages();
        }
    }

    /// <summary>Drops this process's mapped pages of the file (Linux madvise MADV_DONTNEED; the page cache keeps them).</summary>
    public void ReleaseResidentPages()
    {
        if (_disposed || !OperatingSystem.IsLinux()) return;
        _ = Posix.madvise(_base, (nuint)_mappedBytes, Posix.MADV_DONTNEED);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    static class Posix
    {
        public const int MADV_RANDOM = 1;
        public const int MADV_DONTNEED = 4;

        [DllImport("libc", SetLastError = true)]
        public static extern int madvise(void* addr, nuint length, int advice);
    }
}
