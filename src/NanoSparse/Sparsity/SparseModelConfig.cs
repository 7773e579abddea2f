using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity;

/// <summary>One Linear weight of a built model as the start-of-training table shows it.</summary>
public sealed record SparseWeightRow(string Name, int OutFeatures, int InFeatures, string Layout, long Stored)
{
    public double Density => (double)Stored / ((double)OutFeatures * InFeatures);
}

/// <summary>
/// Turns the training config's sparsity keys into a GptConfig whose block Linear weights are stored sparse
/// (GptConfig.WeightLayouts, WeightDensities and SparsitySeed, recorded in checkpoints' model_args):
///   sparsity               global fraction of zeros over the sparse weights, in [0, 1) (0: dense)
///   sparsity_distribution  uniform (every sparse weight at 1 − sparsity) | er | erk (see <see cref="ErdosRenyi"/>)
///   sparse_format          the layout of the sparse weights: csr | bsr:RxC | any registered layout drawn from a density
///   nm                     "N:M" (e.g. 2:4): the chosen weights are N:M along the reduction dimension instead
///   sparse_weights         which of attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj are sparse (the embeddings and
///                          the tied lm_head stay dense)
///   dst_split_qkv          er/erk see c_attn as its three (C × C) Q, K and V slices, so each gets the density of a
///                          C × C layer (see <see cref="Dst.QkvSplit"/>)
/// Every error is an ArgumentException whose one-line message starts with the key at fault.
/// </summary>
public static class SparseModelConfig
{
    public const string Uniform = "uniform";
    public const string ErdosRenyiName = "er";
    public const string ErdosRenyiKernel = "erk";
    public static readonly IReadOnlyList<string> Distributions = [Uniform, ErdosRenyiName, ErdosRenyiKernel];

    /// <summary>
    /// <paramref name="config"/> with its blocks' <paramref name="weights"/> (default all four) sparse. With sparsity 0
    /// and no <paramref name="nm"/> the config comes back unchanged (dense). A weight whose distributed density reaches
    /// 1 stays dense. <paramref name="seed"/> seeds the positions (GptConfig.SparsitySeed).
    /// </summary>
    public static GptConfig Apply(GptConfig config, double sparsity, string distribution = Uniform, string format = LinearWeightLayouts.Csr,
        string? nm = null, IEnumerable<string>? weights = null, ulong seed = 0, bool splitQkv = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        var chosen = ParseWeights(weights);
        CheckSparsity(sparsity);
        CheckDistribution(distribution);
        int C = config.NEmbd;
        var shapes = chosen.Select(name => Shape(name, C, config.NLayer)).ToArray();

        if (!string.IsNullOrEmpty(nm))
        {
            var (n, m) = ParseNm(nm);
            foreach (var s in shapes)
                if (s.InFeatures % m != 0)
                    throw new ArgumentException($"nm ('{nm}'): M = {m} must divide the in features (the reduction dimension) of {s.Name}, which has {s.InFeatures}");
            var layouts = Merge(config.WeightLayouts, chosen.ToDictionary(w => w, _ => $"{LinearWeightLayouts.Nm}:{n}:{m}"));
            return config with { WeightLayouts = layouts, WeightDensities = Without(config.WeightDensities, chosen), SparsitySeed = seed };
        }
        if (sparsity == 0) return config;

        CheckFormat(format, shapes);
        double density = 1 - sparsity;
        double[] densities = distribution == Uniform
            ? shapes.Select(_ => density).ToArray()
            : splitQkv ? SplitQkvDensities(shapes, density) : ErdosRenyi.Densities(shapes, density);
        var layoutOf = new Dictionary<string, string>();
        var densityOf = new Dictionary<string, double>();
        for (int i = 0; i < chosen.Count; i++)
        {
            if (densities[i] >= 1) { layoutOf[chosen[i]] = LinearWeightLayouts.Dense; continue; }
            layoutOf[chosen[i]] = format;
            densityOf[chosen[i]] = densities[i];
        }
        return config with
        {
            WeightLayouts = Merge(config.WeightLayouts, layoutOf),
            WeightDensities = Merge(Without(config.WeightDensities, chosen), densityOf),
            SparsitySeed = seed,
        };
    }

    /// <summary>
    /// ER/ERK densities with each c_attn (3C × C) counted as three C × C layers (its Q, K and V slices); the slices
    /// have one shape, so one density, which is c_attn's.
    /// </summary>
    static double[] SplitQkvDensities(IReadOnlyList<WeightShape> shapes, double density)
    {
        var expanded = new List<WeightShape>();
        foreach (var s in shapes)
            if (s.Name == Dst.QkvSplit.FusedWeight)
                for (int q = 0; q < Dst.QkvSplit.Slices; q++) expanded.Add(s with { OutFeatures = s.OutFeatures / Dst.QkvSplit.Slices });
            else expanded.Add(s);
        var d = ErdosRenyi.Densities(expanded, density);
        var result = new double[shapes.Count];
        for (int i = 0, j = 0; i < shapes.Count; i++)
        {
            result[i] = d[j];
            j += shapes[i].Name == Dst.QkvSplit.FusedWeight ? Dst.QkvSplit.Slices : 1;
        }
        return result;
    }

    /// <summary>Throws unless sparsity lies in [0, 1).</summary>
    public static void CheckSparsity(double sparsity)
    {
        if (!(sparsity >= 0 && sparsity < 1))
            throw new ArgumentException($"sparsity ({sparsity.ToString(CultureInfo.InvariantCulture)}) must be in [0, 1) (the fraction of zeros; density = 1 - sparsity must be in (0, 1])");
    }

    /// <summary>Throws unless the distribution is uniform, er or erk.</summary>
    public static void CheckDistribution(string distribution)
    {
        if (distribution is null || !Distributions.Contains(distribution))
            throw new ArgumentException($"sparsity_distribution ('{distribution}') must be one of {string.Join(", ", Distributions)}");
    }

    /// <summary>The (N, M) of an "N:M" string; throws naming the key nm unless 1 ≤ N &lt; M.</summary>
    public static (int N, int M) ParseNm(string nm)
    {
        var p = nm.Split(':');
        if (p.Length != 2 || !int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
            || !int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int m))
            throw new ArgumentException($"nm ('{nm}') must be N:M with integers N and M, e.g. 2:4");
        if (n < 1 || n >= m)
            throw new ArgumentException($"nm ('{nm}'): N = {n} must be at least 1 and less than M = {m}");
        if (m > 256)
            throw new ArgumentException($"nm ('{nm}'): M = {m} must be at most 256");
        return (n, m);
    }

    /// <summary>The block weights named in a comma-separated list (null or empty: all four); throws naming sparse_weights.</summary>
    public static IReadOnlyList<string> ParseWeights(IEnumerable<string>? weights)
    {
        if (weights is null) return GptConfig.BlockWeights;
        var list = weights.Select(w => w.Trim()).Where(w => w.Length > 0).ToList();
        if (list.Count == 0) return GptConfig.BlockWeights;
        foreach (var w in list)
            if (!GptConfig.BlockWeights.Contains(w))
                throw new ArgumentException($"sparse_weights ('{w}') must name weights among {string.Join(", ", GptConfig.BlockWeights)} (comma-separated)");
        if (list.Distinct().Count() != list.Count)
            throw new ArgumentException($"sparse_weights ('{string.Join(",", list)}') names a weight twice");
        return GptConfig.BlockWeights.Where(list.Contains).ToArray();
    }

    /// <summary>Throws naming sparse_format unless it is a registered layout that can be drawn from a density at every given shape.</summary>
    public static void CheckFormat(string format, IReadOnlyList<WeightShape> shapes)
    {
        if (string.IsNullOrEmpty(format) || !LinearWeightLayouts.IsRegistered(format))
            throw new ArgumentException($"sparse_format ('{format}') must be one of csr, bsr:RxC (e.g. bsr:4x4), or another registered layout: {string.Join(", ", LinearWeightLayouts.Names)}");
        string name = LinearWeightLayouts.Parse(format).Name;
        if (name == LinearWeightLayouts.Dense)
            throw new ArgumentException($"sparse_format ('{format}') must be a sparse layout (csr, bsr:RxC, ...); for a dense model set sparsity=0");
        if (name == LinearWeightLayouts.Nm)
            throw new ArgumentException($"sparse_format ('{format}'): N:M patterns are chosen with the nm key (e.g. nm=2:4), not sparse_format");
        // Build each distinct shape once at the smallest density (one position or block) so the layout's own checks (block divides the shape, ...) run now.
        foreach (var s in shapes.DistinctBy(s => (s.OutFeatures, s.InFeatures)))
        {
            try { LinearWeightLayouts.Create(format, LinearWeightSpec.Random(s.OutFeatures, s.InFeatures, 1.0 / ((double)s.OutFeatures * s.InFeatures), new Rng(0))); }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"sparse_format ('{format}') does not fit {s.Name} ({s.OutFeatures}x{s.InFeatures}): {FirstLine(e)}", e);
            }
        }
    }

    /// <summary>The (out, in) shape of a block weight in a model n_embd wide, counted once per layer.</summary>
    public static WeightShape Shape(string name, int nEmbd, int nLayer) => name switch
    {
        "attn.c_attn" => new(name, 3 * nEmbd, nEmbd, nLayer),
        "attn.c_proj" => new(name, nEmbd, nEmbd, nLayer),
        "mlp.c_fc" => new(name, 4 * nEmbd, nEmbd, nLayer),
        "mlp.c_proj" => new(name, nEmbd, 4 * nEmbd, nLayer),
        _ => throw new ArgumentException($"sparse_weights ('{name}') must name weights among {string.Join(", ", GptConfig.BlockWeights)}"),
    };

    /// <summary>Every block Linear weight of a built model: name, shape, layout, stored values.</summary>
    public static IReadOnlyList<SparseWeightRow> Describe(Gpt gpt) =>
        gpt.Parameters.Where(p => p.Layout is not null)
            .Select(p => new SparseWeightRow(p.Name, p.Shape[0], p.Shape[1], LayoutName(gpt.Config, p.Name, p.Layout!), p.Length))
            .ToArray();

    // The layout string the config gave the weight (with its arguments), e.g. "nm:2:4"; the layout's name otherwise.
    static string LayoutName(GptConfig config, string parameterName, ILinearWeight weight)
    {
        // transformer.h.{layer}.{attn.c_attn}.weight
        var parts = parameterName.Split('.');
        if (parts.Length == 6 && int.TryParse(parts[2], out int layer)) return config.WeightLayout(layer, parts[3] + "." + parts[4]);
        return weight.Layout;
    }

    static string FirstLine(Exception e)
    {
        string m = e.Message;
        int paren = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (paren >= 0) m = m[..paren];
        int nl = m.IndexOf('\n');
        return nl >= 0 ? m[..nl].TrimEnd() : m;
    }

    static Dictionary<string, T>? Merge<T>(IReadOnlyDictionary<string, T>? existing, Dictionary<string, T> added)
    {
        var result = existing is null ? new Dictionary<string, T>() : new Dictionary<string, T>(existing);
        foreach (var (k, v) in added) result[k] = v;
        return result.Count == 0 ? null : result;
    }

    // Drops the entries (for every layer and per layer) of the given weights.
    static Dictionary<string, double>? Without(IReadOnlyDictionary<string, double>? densities, IReadOnlyList<string> weights)
    {
        if (densities is null) return null;
        var result = densities.Where(kv => !weights.Any(w => kv.Key == w || kv.Key.EndsWith("." + w, StringComparison.Ordinal)))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        return result.Count == 0 ? null : result;
    }
}
