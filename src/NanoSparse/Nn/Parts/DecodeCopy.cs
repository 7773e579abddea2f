using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;

namespace NanoSparse.Nn.Parts;

/// <summary>Which format the decode copy of a CSR weight takes (<see cref="CsrLinearWeight.PrepareForInference"/>).</summary>
public enum DecodeCopyFormat
{
    /// <summary>Per weight, the format that reads the fewest bytes per SpMV (see <see cref="DecodeCopy.Build"/>).</summary>
    Auto,
    /// <summary>SELL with 32-column blocks (<see cref="SellMatrix"/>): one permute per step, more padding.</summary>
    Sell,
    /// <summary>SELL-C-σ with 128-column blocks (<see cref="SellWideMatrix"/>, rows packed by <see cref="SellRowOrder"/>): four permutes per step.</summary>
    Sell128,
    /// <summary>SELL-C-σ with 256-column blocks (<see cref="SellWideMatrix"/>, rows packed): eight permutes per step, the least padding.</summary>
    Sell256,
    /// <summary>A bitmap over the weights and the kept values packed (<see cref="BitmapMatrix"/>, <see cref="BitmapSpmv"/>).</summary>
    Bitmap,
    /// <summary>SELL-C-σ with 128-column blocks and no padding (<see cref="SellPackedMatrix"/>, rows packed): ~5.2 bytes per value at 10% density.</summary>
    Sell128Packed,
    /// <summary>SELL-C-σ with 64-column blocks and no padding (<see cref="SellPackedMatrix"/>, rows packed): more steps, each cheaper.</summary>
    Sell64Packed,
}

/// <summary>
/// A second copy of a CSR weight in a format built for rows = 1 (decoding one token: y = W·x), held beside the CSR
/// structure once the values are final.
/// </summary>
public sealed class DecodeCopy
{
    readonly SellMatrix? _sell;
    readonly SellWideMatrix? _wide;
    readonly BitmapMatrix? _bitmap;
    readonly SellPackedMatrix? _packed;

    DecodeCopy(SellMatrix? sell, SellWideMatrix? wide, BitmapMatrix? bitmap, SellPackedMatrix? packed = null)
    {
        _sell = sell; _wide = wide; _bitmap = bitmap; _packed = packed;
    }

    /// <summary>"sell", "sell128", "sell256", "bitmap", "sell128packed" or "sell64packed".</summary>
    public string Name => _sell is not null ? "sell" : _wide is not null ? $"sell{_wide.BlockWidth}" : _packed is not null ? $"sell{_packed.BlockWidth}packed" : "bitmap";

    /// <summary>Bytes of every array the copy holds.</summary>
    public long FootprintBytes => _sell?.FootprintBytes ?? _wide?.FootprintBytes ?? _packed?.FootprintBytes ?? _bitmap!.FootprintBytes;

    /// <summary>Bytes one SpMV reads.</summary>
    public long BytesRead => _sell?.FootprintBytes ?? _wide?.BytesRead ?? _packed?.BytesRead ?? _bitmap!.FootprintBytes;

    public void Multiply(ReadOnlySpan<float> x, Span<float> y)
    {
        if (_sell is not null) SellSpmm.Multiply(_sell, x, 1, y);
        else if (_wide is not null) SellWideSpmv.Multiply(_wide, x, y);
        else if (_packed is not null) SellPackedSpmv.Multiply(_packed, x, y);
        else BitmapSpmv.Multiply(_bitmap!, x, y);
    }

    /// <summary>
    /// The copy of W (rows × cols; CSR row pointers, column of entry p, values) in <paramref name="format"/>. Auto takes,
    /// per weight, the format with the least estimated time per SpMV (<see cref="Choose"/>).
    /// </summary>
    public static DecodeCopy Build(int rows, int cols, int[] rowPointers, Func<int, int> column, float[] values, DecodeCopyFormat format)
    {
        if (format == DecodeCopyFormat.Auto) format = Choose(rows, cols, rowPointers, column);
        return format switch
        {
            DecodeCopyFormat.Sell => new DecodeCopy(SellMatrix.FromCsr(Csr(rows, cols, rowPointers, column, values)), null, null),
            DecodeCopyFormat.Sell128 => new DecodeCopy(null, SellWideMatrix.FromCsr(rows, cols, rowPointers, column, values, 128, SellRowOrder.DefaultWindow), null),
            DecodeCopyFormat.Sell256 => new DecodeCopy(null, SellWideMatrix.FromCsr(rows, cols, rowPointers, column, values, 256, SellRowOrder.DefaultWindow), null),
            DecodeCopyFormat.Sell128Packed => new DecodeCopy(null, null, null, SellPackedMatrix.FromCsr(rows, cols, rowPointers, column, values, SellRowOrder.DefaultWindow)),
            DecodeCopyFormat.Sell64Packed => new DecodeCopy(null, null, null,
                SellPackedMatrix.FromCsr(rows, cols, rowPointers, column, values, Sell64PackedWindow(rowPointers[rows], rows, cols), SellPackedMatrix.NarrowBlock)),
            _ => new DecodeCopy(null, null, BitmapMatrix.FromCsr(Csr(rows, cols, rowPointers, column, values))),
        };
    }

    /// <summary>
    /// σ of the 64-column packed copy: below 20% density W's row order (σ = 1), so each slice's 16 sums are stored as
    /// one vector instead of 16 scattered floats (the packed layout pads nothing, so the row order saves only steps);
    /// from 20% on SellRowOrder's windows as before. SpMV scratch harness, the 48 gpt2-shaped matrices, one thread,
    /// medians of 9 passes, two runs in opposite orders: 10% 1.829 and 1.890 ms a pass against 1.898 and 1.969 with
    /// σ = 256; 30% 5.038 and 5.196 against 5.035 and 5.300. The gpt2-shaped model's decode (decode-only scratch
    /// harness, one thread, medians of 8 passes of 256 tokens, three alternated runs, Zen 4): 10% 422.8, 416.5, 416.5
    /// tokens/s against 381.9, 406.8, 406.5; 30% 167.8, 167.3, 170.2 against 170.7, 170.1, 168.4 (level to 1% behind,
    /// so 30% keeps σ = 256).
    /// </summary>
    internal static int Sell64PackedWindow(long nnz, int rows, int cols) =>
        nnz < 0.2 * rows * cols ? 1 : SellRowOrder.DefaultWindow;

    // Estimated time per SpMV = bytes read / 22 GB/s + 0.43 · compute, fitted to decode runs of the gpt2-124m-shaped
    // model (one thread, tokens per CPU-second: SELL and SELL-256 at 10% and 50% density); a decode step streams a model
    // larger than the cache, and the kernels' compute overlaps that stream only in part. Compute per 16-slot step is what
    // `bench gemv --sparse` measured with the matrix in cache, one Zen 4 core. The bitmap's cost per 16 weights (1.5 ns)
    // is fitted to decode A/B runs of the register-expand kernel against SELL-128-σ (4-layer gpt2 shape, one thread,
    // tokens per CPU-second, loaded Zen 5 machine): level at 30% and 50% (2.07 vs 2.08x and 1.26–1.35 vs 1.27x dense),
    // so auto takes the bitmap (fewer bytes held) where the model puts it ahead, at about 50% density and up.
    // The packed layouts' steps (a lane mask per step from the control stream, one loop per block) are what `bench gemv
    // --shapes 3072x768,768x3072 --sparse 0.1,0.3,0.5 --threads-list 1 --cpu-time` measured in cache on one Zen 4 core,
    // per stored step (block overhead included): 2.7–2.9 ns for 128 columns, 1.7–1.9 for 64 (half the permutes, a third
    // of the blends); the 64-column layout stores 5–14% more steps and its 19 control bytes per (slice, block) (the step
    // count, the block and the placements) per 64 columns instead of 128.
    const double BytesPerNs = 22, ComputeShare = 0.43, SellStepNs = 1.0, Sell128StepNs = 1.45, Sell256StepNs = 2.6, BitmapPieceNs = 1.5,
        Sell128PackedStepNs = 2.8, Sell64PackedStepNs = 1.8;

    /// <summary>
    /// The format with the least estimated time, from the pattern alone. Bytes read: 16 slots of 4-byte value and
    /// 1-byte index per SELL step plus the step counts (and SELL-C-σ's row order); for the bitmap 4 bytes per value and
    /// 1/8 per weight. At 10% density (random pattern) SELL-128 and SELL-256 with packed rows read ~6.6 and ~6.0 bytes
    /// per value (7.5 and 6.7 in row order) against SELL's 10.6; at 50% ~5.6 and ~5.4 against SELL's 6.6, but spend
    /// more compute per step.
    /// </summary>
    public static DecodeCopyFormat Choose(int rows, int cols, int[] rowPointers, Func<int, int> column)
    {
        long nnz = rowPointers[rows];
        double Time(double bytes, double computeNs) => bytes / BytesPerNs + ComputeShare * computeNs;
        long sellSteps = Steps(rows, cols, rowPointers, column, SellMatrix.BlockWidth, null, out long sellBlocks);
        long steps128 = Steps(rows, cols, rowPointers, column, 128, SellRowOrder.Pack(rows, cols, rowPointers, column, 128), out long blocks128);
        long steps256 = Steps(rows, cols, rowPointers, column, 256, SellRowOrder.Pack(rows, cols, rowPointers, column, 256), out long blocks256);
        int window64 = Sell64PackedWindow(nnz, rows, cols);
        long steps64 = Steps(rows, cols, rowPointers, column, 64,
            window64 == 1 ? null : SellRowOrder.Pack(rows, cols, rowPointers, column, 64, window64), out long blocks64);
        long words = (cols + 63) / 64;
        var candidates = new (DecodeCopyFormat Format, double Time)[]
        {
            (DecodeCopyFormat.Sell256, Time(80.0 * steps256 + 2.0 * blocks256 + 4.0 * rows, Sell256StepNs * steps256)),
            (DecodeCopyFormat.Sell128, Time(80.0 * steps128 + 2.0 * blocks128 + 4.0 * rows, Sell128StepNs * steps128)),
            (DecodeCopyFormat.Sell128Packed, Time(5.0 * nnz + steps128 + 19.0 * blocks128 + 4.0 * rows, Sell128PackedStepNs * steps128)),
            (DecodeCopyFormat.Sell64Packed, Time(5.0 * nnz + steps64 + 19.0 * blocks64 + (window64 == 1 ? 0 : 4.0 * rows), Sell64PackedStepNs * steps64)),
            (DecodeCopyFormat.Sell, Time(80.0 * sellSteps + sellBlocks, SellStepNs * sellSteps)),
            (DecodeCopyFormat.Bitmap, Time(8.0 * words * rows + 4.0 * (rows + 1) + 4.0 * nnz, BitmapPieceNs * 4 * words * rows)),
        };
        return candidates.MinBy(c => c.Time).Format;
    }

    /// <summary>
    /// Steps a SELL layout of this block width stores: per slice of 16 rows and block, its longest lane; the rows in
    /// <paramref name="order"/> (layout position to row; null: row order).
    /// </summary>
    static long Steps(int rows, int cols, int[] rowPointers, Func<int, int> column, int blockWidth, int[]? order, out long sliceBlocks)
    {
        int blocks = (cols + blockWidth - 1) / blockWidth;
        var count = new int[16 * blocks];
        var longest = new int[blocks];
        long steps = 0;
        sliceBlocks = 0;
        for (int s = 0; s * 16 < rows; s++)
        {
            Array.Clear(longest);
            for (int l = 0; l < 16 && s * 16 + l < rows; l++)
            {
                int row = order?[s * 16 + l] ?? s * 16 + l;
                for (int p = rowPointers[row]; p < rowPointers[row + 1]; p++)
                {
                    int b = column(p) / blockWidth;
                    longest[b] = Math.Max(longest[b], ++count[16 * b + l]);
                }
            }
            foreach (int t in longest) steps += t;
            Array.Clear(count);
            sliceBlocks += blocks;
        }
        return steps;
    }

    static CsrMatrix Csr(int rows, int cols, int[] rowPointers, Func<int, int> column, float[] values)
    {
        var c = new int[rowPointers[rows]];
        for (int p = 0; p < c.Length; p++) c[p] = column(p);
        return new CsrMatrix(rows, cols, rowPointers, c, values);
    }
}
