using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Sparsity.Pruning.Structured;

/// <summary>How a head's or a neuron's importance is measured.</summary>
public enum StructuredScore
{
    /// <summary>From the weights alone: a head's ‖q, k, v rows and c_proj columns‖₂, a neuron's ‖c_fc row‖₂·‖c_proj column‖₂.</summary>
    Norm,
    /// <summary>
    /// From calibration data: a head's mean ‖c_proj_h · y_h‖₂ over the tokens (the size of what it adds to the residual
    /// stream), a neuron's mean |GELU output|·‖c_proj column‖₂.
    /// </summary>
    Activation,
}

/// <summary>Importance of every attention head and MLP neuron of a model: Heads[layer][head], Neurons[layer][neuron].</summary>
public sealed record UnitScores(double[][] Heads, double[][] Neurons);

/// <summary>
/// Importance scores of whole attention heads and MLP neurons, the units structured pruning removes. In layer l with
/// A = heads·hs and H the MLP width:
///   head h owns rows h·hs..(h+1)·hs of q, k and v (rows p·A + h·hs + d of c_attn, p = 0, 1, 2) and the same columns
///   of attn.c_proj; neuron j owns row j of mlp.c_fc (and its bias) and column j of mlp.c_proj.
/// Sparse Linear weights are read through their dense view (absent positions are 0).
/// </summary>
public static class StructuredScores
{
    /// <summary>
    /// Weight-norm scores: head h: sqrt(Σ over its q, k, v rows of c_attn and its columns of attn.c_proj of w²);
    /// neuron j: ‖mlp.c_fc[j, :]‖₂ · ‖mlp.c_proj[:, j]‖₂.
    /// </summary>
    public static UnitScores Norm(Gpt gpt)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        var config = gpt.Config;
        int L = config.NLayer, C = config.NEmbd, hs = config.HeadSize;
        var heads = new double[L][];
        var neurons = new double[L][];
        for (int l = 0; l < L; l++)
        {
            int NH = config.Heads(l), A = NH * hs, H = config.MlpHidden(l);
            var cAttn = DenseWeight(gpt, l, "attn.c_attn");   // (3A, C)
            var aProj = DenseWeight(gpt, l, "attn.c_proj");   // (C, A)
            heads[l] = new double[NH];
            for (int h = 0; h < NH; h++)
            {
                double sum = 0;
                for (int p = 0; p < 3; p++)
                    for (int d = 0; d < hs; d++)
                        sum += SumSquares(cAttn.AsSpan((p * A + h * hs + d) * C, C));
                for (int c = 0; c < C; c++)
                    sum += SumSquares(aProj.AsSpan(c * A + h * hs, hs));
                heads[l][h] = Math.Sqrt(sum);
            }
            var cFc = DenseWeight(gpt, l, "mlp.c_fc");        // (H, C)
            var columns = ColumnNorms(DenseWeight(gpt, l, "mlp.c_proj"), C, H);
            neurons[l] = new double[H];
            for (int j = 0; j < H; j++) neurons[l][j] = Math.Sqrt(SumSquares(cFc.AsSpan(j * C, C))) * columns[j];
        }
        return new UnitScores(heads, neurons);
    }

    /// <summary>‖column j‖₂ of a (rows, cols) row-major matrix, for every j.</summary>
    public static double[] ColumnNorms(ReadOnlySpan<float> matrix, int rows, int cols)
    {
        var sums = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            var row = matrix.Slice(r * cols, cols);
            for (int j = 0; j < cols; j++) sums[j] += (double)row[j] * row[j];
        }
        for (int j = 0; j < cols; j++) sums[j] = Math.Sqrt(sums[j]);
        return sums;
    }

    /// <summary>Layer <paramref name="layer"/>'s Linear weight <paramref name="name"/> ("attn.c_attn", ...) as a dense (Out, In) array.</summary>
    public static float[] DenseWeight(Gpt gpt, int layer, string name)
    {
        string full = $"transformer.h.{layer}.{name}.weight";
        foreach (var p in gpt.Parameters)
        {
            if (p.Name != full) continue;
            var dense = new float[p.LogicalLength];
            if (p.Layout is null) p.Value.Span.CopyTo(dense);
            else p.Layout.ToDense(p.Value.Span, dense);
            return dense;
        }
        throw new ArgumentException($"the model has no parameter '{full}'");
    }

    static double SumSquares(ReadOnlySpan<float> x)
    {
        double s = 0;
        foreach (float v in x) s += (double)v * v;
        return s;
    }
}

/// <summary>
/// Activation-based scores accumulated over calibration batches: after each <see cref="Gpt.Forward"/> (no dropout)
/// call <see cref="Accumulate"/>; <see cref="Scores"/> gives the means over every token seen so far.
///   head h of layer l:   mean over tokens t of ‖c_proj[:, h·hs..(h+1)·hs] · y[t, h·hs..(h+1)·hs]‖₂
///   neuron j of layer l: mean over tokens t of |gelu(c_fc(x))[t, j]| · ‖c_proj[:, j]‖₂
/// </summary>
public sealed class ActivationScores
{
    readonly Gpt _gpt;
    readonly double[][] _heads, _neurons;
    readonly float[][] _projections;    // per layer attn.c_proj (C, A), dense
    readonly double[][] _columnNorms;   // per layer ‖mlp.c_proj[:, j]‖₂
    readonly float[] _contribution;     // (B·T, C): one head's c_proj output
    long _tokens;

    public ActivationScores(Gpt gpt)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        _gpt = gpt;
        var config = gpt.Config;
        int L = config.NLayer, C = config.NEmbd;
        _heads = new double[L][];
        _neurons = new double[L][];
        _projections = new float[L][];
        _columnNorms = new double[L][];
        for (int l = 0; l < L; l++)
        {
            if (gpt.Blocks[l].Attention is not CausalSelfAttention || gpt.Blocks[l].FeedForward is not Mlp)
                throw new ArgumentException($"layer {l}: activation scores need the dense causal attention and the MLP parts");
            _heads[l] = new double[config.Heads(l)];
            _neurons[l] = new double[config.MlpHidden(l)];
            _projections[l] = StructuredScores.DenseWeight(gpt, l, "attn.c_proj");
            _columnNorms[l] = StructuredScores.ColumnNorms(StructuredScores.DenseWeight(gpt, l, "mlp.c_proj"), C, config.MlpHidden(l));
        }
        _contribution = new float[(long)gpt.BatchSize * gpt.SeqLen * C];
    }

    /// <summary>Tokens accumulated so far.</summary>
    public long Tokens => _tokens;

    /// <summary>Adds the tokens of the model's last Forward (B·T of them).</summary>
    public void Accumulate()
    {
        var config = _gpt.Config;
        int N = _gpt.BatchSize * _gpt.SeqLen, C = config.NEmbd, hs = config.HeadSize;
        for (int l = 0; l < config.NLayer; l++)
        {
            var attention = (CausalSelfAttention)_gpt.Blocks[l].Attention;
            var mlp = (Mlp)_gpt.Blocks[l].FeedForward;
            int NH = attention.Heads, A = attention.Width, H = _neurons[l].Length;
            var y = _gpt.KeptActivation(attention.HeadOutputs);   // (N, A)
            for (int h = 0; h < NH; h++)
            {
                // (N, C) = y[:, h·hs..] (N, hs) · c_proj[:, h·hs..]ᵀ (hs, C): what head h adds to the residual stream
                Gemm.Multiply(false, true, N, C, hs, 1f, y.Slice(h * hs), A, _projections[l].AsSpan(h * hs), A, 0f, _contribution, C);
                double sum = 0;
                for (int t = 0; t < N; t++)
                    sum += Math.Sqrt(System.Numerics.Tensors.TensorPrimitives.Dot(
                        (ReadOnlySpan<float>)_contribution.AsSpan(t * C, C), _contribution.AsSpan(t * C, C)));
                _heads[l][h] += sum;
            }
            var g = _gpt.KeptActivation(mlp.GeluOutputs);          // (N, H)
            var neurons = _neurons[l];
            for (int t = 0; t < N; t++)
            {
                var row = g.Slice(t * H, H);
                for (int j = 0; j < H; j++) neurons[j] += Math.Abs(row[j]);
            }
        }
        _tokens += N;
    }

    /// <summary>The mean scores over the tokens accumulated (throws when there are none).</summary>
    public UnitScores Scores()
    {
        if (_tokens == 0) throw new InvalidOperationException("no calibration tokens accumulated: call Accumulate after a Forward first");
        int L = _heads.Length;
        var heads = new double[L][];
        var neurons = new double[L][];
        for (int l = 0; l < L; l++)
        {
            heads[l] = _heads[l].Select(s => s / _tokens).ToArray();
            neurons[l] = _neurons[l].Select((s, j) => s / _tokens * _columnNorms[l][j]).ToArray();
        }
        return new UnitScores(heads, neurons);
    }
}
