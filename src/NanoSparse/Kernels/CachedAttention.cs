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
        public int Count, Width, HeadSize;
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
            if (count > StackPositions || (long)count * width < MinParallelFloats)
                for (int h = 0; h < heads; h++) Head(ref args, h);
            else
                KernelThreads.For(heads, ref args, &Head);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
                s[j] = Vector512.Sum(acc0 + acc1) * scale;
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
            for (; c + 64 <= hs; c += 64)
            {
                Vector512<float> y0 = default, y1 = default, y2 = default, y3 = default;
                float* vj = v + c;
                for (int j = 0; j < n; j++, vj += C)
                {
                    var p = Vector512.Create(s[j]);
                    y0 = Vector512.FusedMultiplyAdd(p, Vector512.Load(vj), y0);
                    y1 = Vector512.FusedMultiplyAdd(p, Vector512.Load(vj + 16), y1);
                    y2 = Vector512.FusedMultiplyAdd(p, Vector512.Load(vj + 32), y2);
                    y3 = Vector512.FusedMultiplyAdd(p, Vector512.Load(vj + 48), y3);
                }
                (y0 * norm).Store(y + c);
                (y1 * norm).Store(y + c + 16);
                (y2 * norm).Store(y + c + 32);
                (y3 * norm).Store(y + c + 48);
            }
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
