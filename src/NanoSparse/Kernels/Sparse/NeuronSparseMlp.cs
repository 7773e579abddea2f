using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// The two products of an MLP at one position when only a set of its H neurons is computed (contextual / activation
/// sparsity, Deja Vu and PowerInfer style):
///   up:   h_i = W_fc[j_i, :] · x + b_fc[j_i]                     for the k listed neurons j_i      (k dot products of C)
///   down: y   = b_proj + Σ_i h_i · W_projᵀ[j_i, :]               W_projᵀ (H, C): c_proj stored neuron-major
/// c_fc (H, C) is already neuron-major (PyTorch's Linear.weight rows), so the up-projection reads k contiguous rows.
/// c_proj (C, H) is not: its column j is neuron j's output weights, strided by H. The down-projection therefore takes a
/// neuron-major copy, the "neuron bundle" (H, C), where each active neuron's C weights are contiguous, and reads k of
/// its rows: k·C weights instead of C·H. Both run on AVX-512 with a scalar (TensorPrimitives) fallback; threads take
/// contiguous blocks of neurons (up) or of output columns (down; each thread reads the same column range of every active neuron), so every output is summed by one thread in a fixed
/// order and the result does not depend on the thread count.
/// </summary>
public static unsafe partial class NeuronSparseMlp
{
    static readonly bool UseAvx512 = Avx512F.IsSupported;

    /// <summary>Neurons of the up-projection per block (four rows of W_fc stream side by side, as in <see cref="Gemv"/>).</summary>
    const int UpBlock = 4;

    /// <summary>Below this many multiply-adds a product runs on the calling thread (as <see cref="RowParallel"/>).</summary>
    const long MinParallelWork = 1 << 15;

    struct UpArgs
    {
        public float* H, X, W, Bias;
        public int* Neurons;
        public int K, C;
    }

    struct DownArgs
    {
        public float* Y, H, W, Bias;
        public int* Neurons;
        public int K, C, Parts;
    }

    /// <summary>
    /// h (k) = W_fc[neurons, :] · x + bias[neurons]: x (C), weight (H, C) row-major, bias (H, or empty), neurons (k)
    /// indices into [0, H) (any order; ascending reads the weight in address order).
    /// </summary>
    public static void UpProject(Span<float> h, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        ReadOnlySpan<int> neurons, int C, int H)
    {
        int k = neurons.Length;
        if (C < 1 || H < 1) throw new ArgumentException($"UpProject needs positive C and H, got C = {C}, H = {H}");
        Check.Length(x, C, nameof(x));
        Check.Length(weight, (long)H * C, nameof(weight));
        Check.Length(h, k, nameof(h));
        if (!bias.IsEmpty) Check.Length(bias, H, nameof(bias));
        CheckNeurons(neurons, H);
        if (k == 0) return;
        fixed (float* ph = h, px = x, pw = weight, pb = bias)
        fixed (int* pn = neurons)
        {
            var a = new UpArgs { H = ph, X = px, W = pw, Bias = bias.IsEmpty ? null : pb, Neurons = pn, K = k, C = C };
            RowParallel.For((k + UpBlock - 1) / UpBlock, (long)UpBlock * C, ref a, &UpRows);
        }
    }

    /// <summary>
    /// y (C) = bias + Σ_i h[i] · weightT[neurons[i], :]: h (k), weightT (H, C) the neuron-major copy of c_proj
    /// (<see cref="NeuronMajor"/>), bias (C, or empty). With k = 0, y is the bias (or zeros).
    /// </summary>
    public static void DownProject(Span<float> y, ReadOnlySpan<float> h, ReadOnlySpan<float> weightT, ReadOnlySpan<float> bias,
        ReadOnlySpan<int> neurons, int C, int H)
    {
        int k = neurons.Length;
        if (C < 1 || H < 1) throw new ArgumentException($"DownProject needs positive C and H, got C = {C}, H = {H}");
        Check.Length(y, C, nameof(y));
        Check.Length(weightT, (long)H * C, nameof(weightT));
        Check.Length(h, k, nameof(h));
        if (!bias.IsEmpty) Check.Length(bias, C, nameof(bias));
        CheckNeurons(neurons, H);
        fixed (float* py = y, ph = h, pw = weightT, pb = bias)
        fixed (int* pn = neurons)
        {
            var a = new DownArgs { Y = py, H = ph, W = pw, Bias = bias.IsEmpty ? null : pb, Neurons = pn, K = k, C = C };
            // One contiguous column range per thread (in whole vectors), so each thread streams its part of every
            // active neuron's row once; below ~32k multiply-adds the call stays on this thread.
            int vectors = (C + 15) / 16;
            int threads = (long)k * C < MinParallelWork ? 1 : Math.Min(KernelThreads.ThreadsFor(vectors), vectors);
            a.Parts = threads;
            if (threads == 1) DownPart(ref a, 0);
            else KernelThreads.For(threads, ref a, &DownPart);
        }
    }

    /// <summary>weightT (H, C) = weight (C, H)ᵀ: c_proj's columns as contiguous rows, one per neuron.</summary>
    public static void NeuronMajor(ReadOnlySpan<float> weight, Span<float> weightT, int C, int H)
    {
        Check.Length(weight, (long)C * H, nameof(weight));
        Check.Length(weightT, (long)C * H, nameof(weightT));
        for (int c = 0; c < C; c++)
        {
            var row = weight.Slice(c * H, H);
            for (int j = 0; j < H; j++) weightT[j * C + c] = row[j];
        }
    }

    static void CheckNeurons(ReadOnlySpan<int> neurons, int H)
    {
        for (int i = 0; i < neurons.Length; i++)
            if ((uint)neurons[i] >= (uint)H)
                throw new ArgumentOutOfRangeException(nameof(neurons), neurons[i], $"neuron at index {i} must lie in [0, {H}) (the hidden width)");
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void UpRows(ref UpArgs a, int start, int end)
    {
        int i = start * UpBlock, iEnd = Math.Min(a.K, end * UpBlock);
        if (UseAvx512)
            for (; i + UpBlock <= iEnd; i += UpBlock) Up4(ref a, i);
        for (; i < iEnd; i++)
        {
            int j = a.Neurons[i];
            float s = TensorPrimitives.Dot(new ReadOnlySpan<float>(a.W + (long)j * a.C, a.C), new ReadOnlySpan<float>(a.X, a.C));
            a.H[i] = a.Bias != null ? s + a.Bias[j] : s;
        }
    }

    /// <summary>Four listed neurons against x: two accumulators per neuron (32 floats of C per step) to cover the FMA latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Up4(ref UpArgs a, int i)
    {
        int C = a.C;
        int j0 = a.Neurons[i], j1 = a.Neurons[i + 1], j2 = a.Neurons[i + 2], j3 = a.Neurons[i + 3];
        float* w0 = a.W + (long)j0 * C, w1 = a.W + (long)j1 * C, w2 = a.W + (long)j2 * C, w3 = a.W + (long)j3 * C, x = a.X;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int c = 0;
        for (; c + 32 <= C; c += 32)
        {
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
        if (a.Bias != null) { s0 += a.Bias[j0]; s1 += a.Bias[j1]; s2 += a.Bias[j2]; s3 += a.Bias[j3]; }
        a.H[i] = s0; a.H[i + 1] = s1; a.H[i + 2] = s2; a.H[i + 3] = s3;
    }

    /// <summary>
    /// Output columns of part <paramref name="part"/> of a.Parts: y's range (in L1) is
    /// updated by four active neurons at a time, each neuron's chunk of weights read as one contiguous stream, so the
    /// four rows stream side by side as in a GEMV and y is loaded and stored once per four neurons.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DownPart(ref DownArgs a, int part)
    {
        int vectors = (a.C + 15) / 16;
        int c0 = (int)((long)vectors * part / a.Parts) * 16, c1 = Math.Min(a.C, (int)((long)vectors * (part + 1) / a.Parts) * 16), width = c1 - c0;
        if (width <= 0) return;
        var y = new Span<float>(a.Y + c0, width);
        if (a.Bias != null) new ReadOnlySpan<float>(a.Bias + c0, width).CopyTo(y);
        else y.Clear();
        long C = a.C;
        int i = 0;
        if (UseAvx512)
        {
            for (; i + 4 <= a.K; i += 4)
            {
                float* w0 = a.W + a.Neurons[i] * C + c0, w1 = a.W + a.Neurons[i + 1] * C + c0;
                float* w2 = a.W + a.Neurons[i + 2] * C + c0, w3 = a.W + a.Neurons[i + 3] * C + c0;
                var h0 = Vector512.Create(a.H[i]);
                var h1 = Vector512.Create(a.H[i + 1]);
                var h2 = Vector512.Create(a.H[i + 2]);
                var h3 = Vector512.Create(a.H[i + 3]);
                float* py = a.Y + c0;
                int c = 0;
                for (; c + 16 <= width; c += 16)
                {
                    var acc = Vector512.Load(py + c);
                    acc = Avx512F.FusedMultiplyAdd(Vector512.Load(w0 + c), h0, acc);
                    acc = Avx512F.FusedMultiplyAdd(Vector512.Load(w1 + c), h1, acc);
                    acc = Avx512F.FusedMultiplyAdd(Vector512.Load(w2 + c), h2, acc);
                    acc = Avx512F.FusedMultiplyAdd(Vector512.Load(w3 + c), h3, acc);
                    acc.Store(py + c);
                }
                for (; c < width; c++)
                    py[c] = py[c] + w0[c] * a.H[i] + w1[c] * a.H[i + 1] + w2[c] * a.H[i + 2] + w3[c] * a.H[i + 3];
            }
        }
        for (; i < a.K; i++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(a.W + a.Neurons[i] * C + c0, width), a.H[i], y, y);
    }
}
