using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// A matrix-vector product whose input is sparse (TEAL / WINA activation sparsity at decode):
///   y (Out) = Σ_{k &lt; count} values[k] · wt[indices[k], :] + bias (Out, or empty) + residual (Out, or empty)
/// where wt (In, Out) is W (Out, In) transposed: one contiguous row of Out weights per input feature, so a dropped input
/// costs no memory traffic at all and a kept one streams one row. The dense <see cref="Gemv"/> reads all In·Out weights;
/// this reads count·Out, so at input sparsity s the product moves (1 − s) of the bytes.
/// Inner loop: eight kept rows at a time (then four, then one) are folded into y (y += a0·w0 + ... + a7·w7, one Vector512
/// of y per step, two FMA chains), so y (in L1) is loaded and stored once per eight rows streamed from memory.
/// Two ways to use threads (<see cref="SparseInputSplit"/>): split the outputs (each thread streams its slice of every
/// kept row: no reduction, each output summed by one thread in kept order, result independent of the thread count), or
/// split the kept rows (each thread whole rows into its own partial y, then a reduction over the partials).
/// </summary>
public static unsafe class SparseInputGemv
{
    /// <summary>Most partial outputs the kept-rows split uses (threads beyond it take no part).</summary>
    public const int MaxParts = 8;

    /// <summary>Outputs per work item of the output split (a multiple of the vector width).</summary>
    const int OutputBlock = 256;

    struct Args
    {
        public float* Y, Wt, Values, Bias, Residual, Partials;
        public int* Indices;
        public int Count, Out, Parts;
    }

    /// <summary>
    /// The kept inputs of one row: every i with |x_i| ≥ thresholds[i] goes to (indices, values), in increasing i; returns
    /// how many. An input at a threshold of +∞ is never kept, and 0 keeps every input (zeros included).
    /// </summary>
    public static int Gather(ReadOnlySpan<float> x, ReadOnlySpan<float> thresholds, Span<int> indices, Span<float> values)
    {
        int n = x.Length;
        Check.Length(thresholds, n, nameof(thresholds));
        Check.Length(indices, n, nameof(indices));
        Check.Length(values, n, nameof(values));
        int count = 0;
        ref float xr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
        ref float tr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(thresholds);
        ref int ir = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(indices);
        ref float vr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(values);
        for (int i = 0; i < n; i++)
        {
            // Branch-free: always write the slot, advance only when kept (the kept pattern is data-dependent).
            float v = Unsafe.Add(ref xr, i);
            Unsafe.Add(ref ir, count) = i;
            Unsafe.Add(ref vr, count) = v;
            count += MathF.Abs(v) >= Unsafe.Add(ref tr, i) ? 1 : 0;
        }
        return count;
    }

    /// <summary>Floats of <c>partials</c> that <see cref="Forward"/> with the kept-rows split needs for Out outputs.</summary>
    public static long PartialFloats(int outFeatures) => (long)(MaxParts - 1) * outFeatures;

    /// <summary>
    /// y (Out) = Σ_k values[k] · wt[indices[k], :] + bias + residual over the first <paramref name="count"/> kept inputs.
    /// wt is (In, Out) row-major; indices lie in [0, In). residual may be y itself (added in place). partials holds
    /// <see cref="PartialFloats"/> floats for <see cref="SparseInputSplit.Inputs"/> (may be empty for Outputs).
    /// </summary>
    public static void Forward(Span<float> y, ReadOnlySpan<float> wt, int inFeatures, int outFeatures, ReadOnlySpan<int> indices,
        ReadOnlySpan<float> values, int count, ReadOnlySpan<float> bias, ReadOnlySpan<float> residual, Span<float> partials = default,
        SparseInputSplit split = SparseInputSplit.Outputs)
    {
        if (inFeatures < 1 || outFeatures < 1) throw new ArgumentException($"SparseInputGemv needs positive In and Out, got In = {inFeatures}, Out = {outFeatures}");
        if (count < 0 || count > inFeatures) throw new ArgumentOutOfRangeException(nameof(count), count, $"must lie in [0, {inFeatures}] (In)");
        Check.Length(y, outFeatures, nameof(y));
        Check.Length(wt, (long)inFeatures * outFeatures, nameof(wt));
        Check.Length(indices, count, nameof(indices));
        Check.Length(values, count, nameof(values));
        if (!bias.IsEmpty) Check.Length(bias, outFeatures, nameof(bias));
        if (!residual.IsEmpty) Check.Length(residual, outFeatures, nameof(residual));
        for (int k = 0; k < count; k++)
            if ((uint)indices[k] >= (uint)inFeatures)
                throw new ArgumentOutOfRangeException(nameof(indices), indices[k], $"kept input {k} must lie in [0, {inFeatures}) (In)");
        int parts = split == SparseInputSplit.Inputs ? Math.Min(MaxParts, KernelThreads.ThreadsFor(Math.Max(1, count / 16))) : 1;
        if (parts > 1) Check.Length(partials, (long)(parts - 1) * outFeatures, nameof(partials));
        fixed (float* yp = y, w = wt, v = values, b = bias, r = residual, p = partials)
        fixed (int* ix = indices)
        {
            var a = new Args
            {
                Y = yp, Wt = w, Values = v, Bias = bias.IsEmpty ? null : b, Residual = residual.IsEmpty ? null : r, Partials = p,
                Indices = ix, Count = count, Out = outFeatures, Parts = parts,
            };
            if (split == SparseInputSplit.Outputs || parts == 1)
                RowParallel.For((outFeatures + OutputBlock - 1) / OutputBlock, (long)OutputBlock * Math.Max(count, 1), ref a, &OutputRange);
            else
            {
                KernelThreads.For(parts, ref a, &InputPart);
                // y += Σ partials (parts 1.. wrote their sums there; part 0 wrote into y)
                for (int q = 1; q < parts; q++)
                    TensorPrimitives.Add(y, new ReadOnlySpan<float>(p + (long)(q - 1) * outFeatures, outFeatures), y);
            }
        }
    }

    // Outputs [OutputBlock·start, OutputBlock·end) ∩ [0, Out), every kept row.
    static void OutputRange(ref Args a, int start, int end)
    {
        int o0 = start * OutputBlock, o1 = Math.Min(a.Out, end * OutputBlock);
        Init(a.Y, a.Bias, a.Residual, o0, o1);
        Accumulate(a.Y, a.Wt, a.Out, a.Indices, a.Values, 0, a.Count, o0, o1);
    }

    // Part q of the kept rows into y (q = 0, with bias and residual) or its own partial (q ≥ 1).
    static void InputPart(ref Args a, int q)
    {
        int per = (a.Count + a.Parts - 1) / a.Parts;
        int k0 = Math.Min(a.Count, q * per), k1 = Math.Min(a.Count, k0 + per);
        if (q == 0)
        {
            Init(a.Y, a.Bias, a.Residual, 0, a.Out);
            Accumulate(a.Y, a.Wt, a.Out, a.Indices, a.Values, k0, k1, 0, a.Out);
        }
        else
        {
            float* partial = a.Partials + (long)(q - 1) * a.Out;
            new Span<float>(partial, a.Out).Clear();
            Accumulate(partial, a.Wt, a.Out, a.Indices, a.Values, k0, k1, 0, a.Out);
        }
    }

    // y[o0..o1) = bias + residual (either may be absent; residual may be y)
    static void Init(float* y, float* bias, float* residual, int o0, int o1)
    {
        var dst = new Span<float>(y + o0, o1 - o0);
        if (residual is null)
        {
            if (bias is null) dst.Clear();
            else new ReadOnlySpan<float>(bias + o0, o1 - o0).CopyTo(dst);
        }
        else if (bias is null) { if (residual != y) new ReadOnlySpan<float>(residual + o0, o1 - o0).CopyTo(dst); }
        else TensorPrimitives.Add(new ReadOnlySpan<float>(bias + o0, o1 - o0), new ReadOnlySpan<float>(residual + o0, o1 - o0), dst);
    }

    // y[o0..o1) += Σ_{k in [k0, k1)} values[k] · wt[indices[k], o0..o1)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Accumulate(float* y, float* wt, int Out, int* indices, float* values, int k0, int k1, int o0, int o1)
    {
        int len = o1 - o0;
        float* yp = y + o0;
        int k = k0;
        if (Vector512.IsHardwareAccelerated)
        {
            int vecEnd = len & ~15;
            for (; k + 8 <= k1; k += 8)   // eight row streams in flight: more memory-level parallelism per y pass
            {
                float* w0 = wt + (long)indices[k] * Out + o0, w1 = wt + (long)indices[k + 1] * Out + o0;
                float* w2 = wt + (long)indices[k + 2] * Out + o0, w3 = wt + (long)indices[k + 3] * Out + o0;
                float* w4 = wt + (long)indices[k + 4] * Out + o0, w5 = wt + (long)indices[k + 5] * Out + o0;
                float* w6 = wt + (long)indices[k + 6] * Out + o0, w7 = wt + (long)indices[k + 7] * Out + o0;
                var a0 = Vector512.Create(values[k]);
                var a1 = Vector512.Create(values[k + 1]);
                var a2 = Vector512.Create(values[k + 2]);
                var a3 = Vector512.Create(values[k + 3]);
                var a4 = Vector512.Create(values[k + 4]);
                var a5 = Vector512.Create(values[k + 5]);
                var a6 = Vector512.Create(values[k + 6]);
                var a7 = Vector512.Create(values[k + 7]);
                int j = 0;
                for (; j < vecEnd; j += 16)
                {
                    var lo = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + j), a0, Vector512.Load(yp + j));
                    var hi = Vector512.Load(w4 + j) * a4;
                    lo = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + j), a1, lo);
                    hi = Vector512.FusedMultiplyAdd(Vector512.Load(w5 + j), a5, hi);
                    lo = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + j), a2, lo);
                    hi = Vector512.FusedMultiplyAdd(Vector512.Load(w6 + j), a6, hi);
                    lo = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + j), a3, lo);
                    hi = Vector512.FusedMultiplyAdd(Vector512.Load(w7 + j), a7, hi);
                    (lo + hi).Store(yp + j);
                }
                for (; j < len; j++)
                {
                    float lo = yp[j], hi = 0;
                    lo = MathF.FusedMultiplyAdd(w0[j], values[k], lo);
                    hi = w4[j] * values[k + 4];
                    lo = MathF.FusedMultiplyAdd(w1[j], values[k + 1], lo);
                    hi = MathF.FusedMultiplyAdd(w5[j], values[k + 5], hi);
                    lo = MathF.FusedMultiplyAdd(w2[j], values[k + 2], lo);
                    hi = MathF.FusedMultiplyAdd(w6[j], values[k + 6], hi);
                    lo = MathF.FusedMultiplyAdd(w3[j], values[k + 3], lo);
                    hi = MathF.FusedMultiplyAdd(w7[j], values[k + 7], hi);
                    yp[j] = lo + hi;
                }
            }
            for (; k + 4 <= k1; k += 4)
            {
                float* w0 = wt + (long)indices[k] * Out + o0, w1 = wt + (long)indices[k + 1] * Out + o0;
                float* w2 = wt + (long)indices[k + 2] * Out + o0, w3 = wt + (long)indices[k + 3] * Out + o0;
                float s0 = values[k], s1 = values[k + 1], s2 = values[k + 2], s3 = values[k + 3];
                var a0 = Vector512.Create(s0);
                var a1 = Vector512.Create(s1);
                var a2 = Vector512.Create(s2);
                var a3 = Vector512.Create(s3);
                int j = 0;
                for (; j < vecEnd; j += 16)
                {
                    var acc = Vector512.Load(yp + j);
                    acc = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + j), a0, acc);
                    acc = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + j), a1, acc);
                    acc = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + j), a2, acc);
                    acc = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + j), a3, acc);
                    acc.Store(yp + j);
                }
                for (; j < len; j++)
                    yp[j] = MathF.FusedMultiplyAdd(w3[j], s3, MathF.FusedMultiplyAdd(w2[j], s2, MathF.FusedMultiplyAdd(w1[j], s1, MathF.FusedMultiplyAdd(w0[j], s0, yp[j]))));
            }
            for (; k < k1; k++)
            {
                float* w0 = wt + (long)indices[k] * Out + o0;
                float s0 = values[k];
                var a0 = Vector512.Create(s0);
                int j = 0;
                for (; j < vecEnd; j += 16)
                    Vector512.FusedMultiplyAdd(Vector512.Load(w0 + j), a0, Vector512.Load(yp + j)).Store(yp + j);
                for (; j < len; j++) yp[j] = MathF.FusedMultiplyAdd(w0[j], s0, yp[j]);
            }
            return;
        }
        var ys = new Span<float>(yp, len);
        for (; k < k1; k++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(wt + (long)indices[k] * Out + o0, len), values[k], ys, ys);
    }
}

/// <summary>How <see cref="SparseInputGemv.Forward"/> spreads over threads.</summary>
public enum SparseInputSplit
{
    /// <summary>Each thread a contiguous slice of the outputs, every kept row (no reduction).</summary>
    Outputs,
    /// <summary>Each thread a contiguous share of the kept rows into its own partial output, then a reduction.</summary>
    Inputs,
}
