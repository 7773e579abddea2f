using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts.FeedForwards;

/// <summary>
/// A mixture-of-experts feed-forward (Switch / Mixtral / expert-choice routing, see <see cref="MoeRouting"/>):
///   p = softmax(x · Wrᵀ)                                   // (N, E) router probabilities
///   route each sequence's tokens to experts (slots: (token, expert, gate))
///   for each expert e: X_e = gather(x, its tokens)          // (n_e, C) one contiguous panel
///                      Y_e = c_proj_e(gelu(c_fc_e(X_e)))    // two products over the panel, n_e rows only
///   out = residual + dropout(Σ_slots gate · Y_e[slot])      // scattered back to each slot's token
/// Gates: topk with top_k = 1 and expert_choice use p[t, e] itself (Switch); topk with top_k ≥ 2 renormalises over the
/// token's top_k (Mixtral), dropped assignments included in the sum. Routing groups are single sequences, so the routing
/// does not depend on how the batch is split over threads (only the products' rounding does).
/// The losses (added to the training loss by the trainer, their gradients added here in Backward):
///   aux = moe_aux_loss · mean over sequences of E · Σ_e f_e · P_e  (f_e: share of the sequence's router assignments
///         that chose e, before capacity; P_e: mean router probability of e over the sequence)
///   z   = moe_z_loss · mean over positions of logsumexp(router logits)²
/// Parameters: {name}.router.weight (E, C); {name}.experts.{e}.c_fc.weight (H, C), .c_fc.bias (H), .c_proj.weight (C, H),
/// .c_proj.bias (C) (biases only when config.bias). Expert weights are dense.
/// Decode (sample with a KV cache) routes each token to its top_k experts with no capacity (expert_choice models too,
/// keeping their unnormalised gates) and reads only those experts' matrices.
/// </summary>
public sealed class MoeFeedForward : IFeedForward
{
    readonly int _c, _h, _e, _k, _t, _b, _slotsPerSeq, _capacity;
    readonly bool _expertChoice, _renormalise, _geluTanh;
    readonly double _auxWeight, _zWeight;
    readonly ParameterSlot _router;
    readonly ParameterSlot[] _fcW, _fcB, _projW, _projB;
    readonly ActivationSlot _probs, _hid, _gel, _yout;       // kept: p (N, E); per slot c_fc output → GELU', GELU output, expert output
    readonly ActivationSlot _panelA, _panelB, _panelH, _dmasked, _dp;   // scratch
    readonly int _residualSeed;

    // The routing of the last forward pass, over the whole batch; a slice (shard) touches only its own sequences.
    readonly int[] _slotRow;       // (B · slotsPerSeq): slice-local token row of each slot, one expert's slots after another
    readonly float[] _slotGate;    // its gate
    readonly int[] _slotRank;      // topk: the slot's place j in its token's top-k list
    readonly int[] _expertStart;   // (B · (E + 1)): at a slice's first sequence, the first slot of each expert in the slice
    readonly int[] _top;           // (B·T · K) topk: each token's experts, best first
    readonly byte[] _keep;         // topk (B·T · K): assignment kept; expert_choice (B·T · E): expert picked the token
    readonly float[] _topSum;      // (B·T) topk: Σ p over the token's top-k
    readonly float[] _lse;         // (B·T) logsumexp of the router logits
    readonly float[] _dgate;       // (B·T · K) topk backward: d loss / d gate
    readonly float[] _sortKeys;    // (B·T) expert_choice scratch
    readonly int[] _sortRows;      // (B·T)
    readonly int[] _assigned;      // (B · E) per sequence: router assignments per expert (before capacity)
    readonly int[] _processed;     // (B · E) per sequence: tokens each expert processed
    readonly int[] _dropped;       // (B) per sequence: dropped assignments (topk) or tokens no expert picked (expert_choice)
    readonly double[] _auxLoss, _zLoss;   // (B) per sequence, unweighted

    public MoeFeedForward(GptConfig config, string name, BufferLayout layout)
    {
        _c = config.NEmbd;
        _h = MoeSettings.Hidden(config);
        _e = MoeSettings.Experts(config);
        _k = MoeSettings.K(config);
        _t = layout.SeqLen;
        _b = layout.BatchSize;
        _expertChoice = MoeSettings.Routing(config) == MoeSettings.ExpertChoice;
        _renormalise = !_expertChoice && _k >= 2;
        _geluTanh = config.Activation == GptConfig.GeluTanh;
        _auxWeight = MoeSettings.AuxWeight(config);
        _zWeight = MoeSettings.ZWeight(config);
        _capacity = MoeSettings.ExpertCapacity(config, _t);
        Name = name;
        // worst case of slots in one sequence: T·k assignments (topk, dropless: all could go to one expert's panel),
        // E·bucket picks (expert_choice)
        _slotsPerSeq = _expertChoice ? _e * _capacity : _t * _k;
        int slotsPerRow = (_slotsPerSeq + _t - 1) / _t;

        _router = layout.Parameter(name + ".router.weight", _e, _c);
        _fcW = new ParameterSlot[_e]; _fcB = new ParameterSlot[_e]; _projW = new ParameterSlot[_e]; _projB = new ParameterSlot[_e];
        for (int e = 0; e < _e; e++)
        {
            string p = $"{name}.experts.{e}.";
            _fcW[e] = layout.Parameter(p + "c_fc.weight", _h, _c);
            _fcB[e] = layout.OptionalParameter(config.Bias, p + "c_fc.bias", _h);
            _projW[e] = layout.Parameter(p + "c_proj.weight", _c, _h);
            _projB[e] = layout.OptionalParameter(config.Bias, p + "c_proj.bias", _c);
        }
        _probs = layout.Activation(_e);
        _hid = layout.Activation(slotsPerRow * _h);
        _gel = layout.Activation(slotsPerRow * _h);
        _yout = layout.Activation(slotsPerRow * _c);
        var scratch = layout.Scratch(slotsPerRow * _c, slotsPerRow * _c, slotsPerRow * _h, config.Dropout > 0 ? _c : 0, _e);
        (_panelA, _panelB, _panelH, _dmasked, _dp) = (scratch[0], scratch[1], scratch[2], scratch[3], scratch[4]);
        _residualSeed = layout.DropoutSeed();

        int rows = _b * _t;
        _slotRow = new int[_b * _slotsPerSeq];
        _slotGate = new float[_b * _slotsPerSeq];
        _slotRank = new int[_b * _slotsPerSeq];
        _expertStart = new int[_b * (_e + 1)];
        _top = new int[rows * _k];
        _keep = new byte[rows * Math.Max(_k, _e)];
        _topSum = new float[rows];
        _lse = new float[rows];
        _dgate = new float[rows * _k];
        _sortKeys = new float[rows];
        _sortRows = new int[rows];
        _assigned = new int[_b * _e];
        _processed = new int[_b * _e];
        _dropped = new int[_b];
        _auxLoss = new double[_b];
        _zLoss = new double[_b];
    }

    public string Name { get; }
    public int Experts => _e;
    public int TopK => _k;
    public int ExpertHidden => _h;
    public bool ExpertChoice => _expertChoice;
    /// <summary>Assignments (topk) or tokens (expert_choice) one expert takes per sequence; T when dropless.</summary>
    public int Capacity => _capacity;
    public ParameterSlot RouterWeight => _router;
    public ParameterSlot ExpertFcWeight(int e) => _fcW[e];
    public ParameterSlot ExpertProjWeight(int e) => _projW[e];

    /// <summary>moe_aux_loss · aux + moe_z_loss · z of the last forward pass over the whole batch: this layer's share of the training loss.</summary>
    public double WeightedLoss => _auxWeight * AuxLoss + _zWeight * ZLoss;
    /// <summary>Switch's balance loss E·Σ f_e·P_e of the last forward pass, mean over the batch's sequences (1 when balanced).</summary>
    public double AuxLoss => Mean(_auxLoss);
    /// <summary>Mean logsumexp(router logits)² of the last forward pass.</summary>
    public double ZLoss => Mean(_zLoss);

    /// <summary>
    /// Adds the last forward pass's per-expert processed tokens (after capacity) to <paramref name="processed"/> (E) and
    /// router choices (before capacity) to <paramref name="assigned"/> (E); returns the dropped count (assignments for
    /// topk, tokens no expert picked for expert_choice) and gives the count it is a fraction of.
    /// </summary>
    public long AddLoad(Span<long> processed, Span<long> assigned, out long outOf)
    {
        long dropped = 0;
        for (int s = 0; s < _b; s++)
        {
            for (int e = 0; e < _e; e++) { processed[e] += _processed[s * _e + e]; assigned[e] += _assigned[s * _e + e]; }
            dropped += _dropped[s];
        }
        outOf = (long)_b * _t * (_expertChoice ? 1 : _k);
        return dropped;
    }

    static double Mean(double[] values)
    {
        double sum = 0;
        foreach (double v in values) sum += v;
        return sum / values.Length;
    }

    public void Forward(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> residual, in Pass pass)
    {
        int C = _c, H = _h;
        Route(input, pass);
        var slots = pass.Sequences * _slotsPerSeq;
        int slot0 = pass.FirstSequence * _slotsPerSeq;
        var starts = _expertStart.AsSpan(pass.FirstSequence * (_e + 1), _e + 1);
        var x = pass.Act(_panelA);
        var hid = pass.Act(_hid);
        var gel = pass.Act(_gel);
        var y = pass.Act(_yout);
        for (int e = 0; e < _e; e++)
        {
            int j0 = starts[e], n = starts[e + 1] - j0;
            if (n == 0) continue;
            var rows = _slotRow.AsSpan(slot0 + j0, n);
            var xe = x.Slice(j0 * C, n * C);
            for (int i = 0; i < n; i++) input.Slice(rows[i] * C, C).CopyTo(xe.Slice(i * C, C));
            var he = hid.Slice(j0 * H, n * H);
            var ge = gel.Slice(j0 * H, n * H);
            Product(he, xe, pass.Param(_fcW[e]), pass.Param(_fcB[e]), n, C, H);
            if (_geluTanh) GeluTanh.ForwardWithDerivative(ge, he);   // he now holds GELU'(c_fc output) for the backward pass
            else Gelu.ForwardWithDerivative(ge, he);
            Product(y.Slice(j0 * C, n * C), ge, pass.Param(_projW[e]), pass.Param(_projB[e]), n, H, C);
        }
        // out = residual + dropout(Σ gate · Y)
        if (pass.DropoutActive) output.Clear();
        else residual.CopyTo(output);
        Scatter(output, y, _slotRow.AsSpan(slot0, slots), _slotGate.AsSpan(slot0, slots), starts[_e]);
        if (pass.DropoutActive)
        {
            Dropout.Apply(output, pass.Dropout, pass.Seed(_residualSeed), pass.MaskOffset(C));
            Residual.Add(output, output, residual);
        }
    }

    // output[row] += gate · y[slot] for the first `count` slots
    void Scatter(Span<float> output, ReadOnlySpan<float> y, ReadOnlySpan<int> rows, ReadOnlySpan<float> gates, int count)
    {
        int C = _c;
        for (int j = 0; j < count; j++)
        {
            var o = output.Slice(rows[j] * C, C);
            TensorPrimitives.MultiplyAdd(y.Slice(j * C, C), gates[j], o, o);
        }
    }

    // y (n, Out) = x (n, In) · Wᵀ + b: the matrix-vector kernel for the few rows of a decode step, GEMM otherwise
    static void Product(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, int n, int inF, int outF)
    {
        if (n <= Gemv.MaxRows) Gemv.Forward(y, x, w, b, n, inF, outF);
        else Linear.Forward(y, x, w, b, n, inF, outF);
    }

    // Router probabilities, the routing of each sequence of the slice, and the slot lists per expert.
    void Route(ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows, C = _c, E = _e, K = _k, T = _t;
        int row0 = pass.FirstRow;
        var p = pass.Act(_probs);
        Gemm.Multiply(false, true, N, E, C, 1f, input, C, pass.Param(_router), C, 0f, p, E);   // logits (N, E)
        for (int r = 0; r < N; r++) _lse[row0 + r] = Softmax.Row(p.Slice(r * E, E), p.Slice(r * E, E));

        Span<int> cursor = stackalloc int[E + 1];
        cursor.Clear();
        for (int s = 0; s < pass.Sequences; s++)
        {
            int g = pass.FirstSequence + s, r0 = s * T;
            var ps = p.Slice(r0 * E, T * E);
            var assigned = _assigned.AsSpan(g * E, E);
            var processed = _processed.AsSpan(g * E, E);
            assigned.Clear();
            if (_expertChoice)
            {
                _dropped[g] = MoeRouting.ExpertChoice(ps, _keep.AsSpan((row0 + r0) * E, T * E), T, E, _capacity,
                    _sortKeys.AsSpan(row0 + r0, T), _sortRows.AsSpan(row0 + r0, T));
                processed.Fill(_capacity);
                assigned.Fill(_capacity);
            }
            else
            {
                var top = _top.AsSpan((row0 + r0) * K, T * K);
                for (int t = 0; t < T; t++)
                {
                    _topSum[row0 + r0 + t] = MoeRouting.TopK(ps.Slice(t * E, E), top.Slice(t * K, K));
                    for (int j = 0; j < K; j++) assigned[top[t * K + j]]++;
                }
                _dropped[g] = MoeRouting.ApplyCapacity(top, _keep.AsSpan((row0 + r0) * K, T * K), processed, T, K, _capacity);
            }
            for (int e = 0; e < E; e++) cursor[e + 1] += processed[e];

            // the losses of this sequence
            double aux = 0, z = 0, total = 0;
            for (int e = 0; e < E; e++) total += assigned[e];
            for (int e = 0; e < E; e++)
            {
                double pe = 0;
                for (int t = 0; t < T; t++) pe += ps[t * E + e];
                aux += assigned[e] / total * (pe / T);
            }
            for (int t = 0; t < T; t++) z += (double)_lse[row0 + r0 + t] * _lse[row0 + r0 + t];
            _auxLoss[g] = E * aux;
            _zLoss[g] = z / T;
        }

        // slots: each expert's tokens in row order, experts one after another
        var starts = _expertStart.AsSpan(pass.FirstSequence * (E + 1), E + 1);
        for (int e = 0; e < E; e++) cursor[e + 1] += cursor[e];
        cursor.CopyTo(starts);
        int slot0 = pass.FirstSequence * _slotsPerSeq;
        for (int r = 0; r < N; r++)
        {
            var pr = p.Slice(r * E, E);
            if (_expertChoice)
            {
                var chosen = _keep.AsSpan((row0 + r) * E, E);
                for (int e = 0; e < E; e++)
                    if (chosen[e] != 0) Place(slot0 + cursor[e]++, r, pr[e], e);
            }
            else
            {
                var top = _top.AsSpan((row0 + r) * K, K);
                var keep = _keep.AsSpan((row0 + r) * K, K);
                float scale = _renormalise ? 1f / _topSum[row0 + r] : 1f;
                for (int j = 0; j < K; j++)
                    if (keep[j] != 0) Place(slot0 + cursor[top[j]]++, r, pr[top[j]] * scale, j);
            }
        }
    }

    void Place(int slot, int row, float gate, int rank)
    {
        _slotRow[slot] = row;
        _slotGate[slot] = gate;
        _slotRank[slot] = rank;
    }

    public void Backward(Span<float> dinput, ReadOnlySpan<float> doutput, ReadOnlySpan<float> input, in Pass pass)
    {
        int N = pass.Rows, C = _c, H = _h, E = _e, K = _k, T = _t;
        int row0 = pass.FirstRow, slot0 = pass.FirstSequence * _slotsPerSeq;
        var starts = _expertStart.AsSpan(pass.FirstSequence * (E + 1), E + 1);
        // in the forward pass this was: out = residual + dropout(Σ gate · Y)
        var dout = ResidualProjection.DropoutBackward(doutput, _dmasked, _residualSeed, C, pass);
        var p = pass.Act(_probs);
        var dp = pass.Act(_dp);
        dp.Clear();
        if (!_expertChoice) _dgate.AsSpan(row0 * K, N * K).Clear();
        dinput.Clear();
        var dy = pass.Act(_panelA);
        var x = pass.Act(_panelB);
        var dh = pass.Act(_panelH);
        var hid = pass.Act(_hid);
        var gel = pass.Act(_gel);
        var y = pass.Act(_yout);
        for (int e = 0; e < E; e++)
        {
            int j0 = starts[e], n = starts[e + 1] - j0;
            if (n == 0) continue;
            var ye = y.Slice(j0 * C, n * C);
            var dye = dy.Slice(j0 * C, n * C);
            for (int i = 0; i < n; i++)
            {
                int slot = slot0 + j0 + i, r = _slotRow[slot];
                var d = dout.Slice(r * C, C);
                // out[r] += gate · Y[slot]: d gate = dout[r] · Y[slot], d Y[slot] = gate · dout[r]
                float dgate = TensorPrimitives.Dot(d, ye.Slice(i * C, C));
                if (_expertChoice) dp[r * E + e] += dgate;
                else _dgate[(row0 + r) * K + _slotRank[slot]] = dgate;
                TensorPrimitives.Multiply(d, _slotGate[slot], dye.Slice(i * C, C));
            }
            // Y = c_proj(G): dW_proj += dYᵀ·G, dH = (dY · W_proj) ⊙ GELU'(c_fc output)
            var dhe = dh.Slice(j0 * H, n * H);
            Linear.Backward(dhe, pass.Grad(_projW[e]), pass.Grad(_projB[e]), dye, gel.Slice(j0 * H, n * H), pass.Param(_projW[e]), n, H, C,
                hid.Slice(j0 * H, n * H));
            // H = c_fc(X): dW_fc += dHᵀ·X, dX = dH · W_fc (into the dY panel, free now)
            var xe = x.Slice(j0 * C, n * C);
            var rows = _slotRow.AsSpan(slot0 + j0, n);
            for (int i = 0; i < n; i++) input.Slice(rows[i] * C, C).CopyTo(xe.Slice(i * C, C));
            Linear.Backward(dye, pass.Grad(_fcW[e]), pass.Grad(_fcB[e]), dhe, xe, pass.Param(_fcW[e]), n, C, H);
            for (int i = 0; i < n; i++)
            {
                var di = dinput.Slice(rows[i] * C, C);
                TensorPrimitives.Add(di, dye.Slice(i * C, C), di);
            }
        }

        // gates → router probabilities
        if (!_expertChoice)
            for (int r = 0; r < N; r++)
            {
                var top = _top.AsSpan((row0 + r) * K, K);
                var dg = _dgate.AsSpan((row0 + r) * K, K);
                var pr = p.Slice(r * E, E);
                var dpr = dp.Slice(r * E, E);
                if (!_renormalise) { for (int j = 0; j < K; j++) dpr[top[j]] += dg[j]; continue; }
                // gate_j = p_j / S, S = Σ_top p: d p_i = dgate_i / S − (Σ_j dgate_j · p_j) / S²
                float S = _topSum[row0 + r], cross = 0;
                for (int j = 0; j < K; j++) cross += dg[j] * pr[top[j]];
                for (int j = 0; j < K; j++) dpr[top[j]] += dg[j] / S - cross / (S * S);
            }
        // the balance loss α·(1/B)·Σ_seq E·Σ_e f_e·P_e: d/d p[t, e] = α·E·f_e / (T·B)
        Span<float> coef = stackalloc float[E];
        if (_auxWeight != 0)
            for (int s = 0; s < pass.Sequences; s++)
            {
                int g = pass.FirstSequence + s;
                var assigned = _assigned.AsSpan(g * E, E);
                double total = 0;
                for (int e = 0; e < E; e++) total += assigned[e];
                for (int e = 0; e < E; e++) coef[e] = (float)(_auxWeight * E * (assigned[e] / total) / ((double)T * _b));
                for (int t = 0; t < T; t++)
                {
                    var dpr = dp.Slice((s * T + t) * E, E);
                    TensorPrimitives.Add(dpr, coef, dpr);
                }
            }
        // softmax backward, plus the z-loss β·mean(lse²): d/d z_j = 2β·lse·p_j / (B·T)
        float zScale = (float)(2 * _zWeight / ((double)_b * T));
        for (int r = 0; r < N; r++)
        {
            var pr = p.Slice(r * E, E);
            var dpr = dp.Slice(r * E, E);
            float dot = TensorPrimitives.Dot(pr, dpr);
            float zc = zScale * _lse[row0 + r];
            for (int e = 0; e < E; e++) dpr[e] = pr[e] * (dpr[e] - dot + zc);
        }
        // logits = x · Wrᵀ: dWr += dzᵀ · x, dx += dz · Wr
        Gemm.Multiply(true, false, E, C, N, 1f, dp, E, input, C, 1f, pass.Grad(_router), C);
        Gemm.Multiply(false, false, N, C, E, 1f, dp, E, pass.Param(_router), C, 1f, dinput, C);
    }

    public ReadOnlySpan<float> ProjectionInput(scoped in Pass pass) =>
        throw new InvalidOperationException($"{Name} is a mixture of experts: it has no single c_proj input (pruning and calibration run on dense MLP blocks only)");

    // p (n, E), top (n·K ints), gates (n·K), starts (E + 1 ints), panels X (n·K, C), H (n·K, H), Y (n·K, C)
    public long DecodeScratchFloats(int rows) => (long)rows * _e + 2L * rows * _k + (_e + 1) + (long)rows * _k * (2 * _c + _h) + (long)rows * _k;

    public void Decode(Span<float> output, ReadOnlySpan<float> input, in Decoding decoding)
    {
        int n = decoding.Rows, C = _c, H = _h, E = _e, K = _k;
        var scratch = decoding.Scratch;
        var p = Take(ref scratch, n * E);
        var top = MemoryMarshal.Cast<float, int>(Take(ref scratch, n * K));
        var slotRow = MemoryMarshal.Cast<float, int>(Take(ref scratch, n * K));
        var gates = Take(ref scratch, n * K);
        var starts = MemoryMarshal.Cast<float, int>(Take(ref scratch, E + 1));
        var x = Take(ref scratch, n * K * C);
        var h = Take(ref scratch, n * K * H);
        var y = Take(ref scratch, n * K * C);

        // router and top-k, dropless
        Product(p, input, decoding.Param(_router), default, n, C, E);
        starts.Clear();
        for (int r = 0; r < n; r++)
        {
            Softmax.Row(p.Slice(r * E, E), p.Slice(r * E, E));
            MoeRouting.TopK(p.Slice(r * E, E), top.Slice(r * K, K));
            for (int j = 0; j < K; j++) starts[top[r * K + j] + 1]++;
        }
        for (int e = 0; e < E; e++) starts[e + 1] += starts[e];
        Span<int> cursor = stackalloc int[E];
        starts.Slice(0, E).CopyTo(cursor);
        for (int r = 0; r < n; r++)
        {
            var pr = p.Slice(r * E, E);
            float sum = 0;
            for (int j = 0; j < K; j++) sum += pr[top[r * K + j]];
            float scale = _renormalise ? 1f / sum : 1f;
            for (int j = 0; j < K; j++)
            {
                int e = top[r * K + j], slot = cursor[e]++;
                slotRow[slot] = r;
                gates[slot] = pr[e] * scale;
            }
        }
        // only the chosen experts' matrices are read
        for (int e = 0; e < E; e++)
        {
            int j0 = starts[e], m = starts[e + 1] - j0;
            if (m == 0) continue;
            var xe = x.Slice(j0 * C, m * C);
            for (int i = 0; i < m; i++) input.Slice(slotRow[j0 + i] * C, C).CopyTo(xe.Slice(i * C, C));
            var he = h.Slice(j0 * H, m * H);
            Product(he, xe, decoding.Param(_fcW[e]), decoding.Param(_fcB[e]), m, C, H);
            if (_geluTanh) GeluTanh.Forward(he, he);
            else Gelu.Forward(he, he);
            Product(y.Slice(j0 * C, m * C), he, decoding.Param(_projW[e]), decoding.Param(_projB[e]), m, H, C);
        }
        output.Slice(0, n * C).Clear();
        Scatter(output, y, slotRow, gates, n * K);
    }

    static Span<float> Take(ref Span<float> scratch, int length)
    {
        var taken = scratch.Slice(0, length);
        scratch = scratch.Slice(length);
        return taken;
    }
}
