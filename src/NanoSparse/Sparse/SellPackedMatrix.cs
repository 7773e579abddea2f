using System.Runtime.CompilerServices;

namespace NanoSparse.Sparse;

/// <summary>
/// SELL-128 with its padding left out, for the decode SpMV (one token: y = W·x) at low density. Rows in slices of 16,
/// columns in blocks of 128, a slot's column within its block one byte, as in <see cref="SellWideMatrix"/> (the kernel
/// fetches x with the same four permutes and blend tree). What differs is how a (slice, block) is stored.
/// <para>
/// Why: SELL pads every lane of a (slice, block) to its longest lane, and a decode step at 10% density reads ~6.5 bytes
/// per value from SELL-128-σ (~30% of its slots are padding) against the 5 of a value and its byte. Here the block's
/// 16 lanes are sorted by entry count, longest first (block lane i = the i-th longest row lane; ties by row lane), so
/// at step u the lanes that still hold entries are a prefix 0..k_u − 1 (k_u = lanes with more than u entries), and only
/// those slots are stored. The kernel adds a step's products into a per-block accumulator in block-lane order and
/// moves it to row-lane order with one permute per (slice, block).
/// </para>
/// <para>
/// Two streams, so most loads stay 64-byte aligned: the full steps (u below the shortest lane's count f, all 16 lanes)
/// go to <see cref="FullValues"/> / <see cref="FullIndices"/> as 16 floats and 16 bytes per step, aligned like SELL's;
/// the tail steps (f ≤ u &lt; longest count) go to <see cref="TailValues"/> / <see cref="TailIndices"/>, k_u of each,
/// packed. The kernel loads a tail step as 16 floats and zeroes lanes k_u and up with a mask; the arrays end with 16
/// spare slots so that load never leaves them.
/// </para>
/// <para>
/// Storage, for slice s and block b in order (b inside s): <see cref="Headers"/>[32·(s·Blocks + b) ..] holds 16 bytes
/// of counts (block lane i's entries, non-increasing in i) and then 16 bytes of placement (byte j: the block lane that
/// holds row lane j). A lane's entries come in increasing column order, step by step. <see cref="FullStart"/>[s] and
/// <see cref="TailStart"/>[s]: full steps and tail slots of the slices before s. With a <see cref="RowOrder"/>
/// (SELL-C-σ, <see cref="SellRowOrder"/>), row lane l of slice s is row RowOrder[16·s + l] of W; the row order cuts
/// the steps (the kernel's compute), the packing cuts the bytes.
/// </para>
/// </summary>
public sealed unsafe class SellPackedMatrix
{
    const string Format = "SELL-128-packed";

    public const int SliceHeight = 16;
    public const int BlockWidth = 128;
    /// <summary>Bytes of a (slice, block)'s header: 16 counts and 16 placements.</summary>
    public const int HeaderBytes = 32;

    readonly byte[] _fullIndices, _tailIndices;
    readonly float[] _fullValues, _tailValues;
    readonly int _fullIndexStart, _tailIndexStart, _fullValueStart, _tailValueStart;

    public int Rows { get; }
    public int Cols { get; }
    public int Slices => (Rows + SliceHeight - 1) / SliceHeight;
    public int Blocks => (Cols + BlockWidth - 1) / BlockWidth;

    /// <summary>Per (slice, block), slice-major: 16 lane counts, longest first, then 16 placements (row lane j is block lane Headers[.. + 16 + j]).</summary>
    public byte[] Headers { get; }

    /// <summary>FullStart[s] = full steps of the slices before s (length Slices + 1).</summary>
    public int[] FullStart { get; }

    /// <summary>TailStart[s] = tail slots of the slices before s (length Slices + 1).</summary>
    public int[] TailStart { get; }

    /// <summary>SlotStart[s] = 16·FullStart[s] + TailStart[s]: the slots (values) before slice s, to split the work.</summary>
    public int[] SlotStart { get; }

    /// <summary>RowOrder[r] = the row of W at layout position r (a permutation of [0, Rows)); null: row r at r.</summary>
    public int[]? RowOrder { get; }

    public int NonZeroCount { get; }

    /// <summary>Full steps' index bytes, 16 per step (64-byte aligned).</summary>
    public ReadOnlySpan<byte> FullIndices => _fullIndices.AsSpan(_fullIndexStart, SliceHeight * FullStart[^1]);
    /// <summary>Full steps' values, 16 per step (64-byte aligned).</summary>
    public ReadOnlySpan<float> FullValues => _fullValues.AsSpan(_fullValueStart, SliceHeight * FullStart[^1]);
    /// <summary>Tail steps' index bytes, k_u per step.</summary>
    public ReadOnlySpan<byte> TailIndices => _tailIndices.AsSpan(_tailIndexStart, TailStart[^1]);
    /// <summary>Tail steps' values, k_u per step.</summary>
    public ReadOnlySpan<float> TailValues => _tailValues.AsSpan(_tailValueStart, TailStart[^1]);

    /// <summary>The arrays the kernel reads, with their starts (the tail arrays go on for 16 spare slots; see the class remarks).</summary>
    internal (byte[] Array, int Start) FullIndexArray => (_fullIndices, _fullIndexStart);
    internal (float[] Array, int Start) FullValueArray => (_fullValues, _fullValueStart);
    internal (byte[] Array, int Start) TailIndexArray => (_tailIndices, _tailIndexStart);
    internal (float[] Array, int Start) TailValueArray => (_tailValues, _tailValueStart);

    public SellPackedMatrix(int rows, int cols, byte[] headers, int[] fullStart, int[] tailStart,
        ReadOnlySpan<byte> fullIndices, ReadOnlySpan<float> fullValues, ReadOnlySpan<byte> tailIndices, ReadOnlySpan<float> tailValues,
        int[]? rowOrder = null)
    {
        SparseFormatException.CheckShape(Format, rows, cols);
        Rows = rows; Cols = cols; Headers = headers; FullStart = fullStart; TailStart = tailStart; RowOrder = rowOrder;
        (_fullIndices, _fullIndexStart) = Aligned(fullIndices);
        (_fullValues, _fullValueStart) = Aligned(fullValues);
        (_tailIndices, _tailIndexStart) = Aligned(tailIndices);
        (_tailValues, _tailValueStart) = Aligned(tailValues);
        NonZeroCount = Validate();
        SlotStart = new int[Slices + 1];
        for (int s = 0; s <= Slices; s++) SlotStart[s] = checked(SliceHeight * FullStart[s] + TailStart[s]);
    }

    // Pinned (never moves), so an offset found now keeps the data 64-byte aligned; 64 spare bytes after the data.
    static (T[] Array, int Start) Aligned<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        int slack = 128 / sizeof(T);
        var array = GC.AllocateArray<T>(data.Length + slack, pinned: true);
        int start = (int)((64 - ((nint)Unsafe.AsPointer(ref array[0]) & 63)) & 63) / sizeof(T);
        data.CopyTo(array.AsSpan(start));
        return (array, start);
    }

    /// <summary>Checks every invariant (throws <see cref="SparseFormatException"/> naming the broken one); returns the entry count.</summary>
    public int Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        int slices = Slices, blocks = Blocks;
        if (Headers.LongLength != (long)HeaderBytes * slices * blocks)
            SparseFormatException.Fail(Format, "headers length = 32 x slices x blocks", $"Headers.Length = {Headers.Length}, expected {(long)HeaderBytes * slices * blocks}");
        if (FullStart.Length != slices + 1 || TailStart.Length != slices + 1)
            SparseFormatException.Fail(Format, "full and tail starts of length slices + 1", $"lengths {FullStart.Length} and {TailStart.Length}, expected {slices + 1}");
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
        if (FullStart[0] != 0 || TailStart[0] != 0)
            SparseFormatException.Fail(Format, "starts begin at 0", $"FullStart[0] = {FullStart[0]}, TailStart[0] = {TailStart[0]}");
        long full = 0, tail = 0;
        int count = 0;
        var fullIdx = _fullIndices.AsSpan(_fullIndexStart);
        var tailIdx = _tailIndices.AsSpan(_tailIndexStart);
        Span<int> last = stackalloc int[SliceHeight];
        Span<bool> placed = stackalloc bool[SliceHeight];
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
                        SparseFormatException.Fail(Format, "lane count <= 128", $"{at}: block lane {i} holds {h[i]}");
                    if (i > 0 && h[i] > h[i - 1])
                        SparseFormatException.Fail(Format, "lane counts longest first", $"{at}: block lane {i} holds {h[i]} after {h[i - 1]}");
                }
                int f = h[SliceHeight - 1], t = h[0];
                last.Fill(-1);
                for (int u = 0; u < t; u++)
                {
                    int k = 0;
                    while (k < SliceHeight && h[k] > u) k++;
                    for (int i = 0; i < k; i++)
                    {
                        long slot = u < f ? SliceHeight * (full + u) + i : tail + i;
                        var stream = u < f ? fullIdx : tailIdx;
                        if (slot >= (u < f ? (long)SliceHeight * FullStart[^1] : TailStart[^1]))
                            SparseFormatException.Fail(Format, "slots within the streams", $"{at}, step {u}, block lane {i}: slot {slot} past the end");
                        int code = stream[(int)slot];
                        if (code <= last[i])
                            SparseFormatException.Fail(Format, "sorted unique columns per lane and block", $"{at}, step {u}, block lane {i}: column {b * BlockWidth + code} after {b * BlockWidth + last[i]}");
                        if (b * BlockWidth + code >= Cols)
                            SparseFormatException.Fail(Format, "column index in range", $"{at}, step {u}: column {b * BlockWidth + code} >= cols {Cols}");
                        last[i] = code;
                    }
                    if (u >= f) tail += k;
                    count += k;
                }
                full += f;
            }
            if (FullStart[s + 1] != full || TailStart[s + 1] != tail)
                SparseFormatException.Fail(Format, "starts = steps and slots of the slices before",
                    $"FullStart[{s + 1}] = {FullStart[s + 1]}, TailStart[{s + 1}] = {TailStart[s + 1]}, expected {full} and {tail}");
        }
        if (_fullIndices.Length - 128 != SliceHeight * full || _fullValues.Length - 32 != SliceHeight * full)
            SparseFormatException.Fail(Format, "full streams = 16 x full steps", $"{_fullIndices.Length - 128} index bytes and {_fullValues.Length - 32} values, expected {SliceHeight * full}");
        if (_tailIndices.Length - 128 != tail || _tailValues.Length - 32 != tail)
            SparseFormatException.Fail(Format, "tail streams = tail slots", $"{_tailIndices.Length - 128} index bytes and {_tailValues.Length - 32} values, expected {tail}");
        return count;
    }

    /// <summary>Bytes of every array (one SpMV reads all of them): headers, starts, row order, and a value and a byte per entry.</summary>
    public long FootprintBytes => Headers.LongLength + 4L * (FullStart.Length + TailStart.Length + SlotStart.Length) + 4L * (RowOrder?.Length ?? 0)
        + 5L * ((long)SliceHeight * FullStart[^1] + TailStart[^1]);

    /// <summary>Bytes one SpMV reads: all of <see cref="FootprintBytes"/> but the full starts (the kernel walks the slot starts).</summary>
    public long BytesRead => FootprintBytes - 4L * FullStart.Length;

    /// <summary>
    /// Builds the layout from W's CSR structure (rows × cols; row pointers, column of entry p) and values.
    /// <paramref name="sortWindow"/> = σ: 1 keeps W's row order; a multiple of 16 packs the rows of each window of σ
    /// into slices by <see cref="SellRowOrder.Pack"/> (fewer steps: the longest lanes of a slice come closer together).
    /// </summary>
    public static SellPackedMatrix FromCsr(int rows, int cols, int[] rowPointers, Func<int, int> column, ReadOnlySpan<float> values,
        int sortWindow = 1)
    {
        int[]? order = sortWindow == 1 ? null : SellRowOrder.Pack(rows, cols, rowPointers, column, BlockWidth, sortWindow);
        int slices = (rows + SliceHeight - 1) / SliceHeight, blocks = (cols + BlockWidth - 1) / BlockWidth;
        var headers = new byte[(long)HeaderBytes * slices * blocks];
        var fullStart = new int[slices + 1];
        var tailStart = new int[slices + 1];
        // Per (slice, block) and row lane: the first entry and the count in that block.
        var first = new int[SliceHeight * blocks];
        var counts = new int[SliceHeight * blocks];
        Span<int> lanes = stackalloc int[SliceHeight];   // block lane i -> row lane
        // First pass: headers and the stream lengths.
        for (int s = 0; s < slices; s++)
        {
            Count(s);
            long full = 0, tail = 0;
            for (int b = 0; b < blocks; b++)
            {
                Sort(b, lanes);
                var h = headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                for (int i = 0; i < SliceHeight; i++) { h[i] = (byte)counts[SliceHeight * b + lanes[i]]; h[SliceHeight + lanes[i]] = (byte)i; }
                full += h[SliceHeight - 1];
                for (int i = 0; i < SliceHeight; i++) tail += h[i] - h[SliceHeight - 1];
            }
            fullStart[s + 1] = checked((int)(fullStart[s] + full));
            tailStart[s + 1] = checked((int)(tailStart[s] + tail));
        }
        var fullIndices = new byte[checked(SliceHeight * fullStart[slices])];
        var fullValues = new float[fullIndices.Length];
        var tailIndices = new byte[tailStart[slices]];
        var tailValues = new float[tailIndices.Length];
        for (int s = 0; s < slices; s++)
        {
            Count(s);
            int full = fullStart[s], tail = tailStart[s];
            for (int b = 0; b < blocks; b++)
            {
                Sort(b, lanes);
                var h = headers.AsSpan(HeaderBytes * (s * blocks + b), SliceHeight);
                int f = h[SliceHeight - 1], t = h[0];
                for (int u = 0; u < t; u++)
                    for (int i = 0; i < SliceHeight && h[i] > u; i++)
                    {
                        int p = first[SliceHeight * b + lanes[i]] + u;
                        byte code = (byte)(column(p) - b * BlockWidth);
                        if (u < f) { fullIndices[SliceHeight * (full + u) + i] = code; fullValues[SliceHeight * (full + u) + i] = values[p]; }
                        else { tailIndices[tail] = code; tailValues[tail++] = values[p]; }
                    }
                full += f;
            }
        }
        return new SellPackedMatrix(rows, cols, headers, fullStart, tailStart, fullIndices, fullValues, tailIndices, tailValues, order);

        void Count(int s)
        {
            Array.Clear(counts);
            for (int l = 0; l < SliceHeight && s * SliceHeight + l < rows; l++)
            {
                int row = order?[s * SliceHeight + l] ?? s * SliceHeight + l;
                // A row's entries are in column order, so its blocks come in order too.
                for (int p = rowPointers[row + 1] - 1; p >= rowPointers[row]; p--)
                {
                    int b = column(p) / BlockWidth;
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

    public static SellPackedMatrix FromCsr(CsrMatrix csr, int sortWindow = 1) =>
        FromCsr(csr.Rows, csr.Cols, csr.RowPointers, csr.ColumnIndex, csr.Values, sortWindow);

    public static SellPackedMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, int sortWindow = 1)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        return FromCsr(CsrMatrix.FromDense(dense, rows, cols), sortWindow);
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        int blocks = Blocks;
        var fullIdx = FullIndices; var fullVal = FullValues; var tailIdx = TailIndices; var tailVal = TailValues;
        for (int s = 0; s < Slices; s++)
        {
            int full = FullStart[s], tail = TailStart[s];
            for (int b = 0; b < blocks; b++)
            {
                var h = Headers.AsSpan(HeaderBytes * (s * blocks + b), HeaderBytes);
                int f = h[SliceHeight - 1], t = h[0];
                for (int u = 0; u < t; u++)
                {
                    int k = 0;
                    while (k < SliceHeight && h[k] > u) k++;
                    for (int j = 0; j < SliceHeight && s * SliceHeight + j < Rows; j++)
                    {
                        int i = h[SliceHeight + j];
                        if (i >= k) continue;
                        long at = (long)(RowOrder?[s * SliceHeight + j] ?? s * SliceHeight + j) * Cols + b * BlockWidth;
                        if (u < f) dense[at + fullIdx[SliceHeight * (full + u) + i]] = fullVal[SliceHeight * (full + u) + i];
                        else dense[at + tailIdx[tail + i]] = tailVal[tail + i];
                    }
                    if (u >= f) tail += k;
                }
                full += f;
            }
        }
        return dense;
    }
}
