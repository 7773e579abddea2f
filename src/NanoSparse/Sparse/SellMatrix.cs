namespace NanoSparse.Sparse;

/// <summary>
/// Sliced ELLPACK for sparse × vector (SpMV): rows in slices of <see cref="SliceHeight"/> (16, one Vector512 lane per
/// row), columns in blocks of <see cref="BlockWidth"/> (32: the block of x that two Vector512 registers hold).
/// Why this layout: a CSR SpMV fetches x[column] for every nonzero one float at a time, which on Zen 4 costs about one
/// cycle per nonzero. Here, for each (slice, block) x's 32 floats are loaded once and a step fetches the x of 16
/// nonzeros (one per row of the slice) with a single two-table permute; the 16 products go straight into the slice's
/// 16 row sums, so there is no per-row horizontal sum either. The price is padding: a block takes as many steps as
/// its longest lane (row) has entries, and shorter lanes are padded (value 0). At 10% density a lane holds 3.2
/// entries per block on average and the longest of 16 about 6.5, so about half the slots are padding; still each
/// step costs ~2.9 cycles for 16 slots (scratch, Zen 4, 768×768 at 90% sparsity: 5.8 µs one thread against 14.7 µs
/// for the CSR kernel).
/// <para>
/// Storage, for slice s and block b in order (b inside s): <see cref="Steps"/>[s·Blocks + b] = t (0 ≤ t ≤ 32) steps.
/// Index groups: ceil(t/4) groups of 64 bytes, where byte 4·l + u of group g is the column within the block (0..31)
/// of lane l's entry at step 4g + u, or <see cref="Padding"/> (0x80) if the lane has no entry there; four steps share
/// one 32-bit lane so the kernel gets the next step's indices with a shift. Values: t steps of 16 floats (lane l at
/// l), 0 for padding. <see cref="StepStart"/> and <see cref="GroupStart"/> hold each slice's first step and group.
/// A lane's entries in a block come first, in increasing column order, then its padding. Values and indices are kept
/// 64-byte aligned (a misaligned Vector512 load spans two cache lines: 1.35x slower in the scratch measurement).
/// </para>
/// </summary>
public sealed unsafe class SellMatrix
{
    const string Format = "SELL";

    /// <summary>Rows per slice (lanes of a Vector512 of floats).</summary>
    public const int SliceHeight = 16;

    /// <summary>Columns per block (two Vector512 registers of x, addressed by a 5-bit index).</summary>
    public const int BlockWidth = 32;

    /// <summary>Steps whose indices share one 64-byte group (one byte per lane and step).</summary>
    public const int StepsPerGroup = 4;

    /// <summary>The index byte of a padded slot.</summary>
    public const byte Padding = 0x80;

    readonly byte[] _indices;
    readonly int _indexStart;
    readonly float[] _values;
    readonly int _valueStart;

    public int Rows { get; }
    public int Cols { get; }
    public int Slices => (Rows + SliceHeight - 1) / SliceHeight;
    public int Blocks => (Cols + BlockWidth - 1) / BlockWidth;

    /// <summary>Steps of each (slice, block), slice-major.</summary>
    public byte[] Steps { get; }

    /// <summary>StepStart[s] = steps of the slices before s (length Slices + 1).</summary>
    public int[] StepStart { get; }

    /// <summary>GroupStart[s] = index groups of the slices before s (length Slices + 1).</summary>
    public int[] GroupStart { get; }

    /// <summary>Number of stored entries that are not padding.</summary>
    public int NonZeroCount { get; }

    /// <summary>Index bytes: 64 per group (64-byte aligned).</summary>
    public ReadOnlySpan<byte> Indices => _indices.AsSpan(_indexStart, 64 * GroupStart[^1]);

    /// <summary>Values: 16 per step, padding included (64-byte aligned).</summary>
    public ReadOnlySpan<float> Values => _values.AsSpan(_valueStart, SliceHeight * StepStart[^1]);

    /// <summary>Slots stored (entries and padding).</summary>
    public long StoredSlots => (long)SliceHeight * StepStart[^1];

    /// <summary>Copies the arrays into aligned storage and validates every invariant.</summary>
    public SellMatrix(int rows, int cols, byte[] steps, int[] stepStart, int[] groupStart, ReadOnlySpan<byte> indices, ReadOnlySpan<float> values)
    {
        SparseFormatException.CheckShape(Format, rows, cols);
        Rows = rows; Cols = cols; Steps = steps; StepStart = stepStart; GroupStart = groupStart;
        (_indices, _indexStart) = PinnedAligned.Copy<byte>(indices, 0);
        (_values, _valueStart) = PinnedAligned.Copy<float>(values, 0);
        NonZeroCount = Validate();
    }

    /// <summary>Checks every invariant (throws <see cref="SparseFormatException"/> naming the broken one); returns the entry count.</summary>
    public int Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        int slices = Slices, blocks = Blocks;
        if (Steps.LongLength != (long)slices * blocks)
            SparseFormatException.Fail(Format, "steps length = slices x blocks", $"Steps.Length = {Steps.Length}, expected {(long)slices * blocks} ({slices} x {blocks})");
        if (StepStart.Length != slices + 1)
            SparseFormatException.Fail(Format, "step start length = slices + 1", $"StepStart.Length = {StepStart.Length}, expected {slices + 1}");
        if (GroupStart.Length != slices + 1)
            SparseFormatException.Fail(Format, "group start length = slices + 1", $"GroupStart.Length = {GroupStart.Length}, expected {slices + 1}");
        if (StepStart[0] != 0 || GroupStart[0] != 0)
            SparseFormatException.Fail(Format, "step and group starts begin at 0", $"StepStart[0] = {StepStart[0]}, GroupStart[0] = {GroupStart[0]}");
        long stepTotal = 0, groupTotal = 0;
        for (int s = 0; s < slices; s++)
        {
            for (int b = 0; b < blocks; b++)
            {
                int t = Steps[s * blocks + b];
                if (t > BlockWidth)
                    SparseFormatException.Fail(Format, "steps per block <= block width (32)", $"slice {s}, block {b}: {t} steps");
                stepTotal += t;
                groupTotal += (t + StepsPerGroup - 1) / StepsPerGroup;
            }
            if (StepStart[s + 1] != stepTotal)
                SparseFormatException.Fail(Format, "step start = steps of the slices before", $"StepStart[{s + 1}] = {StepStart[s + 1]}, steps before = {stepTotal}");
            if (GroupStart[s + 1] != groupTotal)
                SparseFormatException.Fail(Format, "group start = index groups of the slices before", $"GroupStart[{s + 1}] = {GroupStart[s + 1]}, groups before = {groupTotal}");
        }
        long indexLength = _indices.Length - 64 / sizeof(byte), valueLength = _values.Length - 64 / sizeof(float);
        if (indexLength != 64 * groupTotal)
            SparseFormatException.Fail(Format, "index bytes = 64 x groups", $"indices length {indexLength}, expected {64 * groupTotal}");
        if (valueLength != SliceHeight * stepTotal)
            SparseFormatException.Fail(Format, "values = 16 x steps", $"values length {valueLength}, expected {SliceHeight * stepTotal}");

        var idx = Indices;
        var val = Values;
        int count = 0;
        for (int s = 0; s < slices; s++)
        {
            int step = StepStart[s], group = GroupStart[s];
            for (int b = 0; b < blocks; b++)
            {
                int t = Steps[s * blocks + b];
                int longest = 0;
                for (int l = 0; l < SliceHeight; l++)
                {
                    int row = s * SliceHeight + l, last = -1, entries = 0;
                    for (int u = 0; u < t; u++)
                    {
                        byte code = idx[64 * (group + u / StepsPerGroup) + 4 * l + u % StepsPerGroup];
                        float v = val[SliceHeight * (step + u) + l];
                        string at = $"slice {s}, block {b}, row {row}, step {u}";
                        if (code == Padding)
                        {
                            if (v != 0 || float.IsNegative(v))
                                SparseFormatException.Fail(Format, "padding holds +0", $"{at}: value {v}");
                            last = int.MaxValue;
                            continue;
                        }
                        if (code >= BlockWidth)
                            SparseFormatException.Fail(Format, "index byte is a column in the block (< 32) or padding (0x80)", $"{at}: 0x{code:X2}");
                        if (last == int.MaxValue)
                            SparseFormatException.Fail(Format, "a lane's padding comes after its entries", $"{at}: entry at column {b * BlockWidth + code} after padding");
                        if (code <= last)
                            SparseFormatException.Fail(Format, "sorted unique columns per lane and block", $"{at}: column {b * BlockWidth + code} after {b * BlockWidth + last}");
                        if (row >= Rows)
                            SparseFormatException.Fail(Format, "rows past the last hold only padding", $"{at}: entry in row {row} of {Rows}");
                        if (b * BlockWidth + code >= Cols)
                            SparseFormatException.Fail(Format, "column index in range", $"{at}: column {b * BlockWidth + code} >= cols {Cols}");
                        last = code;
                        entries++;
                    }
                    longest = Math.Max(longest, entries);
                    for (int u = t; u < (t + StepsPerGroup - 1) / StepsPerGroup * StepsPerGroup; u++)
                        if (idx[64 * (group + u / StepsPerGroup) + 4 * l + u % StepsPerGroup] != Padding)
                            SparseFormatException.Fail(Format, "unused bytes of a block's last group are padding", $"slice {s}, block {b}, row {row}, step {u} of {t}");
                    count += entries;
                }
                if (longest != t)
                    SparseFormatException.Fail(Format, "a block's steps = its longest lane", $"slice {s}, block {b}: {t} steps, longest lane {longest}");
                step += t;
                group += (t + StepsPerGroup - 1) / StepsPerGroup;
            }
        }
        return count;
    }

    /// <summary>Step counts, starts, index bytes and values (padding included).</summary>
    public long FootprintBytes => Steps.LongLength + 4L * (StepStart.Length + GroupStart.Length) + 64L * GroupStart[^1] + 4L * StoredSlots;

    /// <summary>
    /// With no padding an entry costs 4 bytes of value + 1 index byte (+ 1/4 byte of group slack at most), so against
    /// 4·R·C dense bytes the break-even density is about 4/5 less the per-block step counts; padding lowers it in
    /// proportion to the slots that are padding (StoredSlots / NonZeroCount), which depends on where the entries are.
    /// </summary>
    public static double BreakEvenDensity(int rows, int cols)
    {
        if (rows == 0 || cols == 0) return 0;
        double dense = 4.0 * rows * cols;
        double meta = (double)((rows + 15) / 16) * ((cols + 31) / 32) + 8.0 * ((rows + 15) / 16 + 1);
        return Math.Max(0, (dense - meta) / (5.0 * rows * cols));
    }

    public static SellMatrix FromCsr(CsrMatrix csr)
    {
        int rows = csr.Rows, cols = csr.Cols;
        int slices = (rows + SliceHeight - 1) / SliceHeight, blocks = (cols + BlockWidth - 1) / BlockWidth;
        var steps = new byte[(long)slices * blocks];
        var stepStart = new int[slices + 1];
        var groupStart = new int[slices + 1];
        var rp = csr.RowPointers;
        // Pass 1: each block's step count = its longest lane.
        var count = new int[blocks];
        for (int s = 0; s < slices; s++)
        {
            int steps0 = 0, groups0 = 0;
            for (int l = 0; l < SliceHeight && s * SliceHeight + l < rows; l++)
            {
                Array.Clear(count);
                int row = s * SliceHeight + l;
                for (int p = rp[row]; p < rp[row + 1]; p++) count[csr.ColumnIndex(p) / BlockWidth]++;
                for (int b = 0; b < blocks; b++)
                    if (count[b] > steps[s * blocks + b]) steps[s * blocks + b] = (byte)count[b];
            }
            for (int b = 0; b < blocks; b++)
            {
                steps0 += steps[s * blocks + b];
                groups0 += (steps[s * blocks + b] + StepsPerGroup - 1) / StepsPerGroup;
            }
            stepStart[s + 1] = checked(stepStart[s] + steps0);
            groupStart[s + 1] = checked(groupStart[s] + groups0);
        }
        var indices = new byte[checked(64 * groupStart[slices])];
        Array.Fill(indices, Padding);
        var values = new float[checked(SliceHeight * stepStart[slices])];
        // Pass 2: a row's entries are in column order, so its blocks come in order too.
        for (int s = 0; s < slices; s++)
        {
            for (int l = 0; l < SliceHeight && s * SliceHeight + l < rows; l++)
            {
                int row = s * SliceHeight + l;
                int p = rp[row], end = rp[row + 1];
                int step = stepStart[s], group = groupStart[s];
                for (int b = 0; b < blocks; b++)
                {
                    int t = steps[s * blocks + b];
                    for (int u = 0; p < end && csr.ColumnIndex(p) < (b + 1) * BlockWidth; u++, p++)
                    {
                        indices[64 * (group + u / StepsPerGroup) + 4 * l + u % StepsPerGroup] = (byte)(csr.ColumnIndex(p) - b * BlockWidth);
                        values[SliceHeight * (step + u) + l] = csr.Values[p];
                    }
                    step += t;
                    group += (t + StepsPerGroup - 1) / StepsPerGroup;
                }
            }
        }
        return new SellMatrix(rows, cols, steps, stepStart, groupStart, indices, values);
    }

    public static SellMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        return FromCsr(CsrMatrix.FromDense(dense, rows, cols));
    }

    /// <summary>Entries as (row, column, value), row-major within each (slice, block).</summary>
    void ForEach(Action<int, int, float> visit)
    {
        int blocks = Blocks;
        var idx = Indices;
        var val = Values;
        for (int s = 0; s < Slices; s++)
        {
            int step = StepStart[s], group = GroupStart[s];
            for (int b = 0; b < blocks; b++)
            {
                int t = Steps[s * blocks + b];
                for (int u = 0; u < t; u++)
                    for (int l = 0; l < SliceHeight; l++)
                    {
                        byte code = idx[64 * (group + u / StepsPerGroup) + 4 * l + u % StepsPerGroup];
                        if (code != Padding) visit(s * SliceHeight + l, b * BlockWidth + code, val[SliceHeight * (step + u) + l]);
                    }
                step += t;
                group += (t + StepsPerGroup - 1) / StepsPerGroup;
            }
        }
    }

    public void ToDense(Span<float> dense)
    {
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        var d = new float[(long)Rows * Cols];
        int cols = Cols;
        ForEach((i, j, v) => d[(long)i * cols + j] = v);
        d.CopyTo(dense);
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    public CsrMatrix ToCsr(bool? shortIndices = null)
    {
        var rowPointers = new int[Rows + 1];
        ForEach((i, _, _) => rowPointers[i + 1]++);
        for (int i = 0; i < Rows; i++) rowPointers[i + 1] += rowPointers[i];
        var columns = new int[rowPointers[Rows]];
        var values = new float[columns.Length];
        var next = (int[])rowPointers.Clone();
        // ForEach visits a row's blocks in increasing order and, within a block, its entries in increasing column order.
        ForEach((i, j, v) => { columns[next[i]] = j; values[next[i]++] = v; });
        return CsrMatrix.Create(Rows, Cols, rowPointers, columns, values, shortIndices);
    }
}
