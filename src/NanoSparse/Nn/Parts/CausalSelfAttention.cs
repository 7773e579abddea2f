using System.Numerics.Tensors;
using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// nanoGPT's CausalSelfAttention: every query attends to every earlier position (dense causal softmax attention).
///   qkv = c_attn(x)                                  // (N, 3A): q, k, v side by side, heads side by side in each
///   y = softmax(q·kᵀ/√hs + causal mask) · v          // (N, A), per head, attention-weight dropout when training
///   out = residual + dropout(c_proj(y))              // (N, C)
/// A = NH·hs is the attention width: C in nanoGPT; less in a layer whose heads structured pruning removed (its
/// head count is the config's per-layer count; the head size hs = n_embd / n_head stays).
/// </summary>
public sealed class CausalSelfAttention : IAttention
{
    readonly int _channels, _width, _heads, _blockSize;
    readonly ILinearWeight _cAttn, _cProj;
    readonly ParameterSlot _cAttnWeight, _cAttnBias, _cProjWeight, _cProjBias;
    readonly ActivationSlot _qkv, _y, _lse, _probs;   // kept: (N, 3A), (N, A), (B, NH, T), (B, NH, T, Tp) or absent
    readonly ActivationSlot _dmasked, _dqkv, _dy;     // scratch: (N, C) when dropout, (N, 3A), (N, A) when A > C
    readonly int _attentionSeed, _residualSeed;
    readonly bool _rope;   // rotary position embedding on q and k (RotaryEmbedding)

    // name: the state_dict prefix, e.g. transformer.h.0.attn
    public CausalSelfAttention(GptConfig config, string name, ILinearWeight cAttn, ILinearWeight cProj, BufferLayout layout)
    {
        // The head count follows from c_attn's width: A = 3A / 3 of whole heads of hs = n_embd / n_head.
        int C = config.NEmbd, hs = config.HeadSize, T = layout.SeqLen;
        int A = cAttn.OutFeatures / 3, NH = A / hs;
        if (cAttn.InFeatures != C || cAttn.OutFeatures % (3 * hs) != 0 || NH == 0)
            throw new ArgumentException($"{name}.c_attn must be (3·heads·{hs}, {C}) with at least one head of size {hs}, got ({cAttn.OutFeatures}, {cAttn.InFeatures})", nameof(cAttn));
        if (cProj.OutFeatures != C || cProj.InFeatures != A)
            throw new ArgumentException($"{name}.c_proj must be ({C}, {A}), got ({cProj.OutFeatures}, {cProj.InFeatures})", nameof(cProj));
        _channels = C;
        _width = A;
        _heads = NH;
        _blockSize = config.BlockSize;
        if (config.Rope && hs % 2 != 0) throw new ArgumentException($"{name}: rope needs an even head size, got {hs}", nameof(config));
        _rope = config.Rope;
        _cAttn = cAttn;
        _cProj = cProj;
        _cAttnWeight = layout.LinearWeight(name + ".c_attn.weight", cAttn);
        _cAttnBias = layout.OptionalParameter(config.Bias, name + ".c_attn.bias", 3 * A);
        _cProjWeight = layout.LinearWeight(name + ".c_proj.weight", cProj);
        _cProjBias = layout.OptionalParameter(config.Bias, name + ".c_proj.bias", C);

        _qkv = layout.Activation(3 * A);
        _y = layout.Activation(A);
        _lse = layout.Activation(NH);
        // The probabilities are kept from forward to backward where the attention kernel finds that cheaper than
        // recomputing them; per position a row of (NH, T rounded up) floats.
        _probs = layout.OptionalActivation(Attention.KeepsProbabilities(T, A, NH), (int)(Attention.ProbabilitiesLength(1, T, NH) / T));
        // d y lives in dinput (N, C) while it fits; a layer wider than C (more heads than n_head) needs its own.
        var scratch = layout.Scratch(config.Dropout > 0 ? C : 0, 3 * A, A > C ? A : 0);
        _dmasked = scratch[0];
        _dqkv = scratch[1];
        _dy = scratch[2];
        _attentionSeed = layout.DropoutSeed();
        _residualSeed = layout.DropoutSeed();
    }

    public ILinearWeight CAttn => _cAttn;
    public ILinearWeight CProj => _cProj;
    /// <summary>Attention heads of this layer.</summary>
    public int Heads => _heads;
    /// <summary>Heads · head size: the width of q, k, v and y (and of the KV cache).</summary>
    public int Width => _width;
    /// <summary>y (B·T, A) of the last forward pass: every head's attention output, heads side by side, before c_proj
    /// (read it with <see cref="Gpt.KeptActivation"/>).</summary>
    public ActivationSlot HeadOutputs => _y;

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        int N = pass.Rows, C = _channels;
        var qkv = pass.Act(_qkv);
        var y = pass.Act(_y);
        _cAttn.Forward(qkv, input, pass.Param(_cAttnWeight), pass.Param(_cAttnBias), default, N, pass.Workspace);
        if (_rope) RotaryEmbedding.Apply(qkv, N, pass.SeqLen, 0, _width, _heads);
        Attention.Forward(y, pass.Act(_lse), qkv, pass.Sequences, pass.SeqLen, _width, _heads, pass.Dropout, pass.Seed(_attentionSeed),
            pass.FirstSequence, pass.Act(_probs));
        ResidualProjection.Forward(_cProj, _cProjWeight, _cProjBias, output, y, residual, _residualSeed, C, pass);
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows, C = _channels;
        // in the forward pass this was: out = residual + dropout(c_proj(y))
        var dproj = ResidualProjection.DropoutBackward(doutput, _dmasked, _residualSeed, C, pass);
        // d y (N, A) lives in dinput until c_attn's backward overwrites it with d input (or in its own scratch when A > C)
        var dy = _width > C ? pass.Act(_dy) : dinput.Slice(0, N * _width);
        _cProj.Backward(dy, pass.Grad(_cProjWeight), pass.Grad(_cProjBias), dproj, pass.Act(_y), pass.Param(_cProjWeight), default, N,
            pass.Workspace);
        var dqkv = pass.Act(_dqkv);
        var qkv = pass.Act(_qkv);
        Attention.Backward(dqkv, dy, qkv, pass.Act(_lse), pass.Sequences, pass.SeqLen, _width, _heads, pass.Dropout, pass.Seed(_attentionSeed),
            pass.FirstSequence, pass.Act(_probs), pass.Act(_y));
        // in the forward pass this was: q, k = rotate(q, k), so dq, dk = rotateᵀ(dq', dk')
        if (_rope) RotaryEmbedding.Apply(dqkv, N, pass.SeqLen, 0, _width, _heads, inverse: true);
        _cAttn.Backward(dinput, pass.Grad(_cAttnWeight), pass.Grad(_cAttnBias), dqkv, input, pass.Param(_cAttnWeight), default, N,
            pass.Workspace);
    }

    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => pass.Act(_y);

    // qkv (rows, 3C), y (rows, C), scores (block_size)
    // with C read as the attention width A = heads · hs (n_embd unless structured pruning removed heads)
    public long DecodeScratchFloats(int rows) => (long)rows * 4 * _width + Math.Max(_blockSize, (long)rows * _heads);

    public void Decode(Span<float> output, ReadOnlySpan<float> input, IKvCache cache, in Decoding decoding)
    {
        // C here is the attention width A (heads · hs): the stride of q, k, v, y and the cache's rows
        int n = decoding.Rows, pos0 = decoding.Position, C = _width, NH = _heads;
        var qkv = decoding.Scratch.Slice(0, n * 3 * C);
        var y = decoding.Scratch.Slice(n * 3 * C, n * C);
        _cAttn.Forward(qkv, input, decoding.Param(_cAttnWeight), decoding.Param(_cAttnBias), default, n, decoding.Workspace);
        if (_rope) RotaryEmbedding.Apply(qkv, n, n, pos0, C, NH);
        if (pos0 == 0 && n > 1 && cache.ExactPrefill)   // a prompt into an empty cache: the training pass's causal attention (tiled kernel)
        {
            for (int i = 0; i < n; i++)
                cache.Write(pos0 + i, qkv.Slice(i * 3 * C + C, C), qkv.Slice(i * 3 * C + 2 * C, C));
            Attention.Forward(y, decoding.Scratch.Slice(n * 4 * C, n * NH), qkv, 1, n, C, NH);
        }
        else   // each new position's key and value go in, then its query attends to what the cache keeps
            for (int i = 0; i < n; i++)
            {
                cache.Write(pos0 + i, qkv.Slice(i * 3 * C + C, C), qkv.Slice(i * 3 * C + 2 * C, C));
                cache.Attend(y.Slice(i * C, C), qkv.Slice(i * 3 * C, C), pos0 + i, NH, decoding.Scratch.Slice(n * 4 * C, _blockSize));
            }
        _cProj.Forward(output, y, decoding.Param(_cProjWeight), decoding.Param(_cProjBias), default, n, decoding.Workspace);
    }
}
