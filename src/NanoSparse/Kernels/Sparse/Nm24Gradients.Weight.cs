using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// The weight gradient of the 2:4 layer on the input gradient's class lists, with tokens in the vector lanes:
///   dW[o, s] = Σ_t dyᵀ[o, t] · xᵀ[4g + i_s, t]          (s = the row's two slots of group g)
/// The rows of one class in a (64-output block, group) keep the same two inputs, so the class's two xᵀ rows (a
/// 256-token panel: 16 vectors each) serve every one of its rows: eight rows at a time, per token vector 2 loads of x
/// and 8 of dy feed 16 FMAs into 16 accumulators (0.625 loads per FMA, no permutes), which two trees of 24 shuffles
/// and adds per panel (<see cref="Sddmm.Reduce8"/>) turn into the tile's 16 sums; a class's last rows go in tiles of
/// 4, 2 and 1. (NmLinear's token-major kernel, outputs in the lanes, needs a permute per FMA: about the dense GEMM's
/// time for half its work; this runs 1.3–1.5x faster than the GEMM on the `wide` shapes, see the README.) Panels of 128
/// tokens (a block's dyᵀ in L1, twice the trees) and of 512 measured slower. The sums go to a class-ordered copy of
/// the gradient, added to the caller's values (row-major, Out × In/2) once every panel is done.
/// </summary>
public sealed unsafe partial class Nm24Gradients
{
    /// <summary>Token rows per weight-gradient panel: 16 vectors per xᵀ row, a 64-output block's dyᵀ rows 64 KiB.</summary>
    public const int GradientPanelRows = 256;
    /// <summary>Features per item of the xᵀ panel's transpose.</summary>
    const int XChunk = 64;

    /// <summary>Token columns of a weight-gradient panel for <paramref name="rows"/> rows: 256, or rows rounded up to 16.</summary>
    static int GradientPanelWidth(int rows) => Math.Min(GradientPanelRows, (rows + 15) / 16 * 16);

    /// <summary>Workspace floats of <see cref="WeightGradient"/>: the class-ordered gradient, xᵀ and dyᵀ of one panel.</summary>
    public long WeightGradientWorkspaceFloats(int rows) =>
        StoredCount + AlignFloats + (long)GradientPanelWidth(Math.Max(rows, 1)) * (InFeatures + OutFeatures);

    struct GradientArgs
    {
        public float* Dy, X, Xt, Dyt, G, DValues;
        public byte* ClassRows, ClassEnd;
        public int Rows, In, Out, T0, Tokens, Width;
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
            new Span<float>(pw, StoredCount).Clear();
            for (int t0 = 0; t0 < rows; t0 += width)
            {
                a.T0 = t0;
                a.Tokens = Math.Min(width, rows - t0);
                KernelThreads.For((InFeatures + XChunk - 1) / XChunk, ref a, &TransposeX);
                KernelThreads.For(blocks, ref a, &GradientBlock);
            }
            if (StoredCount < 1 << 16) for (int b = 0; b < blocks; b++) UnpackAddBlock(ref a, b);
            else KernelThreads.For(blocks, ref a, &UnpackAddBlock);
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
                for (; j + 8 <= end; j += 8) Tile8(x0, x1, dyb, rows + j, a.G + 2 * (at + j), vectors, width);
                if (j + 4 <= end) { Tile4(x0, x1, dyb, rows + j, a.G + 2 * (at + j), vectors, width); j += 4; }
                if (j + 2 <= end) { Tile2(x0, x1, dyb + rows[j] * width, dyb + rows[j + 1] * width, a.G + 2 * (at + j), vectors); j += 2; }
                if (j < end) Tile1(x0, x1, dyb + rows[j] * width, a.G + 2 * (at + j), vectors);
                start = end;
            }
        }
    }

    /// <summary>
    /// g[0..8) += the dot products over the panel of four class rows' dyᵀ (rows[0..4)) with the class's two xᵀ rows,
    /// in the order (row 0: x0, x1), (row 1: x0, x1), ...
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4(float* x0, float* x1, float* dyb, byte* rows, float* g, int vectors, int width)
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
        (Vector256.Load(g) + Sddmm.Reduce8(a00, a01, a10, a11, a20, a21, a30, a31)).Store(g);
    }

    /// <summary>Tile4 for eight class rows: g[0..16) += their dot products with x0 and x1, row by row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile8(float* x0, float* x1, float* dyb, byte* rows, float* g, int vectors, int width)
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
        (Vector256.Load(g) + Sddmm.Reduce8(a00, a01, a10, a11, a20, a21, a30, a31)).Store(g);
        (Vector256.Load(g + 8) + Sddmm.Reduce8(a40, a41, a50, a51, a60, a61, a70, a71)).Store(g + 8);
    }

    /// <summary>g[0..4) += two class rows' dot products with x0 and x1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile2(float* x0, float* x1, float* d0, float* d1, float* g, int vectors)
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
        g[0] += Vector512.Sum(a00); g[1] += Vector512.Sum(a01);
        g[2] += Vector512.Sum(a10); g[3] += Vector512.Sum(a11);
    }

    /// <summary>g[0..2) += one class row's dot products with the class's two xᵀ rows (two accumulators each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1(float* x0, float* x1, float* d, float* g, int vectors)
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
        g[0] += Vector512.Sum(a0 + a1);
        g[1] += Vector512.Sum(b0 + b1);
    }

    /// <summary>Block b of the class-ordered gradient added to the values: each listed row's two sums to its group's slots.</summary>
    static void UnpackAddBlock(ref GradientArgs a, int b)
    {
        int groups = a.In / 4, slots = a.In / 2, rowCount = Math.Min(OBlock, a.Out - b * OBlock);
        long at = (long)b * OBlock * groups;
        float* vb = a.DValues + (long)b * OBlock * slots;
        byte* rows = a.ClassRows;
        float* g = a.G;
        for (int gr = 0; gr < groups; gr++, at += rowCount)
        {
            float* column = vb + 2 * gr;
            for (int j = 0; j < rowCount; j++)
            {
                float* v = column + (long)rows[at + j] * slots;
                v[0] += g[2 * (at + j)];
                v[1] += g[2 * (at + j) + 1];
            }
        }
    }
}
