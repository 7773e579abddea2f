using System.Globalization;
using System.Text.Json.Serialization;

namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// What to prune and how (the library face of `nanosparse prune`). Keys are the recipe file's (snake_case).
/// </summary>
public sealed record PruneOptions
{
    public const string LayerScope = "layer", GlobalScope = "global";
    public const string UniformProfile = "uniform", OwlProfileName = "owl";
    public const string Unstructured = "unstructured";

    /// <summary>A registered <see cref="ILayerPruner"/> name: magnitude, random, wanda, ...</summary>
    [JsonPropertyName("method")] public string Method { get; init; } = "magnitude";
    /// <summary>Fraction of each targeted weight to remove, in [0, 1); ignored (1 − N/M) for an N:M pattern.</summary>
    [JsonPropertyName("sparsity")] public double Sparsity { get; init; }
    /// <summary>"unstructured", or "N:M" (e.g. "2:4"): N kept in every group of M consecutive inputs of a row.</summary>
    [JsonPropertyName("pattern")] public string Pattern { get; init; } = Unstructured;
    /// <summary>"layer": every weight pruned to the sparsity; "global": one threshold across all targeted weights (magnitude, random).</summary>
    [JsonPropertyName("scope")] public string Scope { get; init; } = LayerScope;
    /// <summary>
    /// "uniform": every block at the sparsity; "owl": per-block sparsity from outlier ratios (see <see cref="OwlProfile"/>),
    /// measured on calibration data with Wanda's scores whatever the method (as the OWL paper does).
    /// </summary>
    [JsonPropertyName("profile")] public string Profile { get; init; } = UniformProfile;
    [JsonPropertyName("owl_threshold")] public double OwlThreshold { get; init; } = 5;
    [JsonPropertyName("owl_lambda")] public double OwlLambda { get; init; } = 0.08;
    /// <summary>A registered <see cref="IMaskRefiner"/> run after the method on every weight (e.g. "dsnot"), or null.</summary>
    [JsonPropertyName("refiner")] public string? Refiner { get; init; }
    /// <summary>Weights to prune ("mlp.c_fc" in every block, "h.3.mlp.c_fc", "h.3" for a whole block); empty: all four of every block.</summary>
    [JsonPropertyName("targets")] public IReadOnlyList<string> Targets { get; init; } = [];
    /// <summary>Weights left dense, same forms as <see cref="Targets"/>.</summary>
    [JsonPropertyName("ignore")] public IReadOnlyList<string> Ignore { get; init; } = [];
    /// <summary>Seeds every random choice (the random method's scores), per weight mixed with its name.</summary>
    [JsonPropertyName("seed")] public ulong Seed { get; init; }
    /// <summary>Calibration windows of block_size tokens (methods that need calibration, OWL, refiners).</summary>
    [JsonPropertyName("calibration_windows")] public int CalibrationWindows { get; init; } = 128;
    [JsonPropertyName("calibration_seed")] public ulong CalibrationSeed { get; init; }

    /// <summary>The pattern as (N, M); (0, 0) when unstructured. "nm" alone means 2:4; "nm:N:M" is accepted too.</summary>
    public (int N, int M) ParsePattern()
    {
        string p = Pattern.Trim();
        if (p == Unstructured) return (0, 0);
        if (p == "nm") return (2, 4);
        if (p.StartsWith("nm:", StringComparison.Ordinal)) p = p[3..];
        var parts = p.Split(':');
        if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int m))
        {
            if (n >= 1 && n < m && m <= 256) return (n, m);
            throw new ArgumentException($"--pattern '{Pattern}': N:M needs 1 <= N < M <= 256, got N = {n}, M = {m}");
        }
        throw new ArgumentException($"--pattern '{Pattern}' is not one of unstructured, N:M (e.g. 2:4, 4:8), nm (2:4)");
    }

    /// <summary>The sparsity the options ask of a weight (before OWL): 1 − N/M for N:M.</summary>
    public SparsityTarget Target()
    {
        var (n, m) = ParsePattern();
        return m > 0 ? new SparsityTarget(1 - (double)n / m, n, m) : new SparsityTarget(Sparsity);
    }

    /// <summary>
    /// Checks every option against every other and the method's needs; throws ArgumentException whose one-line message
    /// names the option (as on the command line), the value and what is expected.
    /// </summary>
    public void Validate() => Validate(PruningMethods.Pruner(Method));

    /// <summary>As <see cref="Validate()"/> for a method given as an instance.</summary>
    public void Validate(ILayerPruner pruner)
    {
        ArgumentNullException.ThrowIfNull(pruner);
        if (Refiner is not null) PruningMethods.Refiner(Refiner);
        var (n, m) = ParsePattern();
        if (m == 0 && !(Sparsity >= 0 && Sparsity < 1))
            throw new ArgumentException($"--sparsity ({Sparsity.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1)");
        if (m > 0 && Sparsity != 0 && Math.Abs(Sparsity - (1 - (double)n / m)) > 1e-12)
            throw new ArgumentException($"--sparsity ({Sparsity.ToString(CultureInfo.InvariantCulture)}) contradicts --pattern {n}:{m}, whose sparsity is {(1 - (double)n / m).ToString(CultureInfo.InvariantCulture)}; give one of them");
        if (Scope != LayerScope && Scope != GlobalScope)
            throw new ArgumentException($"--scope '{Scope}' must be {LayerScope} or {GlobalScope}");
        if (Profile != UniformProfile && Profile != OwlProfileName)
            throw new ArgumentException($"--profile '{Profile}' must be {UniformProfile} or {OwlProfileName}");
        if (Scope == GlobalScope)
        {
            if (pruner is not IScoredPruner { ComparesWithinRows: false })
                throw new ArgumentException($"--scope global compares one score across all weights, which only magnitude and random have; '{pruner.Name}' " +
                    (pruner is IScoredPruner ? "compares its scores within each output row by definition" : "chooses each layer's mask itself") + " (use --scope layer)");
            if (m > 0) throw new ArgumentException($"--scope global needs an unstructured pattern; --pattern {n}:{m} is decided per group of {m}");
            if (Profile == OwlProfileName) throw new ArgumentException("--scope global and --profile owl exclude each other: OWL sets each block's sparsity itself");
        }
        if (Profile == OwlProfileName)
        {
            if (m > 0) throw new ArgumentException($"--profile owl needs an unstructured pattern, not {n}:{m}");
            if (!(OwlThreshold > 0) || double.IsInfinity(OwlThreshold))
                throw new ArgumentException($"--owl-threshold ({OwlThreshold.ToString(CultureInfo.InvariantCulture)}) must be positive");
            if (!(OwlLambda >= 0) || OwlLambda >= 1)
                throw new ArgumentException($"--owl-lambda ({OwlLambda.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1)");
        }
        if (CalibrationWindows <= 0)
            throw new ArgumentException($"--calibration-windows ({CalibrationWindows}) must be positive");
    }

    /// <summary>Whether pruning reads calibration data (the method, OWL or a refiner needs it).</summary>
    public bool NeedsCalibration => PruningMethods.Pruner(Method).NeedsCalibration || Refiner is not null || Profile == OwlProfileName;
}
