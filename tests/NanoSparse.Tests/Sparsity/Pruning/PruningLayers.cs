using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Tests.Sparsity.Pruning;

/// <summary>Random Linear layers with correlated calibration inputs, and brute-force references shared by the pruning
/// tests (all in double, written directly from the definitions).</summary>
internal static class PruningLayers
{
    /// <summary>W (rows × cols) ~ N(0, 1); X (tokens × cols) = Z·A + outlier scales: correlated features, a few large
    /// ones (as LLM activations have), and a nonzero mean.</summary>
    public static (float[] W, float[] X) Make(int rows, int cols, int tokens, ulong seed)
    {
        var rng = new Rng(seed);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)rng.NextGaussian();
        int latent = Math.Max(2, cols / 2);
        var a = new double[latent * cols];
        for (int i = 0; i < a.Length; i++) a[i] = rng.NextGaussian();
        var scale = new double[cols];
        var mean = new double[cols];
        for (int j = 0; j < cols; j++)
        {
            scale[j] = j % 7 == 3 ? 5 : 1;
            mean[j] = 0.3 * rng.NextGaussian();
        }
        var x = new float[tokens * cols];
        var z = new double[latent];
        for (int t = 0; t < tokens; t++)
        {
            for (int k = 0; k < latent; k++) z[k] = rng.NextGaussian();
            for (int j = 0; j < cols; j++)
            {
                double s = 0.2 * rng.NextGaussian();
                for (int k = 0; k < latent; k++) s += z[k] * a[k * cols + j];
                x[t * cols + j] = (float)(mean[j] + scale[j] * s / Math.Sqrt(latent));
            }
        }
        return (w, x);
    }

    public static LayerInputStats Stats(float[] x, int cols, bool withGram)
    {
        var s = new LayerInputStats(cols, withGram);
        s.Accumulate(x, x.Length / cols);
        return s;
    }

    /// <summary>‖W·Xᵀ − Ŵ·Xᵀ‖² over the tokens, in double.</summary>
    public static double ReconstructionError(ReadOnlySpan<float> w, ReadOnlySpan<float> pruned, float[] x, int rows, int cols)
    {
        int tokens = x.Length / cols;
        var d = new double[cols];
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < cols; j++) d[j] = (double)w[r * cols + j] - pruned[r * cols + j];
            for (int t = 0; t < tokens; t++)
            {
                double s = 0;
                for (int j = 0; j < cols; j++) s += d[j] * x[t * cols + j];
                total += s * s;
            }
        }
        return total;
    }

    /// <summary>Magnitude pruning, layer-wise: the ⌊count·p⌋ weights of lowest |w| (N:M: per group, the M − N lowest).</summary>
    public static float[] Magnitude(float[] w, int rows, int cols, SparsityTarget target)
    {
        var score = new double[w.Length];
        for (int i = 0; i < w.Length; i++) score[i] = Math.Abs(w[i]);
        return target.IsNm ? ByGroups(w, score, cols, target) : LowestOverall(w, score, target);
    }

    /// <summary>Wanda: |W_ij|·‖X_j‖₂ compared within each output row (N:M: per group).</summary>
    public static float[] Wanda(float[] w, float[] x, int rows, int cols, SparsityTarget target)
    {
        int tokens = x.Length / cols;
        var norm = new double[cols];
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < cols; j++) norm[j] += (double)x[t * cols + j] * x[t * cols + j];
        var score = new double[w.Length];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) score[r * cols + j] = Math.Abs(w[r * cols + j]) * Math.Sqrt(norm[j]);
        if (target.IsNm) return ByGroups(w, score, cols, target);
        var outp = (float[])w.Clone();
        int perRow = (int)(cols * target.Sparsity);
        for (int r = 0; r < rows; r++)
        {
            var idx = Enumerable.Range(0, cols).OrderBy(j => score[r * cols + j]).Take(perRow);
            foreach (int j in idx) outp[r * cols + j] = 0;
        }
        return outp;
    }

    static float[] LowestOverall(float[] w, double[] score, SparsityTarget target)
    {
        var outp = (float[])w.Clone();
        long k = target.PrunedCount(w.Length);
        foreach (int i in Enumerable.Range(0, w.Length).OrderBy(i => score[i]).Take((int)k)) outp[i] = 0;
        return outp;
    }

    static float[] ByGroups(float[] w, double[] score, int cols, SparsityTarget target)
    {
        var outp = (float[])w.Clone();
        for (int g = 0; g < w.Length; g += target.M)
            foreach (int k in Enumerable.Range(0, target.M).OrderBy(k => score[g + k]).Take(target.M - target.N))
                outp[g + k] = 0;
        return outp;
    }
}
