using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// The two gradients of a Linear layer whose weight W (Out × In) is 2:4 along In (every group of 4 consecutive inputs
/// of an output row keeps 2 weights), at training sizes, with tokens in the vector lanes, over one structure: the
/// rows of each 64-output block listed by the pair of inputs they keep in each group. The weight gradient is in
/// Nm24Gradients.Weight.cs; this file holds the structure and the input gradient:
///   dxᵀ[k, t] = Σ_o w[o, k] · dyᵀ[o, t]
/// In a group g, every output row keeps one of 6 pairs of the group's 4 inputs (its class). The rows of a 64-output
/// block are listed by class once, from the structure; a class's two dxᵀ rows (4g + i0, 4g + i1: 128 tokens, 16
/// vectors) stay in registers while each of its rows adds w0 · dyᵀ[o] to one and w1 · dyᵀ[o] to the other: per row
/// 8 vector loads and 2 broadcasts feed 16 FMAs, no permutes, the index a byte per row. (The dense GEMM needs about
/// 0.7 loads per FMA; this 0.63. A form with 64 tokens, each stored weight a broadcast and 4 FMAs with their loads,
/// needs 1.25 and ran at about the dense GEMM's speed for half the work; so did W's columns as a CSR.)
/// Activations stay row-major in the model (dy: rows × Out, dx: rows × In). One work item is one panel of 128 token
/// rows: its rows of dy transposed into a workspace panel (Out × 128), dxᵀ (In × 128) accumulated block by block, then
/// transposed into dx (times dxScale), both transposes on 16×16 blocks in registers (TokenPanels). The last panel's
/// missing tokens are zeros and are never written out.
/// An instance holds the structure (fixed for the layer's life); values come per call in the layer's stored order
/// (row-major, Out × In/2, the two of a group in ascending input order) and are copied into class order first.
/// </summary>
public sealed unsafe partial class Nm24Gradients
{
    /// <summary>Token rows per panel: 8 vectors per dyᵀ row, so each row's 8 loads feed 16 FMAs.</summary>
    public const int PanelRows = 128;
    /// <summary>Outputs per block: their dyᵀ rows (64 × 128 floats = 32 KiB) stay in L1 while every group uses them.</summary>
    const int OBlock = 64;
    /// <summary>Room to start the panels on a 64-byte boundary (a load that straddles two cache lines costs two).</summary>
    const int AlignFloats = 16;

    readonly byte[] _classRows;    // per o-block b and group g (at b·64·groups + g·rows(b)): the block's rows (0..63)
                                   // listed by class (which two of the group's inputs they keep: ClassFirst/Second)
    readonly byte[] _classEnd;     // per (b, g): the end of each of the 6 classes in that list
    static readonly int[] ClassFirst = [0, 0, 0, 1, 1, 2], ClassSecond = [1, 2, 3, 2, 3, 3];

    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount { get; }

    /// <summary>Whether the kernel runs on this machine (AVX-512).</summary>
    public static bool Supported => Avx512F.IsSupported;

    /// <summary>
    /// The structure of a 2:4 W (Out × In, In a multiple of 4) from the in-group index (0..3) of every stored value,
    /// row-major (Out × In/2), the two of a group ascending.
    /// </summary>
    public Nm24Gradients(int outFeatures, int inFeatures, Func<long, int> slotIndex)
    {
        ArgumentNullException.ThrowIfNull(slotIndex);
        if (outFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), outFeatures, "out features must be at least 1");
        if (inFeatures < 4 || inFeatures % 4 != 0)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "2:4 needs in features a positive multiple of 4");
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        int groups = inFeatures / 4, slots = groups * 2, blocks = (outFeatures + OBlock - 1) / OBlock;
        StoredCount = checked(outFeatures * slots);
        _classRows = new byte[(long)outFeatures * groups];
        _classEnd = new byte[(long)blocks * groups * 6];
        Span<int> counts = stackalloc int[6];
        for (int b = 0; b < blocks; b++)
        {
            int rowCount = Math.Min(OBlock, outFeatures - b * OBlock);
            for (int g = 0; g < groups; g++)
            {
                counts.Clear();
                for (int r = 0; r < rowCount; r++) counts[Class(slotIndex, b * OBlock + r, slots, g)]++;
                long ends = ((long)b * groups + g) * 6;
                int end = 0;
                for (int c = 0; c < 6; c++) { int start = end; end += counts[c]; counts[c] = start; _classEnd[ends + c] = (byte)end; }
                long rowsAt = (long)b * OBlock * groups + (long)g * rowCount;
                for (int r = 0; r < rowCount; r++) _classRows[rowsAt + counts[Class(slotIndex, b * OBlock + r, slots, g)]++] = (byte)r;
            }
        }
    }

    /// <summary>The class (0..5) of row o in group g: its pair of in-group indices, in the order of ClassFirst/Second.</summary>
    static int Class(Func<long, int> slotIndex, int o, int slots, int g)
    {
        long q = (long)o * slots + 2 * g;
        int i0 = slotIndex(q), i1 = slotIndex(q + 1);
        if ((uint)i0 > 3 || (uint)i1 > 3 || i0 >= i1)
            throw new ArgumentException($"2:4 in-group indices of row {o}, group {g} are {i0}, {i1}: expected two ascending indices in 0..3", nameof(slotIndex));
        return i0 == 0 ? i1 - 1 : i0 == 1 ? i1 + 1 : 5;
    }

    /// <summary>Bytes of the structure's arrays (a byte per output row per group, 6 per block and group).</summary>
    public long IndexBytes => _classRows.LongLength + _classEnd.LongLength;

    static int Panels(int rows) => (rows + PanelRows - 1) / PanelRows;

    /// <summary>Workspace floats of <see cref="InputGradient"/>: the values in class order, dyᵀ and dxᵀ in 128-token panels.</summary>
    public long InputGradientWorkspaceFloats(int rows) => StoredCount + AlignFloats + (long)Panels(rows) * PanelRows * (OutFeatures + InFeatures);

    struct Args
    {
        public float* Dy, Dx, Values, Scale, Panels;
        public byte* ClassRows, ClassEnd;
        public int Rows, In, Out;
    }

    /// <summary>
    /// dx (rows, In) = (dy (rows, Out) · W) ⊙ dxScale (rows, In, or empty); dx must not overlap dy.
    /// workspace: <see cref="InputGradientWorkspaceFloats"/> floats.
    /// </summary>
    public void InputGradient(ReadOnlySpan<float> dy, int rows, ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale,
        Span<float> dx, Span<float> workspace)
    {
        if (!Supported) throw new PlatformNotSupportedException("the 2:4 input-gradient kernel needs AVX-512");
        Check.Length(dy, (long)rows * OutFeatures, nameof(dy));
        Check.Length(dx, (long)rows * InFeatures, nameof(dx));
        Check.Length(values, StoredCount, nameof(values));
        Check.Length(workspace, InputGradientWorkspaceFloats(rows), nameof(workspace));
        if (!dxScale.IsEmpty) Check.Length(dxScale, (long)rows * InFeatures, nameof(dxScale));
        if (rows == 0) return;
        if (dx.Slice(0, rows * InFeatures).Overlaps(dy.Slice(0, rows * OutFeatures)))
            throw new ArgumentException("dx must not overlap dy", nameof(dx));
        PackByClass(values, workspace.Slice(0, StoredCount));
        fixed (float* pdy = dy, pdx = dx, pw = workspace, ps = dxScale)
        fixed (byte* pr = _classRows, pe = _classEnd)
        {
            var a = new Args
            {
                Dy = pdy, Dx = pdx, Values = pw, Scale = ps, Panels = (float*)(((nint)(pw + StoredCount) + 63) & ~(nint)63),
                ClassRows = pr, ClassEnd = pe, Rows = rows, In = InFeatures, Out = OutFeatures,
            };
            KernelThreads.For(Panels(rows), ref a, &Panel);
        }
    }

    /// <summary>packed = values in the order of the class lists: per (o-block, group), the two values of each listed row.</summary>
    void PackByClass(ReadOnlySpan<float> values, Span<float> packed)
    {
        int blocks = (OutFeatures + OBlock - 1) / OBlock;
        fixed (float* v = values, d = packed)
        fixed (byte* rows = _classRows)
        {
            var a = new PackArgs { Values = v, Packed = d, ClassRows = rows, In = InFeatures, Out = OutFeatures };
            // One block per work item (a serial copy of a 2:4 step's values cost a few per cent of it at two threads).
            if (StoredCount < 1 << 16) for (int b = 0; b < blocks; b++) PackBlock(ref a, b);
            else KernelThreads.For(blocks, ref a, &PackBlock);
        }
    }

    struct PackArgs { public float* Values, Packed; public byte* ClassRows; public int In, Out; }

    /// <summary>Block b's part of <see cref="PackByClass"/>: each listed row's two values moved as one 8-byte word.</summary>
    static void PackBlock(ref PackArgs a, int b)
    {
        int groups = a.In / 4, slots = a.In / 2, rowCount = Math.Min(OBlock, a.Out - b * OBlock);
        long at = (long)b * OBlock * groups;
        float* vb = a.Values + (long)b * OBlock * slots;
        byte* rows = a.ClassRows;
        long* d = (long*)a.Packed;
        for (int g = 0; g < groups; g++, at += rowCount)
        {
            float* column = vb + 2 * g;
            for (int j = 0; j < rowCount; j++) d[at + j] = *(long*)(column + (long)rows[at + j] * slots);
        }
    }

    /// <summary>
    /// Rows [128p, 128p + 128) ∩ [0, rows): dyᵀ panel; dxᵀ panel zeroed, then per 64-output block (its dyᵀ rows in L1)
    /// and group, per class, those two dxᵀ rows += each listed row's two weights times its dyᵀ row; then dx.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Panel(ref Args a, int p)
    {
        int t0 = p * PanelRows, tokens = Math.Min(PanelRows, a.Rows - t0);
        int inF = a.In, outF = a.Out, blocks = (outF + OBlock - 1) / OBlock, groups = inF / 4;
        float* dyt = a.Panels + (long)p * PanelRows * outF;
        float* dxt = a.Panels + (long)Panels(a.Rows) * PanelRows * outF + (long)p * PanelRows * inF;
        TokenPanels.In(a.Dy + (long)t0 * outF, outF, outF, tokens, dyt, PanelRows);   // columns past tokens zero
        new Span<float>(dxt, inF * PanelRows).Clear();
        for (int b = 0; b < blocks; b++)
        {
            int rowCount = Math.Min(OBlock, outF - b * OBlock);
            float* dyb = dyt + (long)b * OBlock * PanelRows;
            long at = (long)b * OBlock * groups;
            byte* ends = a.ClassEnd + (long)b * groups * 6;
            for (int g = 0; g < groups; g++, at += rowCount, ends += 6)
            {
                float* dg = dxt + (long)g * 4 * PanelRows;
                int start = 0;
                for (int c = 0; c < 6; c++)
                {
                    int end = ends[c];
                    if (end > start)
                        ClassRows(dg + ClassFirst[c] * PanelRows, dg + ClassSecond[c] * PanelRows, dyb,
                            a.ClassRows + at + start, a.Values + 2 * (at + start), end - start);
                    start = end;
                }
            }
        }
        TokenPanels.Out(dxt, inF, tokens, a.Dx + (long)t0 * inF, inF, null, null, a.Scale == null ? null : a.Scale + (long)t0 * inF, PanelRows);
    }

    /// <summary>
    /// first[0..128) += Σ_j v[2j] · dy[rows[j]·128 ..], second[0..128) += Σ_j v[2j+1] · dy[rows[j]·128 ..]: 16
    /// accumulators, each dyᵀ row's 8 vectors loaded once for its 16 FMAs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ClassRows(float* first, float* second, float* dy, byte* rows, float* v, int count)
    {
        var f0 = Vector512.Load(first); var f1 = Vector512.Load(first + 16); var f2 = Vector512.Load(first + 32); var f3 = Vector512.Load(first + 48);
        var f4 = Vector512.Load(first + 64); var f5 = Vector512.Load(first + 80); var f6 = Vector512.Load(first + 96); var f7 = Vector512.Load(first + 112);
        var s0 = Vector512.Load(second); var s1 = Vector512.Load(second + 16); var s2 = Vector512.Load(second + 32); var s3 = Vector512.Load(second + 48);
        var s4 = Vector512.Load(second + 64); var s5 = Vector512.Load(second + 80); var s6 = Vector512.Load(second + 96); var s7 = Vector512.Load(second + 112);
        for (int j = 0; j < count; j++, v += 2)
        {
            float* d = dy + rows[j] * PanelRows;
            var v0 = Vector512.Create(v[0]); var v1 = Vector512.Create(v[1]);
            var d0 = Vector512.Load(d); var d1 = Vector512.Load(d + 16); var d2 = Vector512.Load(d + 32); var d3 = Vector512.Load(d + 48);
            f0 = Vector512.FusedMultiplyAdd(v0, d0, f0); s0 = Vector512.FusedMultiplyAdd(v1, d0, s0);
            f1 = Vector512.FusedMultiplyAdd(v0, d1, f1); s1 = Vector512.FusedMultiplyAdd(v1, d1, s1);
            f2 = Vector512.FusedMultiplyAdd(v0, d2, f2); s2 = Vector512.FusedMultiplyAdd(v1, d2, s2);
            f3 = Vector512.FusedMultiplyAdd(v0, d3, f3); s3 = Vector512.FusedMultiplyAdd(v1, d3, s3);
            d0 = Vector512.Load(d + 64); d1 = Vector512.Load(d + 80); d2 = Vector512.Load(d + 96); d3 = Vector512.Load(d + 112);
            f4 = Vector512.FusedMultiplyAdd(v0, d0, f4); s4 = Vector512.FusedMultiplyAdd(v1, d0, s4);
            f5 = Vector512.FusedMultiplyAdd(v0, d1, f5); s5 = Vector512.FusedMultiplyAdd(v1, d1, s5);
            f6 = Vector512.FusedMultiplyAdd(v0, d2, f6); s6 = Vector512.FusedMultiplyAdd(v1, d2, s6);
            f7 = Vector512.FusedMultiplyAdd(v0, d3, f7); s7 = Vector512.FusedMultiplyAdd(v1, d3, s7);
        }
        f0.Store(first); f1.Store(first + 16); f2.Store(first + 32); f3.Store(first + 48);
        f4.Store(first + 64); f5.Store(first + 80); f6.Store(first + 96); f7.Store(first + 112);
        s0.Store(second); s1.Store(second + 16); s2.Store(second + 32); s3.Store(second + 48);
        s4.Store(second + 64); s5.Store(second + 80); s6.Store(second + 96); s7.Store(second + 112);
    }
}
