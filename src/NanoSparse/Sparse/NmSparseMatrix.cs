using System.Numerics;

namespace NanoSparse.Sparse;

/// <summary>
/// N:M semi-structured sparse matrix (Rows × Cols): along each row (the reduction dimension K of S·X) every
/// group of M consecutive columns keeps exactly N values (2:4, 1:4, 2:8, ...). Storage is the kept values,
/// row-major, N per group (Rows·(Cols/M)·N floats), and for each kept value its position inside the group,
/// packed as ceil(log2 M) bits (2 bits for M = 4) in a little-endian bit stream, sorted ascending within a group.
/// A group with fewer than N nonzeros stores explicit zeros. Cols must be a multiple of M.
/// </summary>
public sealed class NmSparseMatrix
{
    const string Format = "N:M";

    public int Rows { get; }
    public int Cols { get; }
    public int N { get; }
    public int M { get; }
    public float[] Values { get; }
    /// <summary>In-group indices, <see cref="BitsPerIndex"/> bits each, slot s at bit s·BitsPerIndex (one spare byte at the end).</summary>
    public byte[] Indices { get; }

    public int GroupsPerRow => M == 0 ? 0 : Cols / M;
    public int BitsPerIndex => BitsFor(M);
    public long SlotCount => (long)Rows * GroupsPerRow * N;
    public int NonZeroCount { get { int c = 0; foreach (var v in Values) if (v != 0) c++; return c; } }

    public static int BitsFor(int m) => m <= 2 ? 1 : 32 - BitOperations.LeadingZeroCount((uint)(m - 1));
    public static int IndexBytes(long slots, int m) => (int)((slots * BitsFor(m) + 7) / 8) + 1;

    public NmSparseMatrix(int rows, int cols, int n, int m, float[] values, byte[] indices)
    {
        Rows = rows; Cols = cols; N = n; M = m; Values = values; Indices = indices;
        Validate();
        NanoSparse.Kernels.HugePages.Advise(indices);   // a decode step streams them once per token
    }

    NmSparseMatrix(int rows, int cols, int n, int m, byte[] indices)
    {
        Rows = rows; Cols = cols; N = n; M = m; Values = []; Indices = indices;
        IsPatternOnly = true;
    }

    /// <summary>
    /// The same pattern without values (<see cref="Values"/> empty; the packed indices shared, not copied): for a holder
    /// whose values live elsewhere (a model's parameter buffer) and that passes them to the kernels itself.
    /// </summary>
    public NmSparseMatrix PatternOnly() => new(Rows, Cols, N, M, Indices);

    /// <summary>True for a pattern without values (<see cref="PatternOnly"/>).</summary>
    public bool IsPatternOnly { get; }

    public int Index(long slot)
    {
        int bits = BitsPerIndex;
        long bit = slot * bits;
        int word = Indices[bit >> 3] | (Indices[(bit >> 3) + 1] << 8);
        return (word >> (int)(bit & 7)) & ((1 << bits) - 1);
    }

    static void SetIndex(byte[] indices, long slot, int bits, int value)
    {
        long bit = slot * bits;
        int word = value << (int)(bit & 7);
        indices[bit >> 3] |= (byte)word;
        indices[(bit >> 3) + 1] |= (byte)(word >> 8);
    }

    public void Validate()
    {
        SparseFormatException.CheckShape(Format, Rows, Cols);
        if (M < 1 || M > 256)
            SparseFormatException.Fail(Format, "group size M in [1, 256]", $"M = {M}");
        if (N < 1 || N > M)
            SparseFormatException.Fail(Format, "kept count N in [1, M]", $"N = {N}, M = {M}");
        if (Cols % M != 0)
            SparseFormatException.Fail(Format, "cols divisible by M", $"cols = {Cols}, M = {M}");
        if (!IsPatternOnly && Values.LongLength != SlotCount)
            SparseFormatException.Fail(Format, "value count = rows x cols/M x N", $"values length {Values.Length}, expected {SlotCount}");
        if (Indices.Length != IndexBytes(SlotCount, M))
            SparseFormatException.Fail(Format, "index byte count = ceil(slots x bits / 8) + 1", $"indices length {Indices.Length}, expected {IndexBytes(SlotCount, M)}");
        int groups = GroupsPerRow;
        for (int i = 0; i < Rows; i++)
            for (int g = 0; g < groups; g++)
            {
                long slot0 = ((long)i * groups + g) * N;
                int previous = -1;
                for (int s = 0; s < N; s++)
                {
                    int idx = Index(slot0 + s);
                    if (idx >= M)
                        SparseFormatException.Fail(Format, "in-group indices < M", $"row {i}, group {g}, slot {s}: index {idx}, M = {M}");
                    if (idx <= previous)
                        SparseFormatException.Fail(Format, "sorted unique in-group indices (N:M pattern)", $"row {i}, group {g}, slot {s}: index {idx} after {previous}");
                    previous = idx;
                }
            }
    }

    public long FootprintBytes => 4L * Values.LongLength + Indices.Length;

    /// <summary>
    /// N:M keeps a fixed fraction N/M; it takes fewer bytes than dense when N/M·(32 + bits)/32 &lt; 1,
    /// i.e. below this kept fraction (0.94 for M = 4).
    /// </summary>
    public static double BreakEvenDensity(int m) => 32.0 / (32 + BitsFor(m));

    /// <summary>Exact conversion: every group of M must hold at most N nonzeros, else the pattern is violated.</summary>
    public static NmSparseMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, int n, int m) => Build(dense, rows, cols, n, m, prune: false);

    /// <summary>Magnitude pruning to N:M: keeps the N largest |values| of each group (ties to the lower index).</summary>
    public static NmSparseMatrix Prune(ReadOnlySpan<float> dense, int rows, int cols, int n, int m) => Build(dense, rows, cols, n, m, prune: true);

    static NmSparseMatrix Build(ReadOnlySpan<float> dense, int rows, int cols, int n, int m, bool prune)
    {
        SparseFormatException.CheckDense(Format, rows, cols, dense.Length);
        if (m < 1 || m > 256 || n < 1 || n > m || cols % m != 0)
            SparseFormatException.Fail(Format, "valid N:M with cols divisible by M", $"N = {n}, M = {m}, cols = {cols}");
        int groups = cols / m, bits = BitsFor(m);
        long slots = (long)rows * groups * n;
        var values = new float[slots];
        var indices = new byte[IndexBytes(slots, m)];
        Span<bool> keep = stackalloc bool[m];
        for (int i = 0; i < rows; i++)
            for (int g = 0; g < groups; g++)
            {
                var group = dense.Slice(i * cols + g * m, m);
                keep.Clear();
                int kept = 0;
                if (prune)
                {
                    for (int s = 0; s < n; s++)
                    {
                        int best = -1;
                        for (int j = 0; j < m; j++)
                            if (!keep[j] && (best < 0 || MathF.Abs(group[j]) > MathF.Abs(group[best]))) best = j;
                        keep[best] = true;
                    }
                    kept = n;
                }
                else
                {
                    for (int j = 0; j < m; j++)
                        if (group[j] != 0)
                        {
                            if (++kept > n)
                                SparseFormatException.Fail(Format, "at most N nonzeros per group of M", $"row {i}, group {g} (columns {g * m}..{g * m + m - 1}): more than {n} nonzeros");
                            keep[j] = true;
                        }
                    // Pad with the first unused positions (explicit zeros) so every group has exactly N slots.
                    for (int j = 0; j < m && kept < n; j++) if (!keep[j]) { keep[j] = true; kept++; }
                }
                long slot = ((long)i * groups + g) * n;
                for (int j = 0; j < m; j++)
                    if (keep[j])
                    {
                        values[slot] = group[j];
                        SetIndex(indices, slot, bits, j);
                        slot++;
                    }
            }
        return new NmSparseMatrix(rows, cols, n, m, values, indices);
    }

    public void ToDense(Span<float> dense)
    {
        SparseFormatException.CheckDense(Format, Rows, Cols, dense.Length);
        dense.Clear();
        int groups = GroupsPerRow;
        for (int i = 0; i < Rows; i++)
            for (int g = 0; g < groups; g++)
            {
                long slot = ((long)i * groups + g) * N;
                for (int s = 0; s < N; s++)
                    dense[i * Cols + g * M + Index(slot + s)] = Values[slot + s];
            }
    }

    public float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        ToDense(dense);
        return dense;
    }

    public static NmSparseMatrix FromCsr(CsrMatrix csr, int n, int m) => FromDense(csr.ToDense(), csr.Rows, csr.Cols, n, m);
    public CsrMatrix ToCsr(bool? shortIndices = null) => CsrMatrix.FromDense(ToDense(), Rows, Cols, shortIndices);
}
