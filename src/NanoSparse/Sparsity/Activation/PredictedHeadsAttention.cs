using System.Globalization;
using System.Runtime.InteropServices;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// nanoGPT's causal self-attention run through a Deja Vu head predictor (Liu et al. 2023, §4; inference only):
///   s = predictor(x)                      (NH) one score per head from the attention input x = ln_1(residual) (C)
///   S = top-k(s), or {h : s_h &gt; 0}     the heads computed for this token
///   k, v = c_attn's k and v rows · x      every head: the KV cache stays the dense model's, exact for later tokens
///   q_S = c_attn's q rows of S · x        (|S|·hs) only the chosen heads' queries
///   y_h = softmax(q_h · K_hᵀ / √hs) · V_h   for h ∈ S over the cached positions
///   out = b_proj + Σ_{h ∈ S} W_proj[:, h·hs ..] · y_h   reading only the chosen heads' columns (a head-major copy)
/// Decode of one position with the dense cache runs exactly that. Forward over many rows (eval, prefill) is a masked
/// dense evaluation of the same function (full c_attn and attention, the unchosen heads' outputs zeroed, full c_proj);
/// it also counts how many heads were chosen and how many of the heads the label marks (top or share of the output
/// norms ‖W_proj,h · y_h‖, see <see cref="HeadContributions"/>) were among them, for the recall report.
/// </summary>
public sealed class PredictedHeadsAttention : IAttention
{
    readonly int _channels, _width, _heads, _headSize, _blockSize, _rank, _keep;   // _keep: heads per token, -1 = positive logit
    readonly DejaVuPredictor.Layer _predictor;
    readonly ReadOnlyMemory<float> _wAttn, _bAttn, _wProj, _bProj;
    readonly float[] _projByHead;           // (A, C): c_proj's columns as rows, a head's hs rows contiguous
    readonly float[] _headBlocks;           // (NH, C, hs): for the label's output norms (eval)
    readonly string _headLabel;
    readonly float[] _qkv, _y, _lse, _scores, _z;   // (maxRows, 3A), (maxRows, A), (maxRows, NH) ×2, (maxRows, r): Forward's buffers
    long _rows, _selected, _truth, _hits;
    long[] _perHeadSelected;

    /// <summary>keep: heads computed per token (top-k by score); null: every head with a positive logit.</summary>
    public PredictedHeadsAttention(GptConfig config, int layer, DejaVuPredictor.Layer predictor, string headLabel, ReadOnlyMemory<float> wAttn,
        ReadOnlyMemory<float> bAttn, ReadOnlyMemory<float> wProj, ReadOnlyMemory<float> bProj, int maxRows, int? keep)
    {
        int C = config.NEmbd, hs = config.HeadSize, NH = config.Heads(layer), A = NH * hs;
        if (predictor.Channels != C) throw new ArgumentException($"the head predictor takes {predictor.Channels} channels, the model has {C}");
        if (predictor.Hidden != NH) throw new ArgumentException($"the head predictor scores {predictor.Hidden} heads, layer {layer} has {NH}");
        if (wAttn.Length != 3 * A * C || wProj.Length != C * A)
            throw new ArgumentException($"c_attn and c_proj must hold {3 * A}x{C} and {C}x{A} values for predicted heads, got {wAttn.Length} and {wProj.Length}");
        if (keep is { } k && (k < 0 || k > NH)) throw new ArgumentOutOfRangeException(nameof(keep), k, $"heads kept must lie in [0, {NH}]");
        HeadContributions.ParseLabel(headLabel);
        (_channels, _width, _heads, _headSize, _blockSize, _rank) = (C, A, NH, hs, config.BlockSize, predictor.Rank);
        _keep = keep ?? -1;
        _predictor = predictor;
        _headLabel = headLabel;
        (_wAttn, _bAttn, _wProj, _bProj) = (wAttn, bAttn, wProj, bProj);
        _projByHead = new float[A * C];
        RowCombination.Transpose(_projByHead, wProj.Span, C, A);
        _headBlocks = HeadContributions.HeadBlocks(wProj.Span, C, A, hs);
        _qkv = new float[maxRows * 3 * A];
        _y = new float[maxRows * A];
        _lse = new float[maxRows * NH];
        _scores = new float[maxRows * NH];
        _z = new float[maxRows * _rank];
        _perHeadSelected = new long[NH];
    }

    public int Heads => _heads;
    /// <summary>
    /// Quality bound, not a decode path: choose the top-k heads by their true output norms instead of the predictor's
    /// scores (every head is computed, then masked). Needs a top-k budget.
    /// </summary>
    public bool Oracle
    {
        get => _oracle;
        set
        {
            if (value && _keep < 0) throw new ArgumentException("oracle heads need a budget of heads per token (top-k)");
            _oracle = value;
        }
    }
    bool _oracle;
    /// <summary>Heads per token under top-k, or -1 for the positive-logit rule.</summary>
    public int Keep => _keep;
    /// <summary>Rows evaluated by Forward since the last <see cref="ResetCounts"/>.</summary>
    public long Rows => Interlocked.Read(ref _rows);
    /// <summary>Share of heads computed per row (Forward rows).</summary>
    public double SelectedFraction => _rows == 0 ? double.NaN : (double)_selected / ((double)_rows * _heads);
    /// <summary>Share of the label's heads (largest outputs) the selection kept (Forward rows).</summary>
    public double Recall => _truth == 0 ? double.NaN : (double)_hits / _truth;
    public void ResetCounts() { _rows = 0; _selected = 0; _truth = 0; _hits = 0; Array.Clear(_perHeadSelected); }

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        int N = pass.Rows, C = _channels, A = _width, NH = _heads, hs = _headSize;
        if ((long)(pass.FirstRow + N) * A > _y.Length)
            throw new InvalidOperationException($"the predicted-heads attention was built for {_y.Length / A} rows, the pass reaches row {pass.FirstRow + N}");
        var qkv = _qkv.AsSpan(pass.FirstRow * 3 * A, N * 3 * A);
        var y = _y.AsSpan(pass.FirstRow * A, N * A);
        var scores = _scores.AsSpan(pass.FirstRow * NH, N * NH);
        Linear.Forward(qkv, input, _wAttn.Span, _bAttn.Span, N, C, 3 * A);
        Attention.Forward(y, _lse.AsSpan(pass.FirstRow * NH, N * NH), qkv, pass.Sequences, pass.SeqLen, A, NH);
        _predictor.Scores(scores, _z.AsSpan(pass.FirstRow * _rank, N * _rank), input, N);
        // the label: which heads' outputs are largest, from the unmasked y
        var norms = new float[N * NH];
        var labels = new byte[N * NH];
        HeadContributions.Norms(norms, y, _headBlocks, N, C, A, hs);
        HeadContributions.Labels(norms, labels, N, NH, _headLabel);
        Span<int> chosen = stackalloc int[NH];
        Span<float> scratch = stackalloc float[NH];
        Span<bool> keptMask = stackalloc bool[NH];
        long selected = 0, truth = 0, hits = 0;
        for (int i = 0; i < N; i++)
        {
            int k = Select(_oracle ? norms.AsSpan(i * NH, NH) : scores.Slice(i * NH, NH), scratch, chosen);
            keptMask.Clear();
            foreach (int h in chosen.Slice(0, k)) keptMask[h] = true;
            for (int h = 0; h < NH; h++)
            {
                if (keptMask[h]) Interlocked.Increment(ref _perHeadSelected[h]);
                else y.Slice(i * A + h * hs, hs).Clear();
                if (labels[i * NH + h] != 0) { truth++; if (keptMask[h]) hits++; }
            }
            selected += k;
        }
        Interlocked.Add(ref _rows, N);
        Interlocked.Add(ref _selected, selected);
        Interlocked.Add(ref _truth, truth);
        Interlocked.Add(ref _hits, hits);
        Linear.Forward(output, y, _wProj.Span, _bProj.Span, N, A, C, residual);
    }

    // The heads to compute (ascending) into chosen; returns their count. scratch (NH) is overwritten.
    int Select(ReadOnlySpan<float> scores, Span<float> scratch, Span<int> chosen)
    {
        if (_keep >= 0)
        {
            TopK.Largest(scores, _keep, scratch, chosen);
            return _keep;
        }
        int k = 0;
        for (int h = 0; h < scores.Length; h++)
            if (scores[h] > 0) chosen[k++] = h;
        return k;
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass) =>
        throw new InvalidOperationException("a predicted-heads attention runs for inference only (eval, sample, bench); train the dense model");

    /// <summary>What c_proj saw in the last Forward: the heads' outputs with the unchosen heads zeroed.</summary>
    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) => _y.AsSpan(pass.FirstRow * _width, pass.Rows * _width);

    // qkv (rows, 3A), y (rows, A), attention scores max(block_size, rows·NH), head scores (rows, NH), z (r), chosen (NH ints), scratch (NH)
    public long DecodeScratchFloats(int rows) =>
        (long)rows * 4 * _width + Math.Max(_blockSize, (long)rows * _heads) + (long)rows * _heads + _rank + 2L * _heads;

    public void Decode(Span<float> output, ReadOnlySpan<float> input, IKvCache cache, in Decoding decoding)
    {
        int n = decoding.Rows, pos0 = decoding.Position, A = _width, NH = _heads, hs = _headSize, C = _channels;
        var s = decoding.Scratch;
        var qkv = s.Slice(0, n * 3 * A);
        var y = s.Slice(n * 3 * A, n * A);
        int at = n * 4 * A;
        var attnScores = s.Slice(at, Math.Max(_blockSize, n * NH));
        at += attnScores.Length;
        var headScores = s.Slice(at, n * NH);
        at += n * NH;
        var z = s.Slice(at, _rank);
        at += _rank;
        var chosen = MemoryMarshal.Cast<float, int>(s.Slice(at, NH));
        var scratch = s.Slice(at + NH, NH);
        var wAttn = _wAttn.Span;
        var bAttn = _bAttn.Span;
        if (n == 1 && cache is DenseKvCache && !_oracle)
        {
            _predictor.Scores(headScores, z, input, 1);
            int k = Select(headScores, scratch, chosen);
            var kept = chosen.Slice(0, k);
            // k and v of every head (the cache stays the dense model's), q of the chosen heads only, run by run
            var kv = qkv.Slice(A, 2 * A);
            Gemv.Forward(kv, input, wAttn.Slice(A * C, 2 * A * C), bAttn.IsEmpty ? default : bAttn.Slice(A, 2 * A), 1, C, 2 * A);
            cache.Write(pos0, kv.Slice(0, A), kv.Slice(A, A));
            for (int i = 0; i < k;)
            {
                int h0 = kept[i], j = i + 1;
                while (j < k && kept[j] == kept[j - 1] + 1) j++;
                int run = (j - i) * hs;
                Gemv.Forward(qkv.Slice(h0 * hs, run), input, wAttn.Slice(h0 * hs * C, run * C), bAttn.IsEmpty ? default : bAttn.Slice(h0 * hs, run), 1, C, run);
                i = j;
            }
            CachedAttention.ForwardHeads(y, qkv.Slice(0, A), cache.Keys(pos0 + 1), cache.Values(pos0 + 1), pos0 + 1, A, hs, kept, attnScores);
            // out (C) = b_proj + Σ over runs of chosen heads of their c_proj columns · y
            var o = output.Slice(0, C);
            if (_bProj.IsEmpty) o.Clear();
            else _bProj.Span.CopyTo(o);
            for (int i = 0; i < k;)
            {
                int h0 = kept[i], j = i + 1;
                while (j < k && kept[j] == kept[j - 1] + 1) j++;
                int run = (j - i) * hs;
                RowCombination.AddTo(o, y.Slice(h0 * hs, run), _projByHead.AsSpan(h0 * hs * C, run * C), run);
                i = j;
            }
            return;
        }
        // Prefill, or a cache with its own attention: the dense computation, the unchosen heads' outputs zeroed
        Linear.Forward(qkv, input, wAttn, bAttn, n, C, 3 * A);
        if (pos0 == 0 && n > 1 && cache.ExactPrefill)
        {
            for (int i = 0; i < n; i++)
                cache.Write(pos0 + i, qkv.Slice(i * 3 * A + A, A), qkv.Slice(i * 3 * A + 2 * A, A));
            Attention.Forward(y, attnScores.Slice(0, n * NH), qkv, 1, n, A, NH);
        }
        else
            for (int i = 0; i < n; i++)
            {
                cache.Write(pos0 + i, qkv.Slice(i * 3 * A + A, A), qkv.Slice(i * 3 * A + 2 * A, A));
                cache.Attend(y.Slice(i * A, A), qkv.Slice(i * 3 * A, A), pos0 + i, NH, attnScores.Slice(0, _blockSize));
            }
        Span<bool> keptMask = stackalloc bool[NH];
        var norms = _oracle ? new float[n * NH] : null;   // oracle: the heads' true output norms (allocates; a quality bound only)
        if (norms is not null) HeadContributions.Norms(norms, y, _headBlocks, n, C, A, hs);
        for (int i = 0; i < n; i++)
        {
            _predictor.Scores(headScores, z, input.Slice(i * C, C), 1);
            int k = Select(norms is not null ? norms.AsSpan(i * NH, NH) : headScores.Slice(0, NH), scratch, chosen);
            keptMask.Clear();
            foreach (int h in chosen.Slice(0, k)) keptMask[h] = true;
            for (int h = 0; h < NH; h++)
                if (!keptMask[h]) y.Slice(i * A + h * hs, hs).Clear();
        }
        Linear.Forward(output.Slice(0, n * C), y, _wProj.Span, _bProj.Span, n, A, C);
    }

    /// <summary>Share of Forward rows on which each head was chosen (NH values).</summary>
    public double[] HeadUse() => _perHeadSelected.Select(c => _rows == 0 ? double.NaN : (double)c / _rows).ToArray();

    /// <summary>
    /// Swaps every block's attention of <paramref name="gpt"/> (held for inference, dense c_attn and c_proj, the dense
    /// causal pattern) for predicted heads. <paramref name="keep"/>: heads computed per token (top-k by score); null: the
    /// predictor's own rule (a positive logit). Returns the parts (one per layer) for their counters.
    /// </summary>
    public static PredictedHeadsAttention[] Install(Gpt gpt, DejaVuPredictor predictor, int? keep, string source)
    {
        ArgumentNullException.ThrowIfNull(gpt);
        ArgumentNullException.ThrowIfNull(predictor);
        var config = gpt.Config;
        predictor.CheckHeadsMatch(config, source);
        var byName = gpt.Parameters.ToDictionary(p => p.Name);
        var parts = new PredictedHeadsAttention[config.NLayer];
        for (int l = 0; l < parts.Length; l++)
        {
            int NH = config.Heads(l);
            if (gpt.Blocks[l].Attention is not CausalSelfAttention)
                throw new ArgumentException($"predictor {source}: layer {l}'s attention is {gpt.Blocks[l].Attention.GetType().Name}; predicted heads replace nanoGPT's dense causal attention (no pattern, no gates)");
            if (keep is { } k && (k < 1 || k > NH))
                throw new ArgumentException($"predictor {source}: heads kept per token ({k}) must lie in [1, {NH}] (layer {l}'s heads)");
            string p = $"transformer.h.{l}.attn.";
            var wAttn = byName[p + "c_attn.weight"];
            var wProj = byName[p + "c_proj.weight"];
            foreach (var w in new[] { wAttn, wProj })
                if (w.IsSparse)
                    throw new ArgumentException($"predictor {source}: {w.Name} is stored as '{w.Layout!.Layout}'; predicted heads need dense c_attn and c_proj");
            parts[l] = new PredictedHeadsAttention(config, l, predictor.HeadLayers[l], predictor.HeadLabel, wAttn.Value, Bias(byName, p + "c_attn.bias"),
                wProj.Value, Bias(byName, p + "c_proj.bias"), gpt.BatchSize * gpt.SeqLen, keep);
            gpt.ReplaceAttention(l, parts[l]);
        }
        return parts;
    }

    static ReadOnlyMemory<float> Bias(Dictionary<string, Parameter> byName, string name) =>
        byName.TryGetValue(name, out var b) ? b.Value : ReadOnlyMemory<float>.Empty;

    /// <summary>One line on the heads the parts computed in the rows they evaluated (eval's masked forward).</summary>
    public static string Summary(IReadOnlyList<PredictedHeadsAttention> parts)
    {
        var inv = CultureInfo.InvariantCulture;
        double selected = parts.Average(p => p.SelectedFraction), recall = parts.Average(p => p.Recall);
        string perLayer = string.Join(" ", parts.Select(p => string.Create(inv, $"{p.SelectedFraction:P1}/{p.Recall:P1}")));
        return string.Create(inv, $"head predictor: heads computed {selected:P1} per token, recall of the label {recall:P1}; per layer computed/recall: {perLayer}");
    }
}
