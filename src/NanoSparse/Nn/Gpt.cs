using NanoSparse.Kernels;
using NanoSparse.Numerics;

namespace NanoSparse.Nn;

/// <summary>
/// nanoGPT's GPT with an explicit forward and backward pass, llm.c style: parameters, gradients and all
/// activations for a fixed (B, T) live in three flat buffers allocated once, so a training step allocates nothing.
/// Architecture (pre-LN):
///   x = dropout(wte[idx] + wpe[pos])                                  // (B, T, C)
///   for each block: x = x + dropout(c_proj(attn(ln_1(x))))
///                   x = x + dropout(mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))))
///   logits = ln_f(x) · wteᵀ                                            // (B, T, V), lm_head tied to wte
///   loss = cross_entropy(logits, targets)
/// </summary>
public sealed partial class Gpt
{
    // Offsets into the flat parameter (and gradient) buffer; -1 marks an absent bias.
    struct LayerParams
    {
        public int Ln1W, Ln1B, AttnW, AttnB, AttnProjW, AttnProjB, Ln2W, Ln2B, FcW, FcB, FcProjW, FcProjB;
    }

    // Offsets into the activation workspace for one block; shapes with N = B·T.
    struct LayerActs
    {
        public int Ln1, Ln1Mean, Ln1Rstd;   // (N, C), (N), (N)
        public int Qkv;                     // (N, 3C)
        public int Atty;                    // (N, C) attention output before c_proj
        public int AttLse;                  // (B, NH, T) softmax log-partition per query
        public int AttP;                    // (B, NH, T, Tp) softmax probabilities for the backward pass, or -1
        public int Res2;                    // (N, C) x after the attention half
        public int Ln2, Ln2Mean, Ln2Rstd;   // (N, C), (N), (N)
        public int Fch;                     // (N, 4C) c_fc output before GELU, then (forward) GELU' of it
        public int G;                       // (N, 4C) GELU output: c_proj's input
        public int Res3;                    // (N, C) x after the MLP half (block output)
    }

    readonly float[] _params;
    readonly float[] _grads;
    readonly float[] _acts;
    readonly int[] _tokens;
    readonly int[] _targets;
    readonly Parameter[] _parameters;
    readonly LayerParams[] _lp;
    readonly LayerActs[] _la;
    readonly int _wte, _wpe, _lnfW, _lnfB;
    readonly int _encoded, _lnf, _lnfMean, _lnfRstd, _logits, _ceLse, _losses;
    readonly int _dres, _dmasked, _dc, _dqkv, _g;
    // Dropout seeds of the last forward pass: [0] embeddings, then per layer attention weights, attn resid, mlp resid.
    readonly ulong[] _seeds;
    bool _dropoutActive, _hasTargets, _logitsAreGradients;
    readonly int _probsWidth;  // floats of AttP per position (attention's padded probability rows for all heads)
    readonly bool _geluTanh;   // config.Activation == "gelu_tanh" (GPT-2) instead of the exact GELU

    public Gpt(GptConfig config, int batchSize, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (batchSize <= 0) throw new ArgumentException($"batch_size ({batchSize}) must be positive", nameof(batchSize));
        if (seqLen <= 0 || seqLen > config.BlockSize)
            throw new ArgumentException($"sequence length ({seqLen}) must lie in [1, block_size ({config.BlockSize})]", nameof(seqLen));
        Config = config;
        _geluTanh = config.Activation == GptConfig.GeluTanh;
        BatchSize = batchSize;
        SeqLen = seqLen;
        int L = config.NLayer, C = config.NEmbd, V = config.VocabSize, NH = config.NHead;
        bool bias = config.Bias;

        // Parameters in nanoGPT state_dict order.
        var specs = new List<(string Name, int[] Shape)>();
        long pcount = 0;
        int Add(string name, params int[] shape)
        {
            long len = 1;
            foreach (int d in shape) len *= d;
            int offset = checked((int)pcount);
            specs.Add((name, shape));
            pcount += len;
            return offset;
        }
        _wte = Add("transformer.wte.weight", V, C);
        _wpe = Add("transformer.wpe.weight", config.BlockSize, C);
        _lp = new LayerParams[L];
        for (int l = 0; l < L; l++)
        {
            string p = $"transformer.h.{l}.";
            ref var lp = ref _lp[l];
            lp.Ln1W = Add(p + "ln_1.weight", C);
            lp.Ln1B = bias ? Add(p + "ln_1.bias", C) : -1;
            lp.AttnW = Add(p + "attn.c_attn.weight", 3 * C, C);
            lp.AttnB = bias ? Add(p + "attn.c_attn.bias", 3 * C) : -1;
            lp.AttnProjW = Add(p + "attn.c_proj.weight", C, C);
            lp.AttnProjB = bias ? Add(p + "attn.c_proj.bias", C) : -1;
            lp.Ln2W = Add(p + "ln_2.weight", C);
            lp.Ln2B = bias ? Add(p + "ln_2.bias", C) : -1;
            lp.FcW = Add(p + "mlp.c_fc.weight", 4 * C, C);
            lp.FcB = bias ? Add(p + "mlp.c_fc.bias", 4 * C) : -1;
            lp.FcProjW = Add(p + "mlp.c_proj.weight", C, 4 * C);
            lp.FcProjB = bias ? Add(p + "mlp.c_proj.bias", C) : -1;
        }
        _lnfW = Add("transformer.ln_f.weight", C);
        _lnfB = bias ? Add("transformer.ln_f.bias", C) : -1;
        ParameterCount = pcount;
        _params = new float[checked((int)pcount)];
        _grads = new float[_params.Length];
        _parameters = new Parameter[specs.Count];
        int offsetSoFar = 0;
        for (int i = 0; i < specs.Count; i++)
        {
            _parameters[i] = new Parameter(specs[i].Name, specs[i].Shape, _params, _grads, offsetSoFar);
            offsetSoFar += _parameters[i].Length;
        }

        // Activation workspace.
        long N = (long)batchSize * seqLen;
        bool keepProbs = Attention.KeepsProbabilities(seqLen, C, NH);   // kept from forward to backward (AttP)
        _probsWidth = (int)(Attention.ProbabilitiesLength(1, seqLen, NH) / seqLen);
        long acount = 0;
        int Act(long len)
        {
            int offset = checked((int)acount);
            acount += len;
            return offset;
        }
        _encoded = Act(N * C);
        _la = new LayerActs[L];
        for (int l = 0; l < L; l++)
        {
            ref var la = ref _la[l];
            la.Ln1 = Act(N * C); la.Ln1Mean = Act(N); la.Ln1Rstd = Act(N);
            la.Qkv = Act(N * 3 * C);
            la.Atty = Act(N * C);
            la.AttLse = Act((long)batchSize * NH * seqLen);
            la.AttP = keepProbs ? Act(Attention.ProbabilitiesLength(batchSize, seqLen, NH)) : -1;
            la.Res2 = Act(N * C);
            la.Ln2 = Act(N * C); la.Ln2Mean = Act(N); la.Ln2Rstd = Act(N);
            la.Fch = Act(N * 4 * C);
            la.G = Act(N * 4 * C);
            la.Res3 = Act(N * C);
        }
        _lnf = Act(N * C); _lnfMean = Act(N); _lnfRstd = Act(N);
        _logits = Act(N * V);
        _ceLse = Act(N);
        _losses = Act(N);
        _g = Act(N * 4 * C);
        _dres = Act(N * C);
        _dmasked = config.Dropout > 0 ? Act(N * C) : -1;
        _dc = Act(N * C);
        _dqkv = Act(N * 3 * C);
        if (acount > Array.MaxLength)
            throw new ArgumentException($"activations for batch_size {batchSize} × seq_len {seqLen} need {acount} floats, more than one array holds");
        _acts = new float[acount];
        _tokens = new int[N];
        _targets = new int[N];
        _seeds = new ulong[1 + 3 * L];
    }

    public GptConfig Config { get; }
    public int BatchSize { get; }
    public int SeqLen { get; }
    public IReadOnlyList<Parameter> Parameters => _parameters;
    public Span<float> ParameterData => _params;
    public Span<float> GradientData => _grads;
    public long ParameterCount { get; }
    /// <summary>Draws the dropout seeds; its state belongs in checkpoints.</summary>
    public Rng DropoutRng { get; } = new(0x5EED_D50FUL);

    /// <summary>
    /// Logits (B, T, V) of the last <see cref="Forward"/>. <see cref="Backward"/> turns this buffer into dlogits in
    /// place, so read the logits before calling it.
    /// </summary>
    public ReadOnlySpan<float> Logits => _acts.AsSpan(_logits, BatchSize * SeqLen * Config.VocabSize);

    Span<float> P(int offset, int length) => offset < 0 ? default : _params.AsSpan(offset, length);
    // The rows of slice r in an activation buffer at offset with width floats per row (position).
    Span<float> A(int offset, int width, Rows r) => offset < 0 ? default : _acts.AsSpan(offset + r.R0 * width, r.N * width);
    static Span<float> G(float[] grads, int offset, int length) => offset < 0 ? default : grads.AsSpan(offset, length);

    /// <summary>nanoGPT's _init_weights: N(0, 0.02) for Linear and Embedding weights, N(0, 0.02/√(2·n_layer)) for
    /// the c_proj weights (GPT-2's scaled residual init), biases 0, LayerNorm weight 1 and bias 0.</summary>
    public void InitializeWeights(ulong seed)
    {
        var rng = new Rng(seed);
        float projStd = 0.02f / MathF.Sqrt(2f * Config.NLayer);
        foreach (var p in _parameters)
        {
            var v = p.Value.Span;
            bool isLayerNorm = p.Name.Contains(".ln_");
            if (p.Name.EndsWith(".bias")) v.Clear();
            else if (isLayerNorm) v.Fill(1f);
            else
            {
                float std = p.Name.EndsWith("c_proj.weight") ? projStd : 0.02f;
                for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextGaussian() * std);
            }
        }
    }

    public void ZeroGrad() => Array.Clear(_grads);

    /// <summary>
    /// Runs the model on tokens (B·T, row-major (B, T)). With targets (B·T) returns the mean cross-entropy loss,
    /// otherwise NaN (logits are computed either way). Dropout is applied only when training and p &gt; 0.
    /// </summary>
    public float Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, bool training)
    {
        int B = BatchSize, T = SeqLen, V = Config.VocabSize;
        int N = B * T;
        if (tokens.Length != N)
            throw new ArgumentException($"tokens has {tokens.Length} elements but the model was built for batch_size {B} × seq_len {T} = {N}", nameof(tokens));
        if (targets.Length != 0 && targets.Length != N)
            throw new ArgumentException($"targets has {targets.Length} elements but must be empty or {N} (batch_size × seq_len)", nameof(targets));
        // Checked here, before the shards start, so the message gives the position in the whole batch.
        for (int i = 0; i < N; i++)
            if ((uint)tokens[i] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[i], $"token at index {i} must lie in [0, {V}) (vocab_size)");
        for (int i = 0; i < targets.Length; i++)
            if ((uint)targets[i] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[i], $"target at index {i} must lie in [0, {V}) (vocab_size)");
        tokens.CopyTo(_tokens);
        _hasTargets = targets.Length == N;
        if (_hasTargets) targets.CopyTo(_targets);
        _dropoutActive = training && Config.Dropout > 0;
        if (_dropoutActive)
            for (int i = 0; i < _seeds.Length; i++) _seeds[i] = DropoutRng.NextUInt64();

        _shards = KernelThreads.ThreadsFor(B);
        if (_shardLoss.Length < _shards) _shardLoss = new double[_shards];
        if (_shards == 1) _shardLoss[0] = ForwardSlice(new Rows(0, B, T));
        else RunShards(ShardPhase.Forward, _shards);
        _logitsAreGradients = false;

        if (!_hasTargets) return float.NaN;
        double sum = 0;
        for (int s = 0; s < _shards; s++) sum += _shardLoss[s];
        return (float)(sum / N);
    }

    // The forward pass over the sequences of one slice; returns the slice's summed loss (0 without targets).
    double ForwardSlice(Rows r)
    {
        int T = SeqLen, C = Config.NEmbd, NH = Config.NHead, V = Config.VocabSize, L = Config.NLayer;
        int N = r.N;
        float p = Config.Dropout;
        float pa = _dropoutActive ? p : 0f;
        long maskOffset = (long)r.R0 * C;   // dropout masks of (N, C) sites are indexed over the whole batch

        var encoded = A(_encoded, C, r);
        Embedding.Forward(encoded, _tokens.AsSpan(r.R0, N), P(_wte, V * C), P(_wpe, T * C), r.Nb, T, C);
        if (_dropoutActive) Dropout.Apply(encoded, p, _seeds[0], maskOffset);

        for (int l = 0; l < L; l++)
        {
            ref readonly var lp = ref _lp[l];
            ref readonly var la = ref _la[l];
            var residual = l == 0 ? encoded : A(_la[l - 1].Res3, C, r);
            var ln1 = A(la.Ln1, C, r);
            var qkv = A(la.Qkv, 3 * C, r);
            var atty = A(la.Atty, C, r);
            var res2 = A(la.Res2, C, r);
            var ln2 = A(la.Ln2, C, r);
            var fch = A(la.Fch, 4 * C, r);
            var res3 = A(la.Res3, C, r);
            var g = A(la.G, 4 * C, r);

            LayerNorm.Forward(ln1, A(la.Ln1Mean, 1, r), A(la.Ln1Rstd, 1, r), residual, P(lp.Ln1W, C), P(lp.Ln1B, C), N, C);
            Linear.Forward(qkv, ln1, P(lp.AttnW, 3 * C * C), P(lp.AttnB, 3 * C), N, C, 3 * C);
            Attention.Forward(atty, A(la.AttLse, NH, r), qkv, r.Nb, T, C, NH, pa, _seeds[1 + 3 * l], r.B0, A(la.AttP, _probsWidth, r));
            if (_dropoutActive)
            {
                Linear.Forward(res2, atty, P(lp.AttnProjW, C * C), P(lp.AttnProjB, C), N, C, C);
                Dropout.Apply(res2, p, _seeds[2 + 3 * l], maskOffset);
                Residual.Add(res2, res2, residual);                      // x = x + dropout(attn(...))
            }
            else Linear.Forward(res2, atty, P(lp.AttnProjW, C * C), P(lp.AttnProjB, C), N, C, C, residual);   // x = x + attn(...)

            LayerNorm.Forward(ln2, A(la.Ln2Mean, 1, r), A(la.Ln2Rstd, 1, r), res2, P(lp.Ln2W, C), P(lp.Ln2B, C), N, C);
            Linear.Forward(fch, ln2, P(lp.FcW, 4 * C * C), P(lp.FcB, 4 * C), N, C, 4 * C);
            ActivationForwardWithDerivative(g, fch);                     // fch now holds act'(c_fc output)
            if (_dropoutActive)
            {
                Linear.Forward(res3, g, P(lp.FcProjW, 4 * C * C), P(lp.FcProjB, C), N, 4 * C, C);
                Dropout.Apply(res3, p, _seeds[3 + 3 * l], maskOffset);
                Residual.Add(res3, res3, res2);                          // x = x + dropout(mlp(...))
            }
            else Linear.Forward(res3, g, P(lp.FcProjW, 4 * C * C), P(lp.FcProjB, C), N, 4 * C, C, res2);   // x = x + mlp(...)
        }

        var xL = L == 0 ? encoded : A(_la[L - 1].Res3, C, r);
        var lnf = A(_lnf, C, r);
        LayerNorm.Forward(lnf, A(_lnfMean, 1, r), A(_lnfRstd, 1, r), xL, P(_lnfW, C), P(_lnfB, C), N, C);
        var logits = A(_logits, V, r);
        Gemm.Multiply(false, true, N, V, C, 1f, lnf, C, P(_wte, V * C), C, 0f, logits, V);   // lm_head = wte
        if (!_hasTargets) return 0;
        return CrossEntropy.ForwardSum(A(_losses, 1, r), A(_ceLse, 1, r), logits, _targets.AsSpan(r.R0, N), N, V);
    }

    /// <summary>
    /// Gradient of the last Forward's mean loss, ACCUMULATED into <see cref="GradientData"/> (call ZeroGrad between
    /// optimizer steps, not between micro-batches). Requires a Forward with targets since the last Backward.
    /// </summary>
    public void Backward()
    {
        if (!_hasTargets || _logitsAreGradients)
            throw new InvalidOperationException("Backward needs a Forward with targets first (and runs once per Forward)");
        _logitsAreGradients = true;
        if (_shards == 1)
        {
            BackwardSlice(new Rows(0, BatchSize, SeqLen), _grads);
            return;
        }
        if (_shardGrads.Length < _shards - 1)
        {
            var grown = new float[_shards - 1][];
            for (int s = 0; s < grown.Length; s++) grown[s] = s < _shardGrads.Length ? _shardGrads[s] : new float[_grads.Length];
            _shardGrads = grown;
        }
        RunShards(ShardPhase.Backward, _shards);
        RunShards(ShardPhase.Reduce, _shards);
    }

    // The backward pass over one slice's sequences, accumulating parameter gradients into grads.
    void BackwardSlice(Rows r, float[] grads)
    {
        int T = SeqLen, C = Config.NEmbd, NH = Config.NHead, V = Config.VocabSize, L = Config.NLayer;
        int N = r.N;
        float p = Config.Dropout;
        float pa = _dropoutActive ? p : 0f;
        long maskOffset = (long)r.R0 * C;
        var tokens = _tokens.AsSpan(r.R0, N);

        var dlogits = A(_logits, V, r);
        CrossEntropy.BackwardInPlace(dlogits, A(_ceLse, 1, r), _targets.AsSpan(r.R0, N), N, V, BatchSize * T);
        var lnf = A(_lnf, C, r);
        var dc = A(_dc, C, r);
        // in the forward pass this was: logits = lnf · wteᵀ
        Linear.Backward(dc, G(grads, _wte, V * C), default, dlogits, lnf, P(_wte, V * C), N, C, V);

        var dres = A(_dres, C, r);
        dres.Clear();
        var encoded = A(_encoded, C, r);
        var xL = L == 0 ? encoded : A(_la[L - 1].Res3, C, r);
        LayerNorm.Backward(dres, G(grads, _lnfW, C), G(grads, _lnfB, C), dc, xL, P(_lnfW, C), A(_lnfMean, 1, r), A(_lnfRstd, 1, r), N, C);

        var dmasked = A(_dmasked, C, r);
        var g = A(_g, 4 * C, r);
        var dqkv = A(_dqkv, 3 * C, r);
        for (int l = L - 1; l >= 0; l--)
        {
            ref readonly var lp = ref _lp[l];
            ref readonly var la = ref _la[l];
            var residual = l == 0 ? encoded : A(_la[l - 1].Res3, C, r);
            var fch = A(la.Fch, 4 * C, r);
            var res2 = A(la.Res2, C, r);

            // in the forward pass this was: res3 = res2 + dropout(c_proj(gelu(c_fc(ln_2(res2)))))
            // dres carries d res3 and, unchanged, the direct path into d res2.
            ReadOnlySpan<float> dproj = dres;
            if (_dropoutActive)
            {
                dres.CopyTo(dmasked);
                Dropout.Apply(dmasked, p, _seeds[3 + 3 * l], maskOffset);
                dproj = dmasked;
            }
            // d fch = (dproj · W) ⊙ act'(fch), the derivative stored in fch by the forward pass
            Linear.Backward(g, G(grads, lp.FcProjW, 4 * C * C), G(grads, lp.FcProjB, C), dproj, A(la.G, 4 * C, r), P(lp.FcProjW, 4 * C * C), N, 4 * C, C, fch);
            Linear.Backward(dc, G(grads, lp.FcW, 4 * C * C), G(grads, lp.FcB, 4 * C), g, A(la.Ln2, C, r), P(lp.FcW, 4 * C * C), N, C, 4 * C);
            LayerNorm.Backward(dres, G(grads, lp.Ln2W, C), G(grads, lp.Ln2B, C), dc, res2, P(lp.Ln2W, C), A(la.Ln2Mean, 1, r), A(la.Ln2Rstd, 1, r), N, C);

            // in the forward pass this was: res2 = residual + dropout(c_proj(attn(ln_1(residual))))
            dproj = dres;
            if (_dropoutActive)
            {
                dres.CopyTo(dmasked);
                Dropout.Apply(dmasked, p, _seeds[2 + 3 * l], maskOffset);
                dproj = dmasked;
            }
            var atty = A(la.Atty, C, r);
            Linear.Backward(dc, G(grads, lp.AttnProjW, C * C), G(grads, lp.AttnProjB, C), dproj, atty, P(lp.AttnProjW, C * C), N, C, C);
            Attention.Backward(dqkv, dc, A(la.Qkv, 3 * C, r), A(la.AttLse, NH, r), r.Nb, T, C, NH, pa, _seeds[1 + 3 * l], r.B0,
                A(la.AttP, _probsWidth, r));
            Linear.Backward(dc, G(grads, lp.AttnW, 3 * C * C), G(grads, lp.AttnB, 3 * C), dqkv, A(la.Ln1, C, r), P(lp.AttnW, 3 * C * C), N, C, 3 * C);
            LayerNorm.Backward(dres, G(grads, lp.Ln1W, C), G(grads, lp.Ln1B, C), dc, residual, P(lp.Ln1W, C), A(la.Ln1Mean, 1, r), A(la.Ln1Rstd, 1, r), N, C);
        }

        // in the forward pass this was: encoded = dropout(wte[idx] + wpe[pos])
        if (_dropoutActive) Dropout.Apply(dres, p, _seeds[0], maskOffset);
        Embedding.Backward(G(grads, _wte, V * C), G(grads, _wpe, T * C), dres, tokens, r.Nb, T, C);
    }

    // Data-parallel shards. With more than one thread, Forward and Backward split the batch into one slice of whole
    // sequences per thread and run each slice's entire pass on its own thread, the kernels inside running
    // single-threaded. A step then opens three parallel regions instead of one per kernel call (about 150 for the
    // baby preset), and no thread waits for another in the middle of a pass. Every activation buffer is laid out
    // row by row over the batch, so a slice's activations are contiguous ranges of the same workspace. Slice s > 0
    // accumulates parameter gradients into a buffer of its own; the Reduce phase adds those into the gradients in
    // slice order (and zeroes them for the next Backward), so a given thread count gives the same bits every run.
    // Dropout masks are indexed over the whole batch, so they do not depend on the slicing.
    enum ShardPhase { Forward, Backward, Reduce }

    const int ReduceChunk = 16384;

    readonly record struct Rows(int B0, int Nb, int T)
    {
        public int R0 => B0 * T;   // first row (position) of the slice
        public int N => Nb * T;    // rows in the slice
    }

    int _shards = 1;                    // slices of the last Forward
    double[] _shardLoss = new double[1];
    float[][] _shardGrads = [];

    Rows Shard(int s, int shards)
    {
        int b0 = (int)((long)BatchSize * s / shards), b1 = (int)((long)BatchSize * (s + 1) / shards);
        return new Rows(b0, b1 - b0, SeqLen);
    }

    struct ShardArgs { public IntPtr Model; public ShardPhase Phase; public int Shards; }

    unsafe void RunShards(ShardPhase phase, int shards)
    {
        int count = phase == ShardPhase.Reduce ? (_grads.Length + ReduceChunk - 1) / ReduceChunk : shards;
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(this);
        try
        {
            var a = new ShardArgs { Model = System.Runtime.InteropServices.GCHandle.ToIntPtr(handle), Phase = phase, Shards = shards };
            KernelThreads.For(count, ref a, &ShardItem);
        }
        finally { handle.Free(); }
    }

    static void ShardItem(ref ShardArgs a, int item)
    {
        var model = (Gpt)System.Runtime.InteropServices.GCHandle.FromIntPtr(a.Model).Target!;
        switch (a.Phase)
        {
            case ShardPhase.Forward:
                model._shardLoss[item] = model.ForwardSlice(model.Shard(item, a.Shards));
                break;
            case ShardPhase.Backward:
                model.BackwardSlice(model.Shard(item, a.Shards), item == 0 ? model._grads : model._shardGrads[item - 1]);
                break;
            default:
                int start = item * ReduceChunk, length = Math.Min(ReduceChunk, model._grads.Length - start);
                var sum = model._grads.AsSpan(start, length);
                for (int s = 0; s < a.Shards - 1; s++)
                {
                    var part = model._shardGrads[s].AsSpan(start, length);
                    System.Numerics.Tensors.TensorPrimitives.Add(sum, part, sum);
                    part.Clear();
                }
                break;
        }
    }

    // The MLP's activation (config.Activation): out (N) = act(inp (N)).
    void ActivationForward(Span<float> output, ReadOnlySpan<float> input)
    {
        if (_geluTanh) GeluTanh.Forward(output, input);
        else Gelu.Forward(output, input);
    }

    // The same, and x overwritten with act'(x) for Backward.
    void ActivationForwardWithDerivative(Span<float> output, Span<float> inputThenDerivative)
    {
        if (_geluTanh) GeluTanh.ForwardWithDerivative(output, inputThenDerivative);
        else Gelu.ForwardWithDerivative(output, inputThenDerivative);
    }
}
