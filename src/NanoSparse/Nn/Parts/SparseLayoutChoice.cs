using System.Globalization;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Picks the layout that stores a dense weight's zeros exactly (sparsify): a format name ("csr", "nm:N:M",
/// "bsr:RxC") must represent every nonzero, or the weight is refused; "auto" takes, per weight, the candidate with
/// the fewest bytes (values plus indices, as written to a file) among CSR, N:M 1:4 / 2:4 / 2:8 / 4:8 (those the
/// pattern fits) and BSR 4x4 / 8x8 / 16x16, and keeps the weight dense when none is smaller than 4·Out·In bytes.
/// </summary>
public static class SparseLayoutChoice
{
    public const string Auto = "auto";
    static readonly (int N, int M)[] AutoNm = [(1, 4), (2, 4), (2, 8), (4, 8)];
    static readonly int[] AutoBlocks = [4, 8, 16];

    /// <summary>Checks a --format value ("csr", "nm:N:M", "bsr:RxC" or "auto"); throws ArgumentException naming it.</summary>
    public static void Validate(string format)
    {
        var p = format.Split(':');
        bool ok = p[0] switch
        {
            Auto or "csr" => p.Length == 1,
            "nm" => p.Length == 3 && int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
                && int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int m)
                && (n >= 1 && n < m && m <= 256 ? true : throw new ArgumentException($"--format {format}: N:M needs 1 <= N < M <= 256, got N = {n}, M = {m}")),
            "bsr" => p.Length == 2 && Block(p[1]) is not null,
            _ => false,
        };
        if (!ok) throw new ArgumentException($"--format '{format}' is not one of csr, nm:N:M (e.g. nm:2:4), bsr:RxC (e.g. bsr:4x4), auto");
    }

    static (int, int)? Block(string text)
    {
        var p = text.Split('x');
        return p.Length == 2 && int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int r) && r > 0
            && int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int c) && c > 0 ? (r, c) : null;
    }

    /// <summary>
    /// The layout <paramref name="format"/> gives the dense weight <paramref name="name"/> (Out, In) and its stored
    /// values; (null, null) when "auto" keeps it dense. A format that cannot hold the pattern throws InvalidDataException naming the weight.
    /// </summary>
    public static (ISparseLinearStructure? Weight, float[]? Values) Choose(string format, string name, int outFeatures, int inFeatures, ReadOnlySpan<float> dense)
    {
        Validate(format);
        var p = format.Split(':');
        switch (p[0])
        {
            case "csr":
            {
                if (dense.IndexOfAnyExcept(0f, -0f) < 0)
                    throw new InvalidDataException($"weight '{name}' has no nonzero value; a sparse layout stores at least one (keep it dense)");
                var (w, v) = CsrLinearWeight.FromDense(outFeatures, inFeatures, dense);
                return (w, v);
            }
            case "nm":
            {
                int n = int.Parse(p[1], CultureInfo.InvariantCulture), m = int.Parse(p[2], CultureInfo.InvariantCulture);
                if (inFeatures % m != 0)
                    throw new InvalidDataException($"weight '{name}' ({outFeatures}, {inFeatures}) cannot be {n}:{m}: M = {m} does not divide the reduction dimension {inFeatures}");
                if (FirstOverfullGroup(dense, inFeatures, n, m) is var (row, group, count))
                    throw new InvalidDataException($"weight '{name}' is not {n}:{m}: row {row}, inputs {group * m}..{group * m + m - 1} hold {count} nonzeros, at most {n} allowed");
                var (w, v) = NmLinearWeight.FromDense(outFeatures, inFeatures, n, m, dense);
                return (w, v);
            }
            case "bsr":
            {
                var (r, c) = Block(p[1])!.Value;
                if (outFeatures % r != 0 || inFeatures % c != 0)
                    throw new InvalidDataException($"weight '{name}' ({outFeatures}, {inFeatures}) cannot be split into {r}x{c} blocks: the block sides must divide the shape");
                if (dense.IndexOfAnyExcept(0f, -0f) < 0)
                    throw new InvalidDataException($"weight '{name}' has no nonzero value; a sparse layout stores at least one (keep it dense)");
                var (w, v) = BsrLinearWeight.FromDense(outFeatures, inFeatures, r, c, dense);
                return (w, v);
            }
            default:
            {
                string? best = null;
                long bestBytes = 4L * outFeatures * inFeatures;
                long nnz = CountNonZero(dense);
                if (nnz > 0)
                {
                    long csr = 4L * nnz + 4L * (outFeatures + 1) + (inFeatures <= 65536 ? 2 : 4) * nnz;
                    if (csr < bestBytes) (best, bestBytes) = ("csr", csr);
                    foreach (int b in AutoBlocks)
                    {
                        if (outFeatures % b != 0 || inFeatures % b != 0) continue;
                        long blocks = CountBlocks(dense, outFeatures, inFeatures, b);
                        long bytes = 4L * blocks * b * b + 4L * (outFeatures / b + 1) + (inFeatures / b <= 65536 ? 2 : 4) * blocks;
                        if (bytes < bestBytes) (best, bestBytes) = ($"bsr:{b}x{b}", bytes);
                    }
                }
                foreach (var (n, m) in AutoNm)
                {
                    if (inFeatures % m != 0 || FirstOverfullGroup(dense, inFeatures, n, m) is not null) continue;
                    long bytes = 5L * outFeatures * (inFeatures / m) * n;   // 4-byte value + 1-byte in-group index
                    if (bytes < bestBytes) (best, bestBytes) = ($"nm:{n}:{m}", bytes);
                }
                return best is null ? (null, null) : Choose(best, name, outFeatures, inFeatures, dense);
            }
        }
    }

    /// <summary>Bytes a layout's file tensors take: 4 per stored value plus its index tensors.</summary>
    public static long FileBytes(ISparseLinearStructure weight) => 4L * weight.StoredCount + weight.ExportIndices().Sum(i => i.Bytes);

    static long CountNonZero(ReadOnlySpan<float> dense)
    {
        long count = 0;
        foreach (float v in dense) if (v != 0) count++;
        return count;
    }

    static long CountBlocks(ReadOnlySpan<float> dense, int outFeatures, int inFeatures, int b)
    {
        long blocks = 0;
        for (int r0 = 0; r0 < outFeatures; r0 += b)
            for (int c0 = 0; c0 < inFeatures; c0 += b)
            {
                bool any = false;
                for (int r = r0; r < r0 + b && !any; r++)
                    any = dense.Slice(r * inFeatures + c0, b).IndexOfAnyExcept(0f, -0f) >= 0;
                if (any) blocks++;
            }
        return blocks;
    }

    /// <summary>The first group of M inputs (row, group, nonzeros) holding more than N nonzeros; null when the pattern is N:M.</summary>
    static (int Row, int Group, int Count)? FirstOverfullGroup(ReadOnlySpan<float> dense, int inFeatures, int n, int m)
    {
        int groups = inFeatures / m;
        for (int i = 0; i < dense.Length / m; i++)
        {
            int count = 0;
            foreach (float v in dense.Slice(i * m, m)) if (v != 0) count++;
            if (count > n) return (i / groups, i % groups, count);
        }
        return null;
    }
}
