using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// The weight gradient of the 2:4 layer on the input gradient's class lists, with tokens in the vector lanes:
///   dW[o, s] = Σ_t dyᵀ[o, t] · xᵀ[4g + i_s, t]          (s = the row's two slots of group g)
/// The rows of one class in a (64-output block, group) keep the same two inputs, so the class's two xᵀ rows (a panel
/// of 256 or 128 tokens, see <see cref="DefaultGradientPanelRows"/>: 16 or 8 vectors each) serve every one of its rows:
/// eight rows at a time, per token vector 2 loads of x and 8 of dy feed 16 FMAs into 16 accumulators (0.625 loads per
/// FMA, no permutes), which two trees of 24 shuffles and adds per panel (<see cref="Sddmm.Reduce8"/>) turn into the
/// tile's 16 sums; a class's last rows go in tiles of 4, 2 and 1. Those of 2 and 1 reduce their four accumulators in
/// one transposing tree (Sddmm.Reduce4) instead of a horizontal sum each: in one process alternating both forms on the
/// 2:4 `wide` step on Zen 5 (medians of 16 paired steps, two runs) 1.3% and 1.5% faster at one thread, 1.0% and 2.0%
/// at two. (NmLinear's token-major kernel, outputs in the lanes, needs a permute per FMA: about the dense GEMM's time
/// for half its work on Zen 4, where this ran 1.3–1.5x faster than the GEMM on the `wide` shapes; on Zen 5 1.09–1.19x
/// with 128-token panels, see the README.) Panels of 512 tokens measured slower. The sums go to a class-ordered copy
/// of the gradient (stored by the first panel, added by the others); in the last panel each (block, group)'s part of
/// it, still in L1, is added to the caller's values (row-major, Out × In/2) as soon as the group is done. (Before, the
/// copy was cleared before the first panel and added to the values in a separate pass after the last one, which read
/// it back from memory. In one-thread profiles of the 2:4 `wide` step on Zen 5 that pass had 1.7% of the samples and
/// memset 0.8%; after, memset 0.6% and GradientBlock, where the adds now run, 1.7 points more than before: the
/// scattered adds cost what they did.)
/// </summary>
public sealed unsafe partial class Nm24Gradients
{
    /// <summary>
    /// Token rows per weight-gradient panel on this machine: 128 where the level-1 data cache holds at least 48 KiB
    /// (a 64-output block's dyᵀ rows, 32 KiB, then stay in L1 while every group of the block reads them, with room for
    /// the group's xᵀ rows), else 256 (16 vectors per xᵀ row; the block's dyᵀ rows, 64 KiB, come from L2, and each
    /// row's sums are reduced half as often). Measured: on Zen 5 (48 KiB L1, two 512-bit FMAs a cycle) the 2:4 `wide`
    /// step alternating both widths in one process (one model, medians of 20 paired steps) ran 2.1% (one thread) and
    /// 0.9% (two) faster with 128, and in two `bench linear --parts` runs dW on the class lists took 1.05–1.38x the
    /// permute kernel's time of the same run with 256 and 1.01–1.03x with 128; on Zen 4 (32 KiB L1, half the FMA
    /// rate) 256 measured 1.49–1.54x the GEMM against 1.29–1.37x for 128.
    /// </summary>
    public static int DefaultGradientPanelRows { get; } = CpuCaches.L1DataBytes >= 48 * 1024 ? 128 : 256;

    /// <summary>This instance's token rows per weight-gradient panel (a multiple of 16; tests set both widths).</summary>
    internal int GradientPanelRows
    {
        get => _gradientPanelRows;
        init
        {
            if (value < 16 || value % 16 != 0)
                throw new ArgumentOutOfRangeException(nameof(value), value, "panel rows must be a positive multiple of 16");
            _gradientPanelRows = value;
        }
    }
    readonly int _gradientPanelRows = DefaultGradientPanelRows;

    /// <summary>Features per item of the xᵀ panel's transpose.</summary>
    const int XChunk = 64;

    /// <summary>Token columns of a weight-gradient panel for <paramref name="rows"/> rows: the panel rows, or rows rounded up to 16.</summary>
    int GradientPanelWidth(int rows) => Math.Min(GradientPanelRows, (rows + 15) / 16 * 16);

    /// <summary>Workspace floats of <see cref="WeightGradient"/>: the class-ordered gradient, xᵀ and dyᵀ of one panel.</summary>
    public long WeightGradientWorkspaceFloats(int rows) =>
        StoredCount + AlignFloats + (long)GradientPanelWidth(Math.Max(rows, 1)) * (InFeatures + OutFeatures);

    struct GradientArgs
    {
        public float* Dy, X, Xt, Dyt, G, DValues;
        public byte* ClassRows, ClassEnd;
        public int Rows, In, Out, T0, Tokens, Width;
        public bool First, Last;
    }

    /// <summary>
    /// dValues (row-major, Out × In/2, the layer's stored order) += dW at the stored positions for dy (rows, Out) and
    /// x (rows, In). workspace: <see cref="WeightGradientWorkspaceFloats"/> floats.
    /// </summary>
    public void WeightGradient(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int rows, Span<float> dValues, Span<float> workspace)
    {
        if (!Supported) throw new PlatformNotSupportedException("the 2:4 weight-gradient kernel needs AVX-512");
        Check.Length(dy, (long)rows * OutFeatures, nameof(dy));
        Check.Length(x, (long)rows * InFeatures, nameof(x));
        Check.Length(dValues, StoredCount, nameof(dValues));
        Check.Length(workspace, WeightGradientWorkspaceFloats(rows), nameof(workspace));
        if (rows == 0) return;
        int width = GradientPanelWidth(rows);
        int blocks = (OutFeatures + OBlock - 1) / OBlock;
        fixed (float* pdy = dy, px = x, pw = workspace, pv = dValues)
        fixed (byte* pr = _classRows, pe = _classEnd)
        {
            float* panels = (float*)(((nint)(pw + StoredCount) + 63) & ~(nint)63);
            var a = new GradientArgs
            {
                Dy = pdy, X = px, G = pw, DValues = pv, Xt = panels, Dyt = panels + (long)InFeatures * width,
                ClassRows = pr, ClassEnd = pe, Rows = rows, In = InFeatures, Out = OutFeatures, Width = width,
            };
            for (int t0 = 0; t0 < rows; t0 += width)
            {
                a.T0 = t0;
                a.Tokens = Math.Min(width, rows - t0);
                a.First = t0 == 0;
                a.Last = t0 + width >= rows;
                KernelThreads.For((InFeatures + XChunk - 1) / XChunk, ref a, &TransposeX);
                KernelThreads.For(blocks, ref a, &GradientBlock);
            }
        }
    }

    /// <summary>xᵀ panel rows [64c, 64c + 64) = x's columns there over the panel's tokens (columns past them zero).</summary>
    static void TransposeX(ref GradientArgs a, int chunk)
    {
        int f0 = chunk * XChunk, k = Math.Min(XChunk, a.In - f0);
        TokenPanels.In(a.X + (long)a.T0 * a.In + f0, a.In, k, a.Tokens, a.Xt + (long)f0 * a.Width, a.Width);
    }

    /// <summary>Block b's dyᵀ rows over the panel's tokens, then per group and class its rows' two sums each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GradientBlock(ref GradientArgs a, int b)
    {
        int width = a.Width, vectors = width / 16, groups = a.In / 4;
        int rowCount = Math.Min(OBlock, a.Out - b * OBlock);
        float* dyb = a.Dyt + (long)b * OBlock * width;
        TokenPanels.In(a.Dy + (long)a.T0 * a.Out + b * OBlock, a.Out, rowCount, a.Tokens, dyb, width);
        long at = (long)b * OBlock * groups;
        byte* ends = a.ClassEnd + (long)b * groups * 6;
        bool first = a.First;
        int slots = a.In / 2;
        float* values = a.DValues + (long)b * OBlock * slots;
        for (int g = 0; g < groups; g++, at += rowCount, ends += 6)
        {
            float* xg = a.Xt + (long)g * 4 * width;
            int start = 0;
            for (int c = 0; c < 6; c++)
            {
                int end = ends[c];
                float* x0 = xg + ClassFirst[c] * width, x1 = xg + ClassSecond[c] * width;
                byte* rows = a.ClassRows + at;
                int j = start;
                for (; j + 8 <= end; j += 8) Tile8(x0, x1, dyb, rows + j, a.G + 2 * (at + j), vectors, width, first);
                if (j + 4 <= end) { Tile4(x0, x1, dyb, rows + j, a.G + 2 * (at + j), vectors, width, first); j += 4; }
                if (j + 2 <= end) { Tile2(x0, x1, dyb + rows[j] * width, dyb + rows[j + 1] * width, a.G + 2 * (at + j), vectors, first); j += 2; }
                if (j < end) Tile1(x0, x1, dyb + rows[j] * width, a.G + 2 * (at + j), vectors, first);
                start = end;
            }
            if (a.Last) AddGroup(a.ClassRows + at, a.G + 2 * at, rowCount, values + 2 * g, slots);
        }
    }

    /// <summary>The group's finished sums (class order, two per listed row, in L1) added to its two slots of each row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void AddGroup(byte* rows, float* g, int rowCount, float* column, int slots)
    {
        for (int j = 0; j < rowCount; j++)
        {
            float* v = column + (long)rows[j] * slots;
            v[0] += g[2 * j];
            v[1] += g[2 * j + 1];
        }
    }

    /// <summary>
    /// g[0..8) (= on the first panel, else +=) the dot products over the panel of four class rows' dyᵀ (rows[0..4))
    /// with the class's two xᵀ rows, in the order (row 0: x0, x1), (row 1: x0, x1), ...
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4(float* x0, float* x1, float* dyb, byte* rows, float* g, int vectors, int width, bool first)
    {
        float* d0 = dyb + rows[0] * width, d1 = dyb + rows[1] * width, d2 = dyb + rows[2] * width, d3 = dyb + rows[3] * width;
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector512<float> a20 = default, a21 = default, a30 = default, a31 = default;
        for (int v = 0; v < vectors; v++)
        {
            int o = v * 16;
            var xa = Vector512.Load(x0 + o); var xb = Vector512.Load(x1 + o);
            var d = Vector512.Load(d0 + o);
            a00 = Avx512F.FusedMultiplyAdd(d, xa, a00); a01 = Avx512F.FusedMultiplyAdd(d, xb, a01);
            d = Vector512.Load(d1 + o);
            a10 = Avx512F.FusedMultiplyAdd(d, xa, a10); a11 = Avx512F.FusedMultiplyAdd(d, xb, a11);
            d = Vector512.Load(d2 + o);
            a20 = Avx512F.FusedMultiplyAdd(d, xa, a20); a21 = Avx512F.FusedMultiplyAdd(d, xb, a21);
            d = Vector512.Load(d3 + o);
            a30 = Avx512F.FusedMultiplyAdd(d, xa, a30); a31 = Avx512F.FusedMultiplyAdd(d, xb, a31);
        }
        Put(g, Sddmm.Reduce8(a00, a01, a10, a11, a20, a21, a30, a31), first);
    }

    /// <summary>g[0..8) = sums (the first panel) or g[0..8) + sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* g, Vector256<float> sums, bool first) => (first ? sums : Vector256.Load(g) + sums).Store(g);

    /// <summary>g[0..4) = sums (the first panel) or g[0..4) + sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* g, Vector128<float> sums, bool first) => (first ? sums : Vector128.Load(g) + sums).Store(g);

    /// <summary>g[0] = s (the first panel) or g[0] + s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* g, float s, bool first) => *g = first ? s : *g + s;

    /// <summary>Tile4 for eight class rows: g[0..16) (= | +=) their dot products with x0 and x1, row by row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile8(float* x0, float* x1, float* dyb, byte* rows, float* g, int vectors, int width, bool first)
    {
        float* d0 = dyb + rows[0] * width, d1 = dyb + rows[1] * width, d2 = dyb + rows[2] * width, d3 = dyb + rows[3] * width;
        float* d4 = dyb + rows[4] * width, d5 = dyb + rows[5] * width, d6 = dyb + rows[6] * width, d7 = dyb + rows[7] * width;
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector512<float> a20 = default, a21 = default, a30 = default, a31 = default;
        Vector512<float> a40 = default, a41 = default, a50 = default, a51 = default;
        Vector512<float> a60 = default, a61 = default, a70 = default, a71 = default;
        for (int v = 0; v < vectors; v++)
        {
            int o = v * 16;
            var xa = Vector512.Load(x0 + o); var xb = Vector512.Load(x1 + o);
            var d = Vector512.Load(d0 + o);
            a00 = Avx512F.FusedMultiplyAdd(d, xa, a00); a01 = Avx512F.FusedMultiplyAdd(d, xb, a01);
            d = Vector512.Load(d1 + o);
            a10 = Avx512F.FusedMultiplyAdd(d, xa, a10); a11 = Avx512F.FusedMultiplyAdd(d, xb, a11);
            d = Vector512.Load(d2 + o);
            a20 = Avx512F.FusedMultiplyAdd(d, xa, a20); a21 = Avx512F.FusedMultiplyAdd(d, xb, a21);
            d = Vector512.Load(d3 + o);
            a30 = Avx512F.FusedMultiplyAdd(d, xa, a30); a31 = Avx512F.FusedMultiplyAdd(d, xb, a31);
            d = Vector512.Load(d4 + o);
            a40 = Avx512F.FusedMultiplyAdd(d, xa, a40); a41 = Avx512F.FusedMultiplyAdd(d, xb, a41);
            d = Vector512.Load(d5 + o);
            a50 = Avx512F.FusedMultiplyAdd(d, xa, a50); a51 = Avx512F.FusedMultiplyAdd(d, xb, a51);
            d = Vector512.Load(d6 + o);
            a60 = Avx512F.FusedMultiplyAdd(d, xa, a60); a61 = Avx512F.FusedMultiplyAdd(d, xb, a61);
            d = Vector512.Load(d7 + o);
            a70 = Avx512F.FusedMultiplyAdd(d, xa, a70); a71 = Avx512F.FusedMultiplyAdd(d, xb, a71);
        }
        Put(g, Sddmm.Reduce8(a00, a01, a10, a11, a20, a21, a30, a31), first);
        Put(g + 8, Sddmm.Reduce8(a40, a41, a50, a51, a60, a61, a70, a71), first);
    }

    /// <summary>g[0..4) (= | +=) two class rows' dot products with x0 and x1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile2(float* x0, float* x1, float* d0, float* d1, float* g, int vectors, bool first)
    {
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default;
        for (int v = 0; v < vectors; v++)
        {
            int o = v * 16;
            var xa = Vector512.Load(x0 + o); var xb = Vector512.Load(x1 + o);
            var d = Vector512.Load(d0 + o);
            a00 = Avx512F.FusedMultiplyAdd(d, xa, a00); a01 = Avx512F.FusedMultiplyAdd(d, xb, a01);
            d = Vector512.Load(d1 + o);
            a10 = Avx512F.FusedMultiplyAdd(d, xa, a10); a11 = Avx512F.FusedMultiplyAdd(d, xb, a11);
        }
        Put(g, Sddmm.Reduce4(a00, a01, a10, a11), first);
    }

    /// <summary>g[0..2) (= | +=) one class row's dot products with the class's two xᵀ rows (two accumulators each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1(float* x0, float* x1, float* d, float* g, int vectors, bool first)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int v = 0;
        for (; v + 2 <= vectors; v += 2)
        {
            int o = v * 16;
            var da = Vector512.Load(d + o); var db = Vector512.Load(d + o + 16);
            a0 = Avx512F.FusedMultiplyAdd(da, Vector512.Load(x0 + o), a0); b0 = Avx512F.FusedMultiplyAdd(da, Vector512.Load(x1 + o), b0);
            a1 = Avx512F.FusedMultiplyAdd(db, Vector512.Load(x0 + o + 16), a1); b1 = Avx512F.FusedMultiplyAdd(db, Vector512.Load(x1 + o + 16), b1);
        }
        if (v < vectors)
        {
            int o = v * 16;
            var da = Vector512.Load(d + o);
            a0 = Avx512F.FusedMultiplyAdd(da, Vector512.Load(x0 + o), a0); b0 = Avx512F.FusedMultiplyAdd(da, Vector512.Load(x1 + o), b0);
        }
        var sums = Sddmm.Reduce4(a0, b0, a1, b1);
        Put(g, sums.GetElement(0) + sums.GetElement(2), first);
        Put(g + 1, sums.GetElement(1) + sums.GetElement(3), first);
    }
}
