using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using NanoSparse.Kernels;

namespace NanoSparse.Optim;

/// <summary>
/// AdamW as torch.optim.AdamW (Loshchilov &amp; Hutter, decoupled weight decay). For step t = 1, 2, ...:
///   p ← p − lr·wd·p                      (only where decay applies: 2-D weights, nanoGPT's grouping)
///   m ← β1·m + (1−β1)·g
///   v ← β2·v + (1−β2)·g²
///   p ← p − (lr / (1−β1^t)) · m / (sqrt(v) / sqrt(1−β2^t) + eps)
/// State m, v are flat arrays aligned element for element with the parameter buffer. A step allocates nothing.
/// </summary>
public sealed unsafe class AdamW
{
    /// <summary>
    /// A contiguous range of the flat parameter buffer, whether weight decay applies to it, and the factor its learning
    /// rate is multiplied by (a torch parameter group with lr·LrScale; SμPar's per-weight rates).
    /// </summary>
    public readonly record struct Segment(int Offset, int Length, bool Decay, float LrScale = 1f);

    readonly Segment[] _segments;
    readonly float[] _m, _v;

    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Eps { get; }
    public float WeightDecay { get; }
    /// <summary>Steps taken so far (torch's state['step']); the next step uses t = StepCount + 1.</summary>
    public long StepCount { get; set; }
    public int Length => _m.Length;
    public Span<float> M => _m;
    public Span<float> V => _v;
    /// <summary>The moments as memory, for writing checkpoints without copying.</summary>
    public ReadOnlyMemory<float> MMemory => _m;
    public ReadOnlyMemory<float> VMemory => _v;
    public IReadOnlyList<Segment> Segments => _segments;

    public AdamW(int length, IEnumerable<Segment> segments, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f, float weightDecay = 0.01f)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "beta1 must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "beta2 must be in [0, 1)");
        if (!(eps >= 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be >= 0");
        if (!(weightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight_decay must be >= 0");
        _segments = segments.ToArray();
        foreach (var s in _segments)
            if (s.Offset < 0 || s.Length < 0 || (long)s.Offset + s.Length > length)
                throw new ArgumentException($"segment [{s.Offset}, {s.Offset + s.Length}) lies outside the parameter buffer of {length} values");
        _m = new float[length];
        _v = new float[length];
        (Beta1, Beta2, Eps, WeightDecay) = (beta1, beta2, eps, weightDecay);
    }

    /// <summary>One segment per parameter, at its offset inside the flat buffer <paramref name="flat"/>.</summary>
    public static Segment SegmentOf(ReadOnlySpan<float> flat, ReadOnlySpan<float> view, bool decay)
    {
        long bytes = (long)Unsafe.ByteOffset(ref MemoryMarshal.GetReference(flat), ref MemoryMarshal.GetReference(view));
        long offset = bytes / sizeof(float);
        if (bytes < 0 || offset + view.Length > flat.Length)
            throw new ArgumentException("parameter view does not lie inside the flat parameter buffer");
        return new Segment((int)offset, view.Length, decay);
    }

    /// <summary>Applies one update to <paramref name="parameters"/> from <paramref name="gradients"/> (both flat, same layout as m, v).</summary>
    public void Step(Span<float> parameters, ReadOnlySpan<float> gradients, float learningRate)
    {
        if (parameters.Length != _m.Length || gradients.Length != _m.Length)
            throw new ArgumentException($"AdamW was built for {_m.Length} values, got parameters {parameters.Length} and gradients {gradients.Length}");
        StepCount++;
        // Bias corrections in double, as torch computes them from Python floats.
        double bc1 = 1.0 - Math.Pow(Beta1, StepCount);
        double bc2 = 1.0 - Math.Pow(Beta2, StepCount);
        var args = new Args
        {
            Lr = learningRate,
            StepSize = (float)(learningRate / bc1),
            InvSqrtBc2 = (float)(1.0 / Math.Sqrt(bc2)),
            Bc1 = bc1, WeightDecay = WeightDecay,
            Beta1 = Beta1, Beta2 = Beta2, Eps = Eps,
        };
        fixed (float* p = parameters) fixed (float* g = gradients) fixed (float* m = _m) fixed (float* v = _v) fixed (Segment* segs = _segments)
        {
            args.P = p; args.G = g; args.M = m; args.V = v; args.Segments = segs;
            // Work items: chunks of a segment, so threads get balanced ranges; the arithmetic is elementwise,
            // hence the result is independent of the thread count.
            args.WeightDecayFactor = 1f - learningRate * WeightDecay;
            int items = 0;
            foreach (var s in _segments) items += (s.Length + Chunk - 1) / Chunk;
            if (items == 0) return;
            if (KernelThreads.ThreadsFor(items) <= 1 || _m.Length < 1 << 16)
            {
                for (int si = 0; si < _segments.Length; si++) UpdateRange(ref args, si, 0, _segments[si].Length);
            }
            else
            {
                // Map item -> (segment, chunk) with a prefix table kept on the stack.
                int* firstItem = stackalloc int[_segments.Length + 1];
                firstItem[0] = 0;
                for (int si = 0; si < _segments.Length; si++) firstItem[si + 1] = firstItem[si] + (_segments[si].Length + Chunk - 1) / Chunk;
                args.FirstItem = firstItem;
                args.SegmentCount = _segments.Length;
                KernelThreads.For(items, ref args, &Body);
            }
        }
    }

    const int Chunk = 1 << 15;

    struct Args
    {
        public float* P, G, M, V;
        public Segment* Segments;
        public int* FirstItem;
        public int SegmentCount;
        public float Lr, StepSize, InvSqrtBc2, Beta1, Beta2, Eps, WeightDecayFactor, WeightDecay;
        public double Bc1;
    }

    static void Body(ref Args a, int item)
    {
        int si = 0;
        while (a.FirstItem[si + 1] <= item) si++;
        int chunk = item - a.FirstItem[si];
        int start = chunk * Chunk;
        UpdateRange(ref a, si, start, Math.Min(Chunk, a.Segments[si].Length - start));
    }

    static void UpdateRange(ref Args a, int segmentIndex, int start, int count)
    {
        var seg = a.Segments[segmentIndex];
        int off = seg.Offset + start;
        float* p = a.P + off, g = a.G + off, m = a.M + off, v = a.V + off;
        float decay = seg.Decay ? a.WeightDecayFactor : 1f;
        float b1 = a.Beta1, b2 = a.Beta2, ob1 = 1f - b1, ob2 = 1f - b2;
        float stepSize = a.StepSize, invSqrtBc2 = a.InvSqrtBc2, eps = a.Eps;
        if (seg.LrScale != 1f)
        {
            float lr = a.Lr * seg.LrScale;   // this segment's group learning rate
            stepSize = (float)(lr / a.Bc1);
            if (seg.Decay) decay = 1f - lr * a.WeightDecay;
        }
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vb1 = Vector512.Create(b1); var vb2 = Vector512.Create(b2);
            var vob1 = Vector512.Create(ob1); var vob2 = Vector512.Create(ob2);
            var vdecay = Vector512.Create(decay); var vstep = Vector512.Create(stepSize);
            var vinv = Vector512.Create(invSqrtBc2); var veps = Vector512.Create(eps);
            for (; i <= count - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var gi = Vector512.Load(g + i);
                var mi = vb1 * Vector512.Load(m + i) + vob1 * gi;
                var vi = vb2 * Vector512.Load(v + i) + vob2 * (gi * gi);
                var pi = Vector512.Load(p + i) * vdecay;
                pi -= vstep * mi / (Vector512.Sqrt(vi) * vinv + veps);
                mi.Store(m + i); vi.Store(v + i); pi.Store(p + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vb1 = Vector256.Create(b1); var vb2 = Vector256.Create(b2);
            var vob1 = Vector256.Create(ob1); var vob2 = Vector256.Create(ob2);
            var vdecay = Vector256.Create(decay); var vstep = Vector256.Create(stepSize);
            var vinv = Vector256.Create(invSqrtBc2); var veps = Vector256.Create(eps);
            for (; i <= count - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var gi = Vector256.Load(g + i);
                var mi = vb1 * Vector256.Load(m + i) + vob1 * gi;
                var vi = vb2 * Vector256.Load(v + i) + vob2 * (gi * gi);
                var pi = Vector256.Load(p + i) * vdecay;
                pi -= vstep * mi / (Vector256.Sqrt(vi) * vinv + veps);
                mi.Store(m + i); vi.Store(v + i); pi.Store(p + i);
            }
        }
        for (; i < count; i++)
        {
            float gi = g[i];
            float mi = b1 * m[i] + ob1 * gi;
            float vi = b2 * v[i] + ob2 * (gi * gi);
            float pi = p[i] * decay;
            pi -= stepSize * mi / (MathF.Sqrt(vi) * invSqrtBc2 + eps);
            m[i] = mi; v[i] = vi; p[i] = pi;
        }
    }
}
