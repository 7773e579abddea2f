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
    Span<float> Gr(int offset, int length) => offset < 0 ? default : _grads.AsSpan(offset, length);
    Span<float> A(int offset, long length) => offset < 0 ? default : _acts.AsSpan(offset, (int)length);

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
        int B = BatchSize, T = SeqLen, C = Config.NEmbd, NH = Config.NHead, V = Config.VocabSize, L = Config.NLayer;
        int N = B * T;
        if (tokens.Length != N)
            throw new ArgumentException($"tokens has {tokens.Length} elements but the model was built for batch_size {B} × seq_len {T} = {N}", nameof(tokens));
        if (targets.Length != 0 && targets.Length != N)
            throw new ArgumentException($"targets has {targets.Length} elements but must be empty or {N} (batch_size × seq_len)", nameof(targets));
        tokens.CopyTo(_tokens);
        float p = Config.Dropout;
        _dropoutActive = training && p > 0;
        if (_dropoutActive)
            for (int i = 0; i < _seeds.Length; i++) _seeds[i] = DropoutRng.NextUInt64();
        float pa = _dropoutActive ? p : 0f;

        var encoded = A(_encoded, (long)N * C);
        Embedding.Forward(encoded, _tokens, P(_wte, V * C), P(_wpe, T * C), B, T, C);
        if (_dropoutActive) Dropout.Apply(encoded, p, _seeds[0]);

        for (int l = 0; l < L; l++)
        {
            ref readonly var lp = ref _lp[l];
            ref readonly var la = ref _la[l];
            var residual = l == 0 ? encoded : A(_la[l - 1].Res3, (long)N * C);
            var ln1 = A(la.Ln1, (long)N * C);
            var qkv = A(la.Qkv, (long)N * 3 * C);
            var atty = A(la.Atty, (long)N * C);
            var res2 = A(la.Res2, (long)N * C);
            var ln2 = A(la.Ln2, (long)N * C);
            var fch = A(la.Fch, (long)N * 4 * C);
            var res3 = A(la.Res3, (long)N * C);
            var g = A(la.G, (long)N * 4 * C);

            LayerNorm.Forward(ln1, A(la.Ln1Mean, N), A(la.Ln1Rstd, N), residual, P(lp.Ln1W, C), P(lp.Ln1B, C), N, C);
            Linear.Forward(qkv, ln1, P(lp.AttnW, 3 * C * C), P(lp.AttnB, 3 * C), N, C, 3 * C);
            Attention.Forward(atty, A(la.AttLse, (long)B * NH * T), qkv, B, T, C, NH, pa, _seeds[1 + 3 * l]);
            Linear.Forward(res2, atty, P(lp.AttnProjW, C * C), P(lp.AttnProjB, C), N, C, C);
            if (_dropoutActive) Dropout.Apply(res2, p, _seeds[2 + 3 * l]);
            Residual.Add(res2, res2, residual);                          // x = x + attn(...)

            LayerNorm.Forward(ln2, A(la.Ln2Mean, N), A(la.Ln2Rstd, N), res2, P(lp.Ln2W, C), P(lp.Ln2B, C), N, C);
            Linear.Forward(fch, ln2, P(lp.FcW, 4 * C * C), P(lp.FcB, 4 * C), N, C, 4 * C);
            ActivationForwardWithDerivative(g, fch);                     // fch now holds act'(c_fc output)
            Linear.Forward(res3, g, P(lp.FcProjW, 4 * C * C), P(lp.FcProjB, C), N, 4 * C, C);
            if (_dropoutActive) Dropout.Apply(res3, p, _seeds[3 + 3 * l]);
            Residual.Add(res3, res3, res2);                              // x = x + mlp(...)
        }

        var xL = L == 0 ? encoded : A(_la[L - 1].Res3, (long)N * C);
        var lnf = A(_lnf, (long)N * C);
        LayerNorm.Forward(lnf, A(_lnfMean, N), A(_lnfRstd, N), xL, P(_lnfW, C), P(_lnfB, C), N, C);
        var logits = A(_logits, (long)N * V);
        Gemm.Multiply(false, true, N, V, C, 1f, lnf, C, P(_wte, V * C), C, 0f, logits, V);   // lm_head = wte
        _logitsAreGradients = false;

        _hasTargets = targets.Length == N;
        if (!_hasTargets) return float.NaN;
        targets.CopyTo(_targets);
        return CrossEntropy.Forward(A(_losses, N), A(_ceLse, N), logits, _targets, N, V);
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
        int B = BatchSize, T = SeqLen, C = Config.NEmbd, NH = Config.NHead, V = Config.VocabSize, L = Config.NLayer;
        int N = B * T;
        float p = Config.Dropout;
        float pa = _dropoutActive ? p : 0f;

        var dlogits = A(_logits, (long)N * V);
        CrossEntropy.BackwardInPlace(dlogits, A(_ceLse, N), _targets, N, V);
        var lnf = A(_lnf, (long)N * C);
        var dc = A(_dc, (long)N * C);
        // in the forward pass this was: logits = lnf · wteᵀ
        Linear.Backward(dc, Gr(_wte, V * C), default, dlogits, lnf, P(_wte, V * C), N, C, V);

        var dres = A(_dres, (long)N * C);
        dres.Clear();
        var encoded = A(_encoded, (long)N * C);
        var xL = L == 0 ? encoded : A(_la[L - 1].Res3, (long)N * C);
        LayerNorm.Backward(dres, Gr(_lnfW, C), Gr(_lnfB, C), dc, xL, P(_lnfW, C), A(_lnfMean, N), A(_lnfRstd, N), N, C);

        var dmasked = A(_dmasked, (long)N * C);
        var g = A(_g, (long)N * 4 * C);
        var dqkv = A(_dqkv, (long)N * 3 * C);
        for (int l = L - 1; l >= 0; l--)
        {
            ref readonly var lp = ref _lp[l];
            ref readonly var la = ref _la[l];
            var residual = l == 0 ? encoded : A(_la[l - 1].Res3, (long)N * C);
            var fch = A(la.Fch, (long)N * 4 * C);
            var res2 = A(la.Res2, (long)N * C);

            // in the forward pass this was: res3 = res2 + dropout(c_proj(gelu(c_fc(ln_2(res2)))))
            // dres carries d res3 and, unchanged, the direct path into d res2.
            ReadOnlySpan<float> dproj = dres;
            if (_dropoutActive)
            {
                dres.CopyTo(dmasked);
                Dropout.Apply(dmasked, p, _seeds[3 + 3 * l]);
                dproj = dmasked;
            }
            Linear.Backward(g, Gr(lp.FcProjW, 4 * C * C), Gr(lp.FcProjB, C), dproj, A(la.G, (long)N * 4 * C), P(lp.FcProjW, 4 * C * C), N, 4 * C, C);
            Elementwise.MultiplyByDerivative(g, fch, g);                 // g now holds d fch (fch holds act')
            Linear.Backward(dc, Gr(lp.FcW, 4 * C * C), Gr(lp.FcB, 4 * C), g, A(la.Ln2, (long)N * C), P(lp.FcW, 4 * C * C), N, C, 4 * C);
            LayerNorm.Backward(dres, Gr(lp.Ln2W, C), Gr(lp.Ln2B, C), dc, res2, P(lp.Ln2W, C), A(la.Ln2Mean, N), A(la.Ln2Rstd, N), N, C);

            // in the forward pass this was: res2 = residual + dropout(c_proj(attn(ln_1(residual))))
            dproj = dres;
            if (_dropoutActive)
            {
                dres.CopyTo(dmasked);
                Dropout.Apply(dmasked, p, _seeds[2 + 3 * l]);
                dproj = dmasked;
            }
            var atty = A(la.Atty, (long)N * C);
            Linear.Backward(dc, Gr(lp.AttnProjW, C * C), Gr(lp.AttnProjB, C), dproj, atty, P(lp.AttnProjW, C * C), N, C, C);
            Attention.Backward(dqkv, dc, A(la.Qkv, (long)N * 3 * C), A(la.AttLse, (long)B * NH * T), B, T, C, NH, pa, _seeds[1 + 3 * l]);
            Linear.Backward(dc, Gr(lp.AttnW, 3 * C * C), Gr(lp.AttnB, 3 * C), dqkv, A(la.Ln1, (long)N * C), P(lp.AttnW, 3 * C * C), N, C, 3 * C);
            LayerNorm.Backward(dres, Gr(lp.Ln1W, C), Gr(lp.Ln1B, C), dc, residual, P(lp.Ln1W, C), A(la.Ln1Mean, N), A(la.Ln1Rstd, N), N, C);
        }

        // in the forward pass this was: encoded = dropout(wte[idx] + wpe[pos])
        if (_dropoutActive) Dropout.Apply(dres, p, _seeds[0]);
        Embedding.Backward(Gr(_wte, V * C), Gr(_wpe, T * C), dres, _tokens, B, T, C);
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
