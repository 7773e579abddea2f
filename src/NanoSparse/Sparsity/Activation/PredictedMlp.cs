using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// nanoGPT's MLP run through a Deja Vu predictor (inference only):
///   s = predictor(x)                         (H) one score per neuron from the MLP input x = ln_2(residual) (C)
///   S = top-k(s), or {j : s_j &gt; 0}          the neurons computed for this token
///   h_S = act(W_fc[S, :] · x + b_fc[S])      (|S|) neuron-sparse up-projection
///   y = b_proj + Σ_{j ∈ S} h_j · W_proj[:, j] (C)  neuron-sparse down-projection over the neuron-major c_proj copy
/// Decode (a few positions) runs exactly that through <see cref="NeuronSparseMlp"/>. Forward over many rows (eval) is a
/// masked dense evaluation of the same function: the full c_fc GEMM, the activation, the unselected neurons zeroed,
/// the c_proj GEMM; it also counts how many neurons were selected and how many of the truly active ones (the
/// predictor's label: activation ≠ 0, or the top fraction by |activation|) were among them, for the recall report.
/// </summary>
public sealed class PredictedMlp : IFeedForward
{
    readonly int _channels, _hidden, _rank, _keep;   // _keep: neurons per token under top-k; -1 for the threshold rule
    readonly DejaVuPredictor.Layer _predictor;
    readonly ReadOnlyMemory<float> _wFc, _bFc, _wProj, _bProj;
    readonly float[] _wProjT;                        // (H, C): c_proj neuron-major, each neuron's output weights contiguous
    readonly NeuronActivation _kernelActivation;
    readonly string _activation;
    readonly double _labelTop;                       // > 0: the label is the top fraction by |activation|; 0: activation ≠ 0
    readonly float[] _h, _scores, _z, _scratch;      // (maxRows, H) ×3, (maxRows, r): the masked Forward's buffers
    readonly int[] _chosen;                          // (maxRows, H)
    long _rows, _selected, _truth, _hits;

    /// <param name="keep">neurons computed per token (top-k by score); null: every neuron with a positive logit.</param>
    public PredictedMlp(GptConfig config, DejaVuPredictor.Layer predictor, string label, ReadOnlyMemory<float> wFc, ReadOnlyMemory<float> bFc,
        ReadOnlyMemory<float> wProj, ReadOnlyMemory<float> bProj, int maxRows, int? keep)
    {
        int C = config.NEmbd, H = predictor.Hidden;
        if (predictor.Channels != C) throw new ArgumentException($"the predictor takes {predictor.Channels} channels, the model has {C}");
        if (wFc.Length != H * C || wProj.Length != C * H)
            throw new ArgumentException($"c_fc and c_proj must hold {H}x{C} values for a predicted MLP, got {wFc.Length} and {wProj.Length}");
        if (keep is { } k && (k < 0 || k > H)) throw new ArgumentOutOfRangeException(nameof(keep), k, $"neurons kept must lie in [0, {H}]");
        _activation = CheckActivation(config.Activation);
        _channels = C;
        _hidden = H;
        _rank = predictor.Rank;
        _keep = keep ?? -1;
        _predictor = predictor;
        _wFc = wFc;
        _bFc = bFc;
        _wProj = wProj;
        _bProj = bProj;
        _wProjT = new float[H * C];
        NeuronSparseMlp.NeuronMajor(wProj.Span, _wProjT, C, H);
        _kernelActivation = _activation switch
        {
            GptConfig.Gelu => NeuronActivation.Gelu,
            GptConfig.GeluTanh => NeuronActivation.GeluTanh,
            _ => NeuronActivation.Relu,
        };
        _labelTop = label.StartsWith("top:", StringComparison.Ordinal)
            ? double.Parse(label.AsSpan(4), NumberStyles.Float, CultureInfo.InvariantCulture) : 0;
        _h = new float[maxRows * H];
        _scores = new float[maxRows * H];
        _scratch = new float[maxRows * H];
        _z = new float[maxRows * _rank];
        _chosen = new int[maxRows * H];
    }

    /// <summary>The activations the neuron-sparse path applies itself (to the selected neurons only).</summary>
    public static string CheckActivation(string activation) => activation switch
    {
        GptConfig.Gelu or GptConfig.GeluTanh or "relu" => activation,
        _ => throw new ArgumentException($"activation \"{activation}\" is not supported by the predicted MLP; expected gelu, gelu_tanh or relu"),
    };

    public int Hidden => _hidden;
    /// <summary>Neurons per token under top-k, or -1 for the positive-logit rule.</summary>
    public int Keep => _keep;
    /// <summary>Rows evaluated by Forward since the last <see cref="ResetCounts"/>.</summary>
    public long Rows => Interlocked.Read(ref _rows);
    /// <summary>Share of neurons computed per row (Forward rows).</summary>
    public double SelectedFraction => _rows == 0 ? double.NaN : (double)_selected / ((double)_rows * _hidden);
    /// <summary>Share of the truly active neurons (the predictor's label) the selection kept (Forward rows).</summary>
    public double Recall => _truth == 0 ? double.NaN : (double)_hits / _truth;
    public void ResetCounts() { _rows = 0; _selected = 0; _truth = 0; _hits = 0; }

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        int N = pass.Rows, C = _channels, H = _hidden;
        if ((long)(pass.FirstRow + N) * H > _h.Length)
            throw new InvalidOperationException($"the predicted MLP was built for {_h.Length / H} rows, the pass reaches row {pass.FirstRow + N}");
        var h = _h.AsSpan(pass.FirstRow * H, N * H);
        var scores = _scores.AsSpan(pass.FirstRow * H, N * H);
        var scratch = _scratch.AsSpan(pass.FirstRow * H, N * H);
        var chosen = _chosen.AsSpan(pass.FirstRow * H, N * H);
        _predictor.Scores(scores, _z.AsSpan(pass.FirstRow * _rank, N * _rank), input, N);
        Linear.Forward(h, input, _wFc.Span, _bFc.Span, N, C, H);
        Activate(h);
        long selected = 0, truth = 0, hits = 0;
        float[] absRow = _labelTop > 0 ? new float[H] : [], topScratch = _labelTop > 0 ? new float[H] : [];   // eval only
        for (int i = 0; i < N; i++)
        {
            var hRow = h.Slice(i * H, H);
            var pick = chosen.Slice(i * H, H);
            int k = Select(scores.Slice(i * H, H), scratch.Slice(i * H, H), pick);
            // scratch row: 1 where selected, then the label's truth
            var keepMask = scratch.Slice(i * H, H);
            keepMask.Clear();
            foreach (int j in pick.Slice(0, k)) keepMask[j] = 1f;
            int t = CountTruth(hRow, keepMask, pick, absRow, topScratch, out int hit);
            truth += t;
            hits += hit;
            selected += k;
            TensorPrimitives.Multiply(hRow, keepMask, hRow);
        }
        Interlocked.Add(ref _rows, N);
        Interlocked.Add(ref _selected, selected);
        Interlocked.Add(ref _truth, truth);
        Interlocked.Add(ref _hits, hits);
        Linear.Forward(output, h, _wProj.Span, _bProj.Span, N, H, C, residual);
    }

    // The truly active neurons of one row (activation ≠ 0, or the top _labelTop·H by |activation|) and how many of them
    // the selection (keepMask = 1) kept. pick is reused as scratch for the top-k label.
    int CountTruth(ReadOnlySpan<float> hRow, ReadOnlySpan<float> keepMask, Span<int> pick, float[] absRow, float[] topScratch, out int hits)
    {
        int H = _hidden;
        hits = 0;
        if (_labelTop <= 0)
        {
            int t = 0;
            for (int j = 0; j < H; j++)
                if (hRow[j] != 0) { t++; if (keepMask[j] != 0) hits++; }
            return t;
        }
        int top = (int)Math.Round(_labelTop * H);
        TensorPrimitives.Abs(hRow, absRow);
        TopK.Largest(absRow, top, topScratch, pick);
        foreach (int j in pick.Slice(0, top)) if (keepMask[j] != 0) hits++;
        return top;
    }

    // The neurons to compute (ascending) into chosen; returns their count. scratch (H) is overwritten.
    int Select(ReadOnlySpan<float> scores, Span<float> scratch, Span<int> chosen)
    {
        if (_keep >= 0)
        {
            // The same set as TopK.Largest (ties to the lower index), in branch-free passes: the quickselect's
            // data-dependent branches cost ~20–35 µs per layer and token, serial on one thread.
            RadixTopK.Largest(scores, _keep, chosen);
            return _keep;
        }
        // without a branch: which logits are positive changes with every token, so a test per neuron mispredicts
        int k = 0;
        for (int j = 0; j < scores.Length; j++)
        {
            chosen[k] = j;
            k += scores[j] > 0 ? 1 : 0;
        }
        return k;
    }

    void Activate(Span<float> h)
    {
        switch (_activation)
        {
            case GptConfig.Gelu: Gelu.Forward(h, h); break;
            case GptConfig.GeluTanh: GeluTanh.Forward(h, h); break;
            default: TensorPrimitives.Max(h, 0f, h); break;
        }
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass) =>
        throw new InvalidOperationException("a predicted MLP runs for inference only (eval, sample, bench); train the dense model");

    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => _h.AsSpan(pass.FirstRow * _hidden, pass.Rows * _hidden);

    // per row: scores (H), top-k scratch (H), h (H), chosen (H ints), z (r), the fused kernel's partial sums
    public long DecodeScratchFloats(int rows) => 4L * _hidden + _rank + (long)NeuronSparseMlp.MaxParts * _channels;

    /// <summary>output (n, C): each position through predictor → selection → neuron-sparse up, activation, neuron-sparse down.</summary>
    public void Decode(Span<float> output, ReadOnlySpan<float> input, in Decoding decoding)
    {
        int n = decoding.Rows, C = _channels, H = _hidden;
        var s = decoding.Scratch;
        var scores = s.Slice(0, H);
        var scratch = s.Slice(H, H);
        var h = s.Slice(2 * H, H);
        var chosen = MemoryMarshal.Cast<float, int>(s.Slice(3 * H, H));
        var z = s.Slice(4 * H, _rank);
        var partials = s.Slice(4 * H + _rank, NeuronSparseMlp.MaxParts * C);
        for (int i = 0; i < n; i++)
        {
            var x = input.Slice(i * C, C);
            _predictor.Scores(scores, z, x, 1);
            int k = Select(scores, scratch, chosen);
            NeuronSparseMlp.Forward(output.Slice(i * C, C), h.Slice(0, k), partials, x, _wFc.Span, _wProjT, _bFc.Span, _bProj.Span,
                chosen.Slice(0, k), _kernelActivation, C, H);
        }
    }

    /// <summary>
    /// Swaps every block's MLP of <paramref name="gpt"/> (held for inference, dense c_fc and c_proj) for a predicted one.
    /// <paramref name="sparsity"/>: the share of neurons skipped per token (top-k with k = H − round(sparsity·H));
    /// null: the predictor's own rule (a positive logit). Returns the parts (one per layer) for their counters.
    /// </summary>
    public static PredictedMlp[] Install(Gpt gpt, DejaVuPredictor predictor, double? sparsity, string source)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        ArgumentNullException.ThrowIfNull(predictor);
        if (sparsity is { } sp && !(sp >= 0 && sp < 1))
            throw new ArgumentException($"predictor {source}: sparsity {sp.ToString(CultureInfo.InvariantCulture)} must lie in [0, 1)");
        if (!predictor.HasMlp) throw new ArgumentException($"predictor {source}: holds no MLP-neuron predictors (kinds \"{predictor.Kinds}\")");
        predictor.CheckMatches(gpt.Config, source);
        try { CheckActivation(gpt.Config.Activation); }
        catch (ArgumentException e) { throw new ArgumentException($"predictor {source}: {e.Message}"); }
        var byName = gpt.Parameters.ToDictionary(p => p.Name);
        var parts = new PredictedMlp[gpt.Config.NLayer];
        for (int l = 0; l < parts.Length; l++)
        {
            string p = $"transformer.h.{l}.mlp.";
            var wFc = byName[p + "c_fc.weight"];
            var wProj = byName[p + "c_proj.weight"];
            foreach (var w in new[] { wFc, wProj })
                if (w.IsSparse)
                    throw new ArgumentException($"predictor {source}: {w.Name} is stored as '{w.Layout!.Layout}'; the predicted MLP needs dense c_fc and c_proj");
            int H = predictor.Layers[l].Hidden;
            int? keep = sparsity is { } s ? H - (int)Math.Round(s * H) : null;
            parts[l] = new PredictedMlp(gpt.Config, predictor.Layers[l], predictor.Label, wFc.Value, Bias(byName, p + "c_fc.bias"),
                wProj.Value, Bias(byName, p + "c_proj.bias"), gpt.BatchSize * gpt.SeqLen, keep);
            gpt.ReplaceFeedForward(l, parts[l]);
        }
        return parts;
    }

    static ReadOnlyMemory<float> Bias(Dictionary<string, Parameter> byName, string name) =>
        byName.TryGetValue(name, out var b) ? b.Value : ReadOnlyMemory<float>.Empty;
}
