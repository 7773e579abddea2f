using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Training-size products of a Linear layer whose weight W (Out × In) is 2:4 along In (every group of 4 consecutive
/// inputs of an output row keeps 2 weights), with tokens in the vector lanes instead of outputs, so no lane ever needs
/// a permute: each stored weight is one broadcast and four multiply-adds whose second operand is a 64-token row of a
/// transposed activation panel, loaded straight from L1.
///   Forward         yᵀ[o, t] = Σ_(o,k) w[o,k] · xᵀ[k, t]      per output row: the row's stored weights of a 64-input
///                                                             block (16 KiB of xᵀ, in L1) into 8 accumulators
///   Input gradient  dxᵀ[k, t] = Σ_(o,k) w[o,k] · dyᵀ[o, t]    per input column: its stored weights within a 64-output
///                                                             block (16 KiB of dyᵀ) — W's columns as a blocked CSR
/// Activations stay row-major in the model (x: rows × In, y and dy: rows × Out). One work item is one panel of 64
/// token rows: it transposes its rows of x (or dy) into a workspace panel (In × 64 or Out × 64), runs the product,
/// and transposes the result back into y (adding residual and bias) or dx (times dxScale), 32 outputs (or 32 inputs)
/// at a time from a stack tile. The last panel's missing tokens are zeros and are never written out.
/// Per stored weight: 1 broadcast + 4 loads + 4 FMAs (the loads are the FMAs' memory operands), against the dense
/// GEMM's 2 FMAs per load: the bound is the 2 vector loads per cycle, ~80% of the FMA rate at half the work.
/// The in-group indices are decoded in the loop, a byte (two groups, four stored weights) at a time, with no index
/// loads beyond that byte; the input gradient reads a 16-bit offset per stored weight (its columns have no fixed count).
/// An instance holds the structure (fixed for the layer's life); values come per call in the layer's stored order
/// (row-major, Out × In/2, the two of a group in ascending input order).
/// </summary>
public sealed unsafe class Nm24Panels
{
    /// <summary>Token rows per panel (the vector lanes of a tile: 4 × 16).</summary>
    public const int PanelRows = 64;
    /// <summary>Inputs per block of the forward product: 64 rows of xᵀ × 64 tokens = 16 KiB.</summary>
    const int KBlock = 64;
    /// <summary>Outputs whose yᵀ rows one o-block keeps on the stack (32 × 64 floats = 8 KiB) across the blocks of In.</summary>
    const int ForwardRows = 32;
    /// <summary>Outputs per block of the input gradient: 64 rows of dyᵀ × 64 tokens = 16 KiB.</summary>
    const int OBlock = 64;
    /// <summary>Inputs whose dxᵀ rows stay on the stack (32 × 64 floats) while every o-block adds into them.</summary>
    const int GradientColumns = 32;

    readonly byte[] _pairs;        // per row, byte j = groups 2j, 2j+1: idx0 | idx1 << 2 | idx0' << 4 | idx1' << 6
    readonly int _pairsPerRow;     // ⌈groups / 2⌉
    readonly int[] _columnStart;   // W's columns per o-block: stored weights of column k in o-block b are
                                   // [_columnStart[b·In + k], _columnStart[b·In + k + 1])
    readonly ushort[] _columnOffset; // each one's dyᵀ row within its o-block, as a float offset ((o mod 64) · 64)
    readonly int[] _columnSlot;    // each one's position in the values (row-major stored order)

    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount { get; }

    /// <summary>Whether the kernels run on this machine (AVX-512).</summary>
    public static bool Supported => Avx512F.IsSupported;

    /// <summary>
    /// The structure of a 2:4 W (Out × In, In a multiple of 4) from the in-group index (0..3) of every stored value,
    /// row-major (Out × In/2), the two of a group ascending.
    /// </summary>
    public Nm24Panels(int outFeatures, int inFeatures, Func<long, int> slotIndex)
    {
        ArgumentNullException.ThrowIfNull(slotIndex);
        if (outFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), outFeatures, "out features must be at least 1");
        if (inFeatures < 4 || inFeatures % 4 != 0)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "2:4 needs in features a positive multiple of 4");
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        int groups = inFeatures / 4, slots = groups * 2;
        StoredCount = checked(outFeatures * slots);
        _pairsPerRow = (groups + 1) / 2;
        _pairs = new byte[(long)outFeatures * _pairsPerRow];
        int blocks = (outFeatures + OBlock - 1) / OBlock;
        _columnStart = new int[checked(blocks * inFeatures + 1)];
        _columnOffset = new ushort[StoredCount];
        _columnSlot = new int[StoredCount];
        for (int o = 0; o < outFeatures; o++)
            for (int g = 0; g < groups; g++)
            {
                long q = (long)o * slots + 2 * g;
                int i0 = slotIndex(q), i1 = slotIndex(q + 1);
                if ((uint)i0 > 3 || (uint)i1 > 3 || i0 >= i1)
                    throw new ArgumentException($"2:4 in-group indices of row {o}, group {g} are {i0}, {i1}: expected two ascending indices in 0..3", nameof(slotIndex));
                _pairs[(long)o * _pairsPerRow + g / 2] |= (byte)((i0 | i1 << 2) << (4 * (g & 1)));
                _columnStart[o / OBlock * inFeatures + 4 * g + i0 + 1]++;
                _columnStart[o / OBlock * inFeatures + 4 * g + i1 + 1]++;
            }
        for (int i = 1; i < _columnStart.Length; i++) _columnStart[i] += _columnStart[i - 1];
        // Fill in ascending o: within a column segment the outputs come in order.
        var next = (int[])_columnStart.Clone();
        for (int o = 0; o < outFeatures; o++)
            for (int g = 0; g < groups; g++)
                for (int s = 0; s < 2; s++)
                {
                    int q = o * slots + 2 * g + s;
                    int k = 4 * g + slotIndex(q);
                    int at = next[o / OBlock * inFeatures + k]++;
                    _columnOffset[at] = (ushort)(o % OBlock * PanelRows);
                    _columnSlot[at] = q;
                }
    }

    /// <summary>Bytes of the structure's arrays.</summary>
    public long IndexBytes => _pairs.LongLength + 4L * _columnStart.Length + 2L * _columnOffset.Length + 4L * _columnSlot.Length;

    static int Panels(int rows) => (rows + PanelRows - 1) / PanelRows;

    /// <summary>Workspace floats of <see cref="Forward"/>: xᵀ in 64-token panels.</summary>
    public long ForwardWorkspace(int rows) => (long)Panels(rows) * PanelRows * InFeatures;

    /// <summary>Workspace floats of <see cref="InputGradient"/>: dyᵀ in 64-token panels and the values in column order.</summary>
    public long InputGradientWorkspace(int rows) => (long)Panels(rows) * PanelRows * OutFeatures + StoredCount;

    struct Args
    {
        public float* X, Y, Values, Bias, Residual, Scale, Panels;
        public byte* Pairs;
        public int* ColumnStart;
        public ushort* ColumnOffset;
        public int Rows, In, Out, PairsPerRow;
    }

    /// <summary>
    /// y (rows, Out) = x (rows, In) · Wᵀ + residual (rows, Out, or empty; may be y itself) + bias (Out, or empty).
    /// workspace: <see cref="ForwardWorkspace"/> floats.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, Span<float> y, Span<float> workspace)
    {
        CheckSupported();
        Check.Length(x, (long)rows * InFeatures, nameof(x));
        Check.Length(y, (long)rows * OutFeatures, nameof(y));
        Check.Length(values, StoredCount, nameof(values));
        Check.Length(workspace, ForwardWorkspace(rows), nameof(workspace));
        if (!bias.IsEmpty) Check.Length(bias, OutFeatures, nameof(bias));
        if (!residual.IsEmpty) Check.Length(residual, (long)rows * OutFeatures, nameof(residual));
        if (rows == 0) return;
        fixed (float* px = x, py = y, pv = values, pb = bias, pr = residual, pw = workspace)
        fixed (byte* pp = _pairs)
        {
            var a = new Args
            {
                X = px, Y = py, Values = pv, Bias = pb, Residual = pr, Panels = pw, Pairs = pp,
                Rows = rows, In = InFeatures, Out = OutFeatures, PairsPerRow = _pairsPerRow,
            };
            KernelThreads.For(Panels(rows), ref a, &ForwardPanel);
        }
    }

    /// <summary>Rows [64p, 64p + 64) ∩ [0, rows): xᵀ panel, then per 32 outputs their yᵀ tile over all of In, then y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void ForwardPanel(ref Args a, int p)
    {
        int t0 = p * PanelRows, tokens = Math.Min(PanelRows, a.Rows - t0);
        int inF = a.In, outF = a.Out, slots = inF / 2;
        float* xt = a.Panels + (long)p * PanelRows * inF;
        TransposeIn(a.X + (long)t0 * inF, inF, tokens, xt);
        float* yt = stackalloc float[ForwardRows * PanelRows];
        for (int o0 = 0; o0 < outF; o0 += ForwardRows)
        {
            int count = Math.Min(ForwardRows, outF - o0);
            for (int k0 = 0; k0 < inF; k0 += KBlock)
            {
                int groups = Math.Min(KBlock, inF - k0) / 4;
                float* xk = xt + (long)k0 * PanelRows;
                for (int r = 0; r < count; r++)
                {
                    long o = o0 + r;
                    ForwardRow(a.Values + o * slots + k0 / 2, a.Pairs + o * a.PairsPerRow + k0 / 8, groups, xk,
                        yt + r * PanelRows, add: k0 > 0);
                }
            }
            // y[t, o0 + r] = yᵀ[r, t] + bias + residual, the tile's tokens only.
            long at = (long)t0 * outF + o0;
            Transpose.Serial(yt, PanelRows, tokens, count, a.Y + at, outF,
                bias: a.Bias == null ? null : a.Bias + o0, add: a.Residual == null ? null : a.Residual + at);
        }
    }

    /// <summary>
    /// y[0..64) (= or +=) Σ over <paramref name="groups"/> groups of the row's two stored weights times their xᵀ rows
    /// (x: the block's first xᵀ row, rows 64 floats apart). Two accumulator sets (first and second weight of each
    /// group): 8 independent FMA chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ForwardRow(float* v, byte* pairs, int groups, float* x, float* y, bool add)
    {
        Vector512<float> a0, a1, a2, a3;
        if (add) { a0 = Vector512.Load(y); a1 = Vector512.Load(y + 16); a2 = Vector512.Load(y + 32); a3 = Vector512.Load(y + 48); }
        else a0 = a1 = a2 = a3 = Vector512<float>.Zero;
        Vector512<float> b0 = Vector512<float>.Zero, b1 = Vector512<float>.Zero, b2 = Vector512<float>.Zero, b3 = Vector512<float>.Zero;
        int bytes = groups / 2;
        for (int q = 0; q < bytes; q++, v += 4, x += 8 * PanelRows)
        {
            uint b = pairs[q];
            float* r0 = x + (b & 3) * PanelRows, r1 = x + ((b >> 2) & 3) * PanelRows;
            float* r2 = x + (4 + ((b >> 4) & 3)) * PanelRows, r3 = x + (4 + (b >> 6)) * PanelRows;
            var v0 = Vector512.Create(v[0]); var v1 = Vector512.Create(v[1]);
            var v2 = Vector512.Create(v[2]); var v3 = Vector512.Create(v[3]);
            a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0), a0); a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1), b0); b1 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 32), b2); b3 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 48), b3);
            a0 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2), a0); a1 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3), b0); b1 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + 32), b2); b3 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + 48), b3);
        }
        if ((groups & 1) != 0)
        {
            // An odd last group: the low nibble of the next byte.
            uint b = pairs[bytes];
            float* r0 = x + (b & 3) * PanelRows, r1 = x + ((b >> 2) & 3) * PanelRows;
            var v0 = Vector512.Create(v[0]); var v1 = Vector512.Create(v[1]);
            a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0), a0); a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1), b0); b1 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 32), b2); b3 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 48), b3);
        }
        (a0 + b0).Store(y); (a1 + b1).Store(y + 16); (a2 + b2).Store(y + 32); (a3 + b3).Store(y + 48);
    }

    /// <summary>
    /// dx (rows, In) = (dy (rows, Out) · W) ⊙ dxScale (rows, In, or empty). dx must not overlap dy.
    /// workspace: <see cref="InputGradientWorkspace"/> floats.
    /// </summary>
    public void InputGradient(ReadOnlySpan<float> dy, int rows, ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale,
        Span<float> dx, Span<float> workspace)
    {
        CheckSupported();
        Check.Length(dy, (long)rows * OutFeatures, nameof(dy));
        Check.Length(dx, (long)rows * InFeatures, nameof(dx));
        Check.Length(values, StoredCount, nameof(values));
        Check.Length(workspace, InputGradientWorkspace(rows), nameof(workspace));
        if (!dxScale.IsEmpty) Check.Length(dxScale, (long)rows * InFeatures, nameof(dxScale));
        if (rows == 0) return;
        // W's values in column order (the structure's, values change every step).
        var columnValues = workspace.Slice(0, StoredCount);
        for (int i = 0; i < columnValues.Length; i++) columnValues[i] = values[_columnSlot[i]];
        fixed (float* pdy = dy, pdx = dx, pw = workspace, ps = dxScale)
        fixed (int* pcs = _columnStart)
        fixed (ushort* pco = _columnOffset)
        {
            var a = new Args
            {
                X = pdy, Y = pdx, Values = pw, Scale = ps, Panels = pw + StoredCount, ColumnStart = pcs, ColumnOffset = pco,
                Rows = rows, In = InFeatures, Out = OutFeatures,
            };
            KernelThreads.For(Panels(rows), ref a, &InputGradientPanel);
        }
    }

    /// <summary>Rows [64p, 64p + 64): dyᵀ panel, then per 32 inputs their dxᵀ tile over every o-block, then dx.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void InputGradientPanel(ref Args a, int p)
    {
        int t0 = p * PanelRows, tokens = Math.Min(PanelRows, a.Rows - t0);
        int inF = a.In, outF = a.Out, blocks = (outF + OBlock - 1) / OBlock;
        float* dyt = a.Panels + (long)p * PanelRows * outF;
        TransposeIn(a.X + (long)t0 * outF, outF, tokens, dyt);
        float* dxt = stackalloc float[GradientColumns * PanelRows];
        for (int k0 = 0; k0 < inF; k0 += GradientColumns)
        {
            int count = Math.Min(GradientColumns, inF - k0);
            new Span<float>(dxt, count * PanelRows).Clear();
            for (int b = 0; b < blocks; b++)
            {
                float* dyb = dyt + (long)b * OBlock * PanelRows;
                int* start = a.ColumnStart + (long)b * inF + k0;
                for (int c = 0; c < count; c++)
                    Column(a.Values, a.ColumnOffset, start[c], start[c + 1], dyb, dxt + c * PanelRows);
            }
            long at = (long)t0 * inF + k0;
            Transpose.Serial(dxt, PanelRows, tokens, count, a.Y + at, inF, scale: a.Scale == null ? null : a.Scale + at);
        }
    }

    /// <summary>dxᵀ[k, 0..64) += Σ_j values[j] · dyᵀ[offset[j] .. +64) over j in [j0, j1), two accumulator sets.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Column(float* values, ushort* offset, int j0, int j1, float* dy, float* dx)
    {
        var a0 = Vector512.Load(dx); var a1 = Vector512.Load(dx + 16); var a2 = Vector512.Load(dx + 32); var a3 = Vector512.Load(dx + 48);
        Vector512<float> b0 = Vector512<float>.Zero, b1 = Vector512<float>.Zero, b2 = Vector512<float>.Zero, b3 = Vector512<float>.Zero;
        int j = j0;
        for (; j + 2 <= j1; j += 2)
        {
            float* r0 = dy + offset[j], r1 = dy + offset[j + 1];
            var v0 = Vector512.Create(values[j]); var v1 = Vector512.Create(values[j + 1]);
            a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0), a0); a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1), b0); b1 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 32), b2); b3 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 48), b3);
        }
        if (j < j1)
        {
            float* r0 = dy + offset[j];
            var v0 = Vector512.Create(values[j]);
            a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0), a0); a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 48), a3);
        }
        (a0 + b0).Store(dx); (a1 + b1).Store(dx + 16); (a2 + b2).Store(dx + 32); (a3 + b3).Store(dx + 48);
    }

    /// <summary>panel (width × 64) = the transpose of src's <paramref name="tokens"/> rows (width floats each); the
    /// columns of missing tokens zero (their lanes then stay finite and are never written out).</summary>
    static void TransposeIn(float* src, int width, int tokens, float* panel)
    {
        if (tokens < PanelRows) new Span<float>(panel, width * PanelRows).Clear();
        Transpose.Serial(src, width, width, tokens, panel, PanelRows);
    }

    static void CheckSupported()
    {
        if (!Supported) throw new PlatformNotSupportedException("the 2:4 panel kernels need AVX-512");
    }
}
