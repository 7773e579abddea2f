namespace NanoSparse.Bench;

/// <summary>
/// The check that `nanosparse bench kernels`' in-process dense yardstick is honest: for every shape, N and dense
/// product, OpenBLAS called from this process must take within <see cref="Tolerance"/> of the time NumPy (the Python
/// peer, same OpenBLAS library, same thread count, same warm-up) takes for the same product in the same run. A slower
/// yardstick flatters every sparse ratio (sgemm at N = 1, or a mis-tuned core type, did); a faster one hides a
/// peer's handicap.
/// </summary>
public static class YardstickCheck
{
    /// <summary>Relative difference allowed: |ours − NumPy| ≤ 10% of NumPy's time.</summary>
    public const double Tolerance = 0.10;

    /// <summary>Suffix of the peer's reply keys that hold the fastest sample rather than the median.</summary>
    public const string MinSuffix = "_min";

    /// <summary>One bench row as the check sees it: its case, the in-process yardstick's median and fastest sample, the peer replies.</summary>
    public sealed record Case(int M, int K, int N, string Kernel, double? InProcessMs, double? InProcessMinMs, IReadOnlyDictionary<string, double>? Peers);

    /// <summary>
    /// One dense product of one shape and N, in-process and in NumPy: medians (the check) and fastest samples (shown
    /// beside it: on a loaded machine the medians can differ by 2x while the fastest samples agree).
    /// </summary>
    public sealed record Comparison(int M, int K, int N, string Kernel, string Routine, double InProcessMs, double NumPyMs,
        double? InProcessMinMs = null, double? NumPyMinMs = null)
    {
        /// <summary>In-process time over NumPy's (above 1: the yardstick is slower than NumPy).</summary>
        public double Ratio => InProcessMs / NumPyMs;

        /// <summary>The same ratio of the fastest samples, or null when either is missing.</summary>
        public double? MinRatio => InProcessMinMs is { } a && NumPyMinMs is { } b ? a / b : null;

        public bool Within => IsWithin(InProcessMs, NumPyMs);

        public string Warning => $"WARNING: dense yardstick {M}x{K} N={N} {Kernel} ({Routine}): in-process OpenBLAS {InProcessMs:F4} ms, "
            + $"NumPy {NumPyMs:F4} ms, ratio {Ratio:F2}, outside the {Tolerance * 100:0}% allowed"
            + (MinRatio is { } r ? $" (fastest samples: ratio {r:F2})" : "");
    }

    /// <summary>True when both times are positive and finite and differ by at most <paramref name="tolerance"/> of NumPy's.</summary>
    public static bool IsWithin(double inProcessMs, double numPyMs, double tolerance = Tolerance) =>
        double.IsFinite(inProcessMs) && double.IsFinite(numPyMs) && inProcessMs > 0 && numPyMs > 0
        && Math.Abs(inProcessMs - numPyMs) <= tolerance * numPyMs;

    /// <summary>The OpenBLAS routine behind a kernel's dense yardstick: sgemm, or at N = 1 sgemv (sger for SDDMM).</summary>
    public static string Routine(string kernel, int n) => n > 1 ? "sgemm" : kernel == "SDDMM" ? "sger" : "sgemv";

    /// <summary>The Python peer's reply key for the same dense product (bench/peers/sparse_peers.py).</summary>
    public static string NumPyKey(string kernel) => kernel switch
    {
        "S·X" => "numpy_dense",
        "Sᵀ·X" => "numpy_dense_t",
        "SDDMM" => "numpy_dense_sddmm",
        _ => throw new ArgumentException($"kernel '{kernel}' has no dense NumPy counterpart; expected S·X, Sᵀ·X or SDDMM", nameof(kernel)),
    };

    /// <summary>
    /// One comparison per (M, K, N, kernel) among <paramref name="cases"/>, in their order: the in-process times and the
    /// peer replies of every row of a case are the same, so the first row of each speaks for it. Rows without an
    /// in-process time or a NumPy reply (peers off) are left out.
    /// </summary>
    public static List<Comparison> Compare(IEnumerable<Case> cases)
    {
        var result = new List<Comparison>();
        var seen = new HashSet<(int, int, int, string)>();
        foreach (var c in cases)
        {
            string key = NumPyKey(c.Kernel);
            if (c.InProcessMs is not { } ours || c.Peers is null || !c.Peers.TryGetValue(key, out double numPy)) continue;
            if (!seen.Add((c.M, c.K, c.N, c.Kernel))) continue;
            double? numPyMin = c.Peers.TryGetValue(key + MinSuffix, out double v) ? v : null;
            result.Add(new Comparison(c.M, c.K, c.N, c.Kernel, Routine(c.Kernel, c.N), ours, numPy, c.InProcessMinMs, numPyMin));
        }
        return result;
    }
}
