using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// nanoGPT's get_batch: B random windows of T + 1 consecutive tokens; the window's start o is uniform in
/// [0, Length - T - 1], x = tokens[o .. o+T) and y = tokens[o+1 .. o+T+1) (the next-token targets).
/// Deterministic from the seed; <see cref="State"/> saves and restores the position in the sequence of batches.
/// Not thread-safe; allocation-free per batch.
/// </summary>
public sealed class BatchSampler
{
    readonly TokenFile _file;
    readonly Rng _rng;
    readonly int[] _window; // (T + 1) tokens of one row

    public int BatchSize { get; }
    public int SeqLen { get; }
    public TokenFile File => _file;

    public BatchSampler(TokenFile file, int batchSize, int seqLen, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batch_size must be positive");
        if (seqLen <= 0) throw new ArgumentOutOfRangeException(nameof(seqLen), seqLen, "block_size must be positive");
        if (file.Length < seqLen + 1L)
            throw new ArgumentException(
                $"{file.Path}: holds {file.Length} tokens, fewer than block_size + 1 = {seqLen + 1L} needed for one window", nameof(file));
        _file = file;
        BatchSize = batchSize;
        SeqLen = seqLen;
        _rng = new Rng(seed);
        _window = new int[seqLen + 1];
    }

    /// <summary>The random generator's state; setting it makes the following batches those that followed the saved state.</summary>
    public RngState State
    {
        get => _rng.State;
        set => _rng.State = value;
    }

    /// <summary>Fills x (B, T) with inputs and y (B, T) with targets.</summary>
    public void Next(Span<int> x, Span<int> y)
    {
        int B = BatchSize, T = SeqLen;
        if (x.Length != B * T) throw new ArgumentException($"x has {x.Length} elements; expected B*T = {B}*{T} = {B * T}", nameof(x));
        if (y.Length != B * T) throw new ArgumentException($"y has {y.Length} elements; expected B*T = {B}*{T} = {B * T}", nameof(y));
        long starts = _file.Length - T; // offsets 0 .. Length - T - 1
        for (int b = 0; b < B; b++)
        {
            long o = _rng.NextInt64(starts);
            _file.Read(o, _window);
            _window.AsSpan(0, T).CopyTo(x.Slice(b * T, T));
            _window.AsSpan(1, T).CopyTo(y.Slice(b * T, T));
        }
    }
}
