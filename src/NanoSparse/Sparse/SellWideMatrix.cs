namespace NanoSparse.Sparse;

/// <summary>
/// Sliced ELLPACK with wide column blocks, for the decode SpMV (one token: y = W·x): rows in slices of 16 (one
/// Vector512 lane per row), columns in blocks of <see cref="BlockWidth"/> = 256 (or 128), so a slot's column within its
/// block fits one byte and x's block is sixteen (eight) Vector512 registers (the kernel fetches a slot's x with eight
/// (four) two-table permutes and a blend tree on the index bits above the fifth).
/// Why wider than <see cref="SellMatrix"/> (32 columns): a (slice, block) takes as many steps as its longest lane has
/// entries, and the other lanes are padded. At 10% density a 32-column lane holds 3.2 entries on average and the
/// longest of 16 about 6.5 (padding doubles the bytes: ~10.6 per value); a 256-column lane holds 25.6 and the longest
/// about 34 (~1.33x: ~6.7 bytes per value). The decode step is bound by the bytes it reads, and the extra permutes
/// (~2.5 ns per 16-slot step on Zen 4, against ~4 ns to stream the step's 80 bytes at 20 GB/s) stay under that bound.
/// <para>
/// Storage, for slice s and block b in order (b inside s): <see cref="Steps"/>[s·Blocks + b] = t (0 ≤ t ≤ 256),
/// <see cref="LaneCounts"/>[16·(s·Blocks + b) + l] = entries of lane l (the rest of its t slots are padding; the
/// kernel does not read these, they make the format exact for round trips and for x with infinities or NaN).
/// Indices: t steps of 16 bytes, byte l the column within the block of lane l's slot (the kernel widens a step's 16
/// bytes to 16 ints with one vpmovzxbd). Values: t steps of 16 floats (lane l at l). A lane's entries come first, in
/// increasing column order; a padded slot has index 0 and value +0. <see cref="StepStart"/> holds each slice's first
/// step. Values and indices are 64-byte aligned.
/// </para>
/// <para>
/// SELL-C-σ: with a <see cref="RowOrder"/>, position r of the layout (slice r / 16, lane r % 16) holds row
/// RowOrder[r] of W, and the SpMV writes that lane's sum to y[RowOrder[r]]; <see cref="SellRowOrder"/> packs rows whose
/// per-block entry counts are alike into one slice, which cuts the padding (10% density, random pattern: ~7.5 to
/// ~6.6 bytes per value at 128 columns).
/// </para>
/// </summary>
public sealed unsafe class SellWideMatrix
{
    const string Format = "SELL-256";

    public const int SliceHeight = 16;
    /// <summary>Columns per block: 256 or 128 (x's block in 16 or 8 registers).</summary>
    public int BlockWidth { get; }

    readonly byte[] _indices;
    readonly int _indexStart;
    readonly float[] _values;
    readonly int _valueStart;

    public int Rows { get; }
    public int Cols { get; }
    public int Slices => (Rows + SliceHeight - 1) / SliceHeight;
    public int Blocks => (Cols + BlockWidth - 1) / BlockWidth;

    /// <summary>Steps of each (slice, block), slice-major.</summary>
    public ushort[] Steps { get; }

    /// <summary>Entries of each lane in each (slice, block): 16 per (slice, block), slice-major.</summary>
    public ushort[] LaneCounts { get; }

    /// <summary>StepStart[s] = steps of the slices before s (length Slices + 1).</summary>
    public int[] StepStart { get; }

    public int NonZeroCount { get; }

    /// <summary>RowOrder[r] = the row of W at layout position r (a permutation of [0, Rows)); null: row r at r.</summary>
    public int[]? RowOrder { get; }

    /// <summary>Index bytes: 16 per step (64-byte aligned).</summary>
    public ReadOnlySpan<byte> Indices => _indices.AsSpan(_indexStart, SliceHeight * StepStart[^1]);

    /// <summary>Values: 16 per step, padding included (64-byte aligned).</summary>
    public ReadOnlySpan<float> Values => _values.AsSpan(_valueStart, SliceHeight * StepStart[^1]);

    /// <summary>Slots stored (entries and padding).</summary>
    public long StoredSlots => (long)SliceHeight * StepStart[^1];

    public SellWideMatrix(int rows, int cols, ushort[] steps, ushort[] laneCounts, int[] stepStart,
        ReadOnlySpan<byte> indices, ReadOnlySpan<float> values, int blockWidth = 256, int[]? rowOrder = null)
    {
        SparseFormatException.CheckShape(Format, rows, cols);
        if (blockWidth is not (128 or 256))
            SparseFormatException.Fail(Format, "block width 128 or 256", $"block width {blockWidth}");
        BlockWidth = blockWidth;
        Rows = rows; Cols = cols; Steps = steps; LaneCounts = laneCounts; StepStart = stepStart; RowOrder = rowOrder;
        (_indices, _indexStart) = PinnedAligned.Copy(indices, 0);
        (_values, _valueStart) = PinnedAligned.Copy(values, 0);
        NonZeroCount = Validate();
    }

    /// <summary>Checks every invariant (throws <see cref="SparseFormatException"/> naming the broken one); returns the entry count.</summary>
    public int Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        int slices = Slices, blocks = Blocks;
        if (Steps.LongLength != (long)slices * blocks)
            SparseFormatException.Fail(Format, "steps length = slices x blocks", $"Steps.Length = {Steps.Length}, expected {(long)slices * blocks} ({slices} x {blocks})");
        if (LaneCounts.LongLength != 16L * slices * blocks)
            SparseFormatException.Fail(Format, "lane counts length = 16 x slices x blocks", $"LaneCounts.Length = {LaneCounts.Length}, expected {16L * slices * blocks}");
        if (StepStart.Length != slices + 1)
            SparseFormatException.Fail(Format, "step start length = slices + 1", $"StepStart.Length = {StepStart.Length}, expected {slices + 1}");
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
        if (StepStart[0] != 0)
            SparseFormatException.Fail(Format, "step start begins at 0", $"StepStart[0] = {StepStart[0]}");
        long stepTotal = 0;
        for (int s = 0; s < slices; s++)
        {
            for (int b = 0; b < blocks; b++)
            {
                int t = Steps[s * blocks + b];
                if (t > BlockWidth)
                    SparseFormatException.Fail(Format, "steps per block <= block width", $"slice {s}, block {b}: {t} steps, block width {BlockWidth}");
                stepTotal += t;
            }
            if (StepStart[s + 1] != stepTotal)
                SparseFormatException.Fail(Format, "step start = steps of the slices before", $"StepStart[{s + 1}] = {StepStart[s + 1]}, steps before = {stepTotal}");
        }
        long indexLength = _indices.Length - 64, valueLength = _values.Length - 16;
        if (indexLength != SliceHeight * stepTotal)
            SparseFormatException.Fail(Format, "index bytes = 16 x steps", $"indices length {indexLength}, expected {SliceHeight * stepTotal}");
        if (valueLength != SliceHeight * stepTotal)
            SparseFormatException.Fail(Format, "values = 16 x steps", $"values length {valueLength}, expected {SliceHeight * stepTotal}");

        var idx = Indices;
        var val = Values;
        int count = 0;
        for (int s = 0; s < slices; s++)
        {
            int step = StepStart[s];
            for (int b = 0; b < blocks; b++)
            {
                int t = Steps[s * blocks + b], longest = 0;
                for (int l = 0; l < SliceHeight; l++)
                {
                    int row = s * SliceHeight + l, entries = LaneCounts[16 * (s * blocks + b) + l];
                    if (entries > t)
                        SparseFormatException.Fail(Format, "lane count <= block steps", $"slice {s}, block {b}, row {row}: {entries} entries, {t} steps");
                    if (entries > 0 && row >= Rows)
                        SparseFormatException.Fail(Format, "rows past the last hold only padding", $"slice {s}, block {b}: {entries} entries in row {row} of {Rows}");
                    longest = Math.Max(longest, entries);
                    int last = -1;
                    for (int u = 0; u < t; u++)
                    {
                        byte code = idx[SliceHeight * (step + u) + l];
                        string at = $"slice {s}, block {b}, row {row}, step {u}";
                        if (u >= entries)
                        {
                            if (code != 0 || BitConverter.SingleToInt32Bits(val[SliceHeight * (step + u) + l]) != 0)
                                SparseFormatException.Fail(Format, "padding has index 0 and value +0", $"{at}: index {code}, value {val[SliceHeight * (step + u) + l]}");
                            continue;
                        }
                        if (code >= BlockWidth)
                            SparseFormatException.Fail(Format, "index byte is a column in the block", $"{at}: {code}, block width {BlockWidth}");
                        if (code <= last)
                            SparseFormatException.Fail(Format, "sorted unique columns per lane and block", $"{at}: column {b * BlockWidth + code} after {b * BlockWidth + last}");
                        if (b * BlockWidth + code >= Cols)
                            SparseFormatException.Fail(Format, "column index in range", $"{at}: column {b * BlockWidth + code} >= cols {Cols}");
                        last = code;
                    }
                    count += entries;
                }
                if (longest != t)
                    SparseFormatException.Fail(Format, "a block's steps = its longest lane", $"slice {s}, block {b}: {t} steps, longest lane {longest}");
                step += t;
            }
        }
        return count;
    }

    /// <summary>Step counts, lane counts, starts, index bytes and values (padding included).</summary>
    public long FootprintBytes => 2L * Steps.LongLength + 2L * LaneCounts.LongLength + 4L * StepStart.Length + 5L * StoredSlots + 4L * (RowOrder?.Length ?? 0);

    /// <summary>Bytes one SpMV reads: step counts, starts, indices and values (the lane counts only serve the exact path).</summary>
    public long BytesRead => 2L * Steps.LongLength + 4L * StepStart.Length + 5L * StoredSlots + 4L * (RowOrder?.Length ?? 0);

    /// <summary>
    /// Builds the layout from W's CSR structure and values: each (slice, block) takes its longest lane's entry count
    /// as its steps. <paramref name="sortWindow"/> = σ: 1 keeps W's row order; a multiple of 16 packs the rows of each
    /// window of σ into slices by <see cref="SellRowOrder.Pack"/> (SELL-C-σ).
    /// </summary>
    public static SellWideMatrix FromCsr(int rows, int cols, ReadOnlySpan<int> rowPointers, Func<int, int> column, ReadOnlySpan<float> values, int blockWidth = 256,
        int sortWindow = 1)
    {
        if (blockWidth is not (128 or 256)) throw new ArgumentOutOfRangeException(nameof(blockWidth), blockWidth, "SELL-wide blocks are 128 or 256 columns");
        int[]? order = sortWindow == 1 ? null : SellRowOrder.Pack(rows, cols, rowPointers, column, blockWidth, sortWindow);
        int BlockWidth = blockWidth;
        int slices = (rows + SliceHeight - 1) / SliceHeight, blocks = (cols + BlockWidth - 1) / BlockWidth;
        var steps = new ushort[(long)slices * blocks];
        var lanes = new ushort[16L * slices * blocks];
        var stepStart = new int[slices + 1];
        for (int s = 0; s < slices; s++)
        {
            for (int l = 0; l < SliceHeight && s * SliceHeight + l < rows; l++)
            {
                int row = order?[s * SliceHeight + l] ?? s * SliceHeight + l;
                for (int p = rowPointers[row]; p < rowPointers[row + 1]; p++)
                {
                    int b = column(p) / BlockWidth;
                    int c = ++lanes[16 * (s * blocks + b) + l];
                    if (c > steps[s * blocks + b]) steps[s * blocks + b] = (ushort)c;
                }
            }
            int stepSum = 0;
            for (int b = 0; b < blocks; b++) stepSum += steps[s * blocks + b];
            stepStart[s + 1] = checked(stepStart[s] + stepSum);
        }
        var indices = new byte[checked(SliceHeight * stepStart[slices])];
        var packed = new float[checked(SliceHeight * stepStart[slices])];
        for (int s = 0; s < slices; s++)
            for (int l = 0; l < SliceHeight && s * SliceHeight + l < rows; l++)
            {
                int row = order?[s * SliceHeight + l] ?? s * SliceHeight + l;
                int p = rowPointers[row], end = rowPointers[row + 1];
                int step = stepStart[s];
                for (int b = 0; b < blocks; b++)
                {
                    // A row's entries are in column order, so its blocks come in order too.
                    for (int u = 0; p < end && column(p) < (b + 1) * BlockWidth; u++, p++)
                    {
                        indices[SliceHeight * (step + u) + l] = (byte)(column(p) - b * BlockWidth);
                        packed[SliceHeight * (step + u) + l] = values[p];
                    }
                    step += steps[s * blocks + b];
                }
            }
        return new SellWideMatrix(rows, cols, steps, lanes, stepStart, indices, packed, blockWidth, order);
    }

    public static SellWideMatrix FromCsr(CsrMatrix csr, int blockWidth = 256, int sortWindow = 1) =>
        FromCsr(csr.Rows, csr.Cols, csr.RowPointers, csr.ColumnIndex, csr.Values, blockWidth, sortWindow);

    public static SellWideMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, int blockWidth = 256, int sortWindow = 1)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        return FromCsr(CsrMatrix.FromDense(dense, rows, cols), blockWidth, sortWindow);
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        int blocks = Blocks;
        var idx = Indices;
        var val = Values;
        for (int s = 0; s < Slices; s++)
        {
            int step = StepStart[s];
            for (int b = 0; b < blocks; b++)
            {
                for (int l = 0; l < SliceHeight; l++)
                    for (int u = 0; u < LaneCounts[16 * (s * blocks + b) + l]; u++)
                        dense[(long)(RowOrder?[s * SliceHeight + l] ?? s * SliceHeight + l) * Cols + b * BlockWidth + idx[SliceHeight * (step + u) + l]] = val[SliceHeight * (step + u) + l];
                step += Steps[s * blocks + b];
            }
        }
        return dense;
    }
}
