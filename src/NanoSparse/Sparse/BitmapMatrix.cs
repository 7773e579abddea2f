using System.Numerics;

namespace NanoSparse.Sparse;

/// <summary>
/// Bitmap sparse matrix: one bit per element (row-major, each row padded to whole 64-bit words so rows can be
/// processed independently) and the nonzero values packed in row-major order. RowOffsets[i] = number of set bits
/// before row i; it is derivable by popcount but stored so threads can start at any row.
/// </summary>
public sealed class BitmapMatrix
{
    const string Format = "Bitmap";

    public int Rows { get; }
    public int Cols { get; }
    public ulong[] Bits { get; }
    public int[] RowOffsets { get; }
    public float[] Values { get; }

    public int WordsPerRow => (Cols + 63) >> 6;
    public int NonZeroCount => Values.Length;

    public BitmapMatrix(int rows, int cols, ulong[] bits, int[] rowOffsets, float[] values)
    {
        Rows = rows; Cols = cols; Bits = bits; RowOffsets = rowOffsets; Values = values;
        Validate();
        NanoSparse.Kernels.HugePages.Advise(bits);     // the decode copy streams both once per token
        NanoSparse.Kernels.HugePages.Advise(values);
    }

    public void Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        int words = WordsPerRow;
        if (Bits.LongLength != (long)Rows * words)
            SparseFormatException.Fail(Format, "bit words = rows x ceil(cols/64)", $"bits length {Bits.Length}, expected {(long)Rows * words}");
        if (RowOffsets.Length != Rows + 1)
            SparseFormatException.Fail(Format, "row offset length = rows + 1", $"RowOffsets.Length = {RowOffsets.Length}, expected {Rows + 1}");
        ulong tailMask = (Cols & 63) == 0 ? ulong.MaxValue : (1UL << (Cols & 63)) - 1;
        int count = 0;
        for (int i = 0; i < Rows; i++)
        {
            if (RowOffsets[i] != count)
                SparseFormatException.Fail(Format, "row offsets = popcount of the rows before", $"row {i}: RowOffsets[{i}] = {RowOffsets[i]}, bits before = {count}");
            for (int w = 0; w < words; w++)
            {
                ulong word = Bits[(long)i * words + w];
                if (w == words - 1 && (word & ~tailMask) != 0)
                    SparseFormatException.Fail(Format, "no bits set past the last column", $"row {i}, word {w}: 0x{word:X16}, cols = {Cols}");
                count += BitOperations.PopCount(word);
            }
        }
        if (RowOffsets[Rows] != count)
            SparseFormatException.Fail(Format, "row offsets = popcount of the rows before", $"RowOffsets[{Rows}] = {RowOffsets[Rows]}, total bits = {count}");
        if (Values.Length != count)
            SparseFormatException.Fail(Format, "value count = set bits", $"values length {Values.Length}, set bits {count}");
    }

    public long FootprintBytes => 8L * Bits.LongLength + 4L * RowOffsets.Length + 4L * Values.Length;

    /// <summary>Bits + offsets + 4·d·R·C = 4·R·C gives d = 1 - (bits + offsets bytes) / (4·R·C) (≈ 0.97).</summary>
    public static double BreakEvenDensity(int rows, int cols)
    {
        if (rows == 0 || cols == 0) return 0;
        double dense = 4.0 * rows * cols;
        return Math.Max(0, 1 - (8.0 * rows * ((cols + 63) >> 6) + 4.0 * (rows + 1)) / dense);
    }

    public static BitmapMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        int words = (cols + 63) >> 6;
        var bits = new ulong[(long)rows * words];
        var offsets = new int[rows + 1];
        var values = new List<float>();
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                float v = dense[i * cols + j];
                if (v == 0) continue;
                bits[(long)i * words + (j >> 6)] |= 1UL << (j & 63);
                values.Add(v);
            }
            offsets[i + 1] = values.Count;
        }
        return new BitmapMatrix(rows, cols, bits, offsets, values.ToArray());
    }

    public void ToDense(Span<float> dense)
    {
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        int words = WordsPerRow;
        for (int i = 0; i < Rows; i++)
        {
            int p = RowOffsets[i];
            for (int w = 0; w < words; w++)
            {
                ulong word = Bits[(long)i * words + w];
                while (word != 0)
                {
                    int j = (w << 6) + BitOperations.TrailingZeroCount(word);
                    dense[i * Cols + j] = Values[p++];
                    word &= word - 1;
                }
            }
        }
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    public static BitmapMatrix FromCsr(CsrMatrix csr) => FromDense(csr.ToDense(), csr.Rows, csr.Cols);
    public CsrMatrix ToCsr(bool? shortIndices = null) => CsrMatrix.FromDense(ToDense(), Rows, Cols, shortIndices);
}
