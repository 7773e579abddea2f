using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>
/// Causal multi-head self-attention core (everything between c_attn and c_proj), fused per (batch, head):
///   q, k, v = split(qkv (B, T, 3C)) into NH heads of hs = C / NH   // (B, NH, T, hs)
///   att = softmax(mask(q · kᵀ / √hs))                               // (B, NH, T, T), causal: key t2 ≤ query t
///   att = dropout(att)
///   y = att · v, heads re-assembled                                 // (B, T, C)
/// Only the log-partition lse (B, NH, T) of each softmax row is kept; the backward pass recomputes att from q, k and
/// lse (as FlashAttention does), so no (B, NH, T, T) buffer exists between the passes. Three kernels:
/// - heads whose size is a multiple of 16 (AVX-512): <see cref="FlashAttention"/> (FlashAttention-2 in 64×64 blocks),
///   at every T, with or without dropout;
/// - the same heads while the caller keeps the probabilities (T ≤ 3·hs, see <see cref="KeepsProbabilities"/>): the
///   register-tiled kernels below (<see cref="AttentionTiles"/>) in a per-thread (T, T) scratch, whose backward pass
///   reads the kept probabilities instead of recomputing them;
/// - other head sizes: queries in blocks of 64 that only meet the keys up to the block's end (skipping the GEMM work
///   above the causal diagonal) in a per-thread T×T scratch, the small products through <c>Gemm.Multiply</c>, which
///   runs serially inside the parallel region over B·NH.
/// </summary>
public static unsafe class Attention
{
    struct Args
    {
        public float* Out, Lse, Qkv, Dout, Dqkv;
        public float* Probs;    // (B, NH, T, Tp) softmax probabilities kept from the forward pass, or null
        public int B, T, C, NH;
        public long MaskBase;   // dropout mask index of this call's first (b, h, t, t2): b0·NH·T·T for a batch slice from b0
        public float P;
        public ulong Seed;
    }

    [ThreadStatic] static float[]? _scratch;

    /// <summary>Whether heads of a size that is a multiple of 16 use <see cref="AttentionTiles"/> (tests compare both paths).</summary>
    internal static bool UseTiles { get; set; } = true;

    static bool Tiled(int hs) => UseTiles && hs % 16 == 0 && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated;

    /// <summary>
    /// Whether a caller should keep the softmax probabilities between <see cref="Forward"/> and <see cref="Backward"/>
    /// (the probs argument): only the tiled kernels use them, and only while they take no more memory than the qkv
    /// activation (T rounded up to 16 ≤ 3·head size). The backward pass then skips recomputing Q·Kᵀ and its exp.
    /// </summary>
    public static bool KeepsProbabilities(int T, int C, int NH) => Tiled(C / NH) && ((T + 15) & ~15) <= 3 * (C / NH);

    /// <summary>Floats of the probabilities buffer for B sequences: (B, NH, T, T rounded up to 16).</summary>
    public static long ProbabilitiesLength(int B, int T, int NH) => (long)B * NH * T * ((T + 15) & ~15);

    static float* Scratch(int length)
    {
        if (_scratch == null || _scratch.Length < length)
            _scratch = GC.AllocateUninitializedArray<float>(length, pinned: true);
        return (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _scratch[0]);
    }

    /// <summary>
    /// out (B, T, C) and lse (B, NH, T) from qkv (B, T, 3C). dropoutP is the attention-weight dropout (0 for none)
    /// with its mask drawn from <paramref name="seed"/>. A call on a batch slice that starts at sequence
    /// <paramref name="batchOffset"/> of a larger batch draws the same mask as the whole-batch call would there.
    /// probs, when not empty (see <see cref="KeepsProbabilities"/>), receives the softmax probabilities (before
    /// dropout), <see cref="ProbabilitiesLength"/> floats, for the backward pass.
    /// </summary>
    public static void Forward(Span<float> output, Span<float> lse, ReadOnlySpan<float> qkv, int B, int T, int C, int NH,
        float dropoutP = 0f, ulong seed = 0, int batchOffset = 0, Span<float> probs = default)
    {
        if (probs.IsEmpty && Tiled(C / NH)) { FlashAttention.Forward(output, lse, qkv, B, T, C, NH, dropoutP, seed, batchOffset); return; }
        if (!probs.IsEmpty) Check.Length(probs, ProbabilitiesLength(B, T, NH), nameof(probs));
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(output, (long)B * T * C, nameof(output));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* o = output, l = lse, x = qkv, pr = probs)
        {
            var a = new Args { Out = o, Lse = l, Qkv = x, Probs = pr, B = B, T = T, C = C, NH = NH, P = dropoutP, Seed = seed,
                MaskBase = (long)batchOffset * NH * T * T };
            if (Tiled(C / NH)) KernelThreads.For(B * NH, ref a, &ForwardHeadTiled);
            else KernelThreads.For(B * NH, ref a, &ForwardHead);
        }
    }

    static void ForwardHead(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C;
        int b = bh / NH, h = bh % NH;
        float scale = 1f / MathF.Sqrt(hs);
        float* q = a.Qkv + (long)b * T * C3 + h * hs, k = q + C, v = q + 2 * C;
        float* y = a.Out + (long)b * T * C + h * hs;
        float* att = Scratch(T * T);                          // (T, T) for this head, row stride T
        float* lse = a.Lse + (long)bh * T;
        float keepScale = a.P > 0 ? 1f / (1f - a.P) : 1f;
        // Query blocks [t0, t1) only meet keys [0, t1): the causal mask skips the blocks above the diagonal.
        for (int t0 = 0; t0 < T; t0 += QueryBlock)
        {
            int t1 = Math.Min(T, t0 + QueryBlock), m = t1 - t0;
            var attBlock = new Span<float>(att + t0 * T, (m - 1) * T + t1);
            // att[t0:t1, 0:t1] = q[t0:t1] · k[0:t1]ᵀ / √hs
            Gemm.Multiply(false, true, m, t1, hs, scale, Strided(q + t0 * C3, m, C3, hs), C3, Strided(k, t1, C3, hs), C3,
                0f, attBlock, T);
            for (int t = t0; t < t1; t++)
            {
                var row = new Span<float>(att + t * T, t + 1); // keys 0..t (causal)
                lse[t] = Softmax.Row(row, row);
                new Span<float>(att + t * T + t + 1, t1 - t - 1).Clear();   // masked keys get weight 0
                if (a.P > 0)
                {
                    long baseIndex = a.MaskBase + ((long)bh * T + t) * T;
                    fixed (float* pr = row) Dropout.ApplyRow(pr, pr, t + 1, a.Seed, baseIndex, a.P, keepScale);
                }
            }
            // y[t0:t1] (m, hs) = att[t0:t1, 0:t1] · v[0:t1], written into columns h·hs of out (B, T, C)
            Gemm.Multiply(false, false, m, hs, t1, 1f, attBlock, T, Strided(v, t1, C3, hs), C3, 0f,
                new Span<float>(y + (long)t0 * C, (m - 1) * C + hs), C);
        }
    }

    /// <summary>Rows of a query block: small enough that skipping the masked blocks pays, large enough for GEMM.</summary>
    const int QueryBlock = 64;

    /// <summary>A (rows, cols) view with row stride ld, as the span GEMM reads.</summary>
    static Span<float> Strided(float* p, int rows, int ld, int cols) => new(p, (rows - 1) * ld + cols);

    /// <summary>
    /// Backward of <see cref="Forward"/>: dqkv (B, T, 3C) is WRITTEN (every element) from dout (B, T, C),
    /// qkv (B, T, 3C) and lse (B, NH, T). Dropout settings must equal the forward call's, and so must probs: the
    /// probabilities the forward call wrote, or empty to recompute them. y: the forward's output, which
    /// <see cref="FlashAttention"/> reads for its row terms D = dO · O (without it each head recomputes its output).
    /// </summary>
    public static void Backward(Span<float> dqkv, ReadOnlySpan<float> dout, ReadOnlySpan<float> qkv, ReadOnlySpan<float> lse,
        int B, int T, int C, int NH, float dropoutP = 0f, ulong seed = 0, int batchOffset = 0, ReadOnlySpan<float> probs = default,
        ReadOnlySpan<float> y = default)
    {
        if (probs.IsEmpty && Tiled(C / NH)) { FlashAttention.Backward(dqkv, dout, qkv, y, lse, B, T, C, NH, dropoutP, seed, batchOffset); return; }
        if (!probs.IsEmpty) Check.Length(probs, ProbabilitiesLength(B, T, NH), nameof(probs));
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(dqkv, (long)B * T * 3 * C, nameof(dqkv));
        Check.Length(dout, (long)B * T * C, nameof(dout));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* d = dqkv, g = dout, x = qkv, l = lse, pr = probs)
        {
            var a = new Args { Dqkv = d, Dout = g, Qkv = x, Lse = l, Probs = pr, B = B, T = T, C = C, NH = NH, P = dropoutP, Seed = seed,
                MaskBase = (long)batchOffset * NH * T * T };
            if (Tiled(C / NH)) KernelThreads.For(B * NH, ref a, &BackwardHeadTiled);
            else KernelThreads.For(B * NH, ref a, &BackwardHead);
        }
    }

    static void BackwardHead(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C;
        int b = bh / NH, h = bh % NH;
        float scale = 1f / MathF.Sqrt(hs);
        long offset = (long)b * T * C3 + h * hs;
        float* q = a.Qkv + offset, k = q + C, v = q + 2 * C;
        float* dq = a.Dqkv + offset, dk = dq + C, dv = dq + 2 * C;
        float* dy = a.Dout + (long)b * T * C + h * hs;
        bool dropout = a.P > 0;
        float* scratch = Scratch((dropout ? 3 : 2) * T * T);
        float* att = scratch;                                 // P: softmax probabilities (T, T)
        float* datt = scratch + T * T;                        // dP, then dS (T, T)
        float* attDropped = dropout ? scratch + 2 * T * T : att;
        float* lse = a.Lse + (long)bh * T;
        float keepScale = dropout ? 1f / (1f - a.P) : 1f;
        // dk and dv gather contributions from every query block after theirs.
        for (int t = 0; t < T; t++)
        {
            new Span<float>(dk + (long)t * C3, hs).Clear();
            new Span<float>(dv + (long)t * C3, hs).Clear();
        }
        for (int t0 = 0; t0 < T; t0 += QueryBlock)
        {
            int t1 = Math.Min(T, t0 + QueryBlock), m = t1 - t0;
            var qBlock = Strided(q + t0 * C3, m, C3, hs);
            var dyBlock = Strided(dy + (long)t0 * C, m, C, hs);
            var attBlock = new Span<float>(att + t0 * T, (m - 1) * T + t1);
            var dattBlock = new Span<float>(datt + t0 * T, (m - 1) * T + t1);
            var droppedBlock = new Span<float>(attDropped + t0 * T, (m - 1) * T + t1);

            // Recompute P = exp(q·kᵀ/√hs − lse) on the causal part of this block.
            Gemm.Multiply(false, true, m, t1, hs, scale, qBlock, C3, Strided(k, t1, C3, hs), C3, 0f, attBlock, T);
            for (int t = t0; t < t1; t++)
            {
                var row = new Span<float>(att + t * T, t + 1);
                TensorPrimitives.Subtract(row, lse[t], row);
                TensorPrimitives.Exp(row, row);
                new Span<float>(att + t * T + t + 1, t1 - t - 1).Clear();
                if (dropout)
                {
                    long baseIndex = a.MaskBase + ((long)bh * T + t) * T;
                    Dropout.ApplyRow(attDropped + t * T, att + t * T, t + 1, a.Seed, baseIndex, a.P, keepScale);
                    new Span<float>(attDropped + t * T + t + 1, t1 - t - 1).Clear();
                }
            }
            // in the forward pass this was: y = attDropped · v
            // dv[0:t1] += attDroppedᵀ · dy ; dattDropped (m, t1) = dy · vᵀ
            Gemm.Multiply(true, false, t1, hs, m, 1f, droppedBlock, T, dyBlock, C, 1f, Strided(dv, t1, C3, hs), C3);
            Gemm.Multiply(false, true, m, t1, hs, 1f, dyBlock, C, Strided(v, t1, C3, hs), C3, 0f, dattBlock, T);
            for (int t = t0; t < t1; t++)
            {
                var p = new ReadOnlySpan<float>(att + t * T, t + 1);
                var dp = new Span<float>(datt + t * T, t + 1);
                if (dropout)
                {
                    long baseIndex = a.MaskBase + ((long)bh * T + t) * T;
                    fixed (float* pdp = dp) Dropout.ApplyRow(pdp, pdp, t + 1, a.Seed, baseIndex, a.P, keepScale);
                }
                // softmax backward: ds = p ⊙ (dp − Σ p·dp), times the 1/√hs of the scores
                float dot = TensorPrimitives.Dot(p, dp);
                TensorPrimitives.Subtract(dp, dot, dp);
                TensorPrimitives.Multiply(dp, p, dp);
                TensorPrimitives.Multiply(dp, scale, dp);
                new Span<float>(datt + t * T + t + 1, t1 - t - 1).Clear();
            }
            // in the forward pass this was: s = q · kᵀ (scale already folded into ds)
            // dq[t0:t1] = ds · k[0:t1] ; dk[0:t1] += dsᵀ · q[t0:t1]
            Gemm.Multiply(false, false, m, hs, t1, 1f, dattBlock, T, Strided(k, t1, C3, hs), C3, 0f,
                Strided(dq + t0 * C3, m, C3, hs), C3);
            Gemm.Multiply(true, false, t1, hs, m, 1f, dattBlock, T, qBlock, C3, 1f, Strided(dk, t1, C3, hs), C3);
        }
    }

    // ---- Heads whose size is a multiple of 16 while the caller keeps the probabilities (T ≤ 3·hs): register tiles of
    // 4 query (or key) rows, see AttentionTiles. Probabilities live in the caller's (T, Tp) rows per head, Tp = T rounded
    // up to 16; a 4-row tile only computes the key columns up to its last row (rounded up to a vector), which skips the
    // masked triangle. ----

    static void ForwardHeadTiled(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C, Tp = (T + 15) & ~15;
        int b = bh / NH, h = bh % NH;
        float scale = 1f / MathF.Sqrt(hs);
        float* q = a.Qkv + (long)b * T * C3 + h * hs, k = q + C, v = q + 2 * C;
        float* y = a.Out + (long)b * T * C + h * hs;
        bool dropout = a.P > 0;
        float* kt = Scratch(hs * Tp + T * Tp + Math.Max(Tp, hs));
        float* att = a.Probs + (long)bh * T * Tp;              // (T, Tp) scores, then probabilities, kept for the backward pass
        float* dropped = kt + hs * Tp;                         // dropout(P), what multiplies v (P itself without dropout)
        float* discard = dropped + T * Tp;                     // output row of tile rows past T
        float* weights = dropout ? dropped : att;
        float* lse = a.Lse + (long)bh * T;
        float keepScale = dropout ? 1f / (1f - a.P) : 1f;
        PrefetchHead(ref a, bh + 1, backward: false);
        AttentionTiles.Transpose(k, T, hs, C3, kt, Tp);
        for (int i0 = 0; i0 < T; i0 += 8)
        {
            // 8 query rows: scores as two 4-row tiles (each up to its own last key), one 8-row tile for P·V.
            int rows = Math.Min(8, T - i0), kEnd = Math.Min(T, i0 + 8);
            int colsA = (Math.Min(T, i0 + 4) + 15) & ~15, colsB = (kEnd + 15) & ~15;   // colsA ≥ kEnd: i0 is a multiple of 8
            // att[i0:i0+8, 0:cols] = q[i0:i0+8] · kᵀ / √hs
            Tile(hs, q, C3, 1, i0, Math.Min(4, rows), kt, Tp, colsA, att, Tp, discard, scale);
            if (rows > 4) Tile(hs, q, C3, 1, i0 + 4, rows - 4, kt, Tp, colsB, att, Tp, discard, scale);
            for (int t = i0; t < i0 + rows; t++)
            {
                int cols = t < i0 + 4 ? colsA : colsB;
                float* row = att + t * Tp;
                lse[t] = AttentionTiles.SoftmaxRow(row, t, cols);   // keys 0..t (causal); masked keys get weight 0
                if (dropout)
                {
                    long baseIndex = a.MaskBase + ((long)bh * T + t) * T;
                    float* pd = dropped + t * Tp;
                    Dropout.ApplyRow(pd, row, t + 1, a.Seed, baseIndex, a.P, keepScale);
                    new Span<float>(pd + t + 1, cols - t - 1).Clear();
                }
            }
            // y[i0:i0+8] = weights[i0:i0+8, 0:kEnd] · v[0:kEnd]
            AttentionTiles.Rows8(kEnd, weights + (long)i0 * Tp, Tp, 1, rows, v, C3, hs, y + (long)i0 * C, C, discard, 1f);
        }
    }

    static void BackwardHeadTiled(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C, Tp = (T + 15) & ~15;
        int b = bh / NH, h = bh % NH;
        float scale = 1f / MathF.Sqrt(hs);
        long offset = (long)b * T * C3 + h * hs;
        float* q = a.Qkv + offset, k = q + C, v = q + 2 * C;
        float* dq = a.Dqkv + offset, dk = dq + C, dv = dq + 2 * C;
        float* dy = a.Dout + (long)b * T * C + h * hs;
        bool dropout = a.P > 0;
        float* vt = Scratch(hs * Tp + 2 * T * Tp + Math.Max(Tp, hs));
        float* att = a.Probs + (long)bh * T * Tp;             // P (T, Tp): the forward's
        float* ds = vt + hs * Tp;                             // dP, then dS (T, Tp)
        float* dropped = dropout ? ds + T * Tp : att;         // dropout(P): what multiplied v
        float* discard = ds + 2 * T * Tp;
        float keepScale = dropout ? 1f / (1f - a.P) : 1f;
        PrefetchHead(ref a, bh + 1, backward: true);
        AttentionTiles.Transpose(v, T, hs, C3, vt, Tp);

        // Query tiles of 8 rows: dS (as two 4-row tiles, each up to its own last key), then dq (written).
        for (int i0 = 0; i0 < T; i0 += 8)
        {
            int rows = Math.Min(8, T - i0), kEnd = Math.Min(T, i0 + 8);
            int colsA = (Math.Min(T, i0 + 4) + 15) & ~15, colsB = (kEnd + 15) & ~15;   // colsA ≥ kEnd: i0 is a multiple of 8
            // in the forward pass this was: y = dropout(P) · v, so d dropout(P) = dy · vᵀ
            Tile(hs, dy, C, 1, i0, Math.Min(4, rows), vt, Tp, colsA, ds, Tp, discard, 1f);
            if (rows > 4)
            {
                Tile(hs, dy, C, 1, i0 + 4, rows - 4, vt, Tp, colsB, ds, Tp, discard, 1f);
            }
            for (int t = i0; t < i0 + rows; t++)
            {
                int cols = t < i0 + 4 ? colsA : colsB;
                float* p = att + t * Tp, dp = ds + t * Tp;
                if (dropout)
                {
                    long baseIndex = a.MaskBase + ((long)bh * T + t) * T;
                    float* pd = dropped + t * Tp;
                    Dropout.ApplyRowPair(pd, p, dp, t + 1, a.Seed, baseIndex, a.P, keepScale);
                    new Span<float>(pd + t + 1, cols - t - 1).Clear();
                }
                // softmax backward: ds = p ⊙ (dp − Σ p·dp), times the 1/√hs of the scores (0 past key t, as p)
                AttentionTiles.SoftmaxGradRow(p, dp, cols, scale);
            }
            // in the forward pass this was: s = q · kᵀ (scale folded into ds), so dq = ds · k
            AttentionTiles.Rows8(kEnd, ds + (long)i0 * Tp, Tp, 1, rows, k, C3, hs, dq + (long)i0 * C3, C3, discard, 1f);
        }

        // Key tiles of 8 rows: dv = dropout(P)ᵀ · dy and dk = dSᵀ · q, summing over the queries t ≥ j0 that can see
        // them (column j of P is read down its rows: lda 1, step Tp).
        for (int j0 = 0; j0 < T; j0 += 8)
        {
            int rows = Math.Min(8, T - j0), kLen = T - j0;
            long corner = (long)j0 * Tp + j0;
            AttentionTiles.Rows8(kLen, dropped + corner, 1, Tp, rows, dy + (long)j0 * C, C, hs, dv + (long)j0 * C3, C3, discard, 1f);
            AttentionTiles.Rows8(kLen, ds + corner, 1, Tp, rows, q + (long)j0 * C3, C3, hs, dk + (long)j0 * C3, C3, discard, 1f);
        }
    }

    /// <summary>
    /// Starts loading into L2 what head bh reads and writes (its q, k, v columns, kept probabilities, and output rows;
    /// in the backward pass also dout and dqkv), so that a thread moving on to the next head finds it there: in a model
    /// step these are buffers last touched a layer or a whole pass ago.
    /// </summary>
    static void PrefetchHead(ref Args a, int bh, bool backward)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported || bh >= a.B * a.NH) return;
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C, Tp = (T + 15) & ~15;
        int b = bh / NH, h = bh % NH;
        long qkvOffset = (long)b * T * C3 + h * hs, outOffset = (long)b * T * C + h * hs;
        for (int t = 0; t < T; t++)
        {
            PrefetchRun(a.Qkv + qkvOffset + (long)t * C3, hs);
            PrefetchRun(a.Qkv + qkvOffset + (long)t * C3 + C, hs);
            PrefetchRun(a.Qkv + qkvOffset + (long)t * C3 + 2 * C, hs);
            if (!backward) PrefetchRun(a.Out + outOffset + (long)t * C, hs);
            else
            {
                PrefetchRun(a.Dout + outOffset + (long)t * C, hs);
                PrefetchRun(a.Dqkv + qkvOffset + (long)t * C3, hs);
                PrefetchRun(a.Dqkv + qkvOffset + (long)t * C3 + C, hs);
                PrefetchRun(a.Dqkv + qkvOffset + (long)t * C3 + 2 * C, hs);
            }
        }
        if (a.Probs != null) PrefetchRun(a.Probs + (long)bh * T * Tp, T * Tp);
    }

    /// <summary>Prefetches (into L2) each 64-byte cache line that holds some of the n floats from p, once.</summary>
    static void PrefetchRun(float* p, int n)
    {
        byte* line = (byte*)((nuint)p & ~(nuint)63), end = (byte*)(p + n);
        for (; line < end; line += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch1(line);
    }

    /// <summary>
    /// One 4-row tile: rows i0.. of C (row stride ldc; rows past `rows` go to the discard row) = alpha · Σ_p a_r[p·aStep]
    /// · (row p of B), with a_r = a + (i0 + r)·lda clamped to the last valid row.
    /// </summary>
    static void Tile(int kLen, float* a, long lda, int aStep, int i0, int rows, float* b, int ldb, int cols,
        float* c, int ldc, float* discard, float alpha) =>
        AttentionTiles.Rows4(kLen, a + Row(i0, 0, rows) * lda, a + Row(i0, 1, rows) * lda, a + Row(i0, 2, rows) * lda,
            a + Row(i0, 3, rows) * lda, aStep, b, ldb, cols,
            Out(c, ldc, i0, 0, rows, discard), Out(c, ldc, i0, 1, rows, discard),
            Out(c, ldc, i0, 2, rows, discard), Out(c, ldc, i0, 3, rows, discard), alpha);

    /// <summary>Index of tile row r (of a tile starting at i0 with `rows` valid rows), clamped to the last valid row.</summary>
    static long Row(int i0, int r, int rows) => i0 + Math.Min(r, rows - 1);

    /// <summary>Output row r of a tile: row i0 + r of a matrix with row stride ld, or the discard row past the end.</summary>
    static float* Out(float* c, int ld, int i0, int r, int rows, float* discard) => r < rows ? c + (long)(i0 + r) * ld : discard;
}
