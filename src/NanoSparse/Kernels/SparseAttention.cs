using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Multi-head causal attention with a <see cref="SparsePattern"/> (everything between c_attn and c_proj), threaded over
/// (sequence, head); each head builds its key set (<see cref="KeySet"/>) and runs <see cref="SparseAttentionHead"/>.
///   q, k, v = split(qkv (B, T, 3C)) into NH heads of hs = C / NH
///   y (B, T, C) = softmax over the pattern's keys of (q · kᵀ / √hs) · v     (NSA: three branches mixed by gates)
/// kept (B·T, pattern.KeptWidth) carries what backward needs, per position: the log-partitions (NH; NSA 3·NH, branch
/// by branch), the selected block indices (NH · TopK ints stored as float bits, −1 where fewer; top-k and NSA) and,
/// for NSA, the three branch outputs (3·C). Nothing of size T×T exists.
/// Decode runs the same code with the new positions as queries and the KV cache's rows as keys, so it equals the
/// training pass up to rounding (the selections are computed by the same functions on the same scores).
/// </summary>
public static unsafe class SparseAttention
{
    struct Args
    {
        public SparsePattern P;
        public float* Q, K, V, Y, Kept, Gates, DY, DQ, DK, DV, DGates;
        public int Ldq, Ldkv, C, NH, Tq, Tk, QPos0, KeptWidth;
        public int LseHeadMajor;   // 1: kept is lse (B, NH, T) as Attention's (dense only)
        public long QStride, KvStride, YStride;   // per sequence
    }

    /// <summary>
    /// y (B·T, C) and kept (B·T, KeptWidth) from qkv (B·T, 3C); gates (B·T, 3·NH) sigmoid values for NSA, else empty.
    /// </summary>
    public static void Forward(in SparsePattern pattern, Span<float> y, Span<float> kept, ReadOnlySpan<float> qkv,
        ReadOnlySpan<float> gates, int B, int T, int C, int NH)
    {
        int W = pattern.KeptWidth(C, NH);
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(y, (long)B * T * C, nameof(y));
        Check.Length(kept, (long)B * T * W, nameof(kept));
        Check.Length(gates, (long)B * T * pattern.Gates(NH), nameof(gates));
        fixed (float* py = y, pk = kept, px = qkv, pg = gates)
        {
            var a = Training(pattern, px, py, pk, pg, T, C, NH);
            KernelThreads.For(B * NH, ref a, &ForwardItem);
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: dqkv (B·T, 3C) WRITTEN from dy (B·T, C), qkv, y and kept as the forward call
    /// left them; dgates (B·T, 3·NH) WRITTEN with d loss / d gate value (NSA; else empty).
    /// </summary>
    public static void Backward(in SparsePattern pattern, Span<float> dqkv, Span<float> dgates, ReadOnlySpan<float> dy,
        ReadOnlySpan<float> qkv, ReadOnlySpan<float> y, ReadOnlySpan<float> kept, ReadOnlySpan<float> gates, int B, int T, int C, int NH)
    {
        int W = pattern.KeptWidth(C, NH);
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(dqkv, (long)B * T * 3 * C, nameof(dqkv));
        Check.Length(dy, (long)B * T * C, nameof(dy));
        Check.Length(y, (long)B * T * C, nameof(y));
        Check.Length(kept, (long)B * T * W, nameof(kept));
        Check.Length(gates, (long)B * T * pattern.Gates(NH), nameof(gates));
        Check.Length(dgates, (long)B * T * pattern.Gates(NH), nameof(dgates));
        fixed (float* pd = dqkv, pdg = dgates, pdy = dy, px = qkv, py = y, pk = kept, pg = gates)
        {
            var a = Training(pattern, px, py, pk, pg, T, C, NH);
            a.DY = pdy;
            a.DQ = pd;
            a.DK = pd + C;
            a.DV = pd + 2 * C;
            a.DGates = pdg;
            KernelThreads.For(B * NH, ref a, &BackwardItem);
        }
    }

    /// <summary>
    /// Dense causal attention as FlashAttention (no T×T buffer), with <see cref="Attention"/>'s layouts: out (B, T, C),
    /// lse (B, NH, T): the dense case of the pattern kernels (<see cref="SparseAttentionHead"/>). <see cref="Attention"/> runs
    /// <see cref="FlashAttention"/> instead, whose block products are 64 deep in every direction (here dK and dV are
    /// summed 8 queries at a time through memory); kept as the sparse patterns' own dense baseline.
    /// </summary>
    public static void DenseForward(Span<float> output, Span<float> lse, ReadOnlySpan<float> qkv, int B, int T, int C, int NH)
    {
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(output, (long)B * T * C, nameof(output));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* py = output, pk = lse, px = qkv)
        {
            var a = Training(new SparsePattern(AttentionKind.Dense), px, py, pk, null, T, C, NH);
            a.LseHeadMajor = 1;
            KernelThreads.For(B * NH, ref a, &ForwardItem);
        }
    }

    /// <summary>Backward of <see cref="DenseForward"/>: dqkv (B, T, 3C) written; y and lse as the forward left them.</summary>
    public static void DenseBackward(Span<float> dqkv, ReadOnlySpan<float> dout, ReadOnlySpan<float> qkv, ReadOnlySpan<float> y,
        ReadOnlySpan<float> lse, int B, int T, int C, int NH)
    {
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(dqkv, (long)B * T * 3 * C, nameof(dqkv));
        Check.Length(dout, (long)B * T * C, nameof(dout));
        Check.Length(y, (long)B * T * C, nameof(y));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* pd = dqkv, pdy = dout, px = qkv, py = y, pk = lse)
        {
            var a = Training(new SparsePattern(AttentionKind.Dense), px, py, pk, null, T, C, NH);
            a.LseHeadMajor = 1;
            a.DY = pdy;
            a.DQ = pd;
            a.DK = pd + C;
            a.DV = pd + 2 * C;
            KernelThreads.For(B * NH, ref a, &BackwardItem);
        }
    }

    static Args Training(in SparsePattern pattern, float* qkv, float* y, float* kept, float* gates, int T, int C, int NH) => new()
    {
        P = pattern, Q = qkv, K = qkv + C, V = qkv + 2 * C, Y = y, Kept = kept, Gates = gates,
        Ldq = 3 * C, Ldkv = 3 * C, C = C, NH = NH, Tq = T, Tk = T, QPos0 = 0, KeptWidth = pattern.KeptWidth(C, NH),
        QStride = (long)T * 3 * C, KvStride = (long)T * 3 * C, YStride = (long)T * C,
    };

    /// <summary>Scratch floats <see cref="Decode"/> needs for n new positions.</summary>
    public static long DecodeScratchFloats(in SparsePattern pattern, int n, int C, int NH) => (long)n * pattern.KeptWidth(C, NH);

    /// <summary>
    /// Cached decoding of one sequence: y (n, C) for the n new positions pos0.. whose queries are the q part of qkv
    /// (n, 3C), attending to keys and values (pos0 + n, C) of the cache; gates (n, 3·NH) for NSA; scratch as
    /// <see cref="DecodeScratchFloats"/>.
    /// </summary>
    public static void Decode(in SparsePattern pattern, Span<float> y, ReadOnlySpan<float> qkv, ReadOnlySpan<float> keys,
        ReadOnlySpan<float> values, ReadOnlySpan<float> gates, int pos0, int n, int C, int NH, Span<float> scratch)
    {
        int Tk = pos0 + n;
        Check.Length(qkv, (long)n * 3 * C, nameof(qkv));
        Check.Length(keys, (long)Tk * C, nameof(keys));
        Check.Length(values, (long)Tk * C, nameof(values));
        Check.Length(y, (long)n * C, nameof(y));
        Check.Length(gates, (long)n * pattern.Gates(NH), nameof(gates));
        Check.Length(scratch, DecodeScratchFloats(pattern, n, C, NH), nameof(scratch));
        fixed (float* py = y, px = qkv, pk = keys, pv = values, pg = gates, ps = scratch)
        {
            var a = new Args
            {
                P = pattern, Q = px, K = pk, V = pv, Y = py, Kept = ps, Gates = pg,
                Ldq = 3 * C, Ldkv = C, C = C, NH = NH, Tq = n, Tk = Tk, QPos0 = pos0, KeptWidth = pattern.KeptWidth(C, NH),
            };
            KernelThreads.For(NH, ref a, &ForwardItem);
        }
    }

    // ---- per (sequence, head) ----

    /// <summary>Per-thread buffers of the pattern level: key sets, block summaries, NSA's compressed keys and branch gradients.</summary>
    sealed class Buffers
    {
        public int[] Lo = [], Hi = [];
        public ulong[] Bits = [];
        public float[] Summary = [], SummaryT = [], Scores = [], Compressed = [], DCompressed = [], Branch = [];
    }

    [ThreadStatic] static Buffers? _buffers;

    /// <summary>One head's view of the args: pointers moved to sequence b, head h.</summary>
    struct Head
    {
        public float* Q, K, V, Y, Kept, Gates, DY, DQ, DK, DV, DGates, Lse;
        public int H, Hs, LdLse;
    }

    static Head Locate(ref Args a, int bh)
    {
        int b = bh / a.NH, h = bh % a.NH, hs = a.C / a.NH;
        var x = new Head { H = h, Hs = hs };
        x.Q = a.Q + b * a.QStride + h * hs;
        x.K = a.K + b * a.KvStride + h * hs;
        x.V = a.V + b * a.KvStride + h * hs;
        x.Y = a.Y + b * a.YStride + h * hs;
        long rows = (long)b * a.Tq;
        x.Kept = a.Kept + rows * a.KeptWidth;
        x.Gates = a.Gates == null ? null : a.Gates + rows * 3 * a.NH;
        x.Lse = a.LseHeadMajor != 0 ? a.Kept + (long)bh * a.Tq : x.Kept + h;
        x.LdLse = a.LseHeadMajor != 0 ? 1 : a.KeptWidth;
        if (a.DY != null)
        {
            x.DY = a.DY + b * a.YStride + h * hs;
            x.DQ = a.DQ + b * a.QStride + h * hs;
            x.DK = a.DK + b * a.KvStride + h * hs;
            x.DV = a.DV + b * a.KvStride + h * hs;
            x.DGates = a.DGates == null ? null : a.DGates + rows * 3 * a.NH;
        }
        return x;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ForwardItem(ref Args a, int bh)
    {
        var x = Locate(ref a, bh);
        var buf = _buffers ??= new Buffers();
        int Tq = a.Tq, hs = x.Hs, NH = a.NH;
        float scale = 1f / MathF.Sqrt(hs);
        var hp = new HeadProblem { Q = x.Q, K = x.K, V = x.V, Out = x.Y, Lse = x.Lse, Ldq = a.Ldq, Ldkv = a.Ldkv, Ldo = a.C,
            LdLse = x.LdLse, Tq = Tq, Tk = a.Tk, Hs = hs, Scale = scale };
        var p = a.P;
        if (p.Kind != AttentionKind.Nsa)
        {
            var ks = KeySets(ref a, buf, x, p.Kind, p.Kind == AttentionKind.TopK ? Select(ref a, buf, x, scale) : null);
            SparseAttentionHead.Forward(hp, ks);
            return;
        }
        // NSA: compressed, selected and window branches into the kept branch outputs, then the gated mix into y.
        float* oc = x.Kept + 3 * NH + NH * p.TopK + x.H * hs, os = oc + a.C, ow = os + a.C;
        int Tc = p.CompressedBlocks(a.Tk);
        float* kc = Compress(ref a, buf, x, Tc);
        hp.Out = oc;
        hp.Ldo = a.KeptWidth;   // the branch outputs live in kept
        if (Tc > 0)
        {
            var cmp = hp;
            cmp.K = kc; cmp.V = kc + (long)Tc * hs; cmp.Ldkv = hs; cmp.Tk = Tc;
            SparseAttentionHead.Forward(cmp, CompressedKeys(ref a, buf));
        }
        else
            for (int i = 0; i < Tq; i++) { new Span<float>(oc + (long)i * a.KeptWidth, hs).Clear(); x.Kept[(long)i * a.KeptWidth + x.H] = float.NegativeInfinity; }
        int* selected = SelectNsa(ref a, buf, x, kc, Tc, scale);
        hp.Out = os;
        hp.Lse = x.Kept + NH + x.H;
        SparseAttentionHead.Forward(hp, KeySets(ref a, buf, x, AttentionKind.TopK, selected));
        hp.Out = ow;
        hp.Lse = x.Kept + 2 * NH + x.H;
        SparseAttentionHead.Forward(hp, KeySets(ref a, buf, x, AttentionKind.Window, null));
        for (int i = 0; i < Tq; i++)
        {
            float* g = x.Gates + (long)i * 3 * NH + x.H, yi = x.Y + (long)i * a.C;
            long k = (long)i * a.KeptWidth;
            Vector512<float> g0 = Vector512.Create(g[0]), g1 = Vector512.Create(g[NH]), g2 = Vector512.Create(g[2 * NH]);
            for (int d = 0; d < hs; d += 16)
                (g0 * Vector512.Load(oc + k + d) + g1 * Vector512.Load(os + k + d) + g2 * Vector512.Load(ow + k + d)).Store(yi + d);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void BackwardItem(ref Args a, int bh)
    {
        var x = Locate(ref a, bh);
        var buf = _buffers ??= new Buffers();
        int T = a.Tq, hs = x.Hs, NH = a.NH;
        float scale = 1f / MathF.Sqrt(hs);
        for (int t = 0; t < T; t++)
        {
            new Span<float>(x.DQ + (long)t * a.Ldq, hs).Clear();
            new Span<float>(x.DK + (long)t * a.Ldkv, hs).Clear();
            new Span<float>(x.DV + (long)t * a.Ldkv, hs).Clear();
        }
        var hp = new HeadProblem { Q = x.Q, K = x.K, V = x.V, Out = x.Y, Lse = x.Lse, DOut = x.DY, DQ = x.DQ, DK = x.DK, DV = x.DV,
            Ldq = a.Ldq, Ldkv = a.Ldkv, Ldo = a.C, LdLse = x.LdLse, Tq = T, Tk = a.Tk, Hs = hs, Scale = scale };
        var p = a.P;
        if (p.Kind != AttentionKind.Nsa)
        {
            int* selected = p.Kind == AttentionKind.TopK ? (int*)(x.Kept + NH) : null;
            SparseAttentionHead.Backward(hp, KeySets(ref a, buf, x, p.Kind, selected));
            return;
        }
        // in the forward pass this was: y = g_c · o_c + g_s · o_s + g_w · o_w, so d o_b = g_b · dy and d g_b = dy · o_b
        int W = a.KeptWidth;
        float* oc = x.Kept + 3 * NH + NH * p.TopK + x.H * hs, os = oc + a.C, ow = os + a.C;
        float* dob = SparseAttentionHead.Pin(ref buf.Branch, 3L * T * hs);
        for (int t = 0; t < T; t++)
        {
            float* dy = x.DY + (long)t * a.C, g = x.Gates + (long)t * 3 * NH + x.H, dg = x.DGates + (long)t * 3 * NH + x.H;
            long k = (long)t * W;
            for (int branch = 0; branch < 3; branch++)
            {
                float* o = oc + branch * a.C + k, d = dob + ((long)branch * T + t) * hs;
                var gb = Vector512.Create(g[branch * NH]);
                var dot = Vector512<float>.Zero;
                for (int e = 0; e < hs; e += 16)
                {
                    var dye = Vector512.Load(dy + e);
                    (gb * dye).Store(d + e);
                    dot = Vector512.FusedMultiplyAdd(dye, Vector512.Load(o + e), dot);
                }
                dg[branch * NH] = Vector512.Sum(dot);
            }
        }
        hp.Ldo = hs;   // branch gradients are (T, hs); the branch outputs live in kept (stride W)
        int Tc = p.CompressedBlocks(a.Tk);
        if (Tc > 0)
        {
            float* kc = Compress(ref a, buf, x, Tc);
            float* dkc = SparseAttentionHead.Pin(ref buf.DCompressed, 2L * Tc * hs);
            new Span<float>(dkc, 2 * Tc * hs).Clear();
            var cmp = hp;
            cmp.K = kc; cmp.V = kc + (long)Tc * hs; cmp.DK = dkc; cmp.DV = dkc + (long)Tc * hs; cmp.Ldkv = hs; cmp.Tk = Tc;
            cmp.Out = oc; cmp.DOut = dob;
            BackwardWithStrides(cmp, CompressedKeys(ref a, buf), W);
            // in the forward pass this was: K̃_i = mean(K[i·Stride, i·Stride + Block)), and Ṽ likewise
            var inv = Vector512.Create(1f / p.Block);
            for (int i = 0; i < Tc; i++)
                for (int j = i * p.Stride; j < i * p.Stride + p.Block; j++)
                {
                    float* dk = x.DK + (long)j * a.Ldkv, dv = x.DV + (long)j * a.Ldkv, gk = dkc + (long)i * hs, gv = dkc + (long)(Tc + i) * hs;
                    for (int e = 0; e < hs; e += 16)
                    {
                        Vector512.FusedMultiplyAdd(Vector512.Load(gk + e), inv, Vector512.Load(dk + e)).Store(dk + e);
                        Vector512.FusedMultiplyAdd(Vector512.Load(gv + e), inv, Vector512.Load(dv + e)).Store(dv + e);
                    }
                }
        }
        var slc = hp;
        slc.Out = os; slc.DOut = dob + (long)T * hs; slc.Lse = x.Kept + NH + x.H;
        BackwardWithStrides(slc, KeySets(ref a, buf, x, AttentionKind.TopK, (int*)(x.Kept + 3 * NH)), W);
        var win = hp;
        win.Out = ow; win.DOut = dob + 2L * T * hs; win.Lse = x.Kept + 2 * NH + x.H;
        BackwardWithStrides(win, KeySets(ref a, buf, x, AttentionKind.Window, null), W);
    }

    /// <summary>NSA's branch outputs live in kept (stride W) and their gradients in a (T, hs) buffer: Out gets its own stride.</summary>
    static void BackwardWithStrides(HeadProblem hp, in KeySet ks, int keptWidth)
    {
        hp.LdOut = keptWidth;
        SparseAttentionHead.Backward(hp, ks);
    }

    /// <summary>Lo/Hi (and Bits) of every query row for a pattern kind; selected: TopK per row (or null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static KeySet KeySets(ref Args a, Buffers buf, in Head x, AttentionKind kind, int* selected)
    {
        var p = a.P;
        int Tq = a.Tq;
        int* lo = SparseAttentionHead.Pin(ref buf.Lo, Tq), hi = SparseAttentionHead.Pin(ref buf.Hi, Tq);
        var ks = new KeySet { Lo = lo, Hi = hi };
        for (int i = 0; i < Tq; i++)
        {
            int t = a.QPos0 + i;
            hi[i] = t + 1;
            lo[i] = kind == AttentionKind.Window ? Math.Max(0, t - p.Window + 1) : 0;
        }
        if (kind is AttentionKind.Dense or AttentionKind.Window) return ks;
        int blocks = (a.Tk + p.Block - 1) / p.Block, words = (blocks + 63) / 64;
        ulong* bits = SparseAttentionHead.Pin(ref buf.Bits, (long)Tq * words);
        new Span<ulong>(bits, Tq * words).Clear();
        ks.Bits = bits;
        ks.Words = words;
        ks.BlockSize = p.Block;
        for (int i = 0; i < Tq; i++)
        {
            int qb = (a.QPos0 + i) / p.Block;
            ulong* row = bits + (long)i * words;
            Set(row, qb);
            if (kind == AttentionKind.Block)
            {
                for (int kb = Math.Max(0, qb - p.Local + 1); kb < qb; kb++) Set(row, kb);
                for (int kb = 0; kb < Math.Min(p.Global, qb); kb++) Set(row, kb);
                if (p.Stride > 0) for (int kb = p.Stride - 1; kb < qb; kb += p.Stride) Set(row, kb);
            }
            else
            {
                int* sel = (int*)((float*)selected + (long)i * a.KeptWidth) + x.H * p.TopK;
                for (int s = 0; s < p.TopK && sel[s] >= 0; s++) Set(row, sel[s]);
            }
        }
        return ks;
    }

    static readonly Vector512<int> Iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Set(ulong* row, int block) => row[block >> 6] |= 1UL << (block & 63);

    /// <summary>
    /// Top-k: for each query row, the TopK complete blocks before its own with the largest q · mean(K_block), written as
    /// ints into kept (−1 past the available ones); returns the first row's list (stride KeptWidth).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int* Select(ref Args a, Buffers buf, in Head x, float scale)
    {
        var p = a.P;
        int hs = x.Hs, nb = a.Tk / p.Block, nbp = Math.Max(16, (nb + 15) & ~15);
        float* meanT = SparseAttentionHead.Pin(ref buf.SummaryT, (long)hs * nbp);
        float* means = SparseAttentionHead.Pin(ref buf.Summary, (long)Math.Max(1, nb) * hs);
        // mean of each complete block of keys (nb, hs), then transposed: meanT[d, kb] = Σ_j K[kb·Block + j, d] / Block
        for (int kb = 0; kb < nb; kb++) BlockMean(x.K + (long)kb * p.Block * a.Ldkv, a.Ldkv, p.Block, hs, means + (long)kb * hs);
        GatheredTiles.TransposeInto(means, nb, hs, hs, meanT, nbp, nbp);
        int* first = (int*)(x.Kept + a.NH) + x.H * p.TopK;
        ScoreAndSelect(ref a, buf, x, meanT, nbp, nb, first, importance: false);
        return (int*)(x.Kept + a.NH);
    }

    /// <summary>
    /// Rows of approximate scores s (Tq, nbp) = Q · summaryT (in tiles of 4 rows), then per row the TopK largest among
    /// the candidate blocks kb &lt; own block: by s itself (top-k), or by NSA's importance (Σ exp(s_i − max) over the
    /// compressed blocks i that overlap block kb, with summaryT the compressed keys and nbp their padded count).
    /// Ties go to the lower block. sel: row 0's list, rows KeptWidth floats apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ScoreAndSelect(ref Args a, Buffers buf, in Head x, float* summaryT, int ldSummary, int count, int* sel, bool importance)
    {
        var p = a.P;
        int hs = x.Hs, K = p.TopK;
        float* s = SparseAttentionHead.Pin(ref buf.Scores, 4L * ldSummary + 16 + 2 * (a.Tk / p.Block + 1));
        float* discard = s + 4L * ldSummary;   // 16 floats, unused rows
        float* ranks = s + 4L * ldSummary + 16, rank;   // per candidate block: its score
        for (int i0 = 0; i0 < a.Tq; i0 += 4)
        {
            int n = Math.Min(4, a.Tq - i0);
            float* q0 = x.Q + (long)i0 * a.Ldq;
            int last = a.QPos0 + i0 + n - 1;
            int visible = importance ? Math.Min(count, p.CompressedBlocks(last + 1)) : Math.Min(count, last / p.Block);
            int cols = (visible + 15) & ~15;
            if (cols > 0)
                AttentionTiles.Rows4(hs, q0, q0 + Math.Min(1, n - 1) * (long)a.Ldq, q0 + Math.Min(2, n - 1) * (long)a.Ldq,
                    q0 + Math.Min(3, n - 1) * (long)a.Ldq, 1, summaryT, ldSummary, cols, s, n > 1 ? s + ldSummary : discard,
                    n > 2 ? s + 2L * ldSummary : discard, n > 3 ? s + 3L * ldSummary : discard, 1f);
            for (int r = 0; r < n; r++)
            {
                int t = a.QPos0 + i0 + r, qb = t / p.Block;
                float* row = s + (long)r * ldSummary;
                int* out_ = (int*)((float*)sel + (long)(i0 + r) * a.KeptWidth);
                for (int k = 0; k < K; k++) out_[k] = -1;
                if (qb == 0) continue;
                if (importance)
                {
                    int nc = Math.Min(count, p.CompressedBlocks(t + 1));
                    // e_i = exp((s_i − max) / √hs) over the visible compressed blocks, 0 past them
                    float max = float.NegativeInfinity;
                    for (int i = 0; i < nc; i++) max = MathF.Max(max, row[i]);
                    var vmax = Vector512.Create(max);
                    var vscale = Vector512.Create(1f / MathF.Sqrt(hs));
                    for (int i = 0; i < nc; i += 16)
                    {
                        var e = VectorExp.Exp((Vector512.Load(row + i) - vmax) * vscale);
                        var seen = Vector512.LessThan(Iota + Vector512.Create(i), Vector512.Create(nc)).AsSingle();
                        Vector512.ConditionalSelect(seen, e, Vector512<float>.Zero).Store(row + i);
                    }
                    if (p.Stride == p.Block)
                        rank = row;   // compressed block i is selection block i
                    else
                    {
                        rank = ranks;
                        for (int kb = 0; kb < qb; kb++) rank[kb] = 0;
                        for (int i = 0; i < nc; i++)
                        {
                            // compressed block i covers [i·Stride, i·Stride + Block): selection blocks kb with kb·Block in that range's reach
                            int first = i * p.Stride / p.Block, lastBlock = (i * p.Stride + p.Block - 1) / p.Block;
                            for (int kb = first; kb <= lastBlock && kb < qb; kb++) rank[kb] += row[i];
                        }
                    }
                }
                else rank = row;
                TopK(rank, qb, K, out_);
            }
        }
    }

    /// <summary>The indices of the k largest of score[0..n) (ties: lower index first) into out, in descending order of score.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void TopK(float* score, int n, int k, int* out_)
    {
        int m = 0;   // out_[0..m) sorted by (score desc, index asc)
        for (int i = 0; i < n; i++)
        {
            float v = score[i];
            if (m == k && !(v > score[out_[m - 1]])) continue;
            int pos = m == k ? m - 1 : m++;
            while (pos > 0 && v > score[out_[pos - 1]]) { out_[pos] = out_[pos - 1]; pos--; }
            out_[pos] = i;
        }
    }

    /// <summary>
    /// NSA's compressed keys and values of one head: (Tc, hs) each, block means of Block positions every Stride
    /// positions, side by side in one buffer (keys, then values); also their transposed keys for the selection scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float* Compress(ref Args a, Buffers buf, in Head x, int Tc)
    {
        var p = a.P;
        int hs = x.Hs;
        float* kc = SparseAttentionHead.Pin(ref buf.Compressed, 2L * Math.Max(1, Tc) * hs);
        for (int i = 0; i < Tc; i++)
        {
            BlockMean(x.K + (long)i * p.Stride * a.Ldkv, a.Ldkv, p.Block, hs, kc + (long)i * hs);
            BlockMean(x.V + (long)i * p.Stride * a.Ldkv, a.Ldkv, p.Block, hs, kc + (long)(Tc + i) * hs);
        }
        return kc;
    }

    /// <summary>mean (hs) = Σ_{j &lt; count} x[j·ld ..] / count, summed in vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void BlockMean(float* x, int ld, int count, int hs, float* mean)
    {
        var inv = Vector512.Create(1f / count);
        for (int d = 0; d < hs; d += 16)
        {
            var acc = Vector512<float>.Zero;
            for (int j = 0; j < count; j++) acc += Vector512.Load(x + (long)j * ld + d);
            (acc * inv).Store(mean + d);
        }
    }

    /// <summary>Keys of NSA's compressed branch: query t sees compressed blocks i with i·Stride + Block − 1 ≤ t.</summary>
    static KeySet CompressedKeys(ref Args a, Buffers buf)
    {
        int* lo = SparseAttentionHead.Pin(ref buf.Lo, a.Tq), hi = SparseAttentionHead.Pin(ref buf.Hi, a.Tq);
        for (int i = 0; i < a.Tq; i++) { lo[i] = 0; hi[i] = a.P.CompressedBlocks(a.QPos0 + i + 1); }
        return new KeySet { Lo = lo, Hi = hi };
    }

    /// <summary>NSA's selection: top blocks by the compressed attention's probabilities, written into kept; returns row 0's list.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int* SelectNsa(ref Args a, Buffers buf, in Head x, float* kc, int Tc, float scale)
    {
        var p = a.P;
        int hs = x.Hs, Tcp = Math.Max(16, (Tc + 15) & ~15);
        int* sel = (int*)(x.Kept + 3 * a.NH);
        float* kcT = SparseAttentionHead.Pin(ref buf.SummaryT, (long)hs * Tcp);
        new Span<float>(kcT, hs * Tcp).Clear();
        for (int i = 0; i < Tc; i++)
            for (int d = 0; d < hs; d++) kcT[(long)d * Tcp + i] = kc[(long)i * hs + d];
        ScoreAndSelect(ref a, buf, x, kcT, Tcp, Tc, sel + x.H * p.TopK, importance: true);
        return sel;
    }
}
