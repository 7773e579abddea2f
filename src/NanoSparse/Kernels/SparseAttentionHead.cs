using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Which keys each query row of one head sees: keys j with Lo[i] ≤ j &lt; Hi[i] and, when Bits is not null, whose block
/// j / BlockSize has its bit set in row i's Words ulongs (Bits + i·Words). An empty range gives the row no keys
/// (its output is 0 and its lse −∞).
/// </summary>
public unsafe struct KeySet
{
    public int* Lo, Hi;     // (Tq)
    public ulong* Bits;     // (Tq, Words) or null
    public int Words, BlockSize;   // BlockSize: a multiple of 16
}

/// <summary>
/// One head's attention problem: Q (Tq rows, row stride Ldq), K and V (Tk rows, stride Ldkv), head size Hs (a
/// multiple of 16). Forward writes Out (Tq, stride Ldo) and Lse (Tq, stride LdLse). Backward reads DOut (stride Ldo), Out
/// (stride LdOut, 0: Ldo) and Lse and ADDS into DQ (stride Ldq), DK and DV (stride Ldkv).
/// </summary>
public unsafe struct HeadProblem
{
    public float* Q, K, V, Out, Lse, DOut, DQ, DK, DV;
    public int Ldq, Ldkv, Ldo, LdLse, Tq, Tk, Hs;   // LdLse: stride of Lse
    public int LdOut;   // stride of Out in Backward when it differs from DOut's (0: Ldo)
    public float Scale;
}

/// <summary>
/// Softmax attention of one head over an arbitrary per-row key set (<see cref="KeySet"/>), FlashAttention style.
/// Forward of a range key set (Bits null: windows, causal, NSA's compressed keys): queries in tiles of 8 rows, keys
/// in chunks of 16 (up to 64 at a time); a tile visits only the chunks that some of its rows see, masks the rest of
/// each chunk per row, and keeps a running max, sum and output per row (online softmax), so nothing of size Tq×Tk
/// exists. K is transposed (for the Q·Kᵀ tiles) lazily, one 16-key chunk at a time, only where visited: a sliding
/// window at decode touches w keys, not the whole cache. Key sets with selected blocks, and every backward pass, run
/// key-block major on gathered rows (SparseAttentionHead.Gathered.cs). Backward recomputes P = exp(s − lse)
/// (FlashAttention-2): D_i = dO_i · O_i,  dP = dO · Vᵀ,  dS = P ⊙ (dP − D) · scale,  dQ += dS · K,  dK += dSᵀ · Q,
/// dV += Pᵀ · dO. The products run on <see cref="AttentionTiles"/> and <see cref="GatheredTiles"/>.
/// </summary>
public static unsafe partial class SparseAttentionHead
{
    /// <summary>Query rows per tile.</summary>
    public const int Rows = 8;
    /// <summary>Keys per chunk: the unit of skipping (one vector of scores).</summary>
    public const int Chunk = 16;
    const int Group = 64;   // keys per product call (up to 4 consecutive chunks)

    /// <summary>Per-thread buffers of the head kernels, grown on demand (pinned; a step allocates nothing after warm-up).</summary>
    sealed class Buffers
    {
        public float[] Kt = [], Vt = [], Tile = [], State = [];
        public int[] Flags = [], Runs = [], Lists = [];
        public ulong[] Union = [];
    }

    [ThreadStatic] static Buffers? _buffers;

    internal static float* Pin(ref float[] array, long length)
    {
        if (array.Length < length) array = GC.AllocateUninitializedArray<float>(checked((int)length), pinned: true);
        return (float*)Unsafe.AsPointer(ref array[0]);
    }

    internal static int* Pin(ref int[] array, long length)
    {
        if (array.Length < length) array = GC.AllocateUninitializedArray<int>(checked((int)Math.Max(1, length)), pinned: true);
        return (int*)Unsafe.AsPointer(ref array[0]);
    }

    internal static ulong* Pin(ref ulong[] array, long length)
    {
        if (array.Length < length) array = GC.AllocateUninitializedArray<ulong>(checked((int)Math.Max(1, length)), pinned: true);
        return (ulong*)Unsafe.AsPointer(ref array[0]);
    }

    // Tile scratch (floats): S/P (8×64), dP/dS (8×64), temp (8×hs), O or dQ accumulator (8×hs), discard row, m, l, D.
    static long TileFloats(int hs) => 2 * Rows * Group + 2 * Rows * hs + Math.Max(Group, hs) + 3 * Rows;

    static long _pairs;
    /// <summary>(query, key) pairs the forward tiles have evaluated since the last <see cref="ResetPairs"/> (whole chunks, masked lanes included).</summary>
    public static long PairsEvaluated => Interlocked.Read(ref _pairs);
    public static void ResetPairs() => Interlocked.Exchange(ref _pairs, 0);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(in HeadProblem a, in KeySet ks)
    {
        if (ks.Bits != null) { ForwardGathered(a, ks); return; }
        int hs = a.Hs, Tkp = (a.Tk + 15) & ~15, chunks = Tkp / Chunk, ldt = Tkp + Chunk;
        var buf = _buffers ??= new Buffers();
        float* kt = Pin(ref buf.Kt, (long)hs * ldt);
        int* flags = Pin(ref buf.Flags, chunks);
        int* runs = Pin(ref buf.Runs, 2 * chunks + 2);
        ulong* union = Pin(ref buf.Union, Math.Max(1, ks.Words));
        float* s = Pin(ref buf.Tile, TileFloats(hs));
        float* temp = s + 2 * Rows * Group, o = temp + Rows * hs, discard = o + Rows * hs;
        float* m = discard + Math.Max(Group, hs), l = m + Rows;
        new Span<int>(flags, chunks).Clear();
        long pairs = 0;
        for (int i0 = 0; i0 < a.Tq; i0 += Rows)
        {
            int rows = Math.Min(Rows, a.Tq - i0);
            int runCount = TileRuns(ks, i0, rows, a.Tk, runs, union);
            for (int r = 0; r < Rows; r++) { m[r] = float.NegativeInfinity; l[r] = 0; }
            new Span<float>(o, Rows * hs).Clear();
            for (int ri = 0; ri < runCount; ri++)
            {
                int c0 = runs[2 * ri], c1 = runs[2 * ri + 1];   // chunks [c0, c1)
                for (int c = c0; c < c1; c += Group / Chunk)
                {
                    int j0 = c * Chunk, w = Math.Min(c1 - c, Group / Chunk) * Chunk;
                    EnsureTransposed(a.K, a.Ldkv, a.Tk, hs, kt, ldt, flags, c, w / Chunk);
                    Scores(a.Q, a.Ldq, i0, rows, hs, kt + j0, ldt, w, s, discard, a.Scale);
                    pairs += (long)rows * w;
                    for (int r = 0; r < rows; r++)
                    {
                        float* row = s + r * Group;
                        float rowMax = MaskRow(row, ks, i0 + r, j0, w);
                        float mNew = MathF.Max(m[r], rowMax);
                        if (mNew == float.NegativeInfinity) { new Span<float>(row, w).Clear(); continue; }
                        float alpha = MathF.Exp(m[r] - mNew);   // 0 when nothing was seen before
                        float sum = ExpRow(row, w, mNew);
                        l[r] = l[r] * alpha + sum;
                        m[r] = mNew;
                        if (alpha != 1f) Scale(o + r * hs, hs, alpha);
                    }
                    // temp (rows, hs) = P (rows, w) · V[j0 : j0 + w]; keys past Tk have P = 0 and are not read
                    AttentionTiles.Rows8(Math.Min(w, a.Tk - j0), s, Group, 1, rows, a.V + (long)j0 * a.Ldkv, a.Ldkv, hs, temp, hs, discard, 1f);
                    AddRows(o, temp, rows * hs);
                }
            }
            for (int r = 0; r < rows; r++)
            {
                float* y = a.Out + (long)(i0 + r) * a.Ldo;
                float* lse = a.Lse + (long)(i0 + r) * a.LdLse;
                if (l[r] == 0) { new Span<float>(y, hs).Clear(); *lse = float.NegativeInfinity; continue; }
                float inv = 1f / l[r];
                for (int p = 0; p < hs; p += 16) (Vector512.Load(o + r * hs + p) * Vector512.Create(inv)).Store(y + p);
                *lse = m[r] + MathF.Log(l[r]);
            }
        }
        Interlocked.Add(ref _pairs, pairs);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>, key-block major for every key set (see SparseAttentionHead.Gathered.cs): a range
    /// key set lists, for each block of 64 keys, the rows whose range touches it, so dK and dV of the block are summed
    /// in a 64 × hs accumulator with 64-deep reductions (FlashAttention-2) instead of 8 query rows at a time through memory.
    /// </summary>
    public static void Backward(in HeadProblem a, in KeySet ks) => BackwardGathered(a, ks);

    /// <summary>
    /// The chunk runs [c0, c1) that rows i0..i0+rows of the tile see (their union), as pairs in runs; returns their count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int TileRuns(in KeySet ks, int i0, int rows, int Tk, int* runs, ulong* union)
    {
        int lo = int.MaxValue, hi = 0;
        for (int r = 0; r < rows; r++)
        {
            int a = ks.Lo[i0 + r], b = Math.Min(ks.Hi[i0 + r], Tk);
            if (b <= a) continue;
            lo = Math.Min(lo, a);
            hi = Math.Max(hi, b);
        }
        if (hi <= lo) return 0;
        int cLo = lo / Chunk, cHi = (hi + Chunk - 1) / Chunk;
        if (ks.Bits == null)
        {
            runs[0] = cLo;
            runs[1] = cHi;
            return 1;
        }
        int W = ks.Words, perBlock = ks.BlockSize / Chunk, count = 0;
        for (int w = 0; w < W; w++) union[w] = 0;
        for (int r = 0; r < rows; r++)
            if (ks.Hi[i0 + r] > ks.Lo[i0 + r])
                for (int w = 0; w < W; w++) union[w] |= ks.Bits[(long)(i0 + r) * W + w];
        for (int w = 0; w < W; w++)
        {
            ulong bits = union[w];
            while (bits != 0)
            {
                int block = w * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                int c0 = Math.Max(cLo, block * perBlock), c1 = Math.Min(cHi, (block + 1) * perBlock);
                if (c1 <= c0) continue;
                if (count > 0 && runs[2 * count - 1] == c0) runs[2 * count - 1] = c1;   // adjacent blocks join one run
                else { runs[2 * count] = c0; runs[2 * count + 1] = c1; count++; }
            }
        }
        return count;
    }

    /// <summary>
    /// Transposes chunks [c, c + n) of X (Tk rows, stride ld) into xt (hs rows of stride ldt) where not done yet (flags);
    /// keys past Tk are 0. ldt is the padded key count plus one chunk: at a power-of-two stride (T = 16k: 64 KB) the hs
    /// rows a score tile reads would all fall into one L1 set.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void EnsureTransposed(float* x, int ld, int Tk, int hs, float* xt, int ldt, int* flags, int c, int n)
    {
        for (int ch = c; ch < c + n; ch++)
        {
            if (flags[ch] != 0) continue;
            flags[ch] = 1;
            int j0 = ch * Chunk, valid = Math.Min(Chunk, Tk - j0);
            GatheredTiles.TransposeInto(x + (long)j0 * ld, valid, hs, ld, xt + j0, ldt, Chunk);
        }
    }

    /// <summary>S (rows × w, stride 64) = alpha · X[i0 : i0 + rows] · Bt[:, 0 : w], Bt a transposed block (hs × w, stride ldb).</summary>
    static void Scores(float* x, int ldx, int i0, int rows, int hs, float* bt, int ldb, int w, float* s, float* discard, float alpha)
    {
        for (int r0 = 0; r0 < rows; r0 += 4)
        {
            int n = Math.Min(4, rows - r0);
            float* x0 = x + (long)(i0 + r0) * ldx;
            AttentionTiles.Rows4(hs, x0, x0 + Math.Min(1, n - 1) * (long)ldx, x0 + Math.Min(2, n - 1) * (long)ldx, x0 + Math.Min(3, n - 1) * (long)ldx,
                1, bt, ldb, w, s + r0 * Group, n > 1 ? s + (r0 + 1) * Group : discard, n > 2 ? s + (r0 + 2) * Group : discard,
                n > 3 ? s + (r0 + 3) * Group : discard, alpha);
        }
    }

    static readonly Vector512<int> Iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>Sets the scores of keys row i does not see to −∞ (w from key j0); returns the largest score left.</summary>
    static float MaskRow(float* row, in KeySet ks, int i, int j0, int w)
    {
        var lo = Vector512.Create(ks.Lo[i]);
        var hi = Vector512.Create(ks.Hi[i]);
        var ninf = Vector512.Create(float.NegativeInfinity);
        var mx = ninf;
        ulong* bits = ks.Bits == null ? null : ks.Bits + (long)i * ks.Words;
        for (int v = 0; v < w; v += 16)
        {
            var x = Vector512.Load(row + v);
            int j = j0 + v;
            if (bits != null)
            {
                int block = j / ks.BlockSize;
                if ((bits[block >> 6] & (1UL << (block & 63))) == 0) { ninf.Store(row + v); continue; }
            }
            var key = Iota + Vector512.Create(j);
            var keep = Vector512.GreaterThanOrEqual(key, lo) & Vector512.LessThan(key, hi);
            x = Vector512.ConditionalSelect(keep.AsSingle(), x, ninf);
            x.Store(row + v);
            mx = Vector512.Max(mx, x);
        }
        return HorizontalMax(mx);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float HorizontalMax(Vector512<float> x)
    {
        var m8 = Vector256.Max(x.GetLower(), x.GetUpper());
        var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
        float best = float.NegativeInfinity;
        for (int k = 0; k < 4; k++) best = MathF.Max(best, m4.GetElement(k));
        return best;
    }

    /// <summary>row = exp(row − max) (−∞ gives 0); returns the sum.</summary>
    static float ExpRow(float* row, int w, float max)
    {
        var m = Vector512.Create(max);
        var sum = Vector512<float>.Zero;
        for (int v = 0; v < w; v += 16)
        {
            var x = Vector512.Load(row + v);
            var e = Vector512.ConditionalSelect(Vector512.Equals(x, Vector512.Create(float.NegativeInfinity)), Vector512<float>.Zero,
                VectorExp.Exp(x - m));
            e.Store(row + v);
            sum += e;
        }
        return Vector512.Sum(sum);
    }

    /// <summary>row = exp(row − lse): the forward's probabilities, recomputed (masked keys give 0).</summary>
    static void ExpRowFixed(float* row, int w, float lse)
    {
        var m = Vector512.Create(lse);
        for (int v = 0; v < w; v += 16)
        {
            var x = Vector512.Load(row + v);
            Vector512.ConditionalSelect(Vector512.Equals(x, Vector512.Create(float.NegativeInfinity)), Vector512<float>.Zero,
                VectorExp.Exp(x - m)).Store(row + v);
        }
    }

    static void SoftmaxGrad(float* p, float* dp, int w, float d, float scale)
    {
        var vd = Vector512.Create(d);
        var sc = Vector512.Create(scale);
        for (int v = 0; v < w; v += 16)
            (Vector512.Load(p + v) * (Vector512.Load(dp + v) - vd) * sc).Store(dp + v);
    }

    static void Scale(float* x, int n, float alpha)
    {
        var a = Vector512.Create(alpha);
        for (int k = 0; k < n; k += 16) (Vector512.Load(x + k) * a).Store(x + k);
    }

    static void AddRows(float* dst, float* src, int n)
    {
        for (int k = 0; k < n; k += 16) (Vector512.Load(dst + k) + Vector512.Load(src + k)).Store(dst + k);
    }

    static void AddStrided(float* dst, int ld, float* src, int rows, int hs)
    {
        for (int r = 0; r < rows; r++)
        {
            float* d = dst + (long)r * ld, s = src + r * hs;
            for (int k = 0; k < hs; k += 16) (Vector512.Load(d + k) + Vector512.Load(s + k)).Store(d + k);
        }
    }

    static float Dot(float* x, float* y, int n)
    {
        var acc = Vector512<float>.Zero;
        for (int k = 0; k < n; k += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + k), Vector512.Load(y + k), acc);
        return Vector512.Sum(acc);
    }
}
