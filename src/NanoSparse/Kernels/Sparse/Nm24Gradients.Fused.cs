using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Both gradients of the 2:4 layer on one thread in one pass over the class lists (<see cref="Backward"/>): per
/// 128-token panel, for each class of each (64-output block, group), every listed row's dyᵀ row (8 vectors) is loaded
/// once and feeds its 16 FMAs into the class's two dxᵀ rows (the input gradient's <see cref="ClassRows"/>) and its 16
/// FMAs into its two dot products with the class's two xᵀ rows (the weight gradient's tiles), where the two kernels
/// each loaded it (dx: 8 loads and 2 broadcasts per 16 FMAs; dW: 1.25 loads per 2 FMAs, and the class's rows in
/// tiles of 8, 4, 2 and 1, the small ones slower per row). Here the xᵀ rows are read from L1 per vector (2 loads per
/// 4 FMAs beside dy's one) and each pair of rows reduces its four sums in one transposing tree (Sddmm.Reduce4).
/// The results are the same bits as <see cref="WeightGradient"/> then <see cref="InputGradient"/> when the weight
/// gradient's panel is 128 tokens (<see cref="DefaultGradientPanelRows"/> where L1 holds 48 KiB): dxᵀ's accumulators
/// take the rows in the same order; each dot product is the same FMA chain over the panel's 8 vectors with the same
/// reduction tree (Reduce4 sums each vector as Reduce8 does), a class's last odd row the chains of Tile1; the sums are
/// stored, added and finally added into the values as the weight gradient does.
/// </summary>
public sealed unsafe partial class Nm24Gradients
{
    /// <summary>Whether <see cref="Backward"/> gives the same bits as the two kernels: the weight gradient's panel is 128 tokens.</summary>
    internal bool FusedMatchesTwoKernels => GradientPanelRows == PanelRows;

    /// <summary>Workspace floats of <see cref="Backward"/>: the values in class order, the class-ordered gradient, and one
    /// panel each of dyᵀ (Out × 128), xᵀ and dxᵀ (In × 128).</summary>
    public long BackwardWorkspaceFloats(int rows) => 2L * StoredCount + 2 * AlignFloats + (long)PanelRows * (OutFeatures + 2L * InFeatures);

    /// <summary>
    /// dValues (row-major, Out × In/2) += dW at the stored positions and dx (rows, In) = (dy · W) ⊙ dxScale (or empty),
    /// on the calling thread. dx may be x itself (each panel of x is read before its rows of dx are written); dx must
    /// not overlap dy. workspace: <see cref="BackwardWorkspaceFloats"/> floats.
    /// </summary>
    public void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale,
        Span<float> dx, Span<float> dValues, Span<float> workspace)
    {
        if (!Supported) throw new PlatformNotSupportedException("the 2:4 gradient kernels need AVX-512");
        Check.Length(dy, (long)rows * OutFeatures, nameof(dy));
        Check.Length(x, (long)rows * InFeatures, nameof(x));
        Check.Length(dx, (long)rows * InFeatures, nameof(dx));
        Check.Length(values, StoredCount, nameof(values));
        Check.Length(dValues, StoredCount, nameof(dValues));
        Check.Length(workspace, BackwardWorkspaceFloats(rows), nameof(workspace));
        if (!dxScale.IsEmpty) Check.Length(dxScale, (long)rows * InFeatures, nameof(dxScale));
        if (rows == 0) return;
        if (dx.Slice(0, rows * InFeatures).Overlaps(dy.Slice(0, rows * OutFeatures)))
            throw new ArgumentException("dx must not overlap dy", nameof(dx));
        PackByClass(values, workspace.Slice(0, StoredCount));
        int inF = InFeatures, outF = OutFeatures, blocks = (outF + OBlock - 1) / OBlock, groups = inF / 4;
        fixed (float* pdy = dy, px = x, pdx = dx, pw = workspace, ps = dxScale, pv = dValues)
        fixed (byte* classRows = _classRows, classEnd = _classEnd)
        {
            float* packed = pw;
            float* g = pw + StoredCount;
            float* dyt = (float*)(((nint)(g + StoredCount) + 63) & ~(nint)63);
            float* xt = dyt + (long)outF * PanelRows;
            float* dxt = xt + (long)inF * PanelRows;
            int slots = inF / 2;
            for (int t0 = 0; t0 < rows; t0 += PanelRows)
            {
                int tokens = Math.Min(PanelRows, rows - t0);
                bool first = t0 == 0, last = t0 + PanelRows >= rows;
                TokenPanels.In(pdy + (long)t0 * outF, outF, outF, tokens, dyt, PanelRows);   // columns past tokens zero
                TokenPanels.In(px + (long)t0 * inF, inF, inF, tokens, xt, PanelRows);
                new Span<float>(dxt, inF * PanelRows).Clear();
                for (int b = 0; b < blocks; b++)
                {
                    int rowCount = Math.Min(OBlock, outF - b * OBlock);
                    float* dyb = dyt + (long)b * OBlock * PanelRows;
                    long at = (long)b * OBlock * groups;
                    byte* ends = classEnd + (long)b * groups * 6;
                    float* valuesOfBlock = pv + (long)b * OBlock * slots;
                    for (int gr = 0; gr < groups; gr++, at += rowCount, ends += 6)
                    {
                        float* dg = dxt + (long)gr * 4 * PanelRows;
                        float* xg = xt + (long)gr * 4 * PanelRows;
                        int start = 0;
                        for (int c = 0; c < 6; c++)
                        {
                            int end = ends[c];
                            if (end > start)
                                FusedClassRows(dg + ClassFirst[c] * PanelRows, dg + ClassSecond[c] * PanelRows, xg + ClassFirst[c] * PanelRows,
                                    xg + ClassSecond[c] * PanelRows, dyb, classRows + at + start, packed + 2 * (at + start), g + 2 * (at + start),
                                    end - start, first);
                            start = end;
                        }
                        if (last) AddGroup(classRows + at, g + 2 * at, rowCount, valuesOfBlock + 2 * gr, slots);
                    }
                }
                TokenPanels.Out(dxt, inF, tokens, pdx + (long)t0 * inF, inF, null, null, ps == null ? null : ps + (long)t0 * inF, PanelRows);
            }
        }
    }

    /// <summary>
    /// For the class's listed rows j (dyᵀ row dy + rows[j]·128, weights v[2j], v[2j+1]): first += v[2j]·dyᵀ row and
    /// second += v[2j+1]·dyᵀ row (ClassRows's order), and g[2j], g[2j+1] (= on the first panel, else +=) the row's dot
    /// products with x0 and x1 (the weight gradient's chains and trees: pairs as Tile2, a last odd row as Tile1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FusedClassRows(float* first, float* second, float* x0, float* x1, float* dy, byte* rows, float* v, float* g, int count, bool firstPanel)
    {
        var f0 = Vector512.Load(first); var f1 = Vector512.Load(first + 16); var f2 = Vector512.Load(first + 32); var f3 = Vector512.Load(first + 48);
        var f4 = Vector512.Load(first + 64); var f5 = Vector512.Load(first + 80); var f6 = Vector512.Load(first + 96); var f7 = Vector512.Load(first + 112);
        var s0 = Vector512.Load(second); var s1 = Vector512.Load(second + 16); var s2 = Vector512.Load(second + 32); var s3 = Vector512.Load(second + 48);
        var s4 = Vector512.Load(second + 64); var s5 = Vector512.Load(second + 80); var s6 = Vector512.Load(second + 96); var s7 = Vector512.Load(second + 112);
        int j = 0;
        for (; j + 2 <= count; j += 2, v += 4)
        {
            float* d = dy + rows[j] * PanelRows;
            float* e = dy + rows[j + 1] * PanelRows;
            var w0 = Vector512.Create(v[0]); var w1 = Vector512.Create(v[1]);
            var u0 = Vector512.Create(v[2]); var u1 = Vector512.Create(v[3]);
            Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
            Step(ref f0, ref s0, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 0);
            Step(ref f1, ref s1, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 16);
            Step(ref f2, ref s2, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 32);
            Step(ref f3, ref s3, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 48);
            Step(ref f4, ref s4, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 64);
            Step(ref f5, ref s5, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 80);
            Step(ref f6, ref s6, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 96);
            Step(ref f7, ref s7, ref a0, ref a1, ref b0, ref b1, w0, w1, u0, u1, d, e, x0, x1, 112);
            Put(g + 2 * j, Sddmm.Reduce4(a0, a1, b0, b1), firstPanel);
        }
        if (j < count)
        {
            // The last odd row: its dot products as Tile1 (two chains per xᵀ row, even and odd vectors).
            float* d = dy + rows[j] * PanelRows;
            var w0 = Vector512.Create(v[0]); var w1 = Vector512.Create(v[1]);
            Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
            One(ref f0, ref s0, ref a0, ref b0, w0, w1, d, x0, x1, 0);
            One(ref f1, ref s1, ref a1, ref b1, w0, w1, d, x0, x1, 16);
            One(ref f2, ref s2, ref a0, ref b0, w0, w1, d, x0, x1, 32);
            One(ref f3, ref s3, ref a1, ref b1, w0, w1, d, x0, x1, 48);
            One(ref f4, ref s4, ref a0, ref b0, w0, w1, d, x0, x1, 64);
            One(ref f5, ref s5, ref a1, ref b1, w0, w1, d, x0, x1, 80);
            One(ref f6, ref s6, ref a0, ref b0, w0, w1, d, x0, x1, 96);
            One(ref f7, ref s7, ref a1, ref b1, w0, w1, d, x0, x1, 112);
            var sums = Sddmm.Reduce4(a0, b0, a1, b1);
            Put(g + 2 * j, sums.GetElement(0) + sums.GetElement(2), firstPanel);
            Put(g + 2 * j + 1, sums.GetElement(1) + sums.GetElement(3), firstPanel);
        }
        f0.Store(first); f1.Store(first + 16); f2.Store(first + 32); f3.Store(first + 48);
        f4.Store(first + 64); f5.Store(first + 80); f6.Store(first + 96); f7.Store(first + 112);
        s0.Store(second); s1.Store(second + 16); s2.Store(second + 32); s3.Store(second + 48);
        s4.Store(second + 64); s5.Store(second + 80); s6.Store(second + 96); s7.Store(second + 112);
    }

    /// <summary>One token vector (offset o) of two rows: their dx FMAs (row d before row e) and dot-product FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Step(ref Vector512<float> f, ref Vector512<float> s, ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> b0,
        ref Vector512<float> b1, Vector512<float> w0, Vector512<float> w1, Vector512<float> u0, Vector512<float> u1, float* d, float* e,
        float* x0, float* x1, int o)
    {
        var xa = Vector512.Load(x0 + o); var xb = Vector512.Load(x1 + o);
        var dd = Vector512.Load(d + o);
        f = Avx512F.FusedMultiplyAdd(w0, dd, f); s = Avx512F.FusedMultiplyAdd(w1, dd, s);
        a0 = Avx512F.FusedMultiplyAdd(dd, xa, a0); a1 = Avx512F.FusedMultiplyAdd(dd, xb, a1);
        var de = Vector512.Load(e + o);
        f = Avx512F.FusedMultiplyAdd(u0, de, f); s = Avx512F.FusedMultiplyAdd(u1, de, s);
        b0 = Avx512F.FusedMultiplyAdd(de, xa, b0); b1 = Avx512F.FusedMultiplyAdd(de, xb, b1);
    }

    /// <summary>One token vector (offset o) of one row: its dx FMAs and its two dot-product FMAs into a and b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void One(ref Vector512<float> f, ref Vector512<float> s, ref Vector512<float> a, ref Vector512<float> b,
        Vector512<float> w0, Vector512<float> w1, float* d, float* x0, float* x1, int o)
    {
        var dd = Vector512.Load(d + o);
        f = Avx512F.FusedMultiplyAdd(w0, dd, f); s = Avx512F.FusedMultiplyAdd(w1, dd, s);
        a = Avx512F.FusedMultiplyAdd(dd, Vector512.Load(x0 + o), a); b = Avx512F.FusedMultiplyAdd(dd, Vector512.Load(x1 + o), b);
    }
}
