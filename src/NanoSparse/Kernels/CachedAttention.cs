using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Attention of one new position over a dense KV cache (decoding one token): for each head h,
/// y_h = Σ_j exp(s_j − max s) · v_j,h / Σ_j exp(s_j − max s) with s_j = q_h · k_j,h / √hs over the cached positions j.
/// At hs = 64 (AVX-512) the positions go in fixed chunks over the threads (<see cref="Chunked"/>: one or two threads
/// give the same bits); other head sizes take one head per work item (<see cref="Head"/>): one pass over the keys
/// writes the head's scores, one pass over the values accumulates y in registers. A decode step at a few hundred
/// cached positions spends as long here as in a 90%-sparse layer's SpMVs, and a per-(head, position) call into a span
/// helper costs more than its 64 multiply-adds.
/// </summary>
public static unsafe partial class CachedAttention
{
    /// <summary>Below this many cached floats (count · width, keys or values) the heads run on the calling thread.</summary>
    const long MinParallelFloats = 1 << 14;

    /// <summary>Scores up to this many positions live on each thread's stack; longer caches use the caller's buffer, serially.</summary>
    const int StackPositions = 4096;

    struct Args
    {
        public float* Y, Q, Keys, Values, Scores;
        public float* RunY, RunM, RunL, ChunkStats, ChunkSums;
        public int Count, Width, HeadSize, Heads, Items;
    }

    /// <summary>
    /// y (A) = attention of q (A) over positions [0, count) of keys and values (count, A), A = width = heads · hs,
    /// heads side by side as in qkv. scores: at least count floats of scratch.
    /// </summary>
    public static void Forward(Span<float> y, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        int count, int width, int heads, Span<float> scores)
    {
        if (heads <= 0 || width <= 0 || width % heads != 0)
            throw new ArgumentException($"width ({width}) must be a positive multiple of heads ({heads})");
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "attention needs at least one cached position");
        Check.Length(y, width, nameof(y));
        Check.Length(q, width, nameof(q));
        Check.Length(keys, (long)count * width, nameof(keys));
        Check.Length(values, (long)count * width, nameof(values));
        Check.Length(scores, count, nameof(scores));
        fixed (float* py = y, pq = q, pk = keys, pv = values, ps = scores)
        {
            var args = new Args { Y = py, Q = pq, Keys = pk, Values = pv, Scores = ps, Count = count, Width = width, HeadSize = width / heads };
            bool parallel = count <= StackPositions && (long)count * width >= MinParallelFloats;
            if (Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Sse.IsSupported && args.HeadSize == 64 && heads <= ChunkMaxHeads)
                Chunked(ref args, heads);
            else if (!parallel)
                for (int h = 0; h < heads; h++) Head(ref args, h);
            else
                KernelThreads.For(heads, ref args, &Head);
        }
    }

    /// <summary>Positions per chunk (<see cref="Chunked"/>): the unit of the softmax and of the merge.</summary>
    const int ChunkPositions = 32;

    /// <summary>Chunks a work item scores before it reads their values: 256 positions, so the key and the value pass
    /// each read up to 256 rows as one stream.</summary>
    const int BlockChunks = 8;

    /// <summary>Heads up to this many take the chunked path (a work item keeps 256 positions × H, H rounded up to 16, scores on its stack).</summary>
    const int ChunkMaxHeads = 64;

    [ThreadStatic] static float[]? _partials;

    /// <summary>
    /// hs = 64: the cached positions in chunks of <see cref="ChunkPositions"/> (flash-decoding). Chunk c takes the
    /// softmax of its own scores (its maximum m_c,h, e = exp(s − m_c,h), l_c,h = Σ e) and adds e · v over its rows into
    /// o_c,h; the chunks are then merged in order, online: M' = max(M, m_c), α = exp(M − M'), β = exp(m_c − M'),
    /// L = α·L + β·l_c, Y = α·Y + β·o_c, and y_h = Y_h / L_h. The chunks do not depend on the thread count and merge in
    /// the same order with the same operations, so one and two threads give the same bits. A work item is a contiguous
    /// range of chunks, one per thread, walked <see cref="BlockChunks"/> chunks at a time: the key pass reads their rows
    /// whole (every head scored from one stretch of each row), then the value pass reads the same rows of the values.
    /// One item (one thread) merges each chunk as it ends, so its sums stay in one buffer in L1; with two, the chunks'
    /// sums go to a buffer that the caller merges once both items are done. Scores are kept position by position (the
    /// heads side by side), so a chunk's softmax takes sixteen heads per vector.
    /// With two threads each core streams its own half of the rows. The head groups this replaced (six heads per
    /// thread, half of every row each, requested ahead into L2) barely scaled with a second thread. Decode-only scratch
    /// harness (90%-sparse gpt2-shaped model, 256 tokens after a 64-token prompt, attention timed per call, Zen 4,
    /// alternated runs): two threads 0.35–0.38 ms per token against 0.39–0.68 for the head groups (three runs; the
    /// decode 585–628 tokens/s against 476–609); one thread 0.47–0.60 against 0.48–0.55 (seven runs: level). Versions
    /// that walked 32 rows of keys then 32 of values, merged every chunk at the end from a buffer per chunk, or kept
    /// the scores head by head were 6–11% slower at one thread.
    /// </summary>
    static void Chunked(ref Args a, int heads)
    {
        const int hs = 64;
        int n = a.Count, chunks = (n + ChunkPositions - 1) / ChunkPositions;
        int items = (long)n * a.Width < MinParallelFloats ? 1 : KernelThreads.ThreadsFor(chunks);
        // The running state (Y: H·64, M and L: H each, padded to whole vectors), each chunk's maximum and sum (2H),
        // and with two or more items every chunk's sums (H·64 each; with one item, one chunk's).
        int lanes = (heads + 15) & ~15;
        long stats = ((long)chunks * 2 * heads + 15) & ~15L;   // whole lines, so the sums after them start on one
        long floats = (long)heads * hs + 2L * lanes + stats + (long)(items == 1 ? 1 : chunks) * heads * hs + 16;
        if (_partials is null || _partials.Length < floats) _partials = GC.AllocateUninitializedArray<float>(checked((int)floats), pinned: true);
        fixed (float* buffer = _partials)
        {
            float* run = (float*)(((nint)buffer + 63) & ~(nint)63);
            a.RunY = run;
            a.RunM = run + heads * hs;
            a.RunL = a.RunM + lanes;
            a.ChunkStats = a.RunL + lanes;
            a.ChunkSums = a.ChunkStats + stats;
            a.Heads = heads;
            a.Items = items;
            new Span<float>(a.RunY, heads * hs).Clear();
            new Span<float>(a.RunM, lanes).Fill(float.NegativeInfinity);
            new Span<float>(a.RunL, lanes).Clear();
            if (items == 1) Item(ref a, 0);
            else
            {
                KernelThreads.For(items, ref a, &Item);
                for (int c = 0; c < chunks; c++) MergeChunk(ref a, c, a.ChunkSums + (long)c * heads * hs);
            }
            for (int h = 0; h < heads; h++)
            {
                var norm = Vector512.Create(1f / a.RunL[h]);
                float* yh = a.Y + h * hs, run_h = a.RunY + h * hs;
                for (int i = 0; i < hs; i += 16) (Vector512.Load(run_h + i) * norm).Store(yh + i);
            }
        }
    }

    /// <summary>Work item i: chunks [i·chunks/items, (i + 1)·chunks/items), see <see cref="Chunked"/>.</summary>
    // SkipLocalsInit: the scores are written before they are read (the JIT would zero them on every call).
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void Item(ref Args a, int item)
    {
        const int hs = 64, P = ChunkPositions, B = BlockChunks * ChunkPositions;
        int H = a.Heads, Hp = (H + 15) & ~15, C = a.Width, n = a.Count, chunks = (n + P - 1) / P;
        int first = (int)((long)chunks * item / a.Items), last = (int)((long)chunks * (item + 1) / a.Items);
        float* s = stackalloc float[Hp * B];   // position j's scores, head by head, at s + j·Hp (lanes past H unused)
        float scale = 1f / MathF.Sqrt(hs);
        for (int c0 = first; c0 < last; c0 += BlockChunks)
        {
            int c1 = Math.Min(last, c0 + BlockChunks), j0 = c0 * P, j1 = Math.Min(n, c1 * P);
            float* q = a.Q, k = a.Keys + (long)j0 * C;
            for (int j = 0; j < j1 - j0; j++)
            {
                float* kj = k + (long)j * C, sj = s + j * Hp;
                for (int h = 0; h < H; h++)
                {
                    float* kh = kj + h * hs, qh = q + h * hs;
                    var acc0 = Vector512.Load(qh) * Vector512.Load(kh);
                    var acc1 = Vector512.Load(qh + 16) * Vector512.Load(kh + 16);
                    acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 32), Vector512.Load(kh + 32), acc0);
                    acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 48), Vector512.Load(kh + 48), acc1);
                    sj[h] = Sum(acc0 + acc1) * scale;
                }
            }
            // Each chunk's softmax within the chunk, sixteen heads at a time (one vector per position).
            for (int c = c0; c < c1; c++)
            {
                int from = (c - c0) * P, to = Math.Min(n, (c + 1) * P) - j0;
                float* m = a.ChunkStats + (long)c * 2 * H, l = m + H;
                for (int h0 = 0; h0 < H; h0 += 16)
                {
                    var max = Vector512.Load(s + from * Hp + h0);
                    for (int j = from + 1; j < to; j++) max = Vector512.Max(max, Vector512.Load(s + j * Hp + h0));
                    var sum = Vector512<float>.Zero;
                    for (int j = from; j < to; j++)
                    {
                        var e = VectorExp.Exp(Vector512.Load(s + j * Hp + h0) - max);
                        e.Store(s + j * Hp + h0);
                        sum += e;
                    }
                    for (int h = h0; h < Math.Min(H, h0 + 16); h++)
                    {
                        m[h] = max.GetElement(h - h0);
                        l[h] = sum.GetElement(h - h0);
                    }
                }
            }
            // o_c,h = Σ_j e_j,h · v_j,h over chunk c's rows, the rows of the block read in order.
            float* vj = a.Values + (long)j0 * C;
            for (int c = c0; c < c1; c++)
            {
                float* o = a.ChunkSums + (a.Items == 1 ? 0 : (long)c * H * hs);
                for (int i = 0; i < H * hs; i += 16) Vector512<float>.Zero.Store(o + i);
                int at = (c - c0) * P, end = Math.Min(n, (c + 1) * P) - j0;
                for (int j = at; j < end; j++, vj += C)
                {
                    float* sj = s + j * Hp;
                    for (int h = 0; h < H; h++)
                    {
                        var p = Vector512.Create(sj[h]);
                        float* oh = o + h * hs, vh = vj + h * hs;
                        Vector512.FusedMultiplyAdd(p, Vector512.Load(vh), Vector512.Load(oh)).Store(oh);
                        Vector512.FusedMultiplyAdd(p, Vector512.Load(vh + 16), Vector512.Load(oh + 16)).Store(oh + 16);
                        Vector512.FusedMultiplyAdd(p, Vector512.Load(vh + 32), Vector512.Load(oh + 32)).Store(oh + 32);
                        Vector512.FusedMultiplyAdd(p, Vector512.Load(vh + 48), Vector512.Load(oh + 48)).Store(oh + 48);
                    }
                }
                if (a.Items == 1) MergeChunk(ref a, c, o);
            }
        }
    }

    /// <summary>The running state after chunk c (sums o, H·64): see <see cref="Chunked"/>. Sixteen heads at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MergeChunk(ref Args a, int c, float* o)
    {
        const int hs = 64;
        int H = a.Heads;
        float* m = a.ChunkStats + (long)c * 2 * H, l = m + H;
        float* alpha = stackalloc float[16], beta = stackalloc float[16];
        var lanes = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int h0 = 0; h0 < H; h0 += 16)
        {
            var valid = Vector512.LessThan(lanes, Vector512.Create(H - h0)).AsSingle();
            var mc = Vector512.ConditionalSelect(valid, Vector512.Load(m + h0), Vector512<float>.Zero);   // lanes past H: never used
            var lc = Vector512.ConditionalSelect(valid, Vector512.Load(l + h0), Vector512<float>.Zero);
            var run = Vector512.Load(a.RunM + h0);
            var next = Vector512.Max(run, mc);
            var al = VectorExp.Exp(run - next);   // the first chunk: exp(−∞) = its floor, times Y = 0 and L = 0
            var be = VectorExp.Exp(mc - next);
            next.Store(a.RunM + h0);
            Vector512.FusedMultiplyAdd(be, lc, al * Vector512.Load(a.RunL + h0)).Store(a.RunL + h0);
            al.Store(alpha);
            be.Store(beta);
            for (int h = h0; h < Math.Min(H, h0 + 16); h++)
            {
                var av = Vector512.Create(alpha[h - h0]);
                var bv = Vector512.Create(beta[h - h0]);
                float* yh = a.RunY + h * hs, oh = o + h * hs;
                for (int i = 0; i < hs; i += 16)
                    Vector512.FusedMultiplyAdd(bv, Vector512.Load(oh + i), av * Vector512.Load(yh + i)).Store(yh + i);
            }
        }
    }

    /// <summary>
    /// The sum of v's 16 lanes: halves added down to four lanes, then two shuffles (7 instructions; the JIT's
    /// Vector512.Sum reduces each 128-bit quarter on its own, ~24). The 90%-sparse gpt2-shaped model decoded at
    /// 380–428 tokens/s against 372–426 at one thread and 496–565 against 501–543 at two (decode-only scratch harness,
    /// three alternated runs, Zen 4): within the spread, but never behind.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Sum(Vector512<float> v)
    {
        var s8 = v.GetLower() + v.GetUpper();
        var s4 = s8.GetLower() + s8.GetUpper();
        var s2 = s4 + System.Runtime.Intrinsics.X86.Sse.MoveHighToLow(s4, s4);
        return (s2 + System.Runtime.Intrinsics.X86.Sse.Shuffle(s2, s2, 1)).ToScalar();
    }

    /// <summary>y[0..64) = norm · Σ_j p_j · v[j·C .. j·C + 64), four accumulators held across all n rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void WeightedRows64(float* p, float* v, int n, int C, Vector512<float> norm, float* y)
    {
        Vector512<float> y0 = default, y1 = default, y2 = default, y3 = default;
        for (int j = 0; j < n; j++, v += C)
        {
            var w = Vector512.Create(p[j]);
            y0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v), y0);
            y1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 16), y1);
            y2 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 32), y2);
            y3 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 48), y3);
        }
        (y0 * norm).Store(y);
        (y1 * norm).Store(y + 16);
        (y2 * norm).Store(y + 32);
        (y3 * norm).Store(y + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void Head(ref Args a, int h)
    {
        int n = a.Count, C = a.Width, hs = a.HeadSize;
        float* s = a.Scores;
        if (n <= StackPositions)
        {
            float* own = stackalloc float[n];
            s = own;
        }
        float* q = a.Q + h * hs, k = a.Keys + h * hs, v = a.Values + h * hs, y = a.Y + h * hs;
        float scale = 1f / MathF.Sqrt(hs);
        bool wide = Vector512.IsHardwareAccelerated && hs % 16 == 0;

        // s_j = q · k_j / √hs
        if (wide)
            for (int j = 0; j < n; j++)
            {
                float* kj = k + (long)j * C;
                var acc0 = Vector512.Load(q) * Vector512.Load(kj);
                var acc1 = Vector512<float>.Zero;
                int c = 16;
                for (; c + 32 <= hs; c += 32)
                {
                    acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(q + c), Vector512.Load(kj + c), acc1);
                    acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(q + c + 16), Vector512.Load(kj + c + 16), acc0);
                }
                if (c < hs) acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(q + c), Vector512.Load(kj + c), acc1);
                s[j] = Sum(acc0 + acc1) * scale;
            }
        else
            for (int j = 0; j < n; j++)
                s[j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(q, hs), new ReadOnlySpan<float>(k + (long)j * C, hs)) * scale;

        // e_j = exp(s_j − max s); y = Σ e_j v_j / Σ e_j
        var e = new Span<float>(s, n);
        float max = TensorPrimitives.Max(e);
        TensorPrimitives.Subtract(e, max, e);
        TensorPrimitives.Exp(e, e);
        float inverse = 1f / TensorPrimitives.Sum(e);
        if (wide)
        {
            var norm = Vector512.Create(inverse);
            int c = 0;
            for (; c + 64 <= hs; c += 64) WeightedRows64(s, v + c, n, C, norm, y + c);
            for (; c < hs; c += 16)
            {
                Vector512<float> y0 = default;
                float* vj = v + c;
                for (int j = 0; j < n; j++, vj += C) y0 = Vector512.FusedMultiplyAdd(Vector512.Create(s[j]), Vector512.Load(vj), y0);
                (y0 * norm).Store(y + c);
            }
            return;
        }
        var yh = new Span<float>(y, hs);
        yh.Clear();
        for (int j = 0; j < n; j++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(v + (long)j * C, hs), s[j] * inverse, yh, yh);
    }
}
