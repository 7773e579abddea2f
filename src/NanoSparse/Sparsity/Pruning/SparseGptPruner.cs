using System.Numerics.Tensors;
using NanoSparse.Kernels;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>Options of <see cref="SparseGptPruner"/> (the paper's defaults).</summary>
public sealed record SparseGptOptions
{
    /// <summary>λ = Dampening · mean(diag H), added to H's diagonal before it is inverted (the paper's 1%).</summary>
    public double Dampening { get; init; } = 0.01;
    /// <summary>Columns per block: the mask is chosen for a block at a time, and the updates of the columns after the
    /// block are applied once per block (lazy batched updates). Rounded down to a multiple of M for N:M.</summary>
    public int BlockSize { get; init; } = 128;
}

/// <summary>
/// SparseGPT (Frantar and Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
/// Algorithm 1): prunes W (Out × In) column by column while updating the columns not yet visited to compensate
/// (the OBS update with the sequence of inverse Hessians of the remaining columns, all read off one Cholesky factor).
/// </summary>
/// <remarks>
/// H = 2/n · Σ x xᵀ over the n calibration tokens (<see cref="LayerInputStats.Gram"/>). An input never seen nonzero
/// (H_ii = 0) gets H_ii = 1 and W[:, i] = 0. H += λI with λ = 1% of mean(diag H); U = the upper Cholesky factor of
/// H⁻¹ (H⁻¹ = UᵀU), whose row j is row j of the inverse Hessian of columns j.. divided by its diagonal's square root.
/// For each block of B columns [i1, i2):
///   mask: unstructured, the k lowest w²/U_jj² over the whole block (all rows × B columns, as the reference's
///   `sort(tmp.flatten())`), k such that the pruned count after the block is ⌊rows·i2·p⌋ — exact in total; N:M, per
///   row the M − N lowest of each group of M columns, chosen when the group starts (on its weights updated so far);
///   column i in the block: q = w masked; err = (w − q) / U_ii; W[:, i:i2] −= err · U[i, i:i2];
///   then W[:, i2:] −= Err (rows × B) · U[i1:i2, i2:] (the lazy batched update).
/// All arithmetic is in double. Given U, rows are independent except for the unstructured mask of a block, so each
/// block runs as one parallel pass over rows after its mask is chosen (N:M: the whole layer is one pass per block).
/// </remarks>
public sealed class SparseGptPruner : ILayerPruner
{
    public SparseGptPruner() : this(new SparseGptOptions()) { }

    public SparseGptPruner(SparseGptOptions options)
    {
        if (!(options.Dampening >= 0) || double.IsInfinity(options.Dampening))
            throw new ArgumentOutOfRangeException(nameof(options), options.Dampening, "SparseGPT dampening must be a finite value >= 0");
        if (options.BlockSize < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.BlockSize, "SparseGPT block size must be at least 1");
        Options = options;
    }

    public SparseGptOptions Options { get; }
    public string Name => "sparsegpt";
    public bool NeedsCalibration => true;
    public bool NeedsGram => true;

    /// <summary>The reference's "error" of the last <see cref="Prune"/>: ½·Σ over the layer of (w − q)² / U_ii², the
    /// OBS estimate of the increase of the layer's squared reconstruction error in H's scale (2/n · ‖WX − ŴX‖²).</summary>
    public double LastLoss { get; private set; }

    public void Prune(LayerPruneRequest request)
    {
        var stats = request.Stats ?? throw new ArgumentException($"{request.Name}: SparseGPT needs calibration statistics, found none");
        var gram = stats.Gram ?? throw new ArgumentException($"{request.Name}: SparseGPT needs the inputs' Gram matrix, found statistics without one");
        int rows = request.OutFeatures, cols = request.InFeatures;
        if (stats.Features != cols)
            throw new ArgumentException($"{request.Name}: calibration statistics have {stats.Features} features, expected {cols} (the layer's inputs)");
        if (stats.Tokens < 1)
            throw new ArgumentException($"{request.Name}: calibration statistics hold 0 tokens, expected at least 1");
        var target = request.Target;
        ValidateTarget(request.Name, target, cols);

        // H = 2/n · Gram; dead inputs get H_ii = 1 and their weights 0.
        var h = new double[(long)cols * cols];
        double scale = 2.0 / stats.Tokens;
        for (long i = 0; i < h.Length; i++) h[i] = scale * gram[i];
        var w = new double[(long)rows * cols];
        var src = request.Weight;
        for (long i = 0; i < w.Length; i++) w[i] = src[i];
        double meanDiag = 0;
        for (int i = 0; i < cols; i++)
        {
            if (h[(long)i * cols + i] == 0)
            {
                h[(long)i * cols + i] = 1;
                for (int r = 0; r < rows; r++) w[(long)r * cols + i] = 0;
            }
            meanDiag += h[(long)i * cols + i];
        }
        double damp = Options.Dampening * meanDiag / cols;
        for (int i = 0; i < cols; i++) h[(long)i * cols + i] += damp;
        var u = new double[(long)cols * cols];
        try { Cholesky.UpperFactorOfInverse(h, cols, u); }
        catch (ArithmeticException e)
        {
            throw new ArithmeticException($"{request.Name}: the dampened Hessian is not positive definite ({e.Message}); raise the dampening (now {Options.Dampening})", e);
        }
        h = null!;

        var mask = request.Mask;
        mask.AsSpan().Fill(1);
        int block = Options.BlockSize;
        if (target.IsNm) block = Math.Max(target.M, block - block % target.M);
        var err = new double[(long)rows * block];
        var losses = new double[rows];
        long pruned = 0;
        for (int i1 = 0; i1 < cols; i1 += block)
        {
            int i2 = Math.Min(cols, i1 + block);
            if (!target.IsNm && target.Sparsity > 0)
            {
                long cumulative = (long)((double)rows * i2 * target.Sparsity);
                SelectBlockMask(w, u, mask, rows, cols, i1, i2, (int)(cumulative - pruned));
                pruned = cumulative;
            }
            unsafe
            {
                fixed (double* pw = w, pu = u, pe = err, pl = losses)
                fixed (byte* pm = mask)
                {
                    var args = new BlockArgs
                    {
                        W = pw, U = pu, Err = pe, Losses = pl, Mask = pm, Cols = cols, I1 = i1, I2 = i2, Block = block,
                        N = target.IsNm ? target.N : 0, M = target.IsNm ? target.M : 0,
                    };
                    RowParallel.For(rows, (long)(i2 - i1) * cols, ref args, &BlockRows);
                }
            }
        }

        double loss = 0;
        foreach (var l in losses) loss += l;
        LastLoss = loss / 2;
        var dst = request.Weight;
        for (long i = 0; i < w.Length; i++) dst[i] = mask[i] == 0 ? 0f : (float)w[i];
    }

    internal static void ValidateTarget(string name, SparsityTarget target, int inFeatures)
    {
        if (target.IsNm)
        {
            if (target.N < 0 || target.N >= target.M)
                throw new ArgumentException($"{name}: N:M pattern {target.N}:{target.M} invalid, expected 0 <= N < M");
            if (inFeatures % target.M != 0)
                throw new ArgumentException($"{name}: {target.N}:{target.M} needs the input width divisible by {target.M}, found {inFeatures}");
        }
        else if (!(target.Sparsity >= 0 && target.Sparsity < 1))
            throw new ArgumentException($"{name}: sparsity {target.Sparsity} outside [0, 1)");
    }

    /// <summary>Marks the <paramref name="count"/> weights of columns [i1, i2) with the lowest w²/U_jj² as pruned
    /// (ties broken by position, row-major).</summary>
    static void SelectBlockMask(double[] w, double[] u, byte[] mask, int rows, int cols, int i1, int i2, int count)
    {
        if (count <= 0) return;
        int width = i2 - i1;
        var scores = new double[(long)rows * width];
        var index = new int[scores.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < width; c++)
            {
                double d = u[(long)(i1 + c) * cols + i1 + c];
                double v = w[(long)r * cols + i1 + c];
                scores[r * width + c] = v * v / (d * d);
                index[r * width + c] = r * width + c;
            }
        Array.Sort(scores, index);
        // Equal scores: take the earliest positions first, whatever order the unstable sort left them in.
        int end = count;
        double last = scores[count - 1];
        int tieStart = count - 1;
        while (tieStart > 0 && scores[tieStart - 1] == last) tieStart--;
        while (end < scores.Length && scores[end] == last) end++;
        if (end > count) Array.Sort(index, tieStart, end - tieStart);
        for (int k = 0; k < count; k++)
        {
            int r = index[k] / width, c = index[k] % width;
            mask[(long)r * cols + i1 + c] = 0;
        }
    }

    unsafe struct BlockArgs
    {
        public double* W, U, Err, Losses;
        public byte* Mask;
        public int Cols, I1, I2, Block, N, M;
    }

    /// <summary>Rows [start, end) through one block: the column-by-column OBS updates inside the block, then the lazy
    /// update of the columns after it.</summary>
    static unsafe void BlockRows(ref BlockArgs a, int start, int end)
    {
        int cols = a.Cols, i1 = a.I1, i2 = a.I2;
        Span<int> order = a.M > 0 ? stackalloc int[a.M] : default;
        Span<double> groupScores = a.M > 0 ? stackalloc double[a.M] : default;
        for (int r = start; r < end; r++)
        {
            var w = new Span<double>(a.W + (long)r * cols, cols);
            var mask = new Span<byte>(a.Mask + (long)r * cols, cols);
            var err = new Span<double>(a.Err + (long)r * a.Block, i2 - i1);
            double loss = 0;
            for (int i = i1; i < i2; i++)
            {
                double* ui = a.U + (long)i * cols;
                if (a.M > 0 && i % a.M == 0)
                    SelectGroup(w, mask, ui, cols, i, a.N, a.M, order, groupScores);
                double d = ui[i];
                double wi = w[i];
                double q = mask[i] == 0 ? 0 : wi;
                double e = (wi - q) / d;
                err[i - i1] = e;
                loss += e * e;
                w[i] = q;
                if (e != 0 && i + 1 < i2)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<double>(ui + i + 1, i2 - i - 1), -e, w[(i + 1)..i2], w[(i + 1)..i2]);
            }
            if (i2 < cols)
            {
                var tail = w[i2..];
                for (int k = 0; k < i2 - i1; k++)
                    if (err[k] != 0)
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<double>(a.U + (long)(i1 + k) * cols + i2, cols - i2), -err[k], tail, tail);
            }
            a.Losses[r] += loss;
        }
    }

    /// <summary>N:M: in the group of M columns starting at <paramref name="i"/>, prunes the M − N with the lowest
    /// w²/U_jj² (ties: the earlier column).</summary>
    static unsafe void SelectGroup(Span<double> w, Span<byte> mask, double* ui, int cols, int i, int n, int m,
        Span<int> order, Span<double> scores)
    {
        for (int k = 0; k < m; k++)
        {
            double d = ui[(long)k * cols + i + k]; // U[i+k][i+k]: row i+k starts k·cols after row i
            scores[k] = w[i + k] * w[i + k] / (d * d);
            order[k] = k;
        }
        // insertion sort by (score, column): M is small
        for (int k = 1; k < m; k++)
        {
            int o = order[k];
            int j = k - 1;
            while (j >= 0 && scores[order[j]] > scores[o]) { order[j + 1] = order[j]; j--; }
            order[j + 1] = o;
        }
        for (int k = 0; k < m - n; k++) mask[i + order[k]] = 0;
    }
}
