using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>
/// Causal multi-head self-attention core (everything between c_attn and c_proj), fused per (batch, head):
///   q, k, v = split(qkv (B, T, 3C)) into NH heads of hs = C / NH   // (B, NH, T, hs)
///   att = softmax(mask(q · kᵀ / √hs))                               // (B, NH, T, T), causal: key t2 ≤ query t
///   att = dropout(att)
///   y = att · v, heads re-assembled                                 // (B, T, C)
/// Only the log-partition lse (B, NH, T) of each softmax row is kept; the backward pass recomputes att from q, k and
/// lse (as FlashAttention does), so no (B, NH, T, T) buffer exists. Each (b, h) works in a per-thread scratch of
/// T×T floats that stays in cache. The small products go through <see cref="Gemm.Multiply"/>, which runs serially
/// inside the parallel region over B·NH.
/// </summary>
public static unsafe class Attention
{
    struct Args
    {
        public float* Out, Lse, Qkv, Dout, Dqkv;
        public int B, T, C, NH;
        public float P;
        public ulong Seed;
    }

    [ThreadStatic] static float[]? _scratch;

    static float* Scratch(int length)
    {
        if (_scratch == null || _scratch.Length < length)
            _scratch = GC.AllocateUninitializedArray<float>(length, pinned: true);
        return (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _scratch[0]);
    }

    /// <summary>
    /// out (B, T, C) and lse (B, NH, T) from qkv (B, T, 3C). dropoutP is the attention-weight dropout (0 for none)
    /// with its mask drawn from <paramref name="seed"/>.
    /// </summary>
    public static void Forward(Span<float> output, Span<float> lse, ReadOnlySpan<float> qkv, int B, int T, int C, int NH,
        float dropoutP = 0f, ulong seed = 0)
    {
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(output, (long)B * T * C, nameof(output));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* o = output, l = lse, x = qkv)
        {
            var a = new Args { Out = o, Lse = l, Qkv = x, B = B, T = T, C = C, NH = NH, P = dropoutP, Seed = seed };
            KernelThreads.For(B * NH, ref a, &ForwardHead);
        }
    }

    static void ForwardHead(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C;
        int b = bh / NH, h = bh % NH;
        float scale = 1f / MathF.Sqrt(hs);
        float* q = a.Qkv + (long)b * T * C3 + h * hs, k = q + C, v = q + 2 * C;
        long strided = (long)(T - 1) * C3 + hs;               // span length of a (T, hs) view with row stride 3C
        float* att = Scratch(T * T);                          // (T, T) for this head
        var attSpan = new Span<float>(att, T * T);
        // att = q · kᵀ / √hs
        Gemm.Multiply(false, true, T, T, hs, scale, new ReadOnlySpan<float>(q, (int)strided), C3,
            new ReadOnlySpan<float>(k, (int)strided), C3, 0f, attSpan, T);
        float* lse = a.Lse + (long)bh * T;
        float keepScale = a.P > 0 ? 1f / (1f - a.P) : 1f;
        for (int t = 0; t < T; t++)
        {
            var row = attSpan.Slice(t * T, t + 1);            // keys 0..t (causal)
            lse[t] = Softmax.Row(row, row);
            attSpan.Slice(t * T + t + 1, T - t - 1).Clear();  // masked keys get weight 0
            if (a.P > 0)
            {
                long baseIndex = ((long)bh * T + t) * T;
                for (int t2 = 0; t2 <= t; t2++)
                    row[t2] = Dropout.Keep(a.Seed, baseIndex + t2, a.P) ? row[t2] * keepScale : 0f;
            }
        }
        // y (T, hs) = att (T, T) · v (T, hs), written into columns h·hs of out (B, T, C)
        float* y = a.Out + (long)b * T * C + h * hs;
        Gemm.Multiply(false, false, T, hs, T, 1f, attSpan, T, new ReadOnlySpan<float>(v, (int)strided), C3, 0f,
            new Span<float>(y, (T - 1) * C + hs), C);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: dqkv (B, T, 3C) is WRITTEN (every element) from dout (B, T, C),
    /// qkv (B, T, 3C) and lse (B, NH, T). Dropout settings must equal the forward call's.
    /// </summary>
    public static void Backward(Span<float> dqkv, ReadOnlySpan<float> dout, ReadOnlySpan<float> qkv, ReadOnlySpan<float> lse,
        int B, int T, int C, int NH, float dropoutP = 0f, ulong seed = 0)
    {
        Check.Length(qkv, (long)B * T * 3 * C, nameof(qkv));
        Check.Length(dqkv, (long)B * T * 3 * C, nameof(dqkv));
        Check.Length(dout, (long)B * T * C, nameof(dout));
        Check.Length(lse, (long)B * NH * T, nameof(lse));
        fixed (float* d = dqkv, g = dout, x = qkv, l = lse)
        {
            var a = new Args { Dqkv = d, Dout = g, Qkv = x, Lse = l, B = B, T = T, C = C, NH = NH, P = dropoutP, Seed = seed };
            KernelThreads.For(B * NH, ref a, &BackwardHead);
        }
    }

    static void BackwardHead(ref Args a, int bh)
    {
        int T = a.T, C = a.C, NH = a.NH, hs = C / NH, C3 = 3 * C;
        int b = bh / NH, h = bh % NH;
        float scale = 1f / MathF.Sqrt(hs);
        long offset = (long)b * T * C3 + h * hs;
        int strided = (T - 1) * C3 + hs, stridedOut = (T - 1) * C + hs;
        var q = new ReadOnlySpan<float>(a.Qkv + offset, strided);
        var k = new ReadOnlySpan<float>(a.Qkv + offset + C, strided);
        var v = new ReadOnlySpan<float>(a.Qkv + offset + 2 * C, strided);
        var dq = new Span<float>(a.Dqkv + offset, strided);
        var dk = new Span<float>(a.Dqkv + offset + C, strided);
        var dv = new Span<float>(a.Dqkv + offset + 2 * C, strided);
        var dy = new ReadOnlySpan<float>(a.Dout + (long)b * T * C + h * hs, stridedOut);
        bool dropout = a.P > 0;
        float* scratch = Scratch((dropout ? 3 : 2) * T * T);
        var att = new Span<float>(scratch, T * T);            // P: softmax probabilities (T, T)
        var datt = new Span<float>(scratch + T * T, T * T);   // dP, then dS (T, T)
        var attDropped = dropout ? new Span<float>(scratch + 2 * T * T, T * T) : att;
        float* lse = a.Lse + (long)bh * T;
        float keepScale = dropout ? 1f / (1f - a.P) : 1f;

        // Recompute P = exp(q·kᵀ/√hs − lse) on the causal triangle.
        Gemm.Multiply(false, true, T, T, hs, scale, q, C3, k, C3, 0f, att, T);
        for (int t = 0; t < T; t++)
        {
            var row = att.Slice(t * T, t + 1);
            TensorPrimitives.Subtract(row, lse[t], row);
            TensorPrimitives.Exp(row, row);
            att.Slice(t * T + t + 1, T - t - 1).Clear();
            if (dropout)
            {
                long baseIndex = ((long)bh * T + t) * T;
                var dropped = attDropped.Slice(t * T, T);
                for (int t2 = 0; t2 < T; t2++)
                    dropped[t2] = t2 <= t && Dropout.Keep(a.Seed, baseIndex + t2, a.P) ? att[t * T + t2] * keepScale : 0f;
            }
        }
        // in the forward pass this was: y = attDropped · v
        // dv (T, hs) = attDroppedᵀ · dy ; dattDropped (T, T) = dy · vᵀ
        Gemm.Multiply(true, false, T, hs, T, 1f, attDropped, T, dy, C, 0f, dv, C3);
        Gemm.Multiply(false, true, T, T, hs, 1f, dy, C, v, C3, 0f, datt, T);
        for (int t = 0; t < T; t++)
        {
            var p = att.Slice(t * T, t + 1);
            var dp = datt.Slice(t * T, t + 1);
            if (dropout)
            {
                long baseIndex = ((long)bh * T + t) * T;
                for (int t2 = 0; t2 <= t; t2++)
                    dp[t2] = Dropout.Keep(a.Seed, baseIndex + t2, a.P) ? dp[t2] * keepScale : 0f;
            }
            // softmax backward: ds = p ⊙ (dp − Σ p·dp), times the 1/√hs of the scores
            float dot = TensorPrimitives.Dot(p, dp);
            TensorPrimitives.Subtract(dp, dot, dp);
            TensorPrimitives.Multiply(dp, p, dp);
            TensorPrimitives.Multiply(dp, scale, dp);
            datt.Slice(t * T + t + 1, T - t - 1).Clear();
        }
        // in the forward pass this was: s = q · kᵀ (scale already folded into ds)
        // dq (T, hs) = ds · k ; dk (T, hs) = dsᵀ · q
        Gemm.Multiply(false, false, T, hs, T, 1f, datt, T, k, C3, 0f, dq, C3);
        Gemm.Multiply(true, false, T, hs, T, 1f, datt, T, q, C3, 0f, dk, C3);
    }
}
