using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;

namespace NanoSparse.Nn.Parts.Gated;

/// <summary>
/// nanoGPT's causal self-attention with a per-token controller over its heads (config gate "heads" or "both"):
///   qkv = c_attn(x)                       // (N, 3A)
///   y = causal softmax attention(qkv)     // (N, A), heads side by side
///   g = gate(x)                           // (N, NH), see UnitGate
///   out = residual + dropout(c_proj(y ⊙ g))   // head h's hs outputs scaled by g[:, h]
/// At batch-1 decode a skipped head (g = 0) computes no q rows of c_attn, no attention and reads no c_proj columns
/// (c_proj is read from a head-major (A, C) copy, made at the first decode after a forward pass). Its key and value
/// rows of c_attn are still computed and written to the cache, so a later token that runs the head attends over
/// every earlier position exactly as the dense model would: the KV cache stays that of the dense model, and k/v
/// (2/3 of c_attn) is the cost every head pays at every step.
/// </summary>
public sealed unsafe class GatedSelfAttention : IAttention
{
    readonly int _channels, _width, _heads, _headSize, _blockSize;
    readonly ILinearWeight _cAttn, _cProj;
    readonly ParameterSlot _cAttnWeight, _cAttnBias, _cProjWeight, _cProjBias;
    readonly ActivationSlot _qkv, _y, _yg, _lse, _probs;   // kept: (N, 3A), (N, A), (N, A) gated, (N, NH), probs or absent
    readonly ActivationSlot _dmasked, _dqkv, _dy;          // scratch: (N, C) when dropout, (N, 3A), (N, A)
    readonly int _attentionSeed, _residualSeed;
    readonly object _copyLock = new();
    float[]? _projByHead;   // c_proj (C, A) as (A, C): row j holds column j

    public GatedSelfAttention(GptConfig config, string name, ILinearWeight cAttn, ILinearWeight cProj, BufferLayout layout)
    {
        int C = config.NEmbd, hs = config.HeadSize, T = layout.SeqLen;
        int A = cAttn.OutFeatures / 3, NH = A / hs;
        if (cAttn.InFeatures != C || cAttn.OutFeatures % (3 * hs) != 0 || NH == 0)
            throw new ArgumentException($"{name}.c_attn must be (3·heads·{hs}, {C}) with at least one head of size {hs}, got ({cAttn.OutFeatures}, {cAttn.InFeatures})", nameof(cAttn));
        if (cProj.OutFeatures != C || cProj.InFeatures != A)
            throw new ArgumentException($"{name}.c_proj must be ({C}, {A}), got ({cProj.OutFeatures}, {cProj.InFeatures})", nameof(cProj));
        GateSettings.RequireDense(cAttn, name + ".c_attn");
        GateSettings.RequireDense(cProj, name + ".c_proj");
        (_channels, _width, _heads, _headSize, _blockSize) = (C, A, NH, hs, config.BlockSize);
        _cAttn = cAttn;
        _cProj = cProj;
        _cAttnWeight = layout.LinearWeight(name + ".c_attn.weight", cAttn);
        _cAttnBias = layout.OptionalParameter(config.Bias, name + ".c_attn.bias", 3 * A);
        _cProjWeight = layout.LinearWeight(name + ".c_proj.weight", cProj);
        _cProjBias = layout.OptionalParameter(config.Bias, name + ".c_proj.bias", C);
        Gate = new UnitGate(name, NH, C, layout);

        _qkv = layout.Activation(3 * A);
        _y = layout.Activation(A);
        _yg = layout.Activation(A);
        _lse = layout.Activation(NH);
        _probs = layout.OptionalActivation(Attention.KeepsProbabilities(T, A, NH), (int)(Attention.ProbabilitiesLength(1, T, NH) / T));
        var scratch = layout.Scratch(config.Dropout > 0 ? C : 0, 3 * A, A, NH, C);
        _dmasked = scratch[0];
        _dqkv = scratch[1];
        _dy = scratch[2];
        Gate.UseScratch(scratch[3], scratch[4]);
        _attentionSeed = layout.DropoutSeed();
        _residualSeed = layout.DropoutSeed();
    }

    /// <summary>The controller over this layer's heads.</summary>
    public UnitGate Gate { get; }
    public int Heads => _heads;

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        _projByHead = null;   // the weights may change after a training pass: decode copies c_proj again
        int N = pass.Rows, A = _width, hs = _headSize;
        var qkv = pass.Act(_qkv);
        var y = pass.Act(_y);
        var yg = pass.Act(_yg);
        _cAttn.Forward(qkv, input, pass.Param(_cAttnWeight), pass.Param(_cAttnBias), default, N, pass.Workspace);
        Attention.Forward(y, pass.Act(_lse), qkv, pass.Sequences, pass.SeqLen, A, _heads, pass.Dropout, pass.Seed(_attentionSeed),
            pass.FirstSequence, pass.Act(_probs));
        var g = Gate.Forward(input, pass);
        // yg[n, h·hs + j] = y[n, h·hs + j] · g[n, h]
        for (int n = 0; n < N; n++)
            for (int h = 0; h < _heads; h++)
                System.Numerics.Tensors.TensorPrimitives.Multiply(y.Slice(n * A + h * hs, hs), g[n * _heads + h], yg.Slice(n * A + h * hs, hs));
        ResidualProjection.Forward(_cProj, _cProjWeight, _cProjBias, output, yg, residual, _residualSeed, _channels, pass);
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows, A = _width, hs = _headSize, NH = _heads;
        // in the forward pass this was: out = residual + dropout(c_proj(yg))
        var dproj = ResidualProjection.DropoutBackward(doutput, _dmasked, _residualSeed, _channels, pass);
        var dy = pass.Act(_dy);
        _cProj.Backward(dy, pass.Grad(_cProjWeight), pass.Grad(_cProjBias), dproj, pass.Act(_yg), pass.Param(_cProjWeight), default, N,
            pass.Workspace);
        // in the forward pass this was: yg = y ⊙ g   → dg[n, h] = Σ_j dyg·y over the head, dy = dyg ⊙ g
        var y = pass.Act(_y);
        var g = pass.Act(Gate.Values);
        var dg = Gate.GradientBuffer(pass);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < NH; h++)
            {
                var d = dy.Slice(n * A + h * hs, hs);
                dg[n * NH + h] = System.Numerics.Tensors.TensorPrimitives.Dot(d, y.Slice(n * A + h * hs, hs));
                System.Numerics.Tensors.TensorPrimitives.Multiply(d, g[n * NH + h], d);
            }
        var dqkv = pass.Act(_dqkv);
        Attention.Backward(dqkv, dy, pass.Act(_qkv), pass.Act(_lse), pass.Sequences, pass.SeqLen, A, NH, pass.Dropout, pass.Seed(_attentionSeed),
            pass.FirstSequence, pass.Act(_probs), y);
        _cAttn.Backward(dinput, pass.Grad(_cAttnWeight), pass.Grad(_cAttnBias), dqkv, input, pass.Param(_cAttnWeight), default, N,
            pass.Workspace);
        Gate.Backward(dinput, input, pass);   // dinput += d gate(input)
    }

    /// <summary>What c_proj saw: the gated head outputs y ⊙ g.</summary>
    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => pass.Act(_yg);

    // qkv (rows, 3A), y (rows, A), scores max(block_size, rows·NH), gates (rows, NH); at one row, the kept heads' rows (A ints)
    public long DecodeScratchFloats(int rows) => (long)rows * 4 * _width + Math.Max(_blockSize, (long)rows * _heads) + (long)rows * _heads + _width;

    public void Decode(Span<float> output, ReadOnlySpan<float> input, IKvCache cache, in Decoding decoding)
    {
        int n = decoding.Rows, pos0 = decoding.Position, A = _width, NH = _heads, hs = _headSize, C = _channels;
        var qkv = decoding.Scratch.Slice(0, n * 3 * A);
        var y = decoding.Scratch.Slice(n * 3 * A, n * A);
        var scores = decoding.Scratch.Slice(n * 4 * A, Math.Max(_blockSize, n * NH));
        var gates = decoding.Scratch.Slice(n * 4 * A + scores.Length, n * NH);
        Gate.Decide(gates, input, n, decoding);
        var wAttn = decoding.Param(_cAttnWeight);
        var bAttn = decoding.Param(_cAttnBias);
        if (n == 1 && cache is DenseKvCache)
        {
            // k and v of every head (the cache stays the dense model's), q of the kept heads only
            var kv = qkv.Slice(A, 2 * A);
            Gemv.Forward(kv, input, wAttn.Slice(A * C, 2 * A * C), bAttn.IsEmpty ? default : bAttn.Slice(A, 2 * A), 1, C, 2 * A);
            cache.Write(pos0, kv.Slice(0, A), kv.Slice(A, A));
            var keys = cache.Keys(pos0 + 1);
            var values = cache.Values(pos0 + 1);
            // The kept heads' q rows (compact: the i-th kept head's q at qc[i·hs ..]) in one neuron-sparse product,
            // their attention split over the kernel threads, and c_proj over their rows of the head-major copy.
            var rows = MemoryMarshal.Cast<float, int>(decoding.Scratch.Slice(4 * A + scores.Length + NH, A));
            int kept = 0;
            for (int h = 0; h < NH; h++)
                if (gates[h] != 0f)
                    for (int j = h * hs; j < h * hs + hs; j++) rows[kept++] = j;
            var qc = qkv.Slice(0, kept);
            var yc = y.Slice(0, kept);
            NeuronSparseMlp.UpProject(qc, input.Slice(0, C), wAttn.Slice(0, A * C), bAttn.IsEmpty ? default : bAttn.Slice(0, A), rows.Slice(0, kept), C, A);
            AttendKept(yc, qc, keys, values, pos0, rows.Slice(0, kept), scores);
            NeuronSparseMlp.DownProject(output.Slice(0, C), yc, ProjectionByHead(decoding), decoding.Param(_cProjBias), rows.Slice(0, kept), C, A);
            return;
        }
        // Prefill, or a cache with its own attention: the dense computation, the skipped heads' outputs zeroed
        _cAttn.Forward(qkv, input, wAttn, bAttn, default, n, decoding.Workspace);
        if (pos0 == 0 && n > 1 && cache.ExactPrefill)
        {
            for (int i = 0; i < n; i++)
                cache.Write(pos0 + i, qkv.Slice(i * 3 * A + A, A), qkv.Slice(i * 3 * A + 2 * A, A));
            Attention.Forward(y, scores.Slice(0, n * NH), qkv, 1, n, A, NH);
        }
        else
            for (int i = 0; i < n; i++)
            {
                cache.Write(pos0 + i, qkv.Slice(i * 3 * A + A, A), qkv.Slice(i * 3 * A + 2 * A, A));
                cache.Attend(y.Slice(i * A, A), qkv.Slice(i * 3 * A, A), pos0 + i, NH, scores.Slice(0, _blockSize));
            }
        for (int i = 0; i < n; i++)
            for (int h = 0; h < NH; h++)
                if (gates[i * NH + h] == 0f) y.Slice(i * A + h * hs, hs).Clear();
        _cProj.Forward(output, y, decoding.Param(_cProjWeight), decoding.Param(_cProjBias), default, n, decoding.Workspace);
    }

    // y_h (hs) = softmax(q_h · k_jᵀ · scale over j ≤ position) · v_j, as IKvCache.Attend does for one head
    static void AttendHead(Span<float> yh, ReadOnlySpan<float> qh, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int position,
        int offset, int width, float scale, Span<float> scores)
    {
        int hs = qh.Length;
        var s = scores.Slice(0, position + 1);
        for (int j = 0; j <= position; j++)
            s[j] = System.Numerics.Tensors.TensorPrimitives.Dot(qh, keys.Slice(j * width + offset, hs)) * scale;
        Softmax.Row(s, s);
        yh.Clear();
        for (int j = 0; j <= position; j++)
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(values.Slice(j * width + offset, hs), s[j], yh, yh);
    }

    /// <summary>Scores up to this many positions live on each thread's stack; longer caches run the heads serially in <c>scores</c>.</summary>
    const int StackPositions = 4096;

    struct KeptArgs
    {
        public float* Y, Q, Keys, Values, Scores;
        public int* Rows;
        public int Position, Width, HeadSize;
        public float Scale;
    }

    // y_i (hs) for the i-th kept head (its q at q[i·hs ..], its cache columns from rows[i·hs]): AttendHead per head,
    // the heads split over the kernel threads once the cache is long enough to pay for the hand-off.
    void AttendKept(Span<float> y, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int position,
        ReadOnlySpan<int> rows, Span<float> scores)
    {
        int hs = _headSize, heads = rows.Length / hs;
        if (heads == 0) return;
        fixed (float* py = y, pq = q, pk = keys, pv = values, ps = scores)
        fixed (int* pr = rows)
        {
            var a = new KeptArgs
            {
                Y = py, Q = pq, Keys = pk, Values = pv, Scores = ps, Rows = pr, Position = position, Width = _width, HeadSize = hs,
                Scale = 1f / MathF.Sqrt(hs),
            };
            if (position + 1 > StackPositions || (long)(position + 1) * hs * heads < MinParallelFloats)
                for (int i = 0; i < heads; i++) KeptHead(ref a, i);
            else
                KernelThreads.For(heads, ref a, &KeptHead);
        }
    }

    /// <summary>Below this many cached floats read (positions · hs · kept heads) the heads run on the calling thread.</summary>
    const long MinParallelFloats = 1 << 14;

    static void KeptHead(ref KeptArgs a, int i)
    {
        int n = a.Position + 1, hs = a.HeadSize;
        float* s = a.Scores;
        if (n <= StackPositions)
        {
            float* own = stackalloc float[n];
            s = own;
        }
        long count = (long)n * a.Width;
        AttendHead(new Span<float>(a.Y + i * hs, hs), new ReadOnlySpan<float>(a.Q + i * hs, hs), new ReadOnlySpan<float>(a.Keys, (int)count),
            new ReadOnlySpan<float>(a.Values, (int)count), a.Position, a.Rows[i * hs], a.Width, a.Scale, new Span<float>(s, n));
    }

    float[] ProjectionByHead(in Decoding decoding)
    {
        var copy = _projByHead;
        if (copy is not null) return copy;
        lock (_copyLock)
        {
            if (_projByHead is not null) return _projByHead;
            copy = new float[_channels * _width];
            RowCombination.Transpose(copy, decoding.Param(_cProjWeight), _channels, _width);
            _projByHead = copy;
            return copy;
        }
    }

    /// <summary>Drops the decode copy of c_proj; call it after changing the weights other than through a forward pass.</summary>
    public void InvalidateDecodeCopy() => _projByHead = null;
}
