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
    /// <summary>SELL with 256-column blocks (<see cref="SellWideMatrix"/>): eight permutes per step, less padding.</summary>
    Sell256,
    /// <summary>A bitmap over the weights and the kept values packed (<see cref="BitmapMatrix"/>, <see cref="BitmapSpmv"/>).</summary>
    Bitmap,
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

    DecodeCopy(SellMatrix? sell, SellWideMatrix? wide, BitmapMatrix? bitmap) { _sell = sell; _wide = wide; _bitmap = bitmap; }

    /// <summary>"sell", "sell256" or "bitmap".</summary>
    public string Name => _sell is not null ? "sell" : _wide is not null ? "sell256" : "bitmap";

    /// <summary>Bytes of every array the copy holds.</summary>
    public long FootprintBytes => _sell?.FootprintBytes ?? _wide?.FootprintBytes ?? _bitmap!.FootprintBytes;

    /// <summary>Bytes one SpMV reads.</summary>
    public long BytesRead => _sell?.FootprintBytes ?? _wide?.BytesRead ?? _bitmap!.FootprintBytes;

    public void Multiply(ReadOnlySpan<float> x, Span<float> y)
    {
        if (_sell is not null) SellSpmm.Multiply(_sell, x, 1, y);
        else if (_wide is not null) SellWideSpmv.Multiply(_wide, x, y);
        else BitmapSpmv.Multiply(_bitmap!, x, y);
    }

    /// <summary>
    /// The copy of W (rows × cols; CSR row pointers, column of entry p, values) in <paramref name="format"/>. Auto takes,
    /// per weight, the format with the least estimated time per SpMV, max(bytes read / 20 GB/s, compute): a decode step
    /// of a model larger than the cache is bound by the bytes it streams (dense runs at ~20 GB/s on one Zen 4 core), and
    /// the compute costs are those `bench gemv --sparse` measured with the matrix in cache, one thread: SELL ~1.0 ns and
    /// SELL-256 ~2.6 ns per 16-slot step, the bitmap ~2.2 ns per 16 weights. So SELL-256 wins at low density (6.8
    /// against SELL's 10.6 bytes per value at 10%), the bitmap from about 30% (2.1 bytes per weight at 50%).
    /// </summary>
    public static DecodeCopy Build(int rows, int cols, int[] rowPointers, Func<int, int> column, float[] values, DecodeCopyFormat format)
    {
        if (format == DecodeCopyFormat.Auto) format = Choose(rows, cols, rowPointers, column);
        return format switch
        {
            DecodeCopyFormat.Sell => new DecodeCopy(SellMatrix.FromCsr(Csr(rows, cols, rowPointers, column, values)), null, null),
            DecodeCopyFormat.Sell256 => new DecodeCopy(null, SellWideMatrix.FromCsr(rows, cols, rowPointers, column, values), null),
            _ => new DecodeCopy(null, null, BitmapMatrix.FromCsr(Csr(rows, cols, rowPointers, column, values))),
        };
    }

    const double BytesPerNs = 20, SellStepNs = 1.0, Sell256StepNs = 2.6, BitmapPieceNs = 2.2;

    /// <summary>The format with the least estimated time (see <see cref="Build"/>), from the pattern alone.</summary>
    public static DecodeCopyFormat Choose(int rows, int cols, int[] rowPointers, Func<int, int> column)
    {
        long nnz = rowPointers[rows];
        long sellSteps = Steps(rows, cols, rowPointers, column, SellMatrix.BlockWidth, out long sellBlocks);
        long wideSteps = Steps(rows, cols, rowPointers, column, SellWideMatrix.BlockWidth, out long wideBlocks);
        // Bytes read: 16 slots of value + index byte per step, and the per-block step counts.
        double sell = Math.Max((80.0 * sellSteps + sellBlocks) / BytesPerNs, SellStepNs * sellSteps);
        double wide = Math.Max((80.0 * wideSteps + 2.0 * wideBlocks) / BytesPerNs, Sell256StepNs * wideSteps);
        long words = (cols + 63) / 64;
        double bitmap = Math.Max((8.0 * words * rows + 4.0 * (rows + 1) + 4.0 * nnz) / BytesPerNs, BitmapPieceNs * 4 * words * rows);
        return bitmap < wide && bitmap < sell ? DecodeCopyFormat.Bitmap : wide <= sell ? DecodeCopyFormat.Sell256 : DecodeCopyFormat.Sell;
    }

    /// <summary>Steps a SELL layout of this block width stores: per slice of 16 rows and block, its longest lane.</summary>
    static long Steps(int rows, int cols, int[] rowPointers, Func<int, int> column, int blockWidth, out long sliceBlocks)
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
                int row = s * 16 + l;
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
