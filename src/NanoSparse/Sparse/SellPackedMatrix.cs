namespace NanoSparse.Sparse;

/// <summary>
/// SELL-128 (or SELL-64) with its padding left out, for the decode SpMV (one token: y = W·x) at low density. Rows in
/// slices of 16, columns in blocks of 128 or 64 (<see cref="BlockWidth"/>), a slot's column within its block one byte,
/// as in <see cref="SellWideMatrix"/> (the kernel fetches x from registers: four permutes and a blend tree per step for
/// 128 columns, two permutes and one blend for 64). What differs is how a (slice, block) is stored.
/// <para>
/// Why: SELL pads every lane of a (slice, block) to its longest lane, and a decode step at 10% density reads ~6.5 bytes
/// per value from SELL-128-σ (~30% of its slots are padding) against the 5 of a value and its byte. Here the block's
/// 16 lanes are sorted by entry count, longest first (block lane i = the i-th longest row lane; ties by row lane), so
/// at step u the lanes that still hold entries are a prefix 0..k_u − 1 (k_u = lanes with more than u entries), and only
/// those slots are stored. The kernel adds a step's products into a per-block accumulator in block-lane order and
/// moves it to row-lane order with one permute per (slice, block).
/// </para>
/// <para>
/// One stream: <see cref="Values"/> and <see cref="Indices"/> hold, slice by slice, the slice's blocks that hold
/// entries in kernel order (below), step by step, the k_u slots of each step, block lane 0 first.
/// <see cref="Headers"/>[32·(s·Blocks + b) ..] holds 16 bytes of counts (block lane i's entries, non-increasing in i)
/// and then 16 bytes of placement (byte j: the block lane that holds row lane j). A lane's entries come in increasing
/// column order, step by step. With a <see cref="RowOrder"/> (SELL-C-σ, <see cref="SellRowOrder"/>), row lane l of
/// slice s is row RowOrder[16·s + l] of W; the row order cuts the steps (the kernel's compute), the packing cuts the bytes.
/// </para>
/// <para>
/// The kernel reads <see cref="Control"/> instead of the headers: per slice, a record for each block that holds
/// entries, in kernel order: the block's step count t (its longest lane's count), the block (two bytes, low first), the
/// 16 placement bytes, then k_u for each of the t steps, a byte each. Kernel order is t descending, ties by block: the
/// end of a block's steps is the kernel's one branch that depends on the data, and a core predicts a loop's exit from
/// the loops before it, so blocks of equal length one after another mispredict less than blocks in column order
/// (measured in <see cref="Kernels.Sparse.SellPackedSpmv"/>).
/// A step's width comes from there instead of from the counts, and the metadata is one sequential stream of 19 + t
/// bytes per block that holds entries (the counts are only needed to build, check and expand the layout; at 10%
/// density that is ~3% of the bytes a decode SpMV reads). <see cref="SlotStart"/>[s] and <see cref="ControlStart"/>[s]:
/// where slice s starts in the slot stream and in <see cref="Control"/>. The control stream and both starts follow
/// from the headers; the constructor derives them.
/// </para>
/// </summary>
public sealed unsafe class SellPackedMatrix
{
    const string Format = "SELL-packed";

    public const int SliceHeight = 16;
    /// <summary>The column block widths the kernel has: 128 (the default) and 64.</summary>
    public const int WideBlock = 128, NarrowBlock = 64;

    /// <summary>Columns per block: 128 or 64. The 64-column layout stores ~15–25% more steps (its lanes' counts vary
    /// more around their mean) but a step fetches x with half the permutes and a third of the blends.</summary>
    public int BlockWidth { get; }
    /// <summary>Bytes of a (slice, block)'s header: 16 counts and 16 placements.</summary>
    public const int HeaderBytes = 32;

    /// <summary>Zeroed bytes after each stream: the kernel loads 16 slots from where a step starts, and the last step
    /// may hold just one.</summary>
    const int SpareBytes = 64;

    readonly byte[] _indices, _control;
    readonly float[] _values;
    readonly int _indexStart, _valueStart, _controlStart;

    public int Rows { get; }
    public int Cols { get; }
    public int Slices => (Rows + SliceHeight - 1) / SliceHeight;
    public int Blocks => (Cols + BlockWidth - 1) / BlockWidth;

    /// <summary>Per (slice, block), slice-major: 16 lane counts, longest first, then 16 placements (row lane j is block lane Headers[.. + 16 + j]).</summary>
    public byte[] Headers { get; }

    /// <summary>SlotStart[s] = the slots (values) of the slices before s (length Slices + 1): where slice s starts in the stream, and how the work is split.</summary>
    public int[] SlotStart { get; }

    /// <summary>ControlStart[s] = where slice s starts in <see cref="Control"/> (length Slices + 1).</summary>
    public int[] ControlStart { get; }

    /// <summary>Steps of all (slice, block)s: the sum of the headers' step counts.</summary>
    public long StepCount { get; }

    /// <summary>RowOrder[r] = the row of W at layout position r (a permutation of [0, Rows)); null: row r at r.</summary>
    public int[]? RowOrder { get; }

    public int NonZeroCount { get; }

    /// <summary>The slots' column bytes (column within the block), one per entry.</summary>
    public ReadOnlySpan<byte> Indices => _indices.AsSpan(_indexStart, NonZeroCount);
    /// <summary>The slots' values, one per entry.</summary>
    public ReadOnlySpan<float> Values => _values.AsSpan(_valueStart, NonZeroCount);
    /// <summary>The kernel's metadata (see the class remarks): per slice, for each block that holds entries in kernel
    /// order, t, the block (two bytes), 16 placement bytes and t step widths k_u (the block lanes that hold an entry at
    /// step u, 1–16).</summary>
    public ReadOnlySpan<byte> Control => _control.AsSpan(_controlStart, ControlStart[^1]);

    /// <summary>The arrays the kernel reads, with their starts (each goes on for <see cref="SpareBytes"/> zeroed bytes).</summary>
    internal (byte[] Array, int Start) IndexArray => (_indices, _indexStart);
    internal (float[] Array, int Start) ValueArray => (_values, _valueStart);
    internal (byte[] Array, int Start) ControlArray => (_control, _controlStart);

    /// <summary>
    /// The layout from its headers and its stream (see the class remarks); the control stream and the starts are
    /// derived from the headers. Throws <see cref="SparseFormatException"/> naming the broken invariant.
    /// </summary>
    public SellPackedMatrix(int rows, int cols, byte[] headers, ReadOnlySpan<byte> indices, ReadOnlySpan<float> values, int[]? rowOrder = null,
        int blockWidth = WideBlock)
    {
        SparseFormatException.CheckShape(Format, rows, cols);
        CheckBlocks(cols, blockWidth);
        Rows = rows; Cols = cols; Headers = headers; RowOrder = rowOrder; BlockWidth = blockWidth;
        (_indices, _indexStart) = PinnedAligned.Copy(indices, SpareBytes);
        (_values, _valueStart) = PinnedAligned.Copy(values, SpareBytes);
        NonZeroCount = Validate(indices.Length, values.Length);
        // The starts and the control stream follow from the headers.
        int slices = Slices, blocks = Blocks;
        SlotStart = new int[slices + 1];
        ControlStart = new int[slices + 1];
        long steps = 0;
        for (int s = 0; s < slices; s++)
        {
            int slots = 0, control = 0;
            for (int b = 0; b < blocks; b++)
            {
                var h = headers.AsSpan(HeaderBytes * (s * blocks + b), SliceHeight);
                steps += h[0];
                if (h[0] != 0) control += RecordBytes + h[0];
                foreach (byte c in h) slots += c;
            }
            SlotStart[s + 1] = SlotStart[s] + slots;
            ControlStart[s + 1] = checked(ControlStart[s] + control);
        }
        StepCount = steps;
        var stream = new byte[ControlStart[slices]];
        var order = new int[blocks];
        int at = 0;
        for (int s = 0; s < slices; s++)
        {
            int live = KernelOrder(headers, s, blocks, order);
            for (int o = 0; o < live; o++)
            {
                int b = order[o];
                var h = headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                stream[at++] = h[0];
                stream[at++] = (byte)b;
                stream[at++] = (byte)(b >> 8);
                h.Slice(SliceHeight, SliceHeight).CopyTo(stream.AsSpan(at));
                at += SliceHeight;
                // Steps u in [h[i], h[i - 1]) have i live lanes.
                for (int i = SliceHeight; i > 0; i--)
                    for (int u = i == SliceHeight ? 0 : h[i]; u < h[i - 1]; u++) stream[at++] = (byte)i;
            }
        }
        (_control, _controlStart) = PinnedAligned.Copy<byte>(stream, SpareBytes);
    }

    /// <summary>Bytes of a block's control record before its step widths: t, the block (two bytes), 16 placements.</summary>
    public const int RecordBytes = 3 + SliceHeight;

    /// <summary>The most blocks a row may span: the record holds the block in two bytes.</summary>
    public const int MaxBlocks = 1 << 16;

    /// <summary>A block width the kernel has, and at most <see cref="MaxBlocks"/> blocks across the columns.</summary>
    static void CheckBlocks(int cols, int blockWidth)
    {
        if (blockWidth is not (WideBlock or NarrowBlock))
            SparseFormatException.Fail(Format, "block width 128 or 64", $"block width {blockWidth}");
        int blocks = (cols + blockWidth - 1) / blockWidth;
        if (blocks > MaxBlocks)
            SparseFormatException.Fail(Format, $"at most {MaxBlocks} blocks", $"{cols} columns in blocks of {blockWidth}: {blocks} blocks");
    }

    /// <summary>
    /// The blocks of slice <paramref name="s"/> that hold entries, in stream order: step count t (the headers' first
    /// count) descending, ties by block. Writes them to <paramref name="order"/> and returns how many there are.
    /// </summary>
    static int KernelOrder(ReadOnlySpan<byte> headers, int s, int blocks, Span<int> order)
    {
        // Counting sort on t (at most 128): stable, so ties keep the block order.
        Span<int> count = stackalloc int[WideBlock + 2];
        count.Clear();
        for (int b = 0; b < blocks; b++) count[WideBlock - headers[HeaderBytes * (s * blocks + b)]]++;
        int live = blocks - count[WideBlock];
        for (int t = 0, sum = 0; t <= WideBlock; t++) { int c = count[t]; count[t] = sum; sum += c; }
        for (int b = 0; b < blocks; b++)
        {
            int t = headers[HeaderBytes * (s * blocks + b)];
            if (t != 0) order[count[WideBlock - t]++] = b;
        }
        return live;
    }

    /// <summary>Checks every invariant (throws <see cref="SparseFormatException"/> naming the broken one); returns the entry count.</summary>
    public int Validate() => Validate(NonZeroCount, NonZeroCount);

    int Validate(int indexCount, int valueCount)
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        int slices = Slices, blocks = Blocks;
        if (Headers.LongLength != (long)HeaderBytes * slices * blocks)
            SparseFormatException.Fail(Format, "headers length = 32 x slices x blocks", $"Headers.Length = {Headers.Length}, expected {(long)HeaderBytes * slices * blocks}");
        if (RowOrder is not null)
        {
            if (RowOrder.Length != Rows)
                SparseFormatException.Fail(Format, "row order length = rows", $"RowOrder.Length = {RowOrder.Length}, expected {Rows}");
            var seen = new bool[Rows];
            for (int r = 0; r < Rows; r++)
            {
                int row = RowOrder[r];
                if ((uint)row >= (uint)Rows || seen[row])
                    SparseFormatException.Fail(Format, "row order is a permutation of the rows", $"RowOrder[{r}] = {row} ({((uint)row >= (uint)Rows ? $"outside [0, {Rows})" : "repeated")})");
                seen[row] = true;
            }
        }
        long total = 0;
        for (int sb = 0; sb < slices * blocks; sb++)
            for (int i = 0; i < SliceHeight; i++) total += Headers[HeaderBytes * sb + i];
        if (indexCount != total || valueCount != total)
            SparseFormatException.Fail(Format, "streams = the headers' entries", $"{indexCount} index bytes and {valueCount} values, the counts add to {total}");
        var idx = _indices.AsSpan(_indexStart, indexCount);
        int slot = 0;
        Span<int> last = stackalloc int[SliceHeight];
        Span<bool> placed = stackalloc bool[SliceHeight];
        var order = new int[blocks];
        for (int s = 0; s < slices; s++)
        {
            for (int b = 0; b < blocks; b++)
            {
                var h = Headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                string at = $"slice {s}, block {b}";
                placed.Clear();
                for (int j = 0; j < SliceHeight; j++)
                {
                    int i = h[SliceHeight + j];
                    if (i >= SliceHeight || placed[i])
                        SparseFormatException.Fail(Format, "placements are a permutation of the 16 lanes", $"{at}: row lane {j} at block lane {i}");
                    placed[i] = true;
                    if (s * SliceHeight + j >= Rows && h[i] != 0)
                        SparseFormatException.Fail(Format, "rows past the last hold no entries", $"{at}: row lane {j} (row {s * SliceHeight + j} of {Rows}) holds {h[i]}");
                }
                for (int i = 0; i < SliceHeight; i++)
                {
                    if (h[i] > BlockWidth)
                        SparseFormatException.Fail(Format, "lane count <= block width", $"{at}: block lane {i} holds {h[i]} (block width {BlockWidth})");
                    if (i > 0 && h[i] > h[i - 1])
                        SparseFormatException.Fail(Format, "lane counts longest first", $"{at}: block lane {i} holds {h[i]} after {h[i - 1]}");
                }
            }
            // The stream holds the slice's blocks in kernel order.
            int live = KernelOrder(Headers, s, blocks, order);
            for (int o = 0; o < live; o++)
            {
                int b = order[o];
                var h = Headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                string at = $"slice {s}, block {b}";
                last.Fill(-1);
                for (int u = 0; u < h[0]; u++)
                    for (int i = 0; i < SliceHeight && h[i] > u; i++)
                    {
                        int code = idx[slot++];
                        if (code <= last[i])
                            SparseFormatException.Fail(Format, "sorted unique columns per lane and block", $"{at}, step {u}, block lane {i}: column {b * BlockWidth + code} after {b * BlockWidth + last[i]}");
                        if (b * BlockWidth + code >= Cols)
                            SparseFormatException.Fail(Format, "column index in range", $"{at}, step {u}: column {b * BlockWidth + code} >= cols {Cols}");
                        last[i] = code;
                    }
            }
        }
        return slot;
    }

    /// <summary>Bytes one SpMV reads: the control stream, the starts, the row order, a value and a byte per entry.</summary>
    public long BytesRead => ControlStart[^1] + 4L * (SlotStart.Length + ControlStart.Length) + 4L * (RowOrder?.Length ?? 0) + 5L * NonZeroCount;

    /// <summary>Bytes of every array: <see cref="BytesRead"/> and the headers (which the kernel does not read).</summary>
    public long FootprintBytes => BytesRead + Headers.LongLength;

    /// <summary>
    /// Builds the layout from W's CSR structure (rows × cols; row pointers, column of entry p) and values.
    /// <paramref name="sortWindow"/> = σ: 1 keeps W's row order; a multiple of 16 packs the rows of each window of σ
    /// into slices by <see cref="SellRowOrder.Pack"/> (fewer steps: the longest lanes of a slice come closer together).
    /// <paramref name="blockWidth"/>: 128 or 64 columns per block.
    /// </summary>
    public static SellPackedMatrix FromCsr(int rows, int cols, int[] rowPointers, Func<int, int> column, ReadOnlySpan<float> values,
        int sortWindow = 1, int blockWidth = WideBlock)
    {
        CheckBlocks(cols, blockWidth);
        int[]? order = sortWindow == 1 ? null : SellRowOrder.Pack(rows, cols, rowPointers, column, blockWidth, sortWindow);
        int slices = (rows + SliceHeight - 1) / SliceHeight, blocks = (cols + blockWidth - 1) / blockWidth;
        var headers = new byte[(long)HeaderBytes * slices * blocks];
        // Per (slice, block) and row lane: the first entry and the count in that block.
        var first = new int[SliceHeight * blocks];
        var counts = new int[SliceHeight * blocks];
        Span<int> lanes = stackalloc int[SliceHeight];   // block lane i -> row lane
        var indices = new byte[rowPointers[rows]];
        var stream = new float[indices.Length];
        int slot = 0;
        var blockOrder = new int[blocks];
        for (int s = 0; s < slices; s++)
        {
            Count(s);
            for (int b = 0; b < blocks; b++)
            {
                Sort(b, lanes);
                var h = headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                for (int i = 0; i < SliceHeight; i++) { h[i] = (byte)counts[SliceHeight * b + lanes[i]]; h[SliceHeight + lanes[i]] = (byte)i; }
            }
            int live = KernelOrder(headers, s, blocks, blockOrder);
            for (int o = 0; o < live; o++)
            {
                int b = blockOrder[o];
                var h = headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                for (int j = 0; j < SliceHeight; j++) lanes[h[SliceHeight + j]] = j;
                for (int u = 0; u < h[0]; u++)
                    for (int i = 0; i < SliceHeight && h[i] > u; i++)
                    {
                        int p = first[SliceHeight * b + lanes[i]] + u;
                        indices[slot] = (byte)(column(p) - b * blockWidth);
                        stream[slot++] = values[p];
                    }
            }
        }
        return new SellPackedMatrix(rows, cols, headers, indices, stream, order, blockWidth);

        void Count(int s)
        {
            Array.Clear(counts);
            for (int l = 0; l < SliceHeight && s * SliceHeight + l < rows; l++)
            {
                int row = order?[s * SliceHeight + l] ?? s * SliceHeight + l;
                // A row's entries are in column order, so its blocks come in order too.
                for (int p = rowPointers[row + 1] - 1; p >= rowPointers[row]; p--)
                {
                    int b = column(p) / blockWidth;
                    first[SliceHeight * b + l] = p;
                    counts[SliceHeight * b + l]++;
                }
            }
        }

        // Row lanes of block b, longest first, ties by row lane (insertion sort: stable).
        void Sort(int b, Span<int> sorted)
        {
            for (int l = 0; l < SliceHeight; l++)
            {
                int c = counts[SliceHeight * b + l], at = l;
                while (at > 0 && counts[SliceHeight * b + sorted[at - 1]] < c) { sorted[at] = sorted[at - 1]; at--; }
                sorted[at] = l;
            }
        }
    }

    public static SellPackedMatrix FromCsr(CsrMatrix csr, int sortWindow = 1, int blockWidth = WideBlock) =>
        FromCsr(csr.Rows, csr.Cols, csr.RowPointers, csr.ColumnIndex, csr.Values, sortWindow, blockWidth);

    public static SellPackedMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, int sortWindow = 1, int blockWidth = WideBlock)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        return FromCsr(CsrMatrix.FromDense(dense, rows, cols), sortWindow, blockWidth);
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        int blocks = Blocks, slot = 0;
        var idx = Indices; var val = Values;
        Span<long> rowAt = stackalloc long[SliceHeight];   // block lane i -> where its row's block starts in dense
        var order = new int[blocks];
        for (int s = 0; s < Slices; s++)
        {
            int live = KernelOrder(Headers, s, blocks, order);
            for (int o = 0; o < live; o++)
            {
                int b = order[o];
                var h = Headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                for (int j = 0; j < SliceHeight && s * SliceHeight + j < Rows; j++)
                    rowAt[h[SliceHeight + j]] = (long)(RowOrder?[s * SliceHeight + j] ?? s * SliceHeight + j) * Cols + b * BlockWidth;
                for (int u = 0; u < h[0]; u++)
                    for (int i = 0; i < SliceHeight && h[i] > u; i++, slot++)
                        dense[rowAt[i] + idx[slot]] = val[slot];
            }
        }
        return dense;
    }
}
