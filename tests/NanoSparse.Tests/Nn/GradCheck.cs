namespace NanoSparse.Tests.Nn;

/// <summary>
/// Central finite differences of a scalar loss (accumulated in double over the float forward pass) and a
/// comparison with an analytic gradient: max |analytic − numeric| ≤ atol + rtol · max |numeric|.
/// </summary>
public static class GradCheck
{
    public static void Assert(string name, float[] x, float[] analytic, Func<double> loss, double eps = 1e-2,
        double atol = 1e-3, double rtol = 2e-3, int maxChecks = int.MaxValue, int seed = 1)
    {
        var indices = Enumerable.Range(0, x.Length).ToArray();
        if (indices.Length > maxChecks)
        {
            var random = new Random(seed);
            random.Shuffle(indices);
            indices = indices[..maxChecks];
        }
        var numeric = new double[indices.Length];
        for (int j = 0; j < indices.Length; j++)
        {
            int i = indices[j];
            float saved = x[i];
            x[i] = (float)(saved + eps);
            double plus = loss();
            x[i] = (float)(saved - eps);
            double minus = loss();
            x[i] = saved;
            numeric[j] = (plus - minus) / (2 * eps);
        }
        double maxNumeric = numeric.Max(Math.Abs), maxError = 0;
        int worst = -1;
        for (int j = 0; j < indices.Length; j++)
        {
            double e = Math.Abs(analytic[indices[j]] - numeric[j]);
            if (e > maxError) { maxError = e; worst = j; }
        }
        double bound = atol + rtol * maxNumeric;
        Xunit.Assert.True(maxError <= bound,
            $"{name}: max |analytic - numeric| = {maxError:g4} > {bound:g4} at index {(worst >= 0 ? indices[worst] : -1)} " +
            $"(analytic {(worst >= 0 ? analytic[indices[worst]] : 0):g6}, numeric {(worst >= 0 ? numeric[worst] : 0):g6}, max |numeric| {maxNumeric:g4})");
        // A gradient check that only ever sees zeros cannot fail: insist on a signal.
        Xunit.Assert.True(maxNumeric > 10 * bound || maxNumeric > 1e-3, $"{name}: gradient is too small to check ({maxNumeric:g4})");
    }

    public static float[] RandomArray(Random random, int length, double scale = 1.0)
    {
        var a = new float[length];
        for (int i = 0; i < length; i++) a[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return a;
    }

    /// <summary>Σ w_i · out_i in double: a loss whose gradient with respect to out is w.</summary>
    public static double WeightedSum(ReadOnlySpan<float> output, ReadOnlySpan<float> weights)
    {
        double s = 0;
        for (int i = 0; i < weights.Length; i++) s += (double)output[i] * weights[i];
        return s;
    }

    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double atol, string name)
    {
        Xunit.Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Xunit.Assert.True(Math.Abs(actual[i] - expected[i]) <= atol,
                $"{name}[{i}]: {actual[i]:g9} vs reference {expected[i]:g9} (atol {atol:g3})");
    }
}
