using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Nn;

/// <summary>
/// nanoGPT's GPT with an explicit forward and backward pass, llm.c style: parameters, gradients and all
/// activations for a fixed (B, T) live in flat buffers allocated once, so a training step allocates nothing.
/// Architecture (pre-LN):
///   x = dropout(wte[idx] + wpe[pos])                                  // (B, T, C)
///   for each block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))       // see Block
///   logits = ln_f(x) · wteᵀ                                            // (B, T, V), lm_head tied to wte
///   loss = cross_entropy(logits, targets)
/// The blocks' parts (attention, MLP, the storage of each Linear weight) declare their parameters and workspace in a
/// <see cref="BufferLayout"/>; the model allocates the buffers and hands every part its slice of them.
/// </summary>
public sealed partial class Gpt
{
    readonly float[] _params;
    float[] _grads;              // empty once the model is held for inference (PrepareForInference)
    readonly float[] _acts;      // kept activations (B·T rows each)
    readonly float[] _scratch;   // the parts' scratch (B·T rows of the widest part's scratch)
    readonly int _scratchWidth;
    readonly int[] _tokens;
    readonly int[] _targets;
    int _targetCount;   // targets of the last Forward that carry loss (not CrossEntropy.IgnoreTarget), at least 1
    readonly Parameter[] _parameters;
    readonly Block[] _blocks;
    readonly LayerNormPart _lnf;
    readonly ILinearWeight[] _linearWeights;
    readonly ParameterSlot _wte, _wpe;
    readonly ActivationSlot _encoded, _logits, _ceLse, _losses;   // (N, C), (N, V), (N), (N)
    readonly ActivationSlot _dres, _dbranch;                      // (N, C): the residual stream's gradient, a branch's
    readonly int _embeddingSeed;
    // Dropout seeds of the last forward pass, one per dropout site (BufferLayout.DropoutSeed).
    readonly ulong[] _seeds;
    bool _dropoutActive, _hasTargets, _logitsAreGradients;
    int _blockLimit = int.MaxValue;   // ForwardBlocks: the blocks the forward pass runs

    public Gpt(GptConfig config, int batchSize, int seqLen) : this(config, batchSize, seqLen, null)
    {
    }

    /// <summary>
    /// A model whose blocks' Linear weights named in <paramref name="linearWeights"/> (by state_dict name,
    /// "transformer.h.{layer}.mlp.c_fc.weight") use those layout objects, e.g. sparse structures read from a checkpoint;
    /// the others are built from the config.
    /// </summary>
    public Gpt(GptConfig config, int batchSize, int seqLen, IReadOnlyDictionary<string, ILinearWeight>? linearWeights)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (batchSize <= 0) throw new ArgumentException($"batch_size ({batchSize}) must be positive", nameof(batchSize));
        if (seqLen <= 0 || seqLen > config.BlockSize)
            throw new ArgumentException($"sequence length ({seqLen}) must lie in [1, block_size ({config.BlockSize})]", nameof(seqLen));
        Config = config;
        BatchSize = batchSize;
        SeqLen = seqLen;
        int L = config.NLayer, C = config.NEmbd, V = config.VocabSize;

        // Parts in data order: parameters follow nanoGPT's state_dict order.
        var layout = new BufferLayout(batchSize, seqLen);
        _wte = layout.Parameter("transformer.wte.weight", V, C);
        _wpe = layout.Parameter("transformer.wpe.weight", config.BlockSize, C);
        _embeddingSeed = layout.DropoutSeed();
        _encoded = layout.Activation(C);
        _blocks = new Block[L];
        if (linearWeights is not null)
            foreach (var key in linearWeights.Keys)
                if (!Enumerable.Range(0, L).Any(l => GptConfig.BlockWeights.Any(w => key == $"transformer.h.{l}.{w}.weight")))
                    throw new ArgumentException($"weight '{key}' is not a Linear weight of this {L}-layer model");
        for (int l = 0; l < L; l++) _blocks[l] = new Block(config, l, layout, linearWeights);
        _lnf = new LayerNormPart("transformer.ln_f", C, config.Bias, layout);
        _logits = layout.Activation(V);
        _ceLse = layout.Activation(1);
        _losses = layout.Activation(1);
        _dres = layout.Activation(C);
        _dbranch = layout.Activation(C);

        ParameterCount = layout.ParameterFloats;
        _params = new float[layout.ParameterFloats];
        Kernels.HugePages.Advise(_params);   // a decode step streams every weight once per token
        _grads = new float[_params.Length];
        _parameters = layout.Parameters.Select(p => new Parameter(p.Name, p.Shape, _params, _grads, p.Offset, p.Weight)).ToArray();
        _linearWeights = layout.LinearWeights.ToArray();
        long scratch = layout.Rows * layout.ScratchWidth;
        if (layout.ActivationFloats > Array.MaxLength || scratch > Array.MaxLength)
            throw new ArgumentException($"activations for batch_size {batchSize} × seq_len {seqLen} need {layout.ActivationFloats + scratch} floats, more than one array holds");
        _acts = new float[layout.ActivationFloats];
        _scratch = new float[scratch];
        // Training streams all three every step (hundreds of MB at `wide`), so they go on 2 MB pages too. Measured on
        // a Zen 5 host (one process alternating two `wide` models, one with this advice; forward and backward steps,
        // medians of 6–16 steps each; runs of a noisy host): the step with it faster by, at one / two threads, dense
        // 1.0–2.1% (three runs) / 1.8% (one); 80% sparse 1.8–2.6% / 1.6–4.2% (two); 90% 1.1–2.8% (three) / −1.7 to
        // +3.7% (four).
        Kernels.HugePages.Advise(_grads);
        Kernels.HugePages.Advise(_acts);
        Kernels.HugePages.Advise(_scratch);
        _scratchWidth = layout.ScratchWidth;
        _tokens = new int[batchSize * seqLen];
        _targets = new int[batchSize * seqLen];
        _seeds = new ulong[layout.DropoutSeeds];
        _workspaces = [WorkspaceFor(batchSize * seqLen)];
    }

    public GptConfig Config { get; }
    public int BatchSize { get; }
    public int SeqLen { get; }
    public IReadOnlyList<Parameter> Parameters => _parameters;
    public Span<float> ParameterData => _params;
    public Span<float> GradientData => _grads;
    public long ParameterCount { get; }
    /// <summary>The transformer blocks, whose parts sparsity methods work on.</summary>
    public IReadOnlyList<Block> Blocks => _blocks;
    /// <summary>Draws the dropout seeds; its state belongs in checkpoints.</summary>
    public Rng DropoutRng { get; } = new(0x5EED_D50FUL);

    /// <summary>
    /// Logits (B, T, V) of the last <see cref="Forward"/>. <see cref="Backward"/> turns this buffer into dlogits in
    /// place, so read the logits before calling it.
    /// </summary>
    public ReadOnlySpan<float> Logits => _acts.AsSpan(checked((int)_logits.Offset), BatchSize * SeqLen * Config.VocabSize);

    /// <summary>
    /// A part's kept activation from the last <see cref="Forward"/>, all B·T rows of <paramref name="slot"/>'s width
    /// (e.g. CausalSelfAttention.HeadOutputs), for calibration statistics. Valid until the next Forward or Backward.
    /// </summary>
    public ReadOnlySpan<float> KeptActivation(ActivationSlot slot)
    {
        if (!slot.IsPresent || slot.IsScratch)
            throw new ArgumentException("only a kept (non-scratch) activation of this model can be read", nameof(slot));
        long length = (long)BatchSize * SeqLen * slot.Width;
        if (slot.Offset + length > _acts.Length) throw new ArgumentException("the activation slot is not one of this model's", nameof(slot));
        return _acts.AsSpan(checked((int)slot.Offset), checked((int)length));
    }

    /// <summary>nanoGPT's _init_weights: N(0, 0.02) for Linear and Embedding weights, N(0, 0.02/√(2·n_layer)) for
    /// the c_proj weights (GPT-2's scaled residual init), biases 0, LayerNorm weight 1 and bias 0. A sparse weight
    /// draws its stored values only.</summary>
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
    /// Runs the model on tokens (B·T, row-major (B, T)). With targets (B·T) returns the mean cross-entropy loss over the
    /// targets that are not CrossEntropy.IgnoreTarget (−1: that position carries no loss and no gradient; all of them by default),
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
        // the loss is the mean over the targets that are not ignored (all of them unless a loss mask set some to -1)
        int kept = 0;
        for (int i = 0; i < targets.Length; i++)
        {
            if (targets[i] == CrossEntropy.IgnoreTarget) continue;
            if ((uint)targets[i] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[i], $"target at index {i} must lie in [0, {V}) (vocab_size) or be {CrossEntropy.IgnoreTarget} (no loss)");
            kept++;
        }
        _targetCount = Math.Max(1, kept);
        tokens.CopyTo(_tokens);
        _hasTargets = targets.Length == N;
        if (_hasTargets) targets.CopyTo(_targets);
        _dropoutActive = training && Config.Dropout > 0;
        if (_dropoutActive)
            for (int i = 0; i < _seeds.Length; i++) _seeds[i] = DropoutRng.NextUInt64();

        _shards = KernelThreads.ThreadsFor(B);
        if (_shardLoss.Length < _shards) _shardLoss = new double[_shards];
        if (_shards == 1) _shardLoss[0] = ForwardSlice(SlicePass(0, 1, _grads));
        else
        {
            EnsureWorkspaces(_shards);
            RunShards(ShardPhase.Forward, _shards);
        }
        _logitsAreGradients = false;

        if (!_hasTargets) return float.NaN;
        double sum = 0;
        for (int s = 0; s < _shards; s++) sum += _shardLoss[s];
        return (float)(sum / _targetCount);
    }

    /// <summary>
    /// Runs the embeddings and the first <paramref name="blockCount"/> blocks on tokens (B·T) in eval mode and stops
    /// there (no ln_f, no logits): the blocks' kept activations then hold what each of their Linear weights saw
    /// (<see cref="LinearInput"/>). Pruning calibrates block l this way on a model whose blocks before l are pruned.
    /// </summary>
    public void ForwardBlocks(ReadOnlySpan<int> tokens, int blockCount)
    {
        if (blockCount < 0 || blockCount > _blocks.Length)
            throw new ArgumentOutOfRangeException(nameof(blockCount), blockCount, $"must lie in [0, {_blocks.Length}] (n_layer)");
        _blockLimit = blockCount;
        try { Forward(tokens, default, training: false); }
        finally { _blockLimit = int.MaxValue; }
        _hasTargets = false;
    }

    /// <summary>
    /// The input (B·T, In) that Linear weight <paramref name="weight"/> ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
    /// "mlp.c_proj") of block <paramref name="layer"/> saw in the last forward pass.
    /// </summary>
    public ReadOnlySpan<float> LinearInput(int layer, string weight)
    {
        if ((uint)layer >= (uint)_blocks.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"must lie in [0, {_blocks.Length}) (n_layer)");
        return _blocks[layer].LinearInput(weight, SlicePass(0, 1, _grads));
    }

    // The forward pass over the sequences of one slice; returns the slice's summed loss (0 without targets).
    double ForwardSlice(in Pass pass)
    {
        int T = SeqLen, C = Config.NEmbd, V = Config.VocabSize;
        int N = pass.Rows;

        // x = dropout(wte[idx] + wpe[pos])   (N, C)
        var encoded = pass.Act(_encoded);
        Embedding.Forward(encoded, _tokens.AsSpan(pass.FirstRow, N), pass.Param(_wte), pass.Param(_wpe).Slice(0, T * C), pass.Sequences, T, C);
        if (pass.DropoutActive) Dropout.Apply(encoded, pass.Dropout, pass.Seed(_embeddingSeed), pass.MaskOffset(C));

        ReadOnlySpan<float> x = encoded;
        int blocks = Math.Min(_blockLimit, _blocks.Length);
        for (int l = 0; l < blocks; l++) x = _blocks[l].Forward(x, pass);
        if (blocks < _blocks.Length) return 0;

        var lnf = _lnf.Forward(x, pass);
        var logits = pass.Act(_logits);
        Gemm.Multiply(false, true, N, V, C, Config.LogitScale, lnf, C, pass.Param(_wte), C, 0f, logits, V);   // lm_head = wte: (N, V)
        if (!_hasTargets) return 0;
        return CrossEntropy.ForwardSum(pass.Act(_losses), pass.Act(_ceLse), logits, _targets.AsSpan(pass.FirstRow, N), N, V);
    }

    /// <summary>
    /// Gradient of the last Forward's mean loss, ACCUMULATED into <see cref="GradientData"/> (call ZeroGrad between
    /// optimizer steps, not between micro-batches). Requires a Forward with targets since the last Backward.
    /// </summary>
    public void Backward()
    {
        if (IsInferenceOnly)
            throw new InvalidOperationException("this model was prepared for inference only (Gpt.PrepareForInference released the training structures): load it again to train it");
        if (!_hasTargets || _logitsAreGradients)
            throw new InvalidOperationException("Backward needs a Forward with targets first (and runs once per Forward)");
        _logitsAreGradients = true;
        if (_shards == 1)
        {
            BackwardSlice(SlicePass(0, 1, _grads));
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

    // The backward pass over one slice's sequences, accumulating parameter gradients into the pass's gradients.
    void BackwardSlice(in Pass pass)
    {
        int T = SeqLen, C = Config.NEmbd, V = Config.VocabSize, L = Config.NLayer;
        int N = pass.Rows;

        var dlogits = pass.Act(_logits);
        CrossEntropy.BackwardInPlace(dlogits, pass.Act(_ceLse), _targets.AsSpan(pass.FirstRow, N), N, V, _targetCount);
        // in the forward pass this was: logits = logit_scale · (lnf · wteᵀ)
        if (Config.LogitScale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(dlogits, Config.LogitScale, dlogits);
        var dbranch = pass.Act(_dbranch);
        // in the forward pass this was: logits = lnf · wteᵀ
        Linear.Backward(dbranch, pass.Grad(_wte), default, dlogits, _lnf.Output(pass), pass.Param(_wte), N, C, V);

        var dres = pass.Act(_dres);
        dres.Clear();
        var encoded = pass.Act(_encoded);
        _lnf.Backward(dres, dbranch, L == 0 ? encoded : _blocks[L - 1].Output(pass), pass);

        for (int l = L - 1; l >= 0; l--)
            _blocks[l].Backward(dres, dbranch, l == 0 ? encoded : _blocks[l - 1].Output(pass), pass);

        // in the forward pass this was: encoded = dropout(wte[idx] + wpe[pos])
        if (pass.DropoutActive) Dropout.Apply(dres, pass.Dropout, pass.Seed(_embeddingSeed), pass.MaskOffset(C));
        Embedding.Backward(pass.Grad(_wte), pass.Grad(_wpe).Slice(0, T * C), dres, _tokens.AsSpan(pass.FirstRow, N), pass.Sequences, T, C);
    }
}
