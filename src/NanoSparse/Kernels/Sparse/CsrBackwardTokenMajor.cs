using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// A sparse Linear's whole backward on one thread, with the activations in the model's own layout (token rows):
///   dxᵀ (In × T)   = (Wᵀ · dyᵀ) ⊙ scaleᵀ      (Wᵀ in CSR, 16-bit indices: the rows of W)
///   gradient[q]   += Σ_t dy[t, i]·x[t, j]     for each entry q = (j, i) of Wᵀ, in Wᵀ's order
///   biasGradient  += Σ_t dy[t, ·]             (when not null)
/// in one pass over W's nonzeros per 64 tokens, where the two kernels it replaces (SddmmTiled.RunTokenMajor for the
/// weight gradient in W's order, CsrSpmmTokenMajor on Wᵀ for dx) each made their own pass. Both passes load, for each
/// nonzero, the same four vectors of one 64-token row: dy's row i (the dx product's operand) against x's row j (the
/// SDDMM's, with dy's row i held in registers); here x's row j is held in registers beside dx's accumulators for row j,
/// and each nonzero's four loads of dy's row i feed both the four FMAs of dx and the four of its dot product. The loads
/// per nonzero were what bound both kernels (SpmmMicroKernel.RowsWideBlock runs at the limit of its indexed loads).
/// <para>
/// Results are the same bits as the two kernels': dx's accumulators take the nonzeros in RowsWideBlock's order (pairs
/// into two sets, the last odd one into the first, the same K blocks); each dot product is the SDDMM's (the same FMA
/// chain and the same reduction tree, Sddmm.Reduce4, which sums each vector exactly as Reduce8 does), added panel by
/// panel into the gradient as the SDDMM added into W's order; the caller gathers the gradient into Wᵀ's
/// order before and scatters it back after.
/// </para>
/// Per 64 tokens: dy transposed into a panel (Out × 64, plus a zero row) and summed into the bias gradient on the way,
/// x transposed into another (In × 64), then RowBlock rows of Wᵀ at a time through every K block of the dy panel, and
/// the tile of dxᵀ transposed out with the scale applied. x may be dx (each panel of x is read before its rows of dx
/// are written).
/// </summary>
internal static unsafe class CsrBackwardTokenMajor
{
    const int Width = 64;

    /// <summary>Whether this machine runs the kernel (AVX-512 and AVX, as CsrSpmmTokenMajor).</summary>
    public static bool Supported => CsrSpmmTokenMajor.Supported && Avx512F.IsSupported;

    /// <summary>
    /// Whether the kernel takes a Wᵀ of these sizes: dy's panel cut into K blocks (CsrSpmmTokenMajor.KBlockRows: rows
    /// dense enough, Out ≥ 512), where dx's product runs RowsWideBlock, whose order of operations this kernel keeps
    /// (unblocked, CsrSpmmTokenMajor runs RowsWide, whose four accumulator sets would not fit the registers beside the
    /// dot products).
    /// </summary>
    public static bool Takes(long nnz, int inFeatures, int outFeatures) => Supported && Blocks(nnz, inFeatures, outFeatures).Blocks > 1;

    /// <summary>The K blocks of the dx product as CsrSpmmTokenMajor picks them for Wᵀ (In × Out, 16-bit indices).</summary>
    static (int Blocks, int BlockRows) Blocks(long nnz, int n, int m) => CsrSpmmTokenMajor.Blocks(nnz, n, m, shortIndices: true);

    [ThreadStatic] static float[]? _dyPanel;
    [ThreadStatic] static float[]? _xPanel;
    [ThreadStatic] static float[]? _tile;

    /// <summary>
    /// See the class summary. Wᵀ is <paramref name="inFeatures"/> × <paramref name="outFeatures"/> (row pointers
    /// <paramref name="tp"/>, indices <paramref name="ti"/>, values <paramref name="tv"/>); dy is T × Out, x and dx T × In
    /// (dense rows); scale (T × In) and biasGradient may be null.
    /// </summary>
    internal static void Run(int outFeatures, int inFeatures, int* tp, ushort* ti, float* tv, float* dy, float* x, int tokens,
        float* gradient, float* biasGradient, float* dx, float* scale)
    {
        int n = inFeatures, m = outFeatures;
        long nnz = tp[n];
        if (!Takes(nnz, n, m)) throw new ArgumentException($"CsrBackwardTokenMajor does not take Wᵀ {n}x{m} with {nnz} nonzeros (see Takes)");
        if (tokens == 0) return;
        var (nb, blockRows) = Blocks(nnz, n, m);
        float* dyPanel = CsrSpmmTokenMajor.Aligned(ref _dyPanel, (long)(m + 1) * Width);
        float* zero = dyPanel + (long)m * Width;   // RowsWideBlock's zero row (a row's padded last slot)
        new Span<float>(zero, Width).Clear();
        float* xPanel = CsrSpmmTokenMajor.Aligned(ref _xPanel, (long)n * Width);
        float* tile = CsrSpmmTokenMajor.Aligned(ref _tile, (long)n * Width);
        int stride = nb + 1;
        int[] table = CsrSpmm.SplitTable(tp, 0, n, ti, nb, AlignedPanels.NextCall(), 0, blockRows);
        fixed (int* split = table)
        {
            for (int t0 = 0; t0 < tokens; t0 += Width)
            {
                int w = Math.Min(Width, tokens - t0);
                // dyPanel (Out × 64) = dy[t0 .. t0 + w, :]ᵀ and xPanel (In × 64) = x[t0 .. t0 + w, :]ᵀ, zero past w.
                TokenPanels.In(dy + (long)t0 * m, m, m, w, dyPanel, Width);
                if (biasGradient != null) SddmmTiled.AddRowSums(dyPanel, m, biasGradient);
                TokenPanels.In(x + (long)t0 * n, n, n, w, xPanel, Width);
                for (int r0 = 0; r0 < n; r0 += CsrSpmmTokenMajor.RowBlock)
                {
                    int rows = Math.Min(CsrSpmmTokenMajor.RowBlock, n - r0);
                    for (int b = 0; b < nb; b++)
                        Rows(split + (long)r0 * stride + b, stride, rows, ti, tv, dyPanel, zero, xPanel + (long)r0 * Width, tile + (long)r0 * Width, gradient, add: b > 0);
                }
                // dx[t0 .. t0 + w, :] = tileᵀ ⊙ scale.
                long at = (long)t0 * n;
                TokenPanels.Out(tile, n, w, dx + at, n, null, null, scale == null ? null : scale + at, Width);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Dot(Vector512<float> d0, Vector512<float> d1, Vector512<float> d2, Vector512<float> d3,
        Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3)
    {
        // SddmmTiled's Dot with its operands' roles swapped (products commute): the same bits.
        var c = d0 * x0;
        c = Vector512.FusedMultiplyAdd(d1, x1, c);
        c = Vector512.FusedMultiplyAdd(d2, x2, c);
        return Vector512.FusedMultiplyAdd(d3, x3, c);
    }

    /// <summary>row's dot product with x (four vectors), <see cref="Dot"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> RowDot(float* row, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3) =>
        Dot(Vector512.LoadAligned(row), Vector512.LoadAligned(row + 16), Vector512.LoadAligned(row + 32), Vector512.LoadAligned(row + 48), x0, x1, x2, x3);

    /// <summary>One nonzero w at dy's panel row <paramref name="row"/>: (c0..c3) += w·row (dx) and its dot product with x (dW).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Nonzero(float* row, float w, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3,
        ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3, out Vector512<float> dot)
    {
        var vw = Vector512.Create(w);
        var d0 = Vector512.LoadAligned(row); var d1 = Vector512.LoadAligned(row + 16);
        var d2 = Vector512.LoadAligned(row + 32); var d3 = Vector512.LoadAligned(row + 48);
        c0 = Vector512.FusedMultiplyAdd(vw, d0, c0);
        c1 = Vector512.FusedMultiplyAdd(vw, d1, c1);
        c2 = Vector512.FusedMultiplyAdd(vw, d2, c2);
        c3 = Vector512.FusedMultiplyAdd(vw, d3, c3);
        dot = Dot(d0, d1, d2, d3, x0, x1, x2, x3);
    }

    /// <summary>
    /// Rows [0, count) of Wᵀ (row r's nonzeros in this K block: [split[r·stride], split[r·stride + 1])): tile row r (=
    /// | += when <paramref name="add"/>) Σ w·dyPanel row i, RowsWideBlock's way; gradient[q] += xRows row r · dyPanel
    /// row i for each of them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(int* split, int stride, int count, ushort* index, float* values, float* panel, float* zero, float* xRows, float* tile,
        float* gradient, bool add)
    {
        for (int row = 0; row < count; row++, split += stride)
        {
            int p = split[0], end = split[1];
            float* yi = tile + (long)row * Width;
            Vector512<float> a0, a1, a2, a3;
            if (add) { a0 = Vector512.Load(yi); a1 = Vector512.Load(yi + 16); a2 = Vector512.Load(yi + 32); a3 = Vector512.Load(yi + 48); }
            else a0 = a1 = a2 = a3 = Vector512<float>.Zero;
            Vector512<float> b0 = Vector512<float>.Zero, b1 = b0, b2 = b0, b3 = b0;
            if (p < end)
            {
                float* xr = xRows + (long)row * Width;
                var x0 = Vector512.LoadAligned(xr);
                var x1 = Vector512.LoadAligned(xr + 16);
                var x2 = Vector512.LoadAligned(xr + 32);
                var x3 = Vector512.LoadAligned(xr + 48);
                for (; p + 3 < end; p += 4)
                {
                    ulong q = *(ulong*)(index + p);
                    Nonzero(panel + ((nint)(q & 0xFFFF) << 6), values[p], x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, out var cr);
                    Nonzero(panel + ((nint)((q >> 16) & 0xFFFF) << 6), values[p + 1], x0, x1, x2, x3, ref b0, ref b1, ref b2, ref b3, out var cs);
                    Nonzero(panel + ((nint)((q >> 32) & 0xFFFF) << 6), values[p + 2], x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, out var cu);
                    Nonzero(panel + ((nint)(q >> 48) << 6), values[p + 3], x0, x1, x2, x3, ref b0, ref b1, ref b2, ref b3, out var cv);
                    (Vector128.Load(gradient + p) + Sddmm.Reduce4(cr, cs, cu, cv)).Store(gradient + p);
                }
                int rest = end - p;   // 0..3
                if (rest > 0)
                {
                    // The dot products of the last 1–3 in one masked step of four (slots past the end repeat the last
                    // entry; their lanes are neither loaded nor stored); dx's pair of them RowsWideBlock's way.
                    int last = end - 1;
                    float* r = panel + ((nint)index[p] << 6);
                    float* s = panel + ((nint)index[Math.Min(p + 1, last)] << 6);
                    float* u = panel + ((nint)index[Math.Min(p + 2, last)] << 6);
                    Vector512<float> cr, cs;
                    if (rest >= 2)
                    {
                        Nonzero(r, values[p], x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, out cr);
                        Nonzero(s, values[p + 1], x0, x1, x2, x3, ref b0, ref b1, ref b2, ref b3, out cs);
                    }
                    else cr = cs = RowDot(r, x0, x1, x2, x3);   // s is r
                    var cu = RowDot(u, x0, x1, x2, x3);
                    var mask = Vector128.LessThan(Vector128.Create(0, 1, 2, 3), Vector128.Create(rest)).AsSingle();
                    Avx.MaskStore(gradient + p, mask, Avx.MaskLoad(gradient + p, mask) + Sddmm.Reduce4(cr, cs, cu, cu));
                    if (rest >= 2) p += 2;
                }
            }
            // end − p is 0 or 1: RowsWideBlock's last slot (entry p under its weight, or weight 0 on the zero row), so
            // dx's accumulators see exactly its operations.
            SpmmMicroKernel.LastSlotAndStore(p, end, index, values, panel, zero, a0, a1, a2, a3, b0, b1, b2, b3, yi);
        }
    }
}
