using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>The activations the fused neuron-sparse MLP applies to its selected neurons.</summary>
public enum NeuronActivation { Gelu, GeluTanh, Relu }

public static unsafe partial class NeuronSparseMlp
{
    /// <summary>Fewest neurons per part of <see cref="Forward"/> (a multiple of the 4-neuron blocks).</summary>
    const int MinPartNeurons = 32;

    /// <summary>Most parts of <see cref="Forward"/>: bounds the partial sums the caller provides and reduces.</summary>
    public const int MaxParts = 16;


    /// <summary>The parts <see cref="Forward"/> splits k neurons into: a function of k alone, never of the thread count.</summary>
    public static int Parts(int k) => k <= 0 ? 0 : (k + PartNeurons(k) - 1) / PartNeurons(k);

    /// <summary>Neurons per part before the even share-out: a multiple of 4, at least 32, at most MaxParts parts.</summary>
    static int PartNeurons(int k) => Math.Max(MinPartNeurons, ((k + MaxParts - 1) / MaxParts + 3) & ~3);

    struct FusedArgs
    {
        public float* H, X, Up, Down, BiasUp, Partials;
        public int* Neurons;
        public int K, C, Parts;
        public NeuronActivation Activation;
    }

    /// <summary>
    /// The whole MLP over the listed neurons in one parallel region (one hand-off instead of up, activation and down
    /// each on their own):
    ///   h_i = act(up[j_i, :] · x + biasUp[j_i])                   h (k), for the k listed neurons j_i
    ///   y   = biasDown + Σ_i h_i · down[j_i, :]                   y (C)
    /// up (H, C) is c_fc as PyTorch stores it, down (H, C) c_proj's neuron-major copy (<see cref="NeuronMajor"/>).
    /// The listed neurons are cut into <see cref="Parts"/>(k) contiguous parts (fixed by k); each part computes its
    /// neurons' up-projection (four rows side by side), their activation, and their down-projection into its own
    /// partial sum (C floats of <paramref name="partials"/>), so the threads never write the same output; parts differ by
    /// four neurons at most, so equal shares of parts are equal shares of the memory traffic. The caller's thread then adds the
    /// partial sums in part order: the result does not depend on the thread count.
    /// Each gathered row starts cold, so while four rows stream the next four are prefetched (the up rows of the next
    /// block, then the first down rows, then the next down rows): about 5% less time per call at one thread than without
    /// (GPT-2's MLP at 90%, kernel alone, 10th percentile 108 against 114 µs on the loaded machine).
    /// partials: at least Parts(k)·C floats of scratch. With k = 0, y is biasDown (or zeros).
    /// </summary>
    public static void Forward(Span<float> y, Span<float> h, Span<float> partials, ReadOnlySpan<float> x,
        ReadOnlySpan<float> up, ReadOnlySpan<float> down, ReadOnlySpan<float> biasUp, ReadOnlySpan<float> biasDown,
        ReadOnlySpan<int> neurons, NeuronActivation activation, int C, int H)
    {
        int k = neurons.Length;
        if (C < 1 || H < 1) throw new ArgumentException($"the fused MLP needs positive C and H, got C = {C}, H = {H}");
        Check.Length(y, C, nameof(y));
        Check.Length(h, k, nameof(h));
        Check.Length(x, C, nameof(x));
        Check.Length(up, (long)H * C, nameof(up));
        Check.Length(down, (long)H * C, nameof(down));
        if (!biasUp.IsEmpty) Check.Length(biasUp, H, nameof(biasUp));
        if (!biasDown.IsEmpty) Check.Length(biasDown, C, nameof(biasDown));
        int parts = Parts(k);
        Check.Length(partials, (long)parts * C, nameof(partials));
        CheckNeurons(neurons, H);
        if (x.Overlaps(y.Slice(0, C)) || x.Overlaps(partials.Slice(0, parts * C)))
            throw new ArgumentException("x must not overlap y or partials", nameof(x));
        if (k == 0)
        {
            if (biasDown.IsEmpty) y.Slice(0, C).Clear();
            else biasDown.Slice(0, C).CopyTo(y);
            return;
        }
        fixed (float* py = y, ph = h, pp = partials, px = x, pu = up, pd = down, pbu = biasUp)
        fixed (int* pn = neurons)
        {
            var a = new FusedArgs
            {
                H = ph, X = px, Up = pu, Down = pd, BiasUp = biasUp.IsEmpty ? null : pbu, Partials = pp, Neurons = pn,
                K = k, C = C, Parts = parts, Activation = activation,
            };
            // under ~32k multiply-adds (a few dozen neurons of a small model) the call stays on this thread
            if ((long)k * C * 2 < MinParallelWork) for (int p = 0; p < parts; p++) FusedPart(ref a, p);
            else KernelThreads.For(parts, ref a, &FusedPart);
        }
        // y = biasDown + partial_0 + partial_1 + ... in part order
        var sum = y.Slice(0, C);
        if (biasDown.IsEmpty) partials.Slice(0, C).CopyTo(sum);
        else TensorPrimitives.Add(biasDown.Slice(0, C), partials.Slice(0, C), sum);
        for (int p = 1; p < parts; p++) TensorPrimitives.Add(sum, partials.Slice(p * C, C), sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FusedPart(ref FusedArgs a, int part)
    {
        // the k neurons' 4-neuron blocks shared out evenly (part sizes differ by one block at most), so that equal shares
        // of parts are equal shares of the bytes; a last partial block goes to the last part
        int blocks = (a.K + 3) / 4;
        int i0 = (int)((long)blocks * part / a.Parts) * 4, i1 = Math.Min(a.K, (int)((long)blocks * (part + 1) / a.Parts) * 4);
        if (i0 >= i1)   // cannot happen with Parts(k) (at least 4 blocks a part), but its sum must still be zero
        {
            new Span<float>(a.Partials + part * (long)a.C, a.C).Clear();
            return;
        }
        // up: h_i for this part's neurons, then the activation on all of them at once (a vector pass, not 4 scalars)
        int i = i0;
        long S = a.C;
        if (UseAvx512)
            for (; i + 4 <= i1; i += 4)
            {
                // the rows to prefetch while these four stream: the next four up rows, or after the last up block the
                // first four down rows (a gathered row starts cold: without this each one paid the DRAM latency before
                // the hardware prefetcher caught on, and the part ran at ~60% of a dense GEMV's bytes per second)
                float* next = i + 8 <= i1 ? a.Up : a.Down;
                int n = i + 8 <= i1 ? i + 4 : i0;
                FusedUp4(ref a, i, next + a.Neurons[n] * S, next + a.Neurons[n + 1] * S, next + a.Neurons[n + 2] * S, next + a.Neurons[n + 3] * S);
            }
        for (; i < i1; i++)
        {
            int j = a.Neurons[i];
            float s = TensorPrimitives.Dot(new ReadOnlySpan<float>(a.Up + (long)j * a.C, a.C), new ReadOnlySpan<float>(a.X, a.C));
            a.H[i] = a.BiasUp != null ? s + a.BiasUp[j] : s;
        }
        var hPart = new Span<float>(a.H + i0, i1 - i0);
        switch (a.Activation)
        {
            case NeuronActivation.Gelu: Gelu.Forward(hPart, hPart); break;
            case NeuronActivation.GeluTanh: GeluTanh.Forward(hPart, hPart); break;
            default: TensorPrimitives.Max(hPart, 0f, hPart); break;
        }
        // down: this part's partial sum (C floats, in L1), four neurons' rows streamed side by side
        long C = a.C;
        float* acc = a.Partials + part * C;
        new Span<float>(acc, a.C).Clear();
        i = i0;
        if (UseAvx512)
        {
            for (; i + 4 <= i1; i += 4)
            {
                float* w0 = a.Down + a.Neurons[i] * S, w1 = a.Down + a.Neurons[i + 1] * S;
                float* w2 = a.Down + a.Neurons[i + 2] * S, w3 = a.Down + a.Neurons[i + 3] * S;
                // the next four down rows (or these again at the last block: a prefetch of lines in L1 costs little)
                int n = i + 8 <= i1 ? i + 4 : i;
                float* p0 = a.Down + a.Neurons[n] * S, p1 = a.Down + a.Neurons[n + 1] * S;
                float* p2 = a.Down + a.Neurons[n + 2] * S, p3 = a.Down + a.Neurons[n + 3] * S;
                var h0 = Vector512.Create(a.H[i]);
                var h1 = Vector512.Create(a.H[i + 1]);
                var h2 = Vector512.Create(a.H[i + 2]);
                var h3 = Vector512.Create(a.H[i + 3]);
                int c = 0;
                for (; c + 16 <= a.C; c += 16)
                {
                    Sse.Prefetch0(p0 + c);
                    Sse.Prefetch0(p1 + c);
                    Sse.Prefetch0(p2 + c);
                    Sse.Prefetch0(p3 + c);
                    var s = Vector512.Load(acc + c);
                    s = Avx512F.FusedMultiplyAdd(Vector512.Load(w0 + c), h0, s);
                    s = Avx512F.FusedMultiplyAdd(Vector512.Load(w1 + c), h1, s);
                    s = Avx512F.FusedMultiplyAdd(Vector512.Load(w2 + c), h2, s);
                    s = Avx512F.FusedMultiplyAdd(Vector512.Load(w3 + c), h3, s);
                    s.Store(acc + c);
                }
                for (; c < a.C; c++)
                    acc[c] = acc[c] + w0[c] * a.H[i] + w1[c] * a.H[i + 1] + w2[c] * a.H[i + 2] + w3[c] * a.H[i + 3];
            }
        }
        var accSpan = new Span<float>(acc, a.C);
        for (; i < i1; i++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(a.Down + a.Neurons[i] * S, a.C), a.H[i], accSpan, accSpan);
    }

    /// <summary>Four listed neurons' up rows against x (as <see cref="Up4"/>), prefetching the rows at p0..p3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FusedUp4(ref FusedArgs a, int i, float* p0, float* p1, float* p2, float* p3)
    {
        int C = a.C;
        long S = a.C;
        int j0 = a.Neurons[i], j1 = a.Neurons[i + 1], j2 = a.Neurons[i + 2], j3 = a.Neurons[i + 3];
        float* w0 = a.Up + j0 * S, w1 = a.Up + j1 * S, w2 = a.Up + j2 * S, w3 = a.Up + j3 * S, x = a.X;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int c = 0;
        for (; c + 32 <= C; c += 32)
        {
            Sse.Prefetch0(p0 + c);
            Sse.Prefetch0(p0 + c + 16);
            Sse.Prefetch0(p1 + c);
            Sse.Prefetch0(p1 + c + 16);
            Sse.Prefetch0(p2 + c);
            Sse.Prefetch0(p2 + c + 16);
            Sse.Prefetch0(p3 + c);
            Sse.Prefetch0(p3 + c + 16);
            var x0 = Vector512.Load(x + c);
            var x1 = Vector512.Load(x + c + 16);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w0 + c), x0, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w1 + c), x0, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(w2 + c), x0, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(w3 + c), x0, a3);
            b0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w0 + c + 16), x1, b0);
            b1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w1 + c + 16), x1, b1);
            b2 = Avx512F.FusedMultiplyAdd(Vector512.Load(w2 + c + 16), x1, b2);
            b3 = Avx512F.FusedMultiplyAdd(Vector512.Load(w3 + c + 16), x1, b3);
        }
        if (c + 16 <= C)
        {
            var x0 = Vector512.Load(x + c);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w0 + c), x0, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w1 + c), x0, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(w2 + c), x0, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(w3 + c), x0, a3);
            c += 16;
        }
        float s0 = Vector512.Sum(a0 + b0), s1 = Vector512.Sum(a1 + b1), s2 = Vector512.Sum(a2 + b2), s3 = Vector512.Sum(a3 + b3);
        for (; c < C; c++)
        {
            float xc = x[c];
            s0 += w0[c] * xc; s1 += w1[c] * xc; s2 += w2[c] * xc; s3 += w3[c] * xc;
        }
        if (a.BiasUp != null) { s0 += a.BiasUp[j0]; s1 += a.BiasUp[j1]; s2 += a.BiasUp[j2]; s3 += a.BiasUp[j3]; }
        a.H[i] = s0; a.H[i + 1] = s1; a.H[i + 2] = s2; a.H[i + 3] = s3;
    }
}
