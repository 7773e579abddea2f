using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Dynamic sparse training's hooks on the CSR layout: the structure is replaced in place by one with the same stored
/// count (the arrays are reused, so an update allocates nothing here), and on an update step the backward pass can
/// also form the dense weight gradient dyᵀ·x that RigL ranks inactive positions by.
/// </summary>
public sealed partial class CsrLinearWeight
{
    readonly object _denseGradientLock = new();
    float[]? _denseGradient;   // (Out × In) while a capture is on (RigL's update step); null otherwise
    bool _denseGradientWritten;   // the capture's first product went straight into the buffer

    /// <summary>
    /// While set (a buffer of Out·In floats), every <see cref="Backward"/> also adds the dense gradient dW = dyᵀ · x
    /// (Out × In, row-major; one GEMM) into it, before dx is written (dx may alias x). Data-parallel shards add under a
    /// lock. Set it to null again after the update; the buffer is the caller's.
    /// </summary>
    public float[]? DenseGradientCapture
    {
        get => _denseGradient;
        set
        {
            if (value is not null && value.LongLength != (long)OutFeatures * InFeatures)
                throw new ArgumentException($"dense gradient buffer has {value.LongLength} floats, expected out x in = {OutFeatures} x {InFeatures}", nameof(value));
            _denseGradient = value;
            _denseGradientWritten = false;
        }
    }

    // Called at the start of Backward: dW (Out × In) += dyᵀ (Out × rows) · x (rows × In). The capture's first product
    // is written into the buffer itself (beta 0: what 0 + product gives, without a second Out·In array to allocate,
    // fault in and add); any later one (data-parallel shards, gradient accumulation) is formed on its own and then
    // added under the lock, so with one or two shards the sum is the same whichever shard comes first (a + b = b + a
    // exactly); with more shards the order of the additions may vary.
    void CaptureDenseGradient(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int rows)
    {
        var sink = _denseGradient;
        if (sink is null || rows == 0) return;
        lock (_denseGradientLock)
            if (!_denseGradientWritten)
            {
                Gemm.Multiply(true, false, OutFeatures, InFeatures, rows, 1f, dy, OutFeatures, x, InFeatures, 0f, sink, InFeatures);
                _denseGradientWritten = true;
                return;
            }
        var product = new float[sink.Length];   // update steps only
        Gemm.Multiply(true, false, OutFeatures, InFeatures, rows, 1f, dy, OutFeatures, x, InFeatures, 0f, product, InFeatures);
        lock (_denseGradientLock)
            System.Numerics.Tensors.TensorPrimitives.Add(sink, product, sink);
    }

    /// <summary>
    /// Replaces W's structure in place with another of exactly <see cref="StoredCount"/> entries: row pointers (Out + 1)
    /// and column indices (StoredCount; sorted and unique within each row). Wᵀ's structure and value permutation (dx)
    /// are rebuilt into their arrays; any SELL decode copy is dropped. The model's values are NOT moved: the caller
    /// permutes values and optimizer moments to the new order. <paramref name="counter"/> is scratch of In + 1 ints.
    /// Not while another thread runs this layer.
    /// </summary>
    public void ReplaceStructure(ReadOnlySpan<int> rowPointers, ReadOnlySpan<int> columns, Span<int> counter)
    {
        if (_inferenceOnly) throw new InvalidOperationException($"{Name} weight ({OutFeatures}x{InFeatures}) was released for inference; its structure cannot change");
        int nnz = StoredCount, m = OutFeatures, n = InFeatures;
        if (rowPointers.Length != m + 1) throw new ArgumentException($"row pointers have {rowPointers.Length} elements, expected out + 1 = {m + 1}", nameof(rowPointers));
        if (columns.Length != nnz) throw new ArgumentException($"columns have {columns.Length} elements, expected the stored count {nnz} (a topology update keeps it)", nameof(columns));
        if (counter.Length < n + 1) throw new ArgumentException($"counter has {counter.Length} elements, expected at least in + 1 = {n + 1}", nameof(counter));
        if (rowPointers[0] != 0 || rowPointers[m] != nnz) throw new ArgumentException($"row pointers run from {rowPointers[0]} to {rowPointers[m]}, expected 0 to {nnz}", nameof(rowPointers));
        for (int o = 0; o < m; o++)
        {
            if (rowPointers[o + 1] < rowPointers[o]) throw new ArgumentException($"row pointers decrease at row {o}", nameof(rowPointers));
            for (int p = rowPointers[o]; p < rowPointers[o + 1]; p++)
            {
                int c = columns[p];
                if ((uint)c >= (uint)n || (p > rowPointers[o] && c <= columns[p - 1]))
                    throw new ArgumentException($"column {c} at entry {p} (row {o}) is out of range [0, {n}) or not ascending within its row", nameof(columns));
            }
        }
        rowPointers.CopyTo(_w.RowPointers);
        if (_w.ColumnIndices16 is { } c16) for (int p = 0; p < nnz; p++) c16[p] = (ushort)columns[p];
        else columns.CopyTo(_w.ColumnIndices32!);

        // Wᵀ by a counting sort over columns, as the constructor does.
        var next = counter.Slice(0, n + 1);
        next.Clear();
        for (int p = 0; p < nnz; p++) next[columns[p] + 1]++;
        for (int j = 0; j < n; j++) next[j + 1] += next[j];
        next.CopyTo(_wtPointers);
        for (int o = 0; o < m; o++)
            for (int p = rowPointers[o]; p < rowPointers[o + 1]; p++)
            {
                int q = next[columns[p]]++;
                _wtSource[q] = p;
                if (_wtIndex16 is { } t16) t16[q] = (ushort)o; else _wtIndex32![q] = o;
            }
        _sell = null;
    }
}
