using NanoSparse.Kernels;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>Options of <see cref="Dsnot"/>; the defaults are the paper's (its reference's command line).</summary>
public sealed record DsnotOptions
{
    /// <summary>Most prune-and-grow swaps per output row (max_cycle_time).</summary>
    public int MaxCycles { get; init; } = 50;
    /// <summary>A row stops once |e| (its expected reconstruction error) is at most this (update_threshold).</summary>
    public double UpdateThreshold { get; init; } = 0.1;
    /// <summary>The growing criterion divides W_ij·E[x_j] by Var(x_j) to this power (pow_of_var_regrowing).</summary>
    public double VariancePower { get; init; } = 1;
    /// <summary>
    /// With the Gram matrix in the statistics, a swap must not increase the row's squared reconstruction error on the
    /// calibration inputs, (w − ŵ)ᵀ·Σxxᵀ·(w − ŵ); a swap that would ends the row's cycles like the paper's own stopping
    /// rules. Not in the paper (its criterion only looks at the error's mean), added so that DSnoT never makes a layer
    /// worse on the calibration data. Without a Gram matrix the paper's rules alone apply.
    /// </summary>
    public bool GuardWithGram { get; init; } = true;
}

/// <summary>
/// DSnoT (Zhang et al. 2024, "Dynamic Sparse No Training: Training-Free Fine-tuning for Sparse LLMs"): training-free
/// prune-and-grow cycles on a given mask, per output row, that drive the row's expected reconstruction error toward 0
/// without changing the sparsity.
/// </summary>
/// <remarks>
/// For row i with dense weights w (before pruning) and pruned weights ŵ, the error of the output's expectation is
/// e = Σ_j (w_j − ŵ_j)·E[x_j] (for a plain mask: Σ over the pruned j of w_j·E[x_j]). Each cycle:
///   grow: the pruned j that reduces e: the largest w_j·E[x_j] / Var(x_j)^p when e > 0, the smallest when e ≤ 0
///   (e −= w_j·E[x_j], ŵ_j = w_j);
///   prune, unstructured: among the kept weights whose removal moves e toward 0 (ŵ_k·E[x_k] of the other sign than e),
///   the one with the lowest Wanda score |ŵ_k|·‖x_k‖ (e += ŵ_k·E[x_k], ŵ_k = 0); N:M: the kept weight of the grown
///   weight's group with the lowest Wanda score, so every group keeps N;
///   the swap happens only while |e| &gt; the threshold and the new e keeps the initial sign of e (and, with a Gram
///   matrix, the row's squared error does not grow); otherwise the row stops, as it does after the cycle limit or
///   when a candidate list runs out. A weight grown is never pruned again and a weight pruned is never regrown.
/// Rows are independent and run in parallel. E[x_j] = Sum_j / Tokens, ‖x_j‖ = √SumSquares_j,
/// Var(x_j) = SumSquares_j / Tokens − E[x_j]² over all calibration tokens.
/// </remarks>
public sealed class Dsnot : IMaskRefiner
{
    public Dsnot() : this(new DsnotOptions()) { }

    public Dsnot(DsnotOptions options)
    {
        if (options.MaxCycles < 0) throw new ArgumentOutOfRangeException(nameof(options), options.MaxCycles, "DSnoT max cycles must be >= 0");
        if (!(options.UpdateThreshold >= 0)) throw new ArgumentOutOfRangeException(nameof(options), options.UpdateThreshold, "DSnoT update threshold must be >= 0");
        if (!double.IsFinite(options.VariancePower)) throw new ArgumentOutOfRangeException(nameof(options), options.VariancePower, "DSnoT variance power must be finite");
        Options = options;
    }

    public DsnotOptions Options { get; }
    public string Name => "dsnot";
    public bool NeedsCalibration => true;
    public bool NeedsGram => Options.GuardWithGram;

    /// <summary>Swaps made by the last <see cref="Refine"/> (over all rows).</summary>
    public long LastSwaps { get; private set; }

    public unsafe void Refine(LayerPruneRequest request, ReadOnlySpan<float> weightBeforePruning)
    {
        var stats = request.Stats ?? throw new ArgumentException($"{request.Name}: DSnoT needs calibration statistics, found none");
        int rows = request.OutFeatures, cols = request.InFeatures;
        if (stats.Features != cols)
            throw new ArgumentException($"{request.Name}: calibration statistics have {stats.Features} features, expected {cols} (the layer's inputs)");
        if (stats.Tokens < 1)
            throw new ArgumentException($"{request.Name}: calibration statistics hold 0 tokens, expected at least 1");
        if (weightBeforePruning.Length != request.Weight.Length)
            throw new ArgumentException($"{request.Name}: weights before pruning hold {weightBeforePruning.Length} values, expected {request.Weight.Length}");
        var target = request.Target;
        if (target.IsNm && cols % target.M != 0)
            throw new ArgumentException($"{request.Name}: {target.N}:{target.M} needs the input width divisible by {target.M}, found {cols}");

        var mean = new double[cols];
        var norm = new double[cols];
        var varPow = new double[cols];
        double n = stats.Tokens;
        for (int j = 0; j < cols; j++)
        {
            mean[j] = stats.Sum[j] / n;
            norm[j] = Math.Sqrt(stats.SumSquares[j]);
            double v = Math.Max(stats.SumSquares[j] / n - mean[j] * mean[j], 1e-30);
            varPow[j] = Math.Pow(v, Options.VariancePower);
        }
        var dense = weightBeforePruning.ToArray();
        var gram = Options.GuardWithGram ? stats.Gram : null;
        var swaps = new long[rows];
        fixed (float* pd = dense, pw = request.Weight)
        fixed (byte* pm = request.Mask)
        fixed (double* pmean = mean, pnorm = norm, pvar = varPow, pg = gram)
        fixed (long* pswaps = swaps)
        {
            var args = new RowArgs
            {
                Dense = pd, Weight = pw, Mask = pm, Mean = pmean, Norm = pnorm, VarPow = pvar, Gram = pg, Swaps = pswaps,
                Cols = cols, N = target.IsNm ? target.N : 0, M = target.IsNm ? target.M : 0,
                MaxCycles = Options.MaxCycles, Threshold = Options.UpdateThreshold,
            };
            RowParallel.For(rows, (long)cols * (gram is null ? 8 : cols), ref args, &Rows);
        }
        long total = 0;
        foreach (var s in swaps) total += s;
        LastSwaps = total;
    }

    unsafe struct RowArgs
    {
        public float* Dense, Weight;
        public byte* Mask;
        public double* Mean, Norm, VarPow, Gram;
        public long* Swaps;
        public int Cols, N, M, MaxCycles;
        public double Threshold;
    }

    static unsafe void Rows(ref RowArgs a, int start, int end)
    {
        int cols = a.Cols;
        var grow = new int[cols];
        var growKey = new double[cols];
        var pos = new int[cols];
        var posKey = new double[cols];
        var neg = new int[cols];
        var negKey = new double[cols];
        var r = a.Gram is null ? null : new double[cols];
        var delta = a.Gram is null ? null : new double[cols];
        for (int row = start; row < end; row++)
        {
            var w0 = new ReadOnlySpan<float>(a.Dense + (long)row * cols, cols);
            var w = new Span<float>(a.Weight + (long)row * cols, cols);
            var mask = new Span<byte>(a.Mask + (long)row * cols, cols);
            a.Swaps[row] = RefineRow(ref a, w0, w, mask, grow, growKey, pos, posKey, neg, negKey, r, delta);
        }
    }

    static unsafe long RefineRow(ref RowArgs a, ReadOnlySpan<float> w0, Span<float> w, Span<byte> mask,
        int[] grow, double[] growKey, int[] pos, double[] posKey, int[] neg, double[] negKey, double[]? r, double[]? delta)
    {
        int cols = a.Cols;
        double* mean = a.Mean;
        double e = 0;
        int nGrow = 0, nPos = 0, nNeg = 0;
        for (int j = 0; j < cols; j++)
        {
            e += ((double)w0[j] - w[j]) * mean[j];
            if (mask[j] == 0)
            {
                grow[nGrow] = j;
                growKey[nGrow++] = w0[j] * mean[j] / a.VarPow[j];
            }
            else if (a.M == 0)
            {
                double p = w[j] * mean[j];
                double wanda = Math.Abs(w[j]) * a.Norm[j];
                if (p > 0) { pos[nPos] = j; posKey[nPos++] = wanda; }
                else if (p < 0) { neg[nNeg] = j; negKey[nNeg++] = wanda; }
            }
        }
        if (nGrow == 0 || a.MaxCycles == 0) return 0;
        int initialSign = Math.Sign(e);
        if (initialSign == 0 || !(Math.Abs(e) > a.Threshold)) return 0;
        SortByKey(growKey, grow, nGrow);
        SortByKey(posKey, pos, nPos);
        SortByKey(negKey, neg, nNeg);

        double* g = a.Gram;
        if (g != null)
        {
            // r = G·δ, δ = w − ŵ
            for (int j = 0; j < cols; j++) delta![j] = (double)w0[j] - w[j];
            for (int i = 0; i < cols; i++)
                r![i] = System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<double>(g + (long)i * cols, cols), delta);
        }

        int growLo = 0, growHi = nGrow - 1, posNext = 0, negNext = 0;
        long swaps = 0;
        for (int cycle = 0; cycle < a.MaxCycles; cycle++)
        {
            if (!(Math.Abs(e) > a.Threshold) || growLo > growHi) break;
            int j = e > 0 ? grow[growHi] : grow[growLo];
            int k = -1;
            if (a.M == 0)
            {
                if (e < 0) { while (posNext < nPos && mask[pos[posNext]] == 0) posNext++; if (posNext < nPos) k = pos[posNext]; }
                else { while (negNext < nNeg && mask[neg[negNext]] == 0) negNext++; if (negNext < nNeg) k = neg[negNext]; }
            }
            else k = LowestWandaInGroup(ref a, w0, w, mask, j);
            if (k < 0) break;
            double grown = w0[j] * mean[j], removed = w[k] * mean[k];
            double after = e + removed - grown;
            if (Math.Sign(after) != initialSign) break;
            if (g != null)
            {
                // δ_j: w_j → 0 (Δ_j = −w_j); δ_k: w_k − ŵ_k → w_k (Δ_k = ŵ_k). ΔE = 2Δᵀr + ΔᵀGΔ.
                double dj = -(double)w0[j], dk = w[k];
                double change = 2 * (dj * r![j] + dk * r[k]) + dj * dj * g[(long)j * cols + j] + dk * dk * g[(long)k * cols + k]
                    + dj * dk * (g[(long)j * cols + k] + g[(long)k * cols + j]);
                if (change > 0) break;
                for (int i = 0; i < cols; i++) r[i] += g[(long)i * cols + j] * dj + g[(long)i * cols + k] * dk;
            }
            if (e > 0) growHi--; else growLo++;
            if (a.M == 0) { if (e < 0) posNext++; else negNext++; }
            mask[j] = 2; w[j] = w0[j];
            mask[k] = 0; w[k] = 0;
            e = after;
            swaps++;
        }
        for (int j = 0; j < cols; j++) if (mask[j] == 2) mask[j] = 1;
        return swaps;
    }

    /// <summary>N:M: among the weights of j's group kept by the input mask and still kept (mask 1; a weight DSnoT grew
    /// is marked 2 until the row ends), the one with the lowest |ŵ|·‖x‖ (ties: the earlier column), or −1.</summary>
    static unsafe int LowestWandaInGroup(ref RowArgs a, ReadOnlySpan<float> w0, Span<float> w, Span<byte> mask, int j)
    {
        int start = j - j % a.M;
        int best = -1;
        double bestScore = double.PositiveInfinity;
        for (int k = start; k < start + a.M; k++)
        {
            if (mask[k] != 1) continue;
            double s = Math.Abs(w[k]) * a.Norm[k];
            if (s < bestScore) { bestScore = s; best = k; }
        }
        return best;
    }

    /// <summary>Ascending by key, ties by position (stable).</summary>
    static void SortByKey(double[] keys, int[] items, int count)
    {
        if (count < 2) return;
        var order = new (double Key, int Item)[count];
        for (int i = 0; i < count; i++) order[i] = (keys[i], items[i]);
        Array.Sort(order, (x, y) => x.Key != y.Key ? x.Key.CompareTo(y.Key) : x.Item.CompareTo(y.Item));
        for (int i = 0; i < count; i++) { keys[i] = order[i].Key; items[i] = order[i].Item; }
    }
}
