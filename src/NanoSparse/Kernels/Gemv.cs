using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// A Linear at a handful of rows (decode: one position per step) as matrix-vector products:
///   out (N, OC) = inp (N, C) · weight (OC, C)ᵀ + bias (OC, or empty) + residual (N, OC, or empty),  N ≤ <see cref="MaxRows"/>.
/// Every weight is read once per call and used N times, so the product is bound by memory bandwidth, not arithmetic;
/// the blocked GEMM (packing W into panels for reuse it never gets) ran 7–9x slower than OpenBLAS sgemv at N = 1.
/// At N = 1 W is read as one sequential stream, a row at a time (four Vector512 accumulators, 64 floats per step),
/// with W requested into L2 <see cref="PrefetchBytes"/> ahead (see <see cref="Row1"/>). At N = 2–4 four rows
/// of W stream side by side against the rows of inp (in L1 for the whole call), each (W row, inp row) pair with its
/// own accumulator. Sums are reduced once per output. Threads take coarse contiguous blocks of output rows
/// (<see cref="RowParallel"/>), so each output is summed by one thread in a fixed order: the result does not depend
/// on the thread count. Without AVX-512 each output is a TensorPrimitives.Dot.
/// </summary>
public static unsafe class Gemv
{
    /// <summary>Rows of inp handled in one pass over W (the accumulators of 4 W rows × 4 inp rows fill 16 registers).</summary>
    public const int MaxRows = 4;

    /// <summary>Rows of W streamed together.</summary>
    const int Block = 4;

    static readonly bool UseAvx512 = Avx512F.IsSupported;

    struct Args
    {
        public float* Out, Inp, Weight, Bias, Residual;
        public int N, C, OC;
    }

    /// <summary>
    /// out (N, OC) = inp (N, C) · weight (OC, C)ᵀ + bias + residual, for 1 ≤ N ≤ <see cref="MaxRows"/>. bias (OC) and
    /// residual (N, OC) may be empty; residual may be out itself (added in place), but inp must not overlap out.
    /// </summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int C, int OC, ReadOnlySpan<float> residual = default)
    {
        if (N < 1 || N > MaxRows) throw new ArgumentOutOfRangeException(nameof(N), N, $"Gemv takes 1 to {MaxRows} rows");
        if (C < 1 || OC < 1) throw new ArgumentException($"Gemv needs positive C and OC, got C = {C}, OC = {OC}");
        Check.Length(input, (long)N * C, nameof(input));
        Check.Length(weight, (long)OC * C, nameof(weight));
        Check.Length(output, (long)N * OC, nameof(output));
        if (!bias.IsEmpty) Check.Length(bias, OC, nameof(bias));
        if (!residual.IsEmpty) Check.Length(residual, (long)N * OC, nameof(residual));
        if (input.Slice(0, N * C).Overlaps(output.Slice(0, N * OC))) throw new ArgumentException("input must not overlap output", nameof(input));
        fixed (float* o = output, x = input, w = weight, b = bias, r = residual)
        {
            var a = new Args { Out = o, Inp = x, Weight = w, Bias = bias.IsEmpty ? null : b, Residual = residual.IsEmpty ? null : r, N = N, C = C, OC = OC };
            int blocks = (OC + Block - 1) / Block;
            RowParallel.For(blocks, (long)Block * C * N, ref a, &Rows);
        }
    }

    /// <summary>Output rows [Block·start, Block·end) ∩ [0, OC).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(ref Args a, int start, int end)
    {
        int o = start * Block, oEnd = Math.Min(a.OC, end * Block);
        if (!UseAvx512)
        {
            for (; o < oEnd; o++)
                for (int n = 0; n < a.N; n++)
                    Store(ref a, n, o, TensorPrimitives.Dot(new ReadOnlySpan<float>(a.Weight + (long)o * a.C, a.C), new ReadOnlySpan<float>(a.Inp + (long)n * a.C, a.C)));
            return;
        }
        if (a.N == 1)
        {
            for (; o < oEnd; o++) Row1(ref a, o);
            return;
        }
        for (; o + Block <= oEnd; o += Block) Block4xN(ref a, o);
        for (; o < oEnd; o++) Single(ref a, o);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(ref Args a, int n, int o, float sum)
    {
        if (a.Bias != null) sum += a.Bias[o];
        long i = (long)n * a.OC + o;
        if (a.Residual != null) sum += a.Residual[i];
        a.Out[i] = sum;
    }

    /// <summary>
    /// How far ahead of the row being summed <see cref="Row1"/> asks for W's lines (into L2, prefetcht1). A decode step
    /// reads every weight of the model once (hundreds of MB), so W comes from DRAM, and one core's bandwidth is set by
    /// how many lines it has in flight. Measured on Zen 4 (scratch harness: the 48 block matrices of the gpt2-124m shape,
    /// 340 MB, one pass per token-equivalent, medians of 7 rounds, one thread): four rows side by side (four streams,
    /// the previous kernel) 17.1–18.2 GB/s; two rows side by side, both prefetched, 16.3–18.2; one row at a time (one
    /// stream) 21.1–22.6; the same with every line prefetched 1 KB ahead 24.6–26.9 (2 KB 24.6–26.9, 3 KB 24.2–25.2;
    /// into L1 instead 18.8–21.1); with every other line prefetched (the one taken here) 24.2–24.8. Every line cost
    /// 8–17% against OpenBLAS on matrices that stay in L3 (`bench gemv`: 3072x768 0.136 against 0.126 ms), where the
    /// prefetches only take load slots; every other line: 0.123 against 0.120 ms, and 50257x768 (from DRAM) 6.9 ms
    /// against OpenBLAS's 10.1.
    /// </summary>
    const int PrefetchBytes = 1024;

    /// <summary>
    /// One W row against one inp row: four accumulators, 64 floats of C per step (four lines), with the first and third
    /// of the four lines <see cref="PrefetchBytes"/> ahead requested into L2 (the hardware fetches their pairs; past the
    /// end of W on the last rows: a prefetch never faults).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Row1(ref Args a, int o)
    {
        int C = a.C;
        float* w = a.Weight + (long)o * C, x = a.Inp;
        byte* ahead = (byte*)w + PrefetchBytes;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int k = 0;
        for (; k + 64 <= C; k += 64, ahead += 256)
        {
            Sse.Prefetch1(ahead);
            Sse.Prefetch1(ahead + 128);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 16), Vector512.Load(x + k + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 32), Vector512.Load(x + k + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 48), Vector512.Load(x + k + 48), a3);
        }
        for (; k + 16 <= C; k += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), a0);
        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; k < C; k++) sum += w[k] * x[k];
        Store(ref a, 0, o, sum);
    }

    /// <summary>Four W rows against 2–4 inp rows: one accumulator per pair (rows of inp past N read row 0 and are dropped).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Block4xN(ref Args a, int o)
    {
        int C = a.C, N = a.N;
        float* w0 = a.Weight + (long)o * C, w1 = w0 + C, w2 = w1 + C, w3 = w2 + C;
        float* x0 = a.Inp, x1 = a.Inp + C, x2 = N > 2 ? x1 + C : a.Inp, x3 = N > 3 ? x1 + 2L * C : a.Inp;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        int k = 0;
        for (; k + 16 <= C; k += 16)
        {
            var v0 = Vector512.Load(x0 + k);
            var v1 = Vector512.Load(x1 + k);
            var v2 = Vector512.Load(x2 + k);
            var v3 = Vector512.Load(x3 + k);
            var w = Vector512.Load(w0 + k);
            c00 = Avx512F.FusedMultiplyAdd(w, v0, c00); c01 = Avx512F.FusedMultiplyAdd(w, v1, c01);
            c02 = Avx512F.FusedMultiplyAdd(w, v2, c02); c03 = Avx512F.FusedMultiplyAdd(w, v3, c03);
            w = Vector512.Load(w1 + k);
            c10 = Avx512F.FusedMultiplyAdd(w, v0, c10); c11 = Avx512F.FusedMultiplyAdd(w, v1, c11);
            c12 = Avx512F.FusedMultiplyAdd(w, v2, c12); c13 = Avx512F.FusedMultiplyAdd(w, v3, c13);
            w = Vector512.Load(w2 + k);
            c20 = Avx512F.FusedMultiplyAdd(w, v0, c20); c21 = Avx512F.FusedMultiplyAdd(w, v1, c21);
            c22 = Avx512F.FusedMultiplyAdd(w, v2, c22); c23 = Avx512F.FusedMultiplyAdd(w, v3, c23);
            w = Vector512.Load(w3 + k);
            c30 = Avx512F.FusedMultiplyAdd(w, v0, c30); c31 = Avx512F.FusedMultiplyAdd(w, v1, c31);
            c32 = Avx512F.FusedMultiplyAdd(w, v2, c32); c33 = Avx512F.FusedMultiplyAdd(w, v3, c33);
        }
        Span<float> s = stackalloc float[16];
        s[0] = Vector512.Sum(c00); s[1] = Vector512.Sum(c01); s[2] = Vector512.Sum(c02); s[3] = Vector512.Sum(c03);
        s[4] = Vector512.Sum(c10); s[5] = Vector512.Sum(c11); s[6] = Vector512.Sum(c12); s[7] = Vector512.Sum(c13);
        s[8] = Vector512.Sum(c20); s[9] = Vector512.Sum(c21); s[10] = Vector512.Sum(c22); s[11] = Vector512.Sum(c23);
        s[12] = Vector512.Sum(c30); s[13] = Vector512.Sum(c31); s[14] = Vector512.Sum(c32); s[15] = Vector512.Sum(c33);
        for (int r = 0; r < Block; r++)
        {
            float* w = w0 + (long)r * C;
            for (int n = 0; n < N; n++)
            {
                float* x = a.Inp + (long)n * C;
                float sum = s[r * 4 + n];
                for (int j = k; j < C; j++) sum += w[j] * x[j];
                Store(ref a, n, o + r, sum);
            }
        }
    }

    /// <summary>One W row (the last OC mod 4 at N = 2–4) against every inp row.</summary>
    static void Single(ref Args a, int o)
    {
        int C = a.C;
        float* w = a.Weight + (long)o * C;
        for (int n = 0; n < a.N; n++)
        {
            float* x = a.Inp + (long)n * C;
            Vector512<float> acc = default;
            int k = 0;
            for (; k + 16 <= C; k += 16) acc = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), acc);
            float sum = Vector512.Sum(acc);
            for (; k < C; k++) sum += w[k] * x[k];
            Store(ref a, n, o, sum);
        }
    }
}
