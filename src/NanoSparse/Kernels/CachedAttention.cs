using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Attention of one new position over a dense KV cache (decoding one token): for each head h,
/// y_h = Σ_j exp(s_j − max s) · v_j,h / Σ_j exp(s_j − max s) with s_j = q_h · k_j,h / √hs over the cached positions j.
/// One pass over the keys writes the head's scores, one pass over the values accumulates y in registers (four
/// Vector512 accumulators cover a 64-wide head, so v is read once and y stored once), and the heads run in parallel on
/// <see cref="KernelThreads"/>: a decode step at a few hundred cached positions spends as long here as in a 90%-sparse
/// layer's SpMVs, and a per-(head, position) call into a span helper costs more than its 64 multiply-adds.
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
        public int Count, Width, HeadSize, GroupHeads;
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
            int groups = parallel ? KernelThreads.ThreadsFor(heads) : 1;
            if (Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Sse.IsSupported && args.HeadSize == 64
                && heads % groups == 0 && (long)count * (heads / groups) <= GroupScoreFloats)
            {
                // Groups of heads side by side (one per thread): each reads its part of every row in one stretch.
                args.GroupHeads = heads / groups;
                if (groups == 1) Group(ref args, 0);
                else KernelThreads.For(groups, ref args, &Group);
            }
            else if (!parallel)
                for (int h = 0; h < heads; h++) Head(ref args, h);
            else
                KernelThreads.For(heads, ref args, &Head);
        }
    }

    /// <summary>Scores (positions × heads of a group) that <see cref="Group"/> keeps on its thread's stack: 128 KB.</summary>
    const int GroupScoreFloats = 32 * 1024;

    /// <summary>Positions ahead whose part of the row <see cref="Group"/> requests into L2 (prefetcht1).</summary>
    const int PrefetchPositions = 16;

    /// <summary>
    /// Heads [g·G, (g + 1)·G), G = GroupHeads, hs = 64, at once: the key pass reads the group's G·64 floats of each row
    /// (all of it with one group) and scores every head of the group; the value pass reads the same stretch of each row
    /// and adds it into the group's sums, held in L1 (G·64 floats); when the group reads part of each row (two or more
    /// groups), both request its stretch of the row <see cref="PrefetchPositions"/> ahead into L2. A decode step
    /// streams the weights through the caches before every layer's attention, so the cache comes from DRAM; one head at a
    /// time read four lines of each 3 KB row (at 768 wide), a strided walk the hardware prefetchers did not keep up with.
    /// Measured on Zen 4 (scratch harness: 12 layers of a 768-wide, 12-head cache, 64–319 positions, 60 MB streamed
    /// before each step, one thread, two runs): a head at a time 1.48–1.58 ms per step; with the L2 prefetch 1.11–1.18;
    /// all 12 heads in one group 0.94–0.97, groups of 6 with the prefetch 0.99–1.05 (a group per thread at two threads).
    /// The value pass first took the heads two at a time (eight register accumulators, 512 bytes of each 3 KB row per
    /// pass); whole rows with the sums in L1 took it from 0.38–0.41 to 0.28–0.31 ms per step (a copy of this kernel,
    /// 12 layers at 64–319 positions with the 90%-sparse model's SpMVs between layers, one thread, Zen 4, two runs).
    /// With one group (whole rows) the hardware prefetchers keep up and the requests, one instruction per 64 bytes,
    /// cost more than they saved: attention 0.53–0.61 ms per token without them against 0.59–0.81 with at one thread
    /// (scratch harness above with the 90% model's SpMVs between layers, three alternated runs each, Zen 4), and the
    /// 90%-sparse gpt2-shaped model decoded at 399–421 tokens/s against 382–394 (decode-only scratch harness, medians
    /// of three passes of 256 tokens, three alternated runs). At two threads (groups of 6 heads, half rows) the
    /// requests stay: without them 0.61–0.90 ms against 0.41–0.55; unrolled four to a loop step the attention harness
    /// was level but whole decodes were ~7% slower (six alternated runs).
    /// Each head's sums run in the same order as in <see cref="Head"/>: the results are the same bits.
    /// </summary>
    // SkipLocalsInit: the stack buffers (up to 128 KB of scores) are written before they are read; the JIT zeroed them
    // 16 bytes a loop step on every call. With the cache in cache (one 768-wide layer, 12 heads, one thread, a call
    // repeated; scratch microbenchmark, two runs) a call took 10.3–10.6 µs at 64 positions and 47–51 at 320 before
    // this session's changes, 7.2–7.6 and 34–38 without the requests and with the short sum, 7.1–7.4 and 34–36 with
    // this too; the 90% model decoded at 393–414 tokens/s against 373–402 at one thread and level at two
    // (decode-only scratch harness, three alternated runs, medians of three passes).
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void Group(ref Args a, int g)
    {
        const int hs = 64;
        int n = a.Count, C = a.Width, G = a.GroupHeads, h0 = g * G;
        float* s = stackalloc float[n * G];   // head i's scores at s + i·n
        float* inverse = stackalloc float[G];
        float* q = a.Q + h0 * hs, k = a.Keys + h0 * hs, v = a.Values + h0 * hs, y = a.Y + h0 * hs;
        float scale = 1f / MathF.Sqrt(hs);
        int span = G * hs;
        // A group that reads part of each row walks a strided pattern the hardware prefetchers miss: it requests its
        // stretch ahead into L2. A group that reads whole rows streams, and the hardware keeps up without the requests.
        bool partial = span < C;
        for (int j = 0; j < n; j++)
        {
            float* kj = k + (long)j * C;
            if (partial) PrefetchStretch(kj + (long)PrefetchPositions * C, span);
            for (int i = 0; i < G; i++)
            {
                float* kh = kj + i * hs, qh = q + i * hs;
                var acc0 = Vector512.Load(qh) * Vector512.Load(kh);
                var acc1 = Vector512.Load(qh + 16) * Vector512.Load(kh + 16);
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 32), Vector512.Load(kh + 32), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 48), Vector512.Load(kh + 48), acc1);
                s[i * n + j] = Sum(acc0 + acc1) * scale;
            }
        }
        for (int i = 0; i < G; i++)
        {
            var e = new Span<float>(s + i * n, n);
            float max = TensorPrimitives.Max(e);
            TensorPrimitives.Subtract(e, max, e);
            TensorPrimitives.Exp(e, e);
            inverse[i] = 1f / TensorPrimitives.Sum(e);
        }
        // The value pass reads whole rows too: the group's sums (G·64 floats) stay in L1, each position adds p_i · v_j,i
        // to head i's 64, in the same order per lane as WeightedRows64.
        float* acc = stackalloc float[span];
        for (int c = 0; c < span; c += 16) Vector512<float>.Zero.Store(acc + c);
        float* vj = v;
        for (int j = 0; j < n; j++, vj += C)
        {
            if (partial) PrefetchStretch(vj + (long)PrefetchPositions * C, span);
            for (int i = 0; i < G; i++)
            {
                var p = Vector512.Create(s[i * n + j]);
                float* ai = acc + i * hs, vi = vj + i * hs;
                Vector512.FusedMultiplyAdd(p, Vector512.Load(vi), Vector512.Load(ai)).Store(ai);
                Vector512.FusedMultiplyAdd(p, Vector512.Load(vi + 16), Vector512.Load(ai + 16)).Store(ai + 16);
                Vector512.FusedMultiplyAdd(p, Vector512.Load(vi + 32), Vector512.Load(ai + 32)).Store(ai + 32);
                Vector512.FusedMultiplyAdd(p, Vector512.Load(vi + 48), Vector512.Load(ai + 48)).Store(ai + 48);
            }
        }
        for (int i = 0; i < G; i++)
        {
            var norm = Vector512.Create(inverse[i]);
            for (int c = 0; c < hs; c += 16) (Vector512.Load(acc + i * hs + c) * norm).Store(y + i * hs + c);
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

    /// <summary>prefetcht1 of every line of floats [p, p + span) (span a multiple of 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchStretch(float* p, int span)
    {
        for (int c = 0; c < span; c += 16) System.Runtime.Intrinsics.X86.Sse.Prefetch1(p + c);
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
