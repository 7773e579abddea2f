using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

// ---- Key sets with selected blocks (block-sparse, top-k, NSA's selected branch): key-block major ----
// Rows that selected different blocks would make a tile of consecutive rows visit the union of their blocks (up to
// 8x the work at random). Instead each key block gathers the rows that selected it (MoBA's varlen layout on a CPU)
// and runs FlashAttention-2 on them: the block's keys (up to 64 at a time) are transposed once into an L1 tile, the
// gathered rows go through it 64 at a time (scores 64 × 64, then 8-row products that reduce over 64), and
//   forward:  each row keeps its running max, sum and output in a compact (Tq, hs) state; P·V is added into the
//             state rows in the same pass that rescales them (GatheredTiles.Rows8ScaledAdd);
//   backward: dK and dV of the key block stay in 64 × hs accumulators while its rows stream by (reductions over the
//             64 gathered rows read the rows through pointers: GatheredTiles.Rows8GatheredB); dQ goes into a compact
//             (Tq, hs) buffer added to the caller's dQ once at the end.
// Q and dO are copied once per head into compact (Tq, hs) buffers, so the gathered rows are 256-byte neighbours
// rather than rows 3C floats (one 4 KB page or more) apart. Blocks go in ascending order, so a row sees its keys in
// the same order, with the same arithmetic, whether it is computed with others (training) or alone (decode).
public static unsafe partial class SparseAttentionHead
{
    /// <summary>Gathered rows per tile (and keys per transposed key tile).</summary>
    const int GatherRows = 64;

    sealed class GatherBuffers
    {
        public float[] Rows = [], Tiles = [];
    }

    [ThreadStatic] static GatherBuffers? _gather;

    /// <summary>Rows of each key block (CSR: lists[start[b] .. start[b + 1]) ascending); returns the start array (nb + 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int* BlockLists(in KeySet ks, int Tq, int Tk, Buffers buf, out int* lists)
    {
        int BS = BlockOf(ks), nb = (Tk + BS - 1) / BS, W = ks.Words;
        int* start = Pin(ref buf.Runs, 2L * (nb + 1)), cursor = start + nb + 1;
        new Span<int>(start, nb + 1).Clear();
        lists = null;
        for (int pass = 0; pass < 2; pass++)
        {
            if (pass == 1)
            {
                for (int b = 0; b < nb; b++) start[b + 1] += start[b];   // start[b]: rows listed before block b
                for (int b = 0; b <= nb; b++) cursor[b] = start[b];
                lists = Pin(ref buf.Lists, start[nb]);
            }
            for (int i = 0; i < Tq; i++)
            {
                int lo = ks.Lo[i], hi = Math.Min(ks.Hi[i], Tk);
                if (hi <= lo) continue;
                if (ks.Bits == null)   // a range: every block it touches
                {
                    for (int b = lo / BS; b <= (hi - 1) / BS; b++)
                        if (pass == 0) start[b + 1]++;
                        else lists[cursor[b]++] = i;
                    continue;
                }
                ulong* bits = ks.Bits + (long)i * W;
                for (int w = 0; w < W; w++)
                {
                    ulong word = bits[w];
                    while (word != 0)
                    {
                        int b = w * 64 + System.Numerics.BitOperations.TrailingZeroCount(word);
                        word &= word - 1;
                        if (b >= nb || (b + 1) * BS <= lo || b * BS >= hi) continue;
                        if (pass == 0) start[b + 1]++;
                        else lists[cursor[b]++] = i;
                    }
                }
            }
        }
        return start;
    }

    /// <summary>Keys per listed block: the key set's blocks, or for a range key set (Bits null) blocks of 64.</summary>
    static int BlockOf(in KeySet ks) => ks.Bits == null ? GatherRows : ks.BlockSize;

    /// <summary>rows (Tq, hs) compact = x rows (stride ld).</summary>
    static void Compact(float* x, int ld, int Tq, int hs, float* rows)
    {
        for (int i = 0; i < Tq; i++) new Span<float>(x + (long)i * ld, hs).CopyTo(new Span<float>(rows + (long)i * hs, hs));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ForwardGathered(in HeadProblem a, in KeySet ks)
    {
        int hs = a.Hs, Tq = a.Tq, Tkp = (a.Tk + 15) & ~15, BS = BlockOf(ks), nb = (a.Tk + BS - 1) / BS;
        var buf = _buffers ??= new Buffers();
        var gb = _gather ??= new GatherBuffers();
        int* start = BlockLists(ks, Tq, a.Tk, buf, out int* lists);
        float* qc = Pin(ref gb.Rows, (long)Tq * (2 * hs + 2));   // compact q (Tq, hs), output state o (Tq, hs), m, l
        float* o = qc + (long)Tq * hs, m = o + (long)Tq * hs, l = m + Tq;
        const int G = GatherRows;
        float* kt = Pin(ref gb.Tiles, (long)hs * G + G * G + 2 * G + Math.Max(G, hs));
        float* s = kt + hs * G, alpha = s + G * G, discard = alpha + 2 * G;
        Compact(a.Q, a.Ldq, Tq, hs, qc);
        new Span<float>(o, Tq * hs).Clear();
        for (int i = 0; i < Tq; i++) { m[i] = float.NegativeInfinity; l[i] = 0; }
        float** outRows = stackalloc float*[8];
        long pairs = 0;
        for (int b = 0; b < nb; b++)
        {
            if (start[b + 1] == start[b]) continue;
            int end = Math.Min((b + 1) * BS, Tkp);
            for (int c = b * BS; c < end; c += G)
            {
                int w = Math.Min(G, end - c), kLen = Math.Min(w, a.Tk - c);
                // Kᵀ of keys c .. c + kLen as an (hs, 64) tile, zero past kLen
                GatheredTiles.TransposeInto(a.K + (long)c * a.Ldkv, kLen, hs, a.Ldkv, kt, G, w);
                for (int g0 = start[b]; g0 < start[b + 1]; g0 += G)
                {
                    int n = Math.Min(G, start[b + 1] - g0);
                    int* idx = lists + g0;
                    // S (n, w) = Q_rows · K_cᵀ / √hs
                    ScoresRows(qc, hs, idx, n, kt, w, s, discard, a.Scale);
                    pairs += (long)n * w;
                    for (int r = 0; r < n; r++)
                    {
                        int i = idx[r];
                        float* row = s + r * G;
                        int lo = ks.Lo[i], hi = Math.Min(ks.Hi[i], a.Tk);
                        float rowMax = lo <= c && hi >= c + w ? RowMax(row, w) : MaskRange(row, lo, hi, c, w);
                        float mNew = MathF.Max(m[i], rowMax);
                        if (mNew == float.NegativeInfinity) { new Span<float>(row, w).Clear(); alpha[r] = 1f; continue; }
                        alpha[r] = mNew == m[i] ? 1f : MathF.Exp(m[i] - mNew);   // 0 when nothing was seen before
                        l[i] = l[i] * alpha[r] + ExpRow(row, w, mNew);
                        m[i] = mNew;
                    }
                    // o_rows = alpha ∘ o_rows + P · V_c; keys past Tk have P = 0 and are not read
                    for (int r0 = 0; r0 < n; r0 += 8)
                    {
                        int rows = Math.Min(8, n - r0);
                        for (int r = 0; r < 8; r++) outRows[r] = r < rows ? o + (long)idx[r0 + r] * hs : discard;
                        GatheredTiles.Rows8ScaledAdd(kLen, s + r0 * G, G, 1, rows, a.V + (long)c * a.Ldkv, a.Ldkv, hs, outRows, alpha + r0);
                    }
                }
            }
        }
        for (int i = 0; i < Tq; i++)
        {
            float* y = a.Out + (long)i * a.Ldo, lse = a.Lse + (long)i * a.LdLse;
            if (l[i] == 0) { new Span<float>(y, hs).Clear(); *lse = float.NegativeInfinity; continue; }
            var inv = Vector512.Create(1f / l[i]);
            for (int p = 0; p < hs; p += 16) (Vector512.Load(o + (long)i * hs + p) * inv).Store(y + p);
            *lse = m[i] + MathF.Log(l[i]);
        }
        Interlocked.Add(ref _pairs, pairs);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void BackwardGathered(in HeadProblem a, in KeySet ks)
    {
        int hs = a.Hs, Tq = a.Tq, Tkp = (a.Tk + 15) & ~15, BS = BlockOf(ks), nb = (a.Tk + BS - 1) / BS;
        var buf = _buffers ??= new Buffers();
        var gb = _gather ??= new GatherBuffers();
        int* start = BlockLists(ks, Tq, a.Tk, buf, out int* lists);
        // compact q, dO and dQ (Tq, hs) each, then D = dO · O and lse (Tq)
        float* qc = Pin(ref gb.Rows, (long)Tq * (3 * hs + 2));
        float* doc = qc + (long)Tq * hs, dqc = doc + (long)Tq * hs, dd = dqc + (long)Tq * hs, lse = dd + Tq;
        const int G = GatherRows;
        // Kᵀ, Vᵀ tiles (hs, 64), P and dS (64, 64), dK and dV accumulators (64, hs), a discard row, row pointers
        float* kt = Pin(ref gb.Tiles, 2L * hs * G + 2 * G * G + 2 * G * hs + Math.Max(G, hs) + 2 * G * (sizeof(nint) / sizeof(float)));
        float* vt = kt + hs * G, p = vt + hs * G, ds = p + G * G, dkAcc = ds + G * G, dvAcc = dkAcc + G * hs, discard = dvAcc + G * hs;
        float** qRows = (float**)(discard + Math.Max(G, hs)), doRows = qRows + G;
        Compact(a.Q, a.Ldq, Tq, hs, qc);
        Compact(a.DOut, a.Ldo, Tq, hs, doc);
        new Span<float>(dqc, Tq * hs).Clear();
        int ldOut = a.LdOut != 0 ? a.LdOut : a.Ldo;
        for (int i = 0; i < Tq; i++)
        {
            dd[i] = Dot(doc + (long)i * hs, a.Out + (long)i * ldOut, hs);   // D = dO · O
            lse[i] = a.Lse[(long)i * a.LdLse];
        }
        float** outRows = stackalloc float*[8];
        for (int b = 0; b < nb; b++)
        {
            if (start[b + 1] == start[b]) continue;
            int end = Math.Min((b + 1) * BS, Tkp);
            for (int c = b * BS; c < end; c += G)
            {
                int w = Math.Min(G, end - c), kLen = Math.Min(w, a.Tk - c);
                GatheredTiles.TransposeInto(a.K + (long)c * a.Ldkv, kLen, hs, a.Ldkv, kt, G, w);
                GatheredTiles.TransposeInto(a.V + (long)c * a.Ldkv, kLen, hs, a.Ldkv, vt, G, w);
                new Span<float>(dkAcc, 2 * G * hs).Clear();
                for (int g0 = start[b]; g0 < start[b + 1]; g0 += G)
                {
                    int n = Math.Min(G, start[b + 1] - g0);
                    int* idx = lists + g0;
                    // in the forward pass this was: S = Q K_cᵀ/√hs, P = softmax(S), y = P · V_c; so dP = dO · V_cᵀ
                    ScoresRows(qc, hs, idx, n, kt, w, p, discard, a.Scale);
                    ScoresRows(doc, hs, idx, n, vt, w, ds, discard, 1f);
                    for (int r = 0; r < n; r++)
                    {
                        int i = idx[r];
                        qRows[r] = qc + (long)i * hs;
                        doRows[r] = doc + (long)i * hs;
                        float* row = p + r * G;
                        int lo = ks.Lo[i], hi = Math.Min(ks.Hi[i], a.Tk);
                        if (!(lo <= c && hi >= c + w)) MaskRange(row, lo, hi, c, w);
                        if (lse[i] == float.NegativeInfinity) new Span<float>(row, w).Clear();
                        else ExpRowFixed(row, w, lse[i]);
                        SoftmaxGrad(row, ds + r * G, w, dd[i], a.Scale);   // dS = P ⊙ (dP − D) · scale
                    }
                    // dQ_rows += dS · K_c (the 1/√hs is in dS)
                    for (int r0 = 0; r0 < n; r0 += 8)
                    {
                        int rows = Math.Min(8, n - r0);
                        for (int r = 0; r < 8; r++) outRows[r] = r < rows ? dqc + (long)idx[r0 + r] * hs : discard;
                        GatheredTiles.Rows8ScaledAdd(kLen, ds + r0 * G, G, 1, rows, a.K + (long)c * a.Ldkv, a.Ldkv, hs, outRows, null);
                    }
                    // dV_c += Pᵀ · dO_rows and dK_c += dSᵀ · Q_rows: key rows k0..k0+7 read columns k0.. of P and dS down the rows
                    for (int k0 = 0; k0 < kLen; k0 += 8)
                    {
                        int keys = Math.Min(8, kLen - k0);
                        GatheredTiles.Rows8GatheredB(n, p + k0, 1, G, keys, doRows, hs, dvAcc + k0 * hs, hs, discard);
                        GatheredTiles.Rows8GatheredB(n, ds + k0, 1, G, keys, qRows, hs, dkAcc + k0 * hs, hs, discard);
                    }
                }
                AddStrided(a.DK + (long)c * a.Ldkv, a.Ldkv, dkAcc, kLen, hs);
                AddStrided(a.DV + (long)c * a.Ldkv, a.Ldkv, dvAcc, kLen, hs);
            }
        }
        AddStrided(a.DQ, a.Ldq, dqc, Tq, hs);
    }

    /// <summary>S (n × w, stride 64) = alpha · (rows idx of the compact X (stride hs)) · Bt (hs × w, stride 64), in 4-row tiles.</summary>
    static void ScoresRows(float* x, int hs, int* idx, int n, float* bt, int w, float* s, float* discard, float alpha)
    {
        const int G = GatherRows;
        for (int r0 = 0; r0 < n; r0 += 4)
        {
            int k = Math.Min(4, n - r0);
            float* x0 = x + (long)idx[r0] * hs, x1 = x + (long)idx[r0 + Math.Min(1, k - 1)] * hs;
            float* x2 = x + (long)idx[r0 + Math.Min(2, k - 1)] * hs, x3 = x + (long)idx[r0 + Math.Min(3, k - 1)] * hs;
            AttentionTiles.Rows4(hs, x0, x1, x2, x3, 1, bt, G, w, s + r0 * G, k > 1 ? s + (r0 + 1) * G : discard,
                k > 2 ? s + (r0 + 2) * G : discard, k > 3 ? s + (r0 + 3) * G : discard, alpha);
        }
    }

    /// <summary>The largest of row[0 .. w).</summary>
    static float RowMax(float* row, int w)
    {
        var mx = Vector512.Load(row);
        for (int v = 16; v < w; v += 16) mx = Vector512.Max(mx, Vector512.Load(row + v));
        return HorizontalMax(mx);
    }

    /// <summary>Sets row[v] (key j0 + v, v &lt; w) to −∞ outside lo ≤ key &lt; hi; returns the largest score left.</summary>
    static float MaskRange(float* row, int lo, int hi, int j0, int w)
    {
        var vlo = Vector512.Create(lo);
        var vhi = Vector512.Create(hi);
        var ninf = Vector512.Create(float.NegativeInfinity);
        var mx = ninf;
        for (int v = 0; v < w; v += 16)
        {
            var key = Iota + Vector512.Create(j0 + v);
            var keep = Vector512.GreaterThanOrEqual(key, vlo) & Vector512.LessThan(key, vhi);
            var x = Vector512.ConditionalSelect(keep.AsSingle(), Vector512.Load(row + v), ninf);
            x.Store(row + v);
            mx = Vector512.Max(mx, x);
        }
        return HorizontalMax(mx);
    }
}
