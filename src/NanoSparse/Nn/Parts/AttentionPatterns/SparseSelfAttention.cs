using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts.AttentionPatterns;

/// <summary>
/// The attention half of a block with a sparse pattern (<see cref="SparsePattern"/>: window, block, top-k, NSA):
///   qkv = c_attn(x)                                           // (N, 3A)
///   g = sigmoid(x · W_gᵀ + b_g)                               // (N, 3·NH), NSA only: per-head branch gates
///   y = SparseAttention(qkv, g)                               // (N, A): only the pattern's query-key pairs
///   out = residual + dropout(c_proj(y))                       // (N, C)
/// Attention-weight dropout is not applied in the sparse patterns (residual dropout is). The gates' parameters are
/// "{name}.gate.weight" (3·NH, C) and "{name}.gate.bias" (3·NH), trained with the rest.
/// </summary>
public sealed class SparseSelfAttention : IAttention
{
    readonly SparsePattern _pattern;
    readonly int _channels, _width, _heads, _gates;
    readonly ILinearWeight _cAttn, _cProj;
    readonly ParameterSlot _cAttnWeight, _cAttnBias, _cProjWeight, _cProjBias, _gateWeight, _gateBias;
    readonly ActivationSlot _qkv, _y, _kept, _g;              // kept: (N, 3A), (N, A), (N, KeptWidth), (N, 3NH) for NSA
    readonly ActivationSlot _dmasked, _dqkv, _dy, _dg, _dxg;  // scratch
    readonly int _residualSeed;
    readonly bool _rope;   // rotary position embedding on q and k (RotaryEmbedding)

    public SparseSelfAttention(GptConfig config, SparsePattern pattern, string name, ILinearWeight cAttn, ILinearWeight cProj, BufferLayout layout)
    {
        int C = config.NEmbd, hs = config.HeadSize;
        int A = cAttn.OutFeatures / 3, NH = A / hs;
        if (cAttn.InFeatures != C || cAttn.OutFeatures % (3 * hs) != 0 || NH == 0)
            throw new ArgumentException($"{name}.c_attn must be (3·heads·{hs}, {C}) with at least one head of size {hs}, got ({cAttn.OutFeatures}, {cAttn.InFeatures})", nameof(cAttn));
        if (cProj.OutFeatures != C || cProj.InFeatures != A)
            throw new ArgumentException($"{name}.c_proj must be ({C}, {A}), got ({cProj.OutFeatures}, {cProj.InFeatures})", nameof(cProj));
        pattern.Validate(config.BlockSize, hs);
        if (config.Rope && hs % 2 != 0) throw new ArgumentException($"{name}: rope needs an even head size, got {hs}", nameof(config));
        _rope = config.Rope;
        _pattern = pattern;
        _channels = C;
        _width = A;
        _heads = NH;
        _gates = pattern.Gates(NH);
        _cAttn = cAttn;
        _cProj = cProj;
        _cAttnWeight = layout.LinearWeight(name + ".c_attn.weight", cAttn);
        _cAttnBias = layout.OptionalParameter(config.Bias, name + ".c_attn.bias", 3 * A);
        _cProjWeight = layout.LinearWeight(name + ".c_proj.weight", cProj);
        _cProjBias = layout.OptionalParameter(config.Bias, name + ".c_proj.bias", C);
        _gateWeight = _gates > 0 ? layout.Parameter(name + ".gate.weight", _gates, C) : ParameterSlot.Absent;
        _gateBias = _gates > 0 ? layout.Parameter(name + ".gate.bias", _gates) : ParameterSlot.Absent;

        _qkv = layout.Activation(3 * A);
        _y = layout.Activation(A);
        _kept = layout.Activation(pattern.KeptWidth(A, NH));
        _g = layout.OptionalActivation(_gates > 0, _gates);
        var scratch = layout.Scratch(config.Dropout > 0 ? C : 0, 3 * A, A > C ? A : 0, _gates, _gates > 0 ? C : 0);
        _dmasked = scratch[0];
        _dqkv = scratch[1];
        _dy = scratch[2];
        _dg = scratch[3];
        _dxg = scratch[4];
        _residualSeed = layout.DropoutSeed();
    }

    public SparsePattern Pattern => _pattern;
    public ILinearWeight CAttn => _cAttn;
    public ILinearWeight CProj => _cProj;
    public int Heads => _heads;
    public int Width => _width;

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        int N = pass.Rows, C = _channels;
        var qkv = pass.Act(_qkv);
        var y = pass.Act(_y);
        var g = pass.Act(_g);
        _cAttn.Forward(qkv, input, pass.Param(_cAttnWeight), pass.Param(_cAttnBias), default, N, pass.Workspace);
        if (_rope) RotaryEmbedding.Apply(qkv, N, pass.SeqLen, 0, _width, _heads);
        if (_gates > 0) Gates(g, input, pass.Param(_gateWeight), pass.Param(_gateBias), N);
        SparseAttention.Forward(_pattern, y, pass.Act(_kept), qkv, g, pass.Sequences, pass.SeqLen, _width, _heads);
        ResidualProjection.Forward(_cProj, _cProjWeight, _cProjBias, output, y, residual, _residualSeed, C, pass);
    }

    /// <summary>g (N, 3NH) = sigmoid(x · W_gᵀ + b_g): NSA's per-head weights of the compressed, selected and window branches.</summary>
    void Gates(Span<float> g, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int N)
    {
        Linear.Forward(g, x, weight, bias, N, _channels, _gates);
        var v = g.Slice(0, N * _gates);
        System.Numerics.Tensors.TensorPrimitives.Sigmoid(v, v);
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows, C = _channels;
        // in the forward pass this was: out = residual + dropout(c_proj(y))
        var dproj = ResidualProjection.DropoutBackward(doutput, _dmasked, _residualSeed, C, pass);
        var dy = _width > C ? pass.Act(_dy) : dinput.Slice(0, N * _width);
        _cProj.Backward(dy, pass.Grad(_cProjWeight), pass.Grad(_cProjBias), dproj, pass.Act(_y), pass.Param(_cProjWeight), default, N,
            pass.Workspace);
        var dqkv = pass.Act(_dqkv);
        var g = pass.Act(_g);
        var dg = pass.Act(_dg);
        SparseAttention.Backward(_pattern, dqkv, dg, dy, pass.Act(_qkv), pass.Act(_y), pass.Act(_kept), g, pass.Sequences, pass.SeqLen,
            _width, _heads);
        // in the forward pass this was: q, k = rotate(q, k), so dq, dk = rotateᵀ(dq', dk')
        if (_rope) RotaryEmbedding.Apply(dqkv, N, pass.SeqLen, 0, _width, _heads, inverse: true);
        var dxg = pass.Act(_dxg);
        if (_gates > 0)
        {
            // in the forward pass this was: g = sigmoid(z), z = x · W_gᵀ + b_g, so dz = dg · g · (1 − g)
            for (int i = 0; i < N * _gates; i++) dg[i] *= g[i] * (1f - g[i]);
            Linear.Backward(dxg, pass.Grad(_gateWeight), pass.Grad(_gateBias), dg, input, pass.Param(_gateWeight), N, C, _gates);
        }
        _cAttn.Backward(dinput, pass.Grad(_cAttnWeight), pass.Grad(_cAttnBias), dqkv, input, pass.Param(_cAttnWeight), default, N,
            pass.Workspace);
        if (_gates > 0) Residual.Add(dinput.Slice(0, N * C), dinput.Slice(0, N * C), dxg);
    }

    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => pass.Act(_y);

    // qkv (rows, 3A), y (rows, A), gates (rows, 3NH), the kernel's kept rows
    public long DecodeScratchFloats(int rows) =>
        (long)rows * (4 * _width + _gates) + SparseAttention.DecodeScratchFloats(_pattern, rows, _width, _heads);

    public void Decode(Span<float> output, ReadOnlySpan<float> input, IKvCache cache, in Decoding decoding)
    {
        int n = decoding.Rows, pos0 = decoding.Position, A = _width;
        var qkv = decoding.Scratch.Slice(0, n * 3 * A);
        var y = decoding.Scratch.Slice(n * 3 * A, n * A);
        var g = decoding.Scratch.Slice(n * 4 * A, n * _gates);
        var rest = decoding.Scratch.Slice(n * (4 * A + _gates));
        _cAttn.Forward(qkv, input, decoding.Param(_cAttnWeight), decoding.Param(_cAttnBias), default, n, decoding.Workspace);
        if (_rope) RotaryEmbedding.Apply(qkv, n, n, pos0, A, _heads);
        for (int i = 0; i < n; i++)
            cache.Write(pos0 + i, qkv.Slice(i * 3 * A + A, A), qkv.Slice(i * 3 * A + 2 * A, A));
        if (_gates > 0) Gates(g, input, decoding.Param(_gateWeight), decoding.Param(_gateBias), n);
        SparseAttention.Decode(_pattern, y, qkv, cache.Keys(pos0 + n), cache.Values(pos0 + n), g, pos0, n, A, _heads, rest);
        _cProj.Forward(output, y, decoding.Param(_cProjWeight), decoding.Param(_cProjBias), default, n, decoding.Workspace);
    }
}
