using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Dense causal attention as FlashAttention-2 (Dao 2023) on the CPU, for head sizes that are a multiple of 16 (AVX-512),
/// with <see cref="Attention"/>'s layouts: qkv (B, T, 3C), out (B, T, C), lse (B, NH, T). One (sequence, head) per
/// work item; inside it the T×T score matrix only ever exists as 64×64 blocks (Br query rows × Bc keys) in L1.
/// Forward, query block i outer, key blocks j ≤ i inner (online softmax):
///   S = Q_i·K_jᵀ/√hs,  m' = max(m, rowmax S),  P = exp(S − m'),  l = l·e^(m−m') + rowsum P,  O_i = O_i·e^(m−m') + P·V_j
///   y_i = O_i / l,  lse_i = m + log l
/// Backward, key block j outer (dK_j, dV_j stay in a local 64×hs accumulator), query blocks i ≥ j inner:
///   D = rowsum(dO ∘ O) once per row,  P = exp(S − lse) recomputed,  dP = dO_i·V_jᵀ,  dS = P ∘ (dP − D)/√hs,
///   dV_j += Pᵀ·dO_i,  dK_j += dSᵀ·Q_i,  dQ_i += dS·K_j (in place in dqkv).
/// Five block products in the backward pass against two in the forward, each a register-tiled micro-kernel
/// (<see cref="AttentionTiles"/>) whose reduction runs over a whole block (64), so the accumulators are loaded and
/// stored once per 64 multiply-adds. Diagonal blocks stop each 4-row score tile at its last key (rounded up to a
/// vector) and each 8-row product at its last key; blocks above the diagonal are never visited.
/// Attention-weight dropout follows <see cref="Dropout"/>'s counter-based mask with Attention's indices
/// (mask base + (bh·T + t)·T + t2), so it matches the other kernels' masks exactly.
/// </summary>
public static unsafe class FlashAttention
{
    /// <summary>Query rows and keys per block.</summary>
    public const int Block = 64;

    /// <summary>Whether a head of this size runs here (a multiple of 16, AVX-512 present).</summary>
    public static bool Supports(int hs) => hs > 0 && hs % 16 == 0 && Vector512.IsHardwareAccelerated;

    struct Args
    {
        public float* Out, Lse, Qkv, Dout, Dqkv, Y;
        public int B, T, C, NH;
        public long MaskBase;
        public float P;
        public ulong Seed;
    }

    /// <summary>Per-thread buffers, grown on demand (pinned; nothing is allocated after the first call of a shape).</summary>
    sealed class Buffers
    {
        public float[] Keys = [], Tiles = [], Rows = [], Output = [];
    }

    [ThreadStatic] static Buffers? _buffers;

    /// <summary>
    /// out (B, T, C) and lse (B, NH, T) from qkv (B, T, 3C); dropoutP and seed as <see cref="Attention.Forward"/>
    /// (the mask of sequence b is that of sequence batchOffset + b of the whole batch).
    /// </summary>
    public static void Forward(Span<float> output, Span<float> lse, ReadOnlySpan<float> qkv, int B, int T, int C, int NH,
        float dropoutP = 0f, ulong seed = 0, int batchOffset = 0)
    {
        CheckShape(C, NH);
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(output, (long)B * T * C, nameof(output));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* o = output, l = lse, x = qkv)
        {
            var a = new Args { Out = o, Lse = l, Qkv = x, B = B, T = T, C = C, NH = NH, P = dropoutP, Seed = seed,
                MaskBase = (long)batchOffset * NH * T * T };
            KernelThreads.For(B * NH, ref a, &ForwardItem);
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: dqkv (B, T, 3C) WRITTEN from dout (B, T, C), qkv, lse and y (the forward's
    /// output; when empty each head recomputes it, one more forward pass). Dropout settings as the forward call's.
    /// </summary>
    public static void Backward(Span<float> dqkv, ReadOnlySpan<float> dout, ReadOnlySpan<float> qkv, ReadOnlySpan<float> y,
        ReadOnlySpan<float> lse, int B, int T, int C, int NH, float dropoutP = 0f, ulong seed = 0, int batchOffset = 0)
    {
        CheckShape(C, NH);
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(dqkv, (long)B * T * 3 * C, nameof(dqkv));
        Check.Length(dout, (long)B * T * C, nameof(dout));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        if (!y.IsEmpty) Check.Length(y, (long)B * T * C, nameof(y));
        fixed (float* d = dqkv, g = dout, x = qkv, l = lse, py = y)
        {
            var a = new Args { Dqkv = d, Dout = g, Qkv = x, Lse = l, Y = py, B = B, T = T, C = C, NH = NH, P = dropoutP, Seed = seed,
                MaskBase = (long)batchOffset * NH * T * T };
            KernelThreads.For(B * NH, ref a, &BackwardItem);
        }
    }

    static void CheckShape(int C, int NH)
    {
        if (NH <= 0 || C % NH != 0 || !Supports(C / NH))
            throw new ArgumentException($"FlashAttention needs heads of a size that is a multiple of 16 (with AVX-512), got C = {C}, NH = {NH}");
    }

    static void ForwardItem(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, b = bh / NH, h = bh % NH;
        ForwardHead(ref a, bh, a.Out + (long)b * T * C + h * (C / NH), C, a.Lse + (long)bh * T);
    }

    /// <summary>One head's forward pass: y rows (stride ldy) and lse (T) of head bh.</summary>
    static void ForwardHead(ref Args a, int bh, float* y, int ldy, float* lse)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C;
        int b = bh / NH, h = bh % NH, blocks = (T + Block - 1) / Block;
        float scale = 1f / MathF.Sqrt(hs);
        float* q = a.Qkv + (long)b * T * C3 + h * hs, k = q + C, v = q + 2 * C;
        var buf = _buffers ??= new Buffers();
        float* kt = SparseAttentionHead.Pin(ref buf.Keys, (long)blocks * hs * Block);   // key block j transposed: (hs, Block) at j·hs·Block
        float* s = SparseAttentionHead.Pin(ref buf.Tiles, Block * Block + Block * hs + Math.Max(Block, hs));
        float* o = s + Block * Block, discard = o + Block * hs;   // O_i accumulator (Block, hs), a discard row
        float* m = SparseAttentionHead.Pin(ref buf.Rows, 2 * Block), l = m + Block;
        bool dropout = a.P > 0;
        float keepScale = dropout ? 1f / (1f - a.P) : 1f;
        for (int i = 0; i < blocks; i++)
        {
            int i0 = i * Block, rows = Math.Min(Block, T - i0);
            // the keys of block i (as many as its queries) join the transposed keys the blocks after it reuse
            AttentionTiles.Transpose(k + (long)i0 * C3, rows, hs, C3, kt + (long)i * hs * Block, Block);
            new Span<float>(o, rows * hs).Clear();
            for (int r = 0; r < rows; r++) { m[r] = float.NegativeInfinity; l[r] = 0; }
            for (int j = 0; j <= i; j++)
            {
                bool diagonal = j == i;
                int j0 = j * Block;
                // S (rows, Block) = Q_i · K_jᵀ / √hs
                Scores(q + (long)i0 * C3, C3, rows, hs, kt + (long)j * hs * Block, diagonal, s, discard, scale);
                for (int r = 0; r < rows; r++)
                {
                    float* row = s + r * Block;
                    int valid = diagonal ? r + 1 : Block, cols = diagonal ? DiagonalColumns(r) : Block;
                    float mNew = MathF.Max(m[r], MaskedMax(row, valid));
                    float alpha = mNew == m[r] ? 1f : MathF.Exp(m[r] - mNew);   // 0 for the first block (m = −∞)
                    l[r] = l[r] * alpha + ExpRow(row, valid, cols, mNew);
                    m[r] = mNew;
                    if (alpha != 1f) ScaleRow(o + r * hs, hs, alpha);
                    if (dropout)   // O accumulates dropout(P)·V; l sums P before dropout
                        Dropout.ApplyRow(row, row, valid, a.Seed, a.MaskBase + ((long)bh * T + i0 + r) * T + j0, a.P, keepScale);
                }
                // O_i += P · V_j; on the diagonal rows r0..r0+7 see keys up to r0 + 7 only
                for (int r0 = 0; r0 < rows; r0 += 8)
                {
                    int n = Math.Min(8, rows - r0), kLen = diagonal ? Math.Min(r0 + 8, rows) : Block;
                    AttentionTiles.Rows8(kLen, s + r0 * Block, Block, 1, n, v + (long)j0 * C3, C3, hs, o + r0 * hs, hs, discard, 1f, accumulate: true);
                }
            }
            for (int r = 0; r < rows; r++)
            {
                var inv = Vector512.Create(1f / l[r]);
                float* yr = y + (long)(i0 + r) * ldy;
                for (int p = 0; p < hs; p += 16) (Vector512.Load(o + r * hs + p) * inv).Store(yr + p);
                lse[i0 + r] = m[r] + MathF.Log(l[r]);
            }
        }
    }

    static void BackwardItem(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C;
        int b = bh / NH, h = bh % NH, blocks = (T + Block - 1) / Block;
        float scale = 1f / MathF.Sqrt(hs);
        long offset = (long)b * T * C3 + h * hs;
        float* q = a.Qkv + offset, k = q + C, v = q + 2 * C;
        float* dq = a.Dqkv + offset, dk = dq + C, dv = dq + 2 * C;
        float* dy = a.Dout + (long)b * T * C + h * hs;
        float* lse = a.Lse + (long)bh * T;
        bool dropout = a.P > 0;
        float keepScale = dropout ? 1f / (1f - a.P) : 1f;
        var buf = _buffers ??= new Buffers();

        // D_t = dO_t · O_t (= Σ_j P_tj dP_tj, the softmax backward's row term), from y or a recomputed forward pass
        float* d = SparseAttentionHead.Pin(ref buf.Output, a.Y != null ? T : (long)T * hs + 2L * T);
        float* o;
        int ldo;
        if (a.Y != null) { o = a.Y + (long)b * T * C + h * hs; ldo = C; }
        else
        {
            o = d + 2 * T;   // (T, hs), after D and the recomputed lse (T)
            ldo = hs;
            ForwardHead(ref a, bh, o, hs, d + T);
        }
        for (int t = 0; t < T; t++) d[t] = Dot(dy + (long)t * C, o + (long)t * ldo, hs);

        float* kt = SparseAttentionHead.Pin(ref buf.Keys, 2L * hs * Block);   // K_jᵀ, V_jᵀ (hs, Block)
        float* vt = kt + hs * Block;
        int tile = Block * Block;
        float* p = SparseAttentionHead.Pin(ref buf.Tiles, 3 * tile + 2 * Block * hs + Math.Max(Block, hs));
        float* ds = p + tile;                              // dP, then dS
        float* pd = dropout ? ds + tile : p;               // dropout(P): what multiplied V
        float* dkAcc = p + 3 * tile, dvAcc = dkAcc + Block * hs, discard = dvAcc + Block * hs;

        for (int t = 0; t < T; t++) new Span<float>(dq + (long)t * C3, hs).Clear();
        for (int j = 0; j < blocks; j++)
        {
            int j0 = j * Block, keys = Math.Min(Block, T - j0);
            AttentionTiles.Transpose(k + (long)j0 * C3, keys, hs, C3, kt, Block);
            AttentionTiles.Transpose(v + (long)j0 * C3, keys, hs, C3, vt, Block);
            new Span<float>(dkAcc, 2 * Block * hs).Clear();
            for (int i = j; i < blocks; i++)
            {
                bool diagonal = i == j;
                int i0 = i * Block, rows = Math.Min(Block, T - i0);
                // in the forward pass this was: S = Q_i K_jᵀ/√hs, P = softmax(S), O = dropout(P) · V
                Scores(q + (long)i0 * C3, C3, rows, hs, kt, diagonal, p, discard, scale);
                Scores(dy + (long)i0 * C, C, rows, hs, vt, diagonal, ds, discard, 1f);   // d dropout(P) = dO_i · V_jᵀ
                for (int r = 0; r < rows; r++)
                {
                    int t = i0 + r, valid = diagonal ? r + 1 : keys, cols = diagonal ? DiagonalColumns(r) : Block;
                    float* pr = p + r * Block, dpr = ds + r * Block;
                    ExpRowFixed(pr, valid, cols, lse[t]);
                    if (dropout)
                    {
                        float* pdr = pd + r * Block;
                        Dropout.ApplyRowPair(pdr, pr, dpr, valid, a.Seed, a.MaskBase + ((long)bh * T + t) * T + j0, a.P, keepScale);
                        new Span<float>(pdr + valid, cols - valid).Clear();
                    }
                    SoftmaxGradRow(pr, dpr, cols, d[t], scale);   // dS = P ∘ (dP − D) / √hs (0 where P is)
                }
                // dV_j += dropout(P)ᵀ · dO_i and dK_j += dSᵀ · Q_i: key rows k0..k0+7 read column k0.. of P and dS
                // down the query rows; on the diagonal queries before k0 see none of these keys.
                for (int k0 = 0; k0 < keys; k0 += 8)
                {
                    int n = Math.Min(8, keys - k0), q0 = diagonal ? k0 : 0, len = rows - q0;
                    AttentionTiles.Rows8(len, pd + q0 * Block + k0, 1, Block, n, dy + (long)(i0 + q0) * C, C, hs, dvAcc + k0 * hs, hs,
                        discard, 1f, accumulate: true);
                    AttentionTiles.Rows8(len, ds + q0 * Block + k0, 1, Block, n, q + (long)(i0 + q0) * C3, C3, hs, dkAcc + k0 * hs, hs,
                        discard, 1f, accumulate: true);
                }
                // dQ_i += dS · K_j (the 1/√hs is in dS)
                for (int r0 = 0; r0 < rows; r0 += 8)
                {
                    int n = Math.Min(8, rows - r0), kLen = diagonal ? Math.Min(r0 + 8, keys) : keys;
                    AttentionTiles.Rows8(kLen, ds + r0 * Block, Block, 1, n, k + (long)j0 * C3, C3, hs, dq + (long)(i0 + r0) * C3, C3,
                        discard, 1f, accumulate: true);
                }
            }
            for (int r = 0; r < keys; r++)
            {
                new Span<float>(dkAcc + r * hs, hs).CopyTo(new Span<float>(dk + (long)(j0 + r) * C3, hs));
                new Span<float>(dvAcc + r * hs, hs).CopyTo(new Span<float>(dv + (long)(j0 + r) * C3, hs));
            }
        }
    }

    /// <summary>
    /// Score columns a diagonal block computes for its row r: those of r's 4-row tile, up to the tile's last key rounded
    /// up to a vector. For rows r0..r0+7 (r0 a multiple of 8) this reaches key r0 + 7, as the 8-row products read.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int DiagonalColumns(int r) => Math.Min(Block, ((r & ~3) + 4 + 15) & ~15);

    /// <summary>
    /// S (rows, Block; row stride Block) = alpha · X[0 : rows] · Bt, Bt a transposed key block (hs, Block), in 4-row tiles
    /// (rows past the end go to discard); on the diagonal a tile stops at <see cref="DiagonalColumns"/>.
    /// </summary>
    static void Scores(float* x, int ldx, int rows, int hs, float* bt, bool diagonal, float* s, float* discard, float alpha)
    {
        for (int r0 = 0; r0 < rows; r0 += 4)
        {
            int n = Math.Min(4, rows - r0), cols = diagonal ? DiagonalColumns(r0) : Block;
            float* x0 = x + (long)r0 * ldx;
            AttentionTiles.Rows4(hs, x0, x0 + Math.Min(1, n - 1) * (long)ldx, x0 + Math.Min(2, n - 1) * (long)ldx, x0 + Math.Min(3, n - 1) * (long)ldx,
                1, bt, Block, cols, s + r0 * Block, n > 1 ? s + (r0 + 1) * Block : discard, n > 2 ? s + (r0 + 2) * Block : discard,
                n > 3 ? s + (r0 + 3) * Block : discard, alpha);
        }
    }

    static readonly Vector512<int> Iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>Lanes j0..j0+15 that are below valid.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Below(int j0, int valid) => Vector512.LessThan(Iota + Vector512.Create(j0), Vector512.Create(valid)).AsSingle();

    /// <summary>The largest of row[0 .. valid).</summary>
    static float MaskedMax(float* row, int valid)
    {
        var ninf = Vector512.Create(float.NegativeInfinity);
        var mx = ninf;
        int j = 0;
        for (; j + 16 <= valid; j += 16) mx = Vector512.Max(mx, Vector512.Load(row + j));
        if (j < valid) mx = Vector512.Max(mx, Vector512.ConditionalSelect(Below(j, valid), Vector512.Load(row + j), ninf));
        var m8 = Vector256.Max(mx.GetLower(), mx.GetUpper());
        var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
        var m2 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m2.ToScalar(), m2.GetElement(1));
    }

    /// <summary>row[j] = exp(row[j] − max) for j &lt; valid, 0 for valid ≤ j &lt; cols (a multiple of 16); returns the sum.</summary>
    static float ExpRow(float* row, int valid, int cols, float max)
    {
        var mv = Vector512.Create(max);
        var sum = Vector512<float>.Zero;
        for (int j = 0; j < cols; j += 16)
        {
            var e = VectorExp.Exp(Vector512.Load(row + j) - mv);
            if (j + 16 > valid) e = Vector512.ConditionalSelect(Below(j, valid), e, Vector512<float>.Zero);
            e.Store(row + j);
            sum += e;
        }
        return Vector512.Sum(sum);
    }

    /// <summary>row[j] = exp(row[j] − lse) for j &lt; valid, 0 for valid ≤ j &lt; cols: the forward's probabilities, recomputed.</summary>
    static void ExpRowFixed(float* row, int valid, int cols, float lse)
    {
        var lv = Vector512.Create(lse);
        for (int j = 0; j < cols; j += 16)
        {
            var e = VectorExp.Exp(Vector512.Load(row + j) - lv);
            if (j + 16 > valid) e = Vector512.ConditionalSelect(Below(j, valid), e, Vector512<float>.Zero);
            e.Store(row + j);
        }
    }

    /// <summary>dp[0 .. cols) = p ∘ (dp − d) · scale.</summary>
    static void SoftmaxGradRow(float* p, float* dp, int cols, float d, float scale)
    {
        var dv = Vector512.Create(d);
        var sc = Vector512.Create(scale);
        for (int j = 0; j < cols; j += 16) (Vector512.Load(p + j) * (Vector512.Load(dp + j) - dv) * sc).Store(dp + j);
    }

    static void ScaleRow(float* x, int n, float alpha)
    {
        var av = Vector512.Create(alpha);
        for (int j = 0; j < n; j += 16) (Vector512.Load(x + j) * av).Store(x + j);
    }

    static float Dot(float* x, float* y, int n)
    {
        var acc = Vector512<float>.Zero;
        for (int j = 0; j < n; j += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + j), Vector512.Load(y + j), acc);
        return Vector512.Sum(acc);
    }
}
