using System.Globalization;
using NanoSparse.Numerics;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// The sparse layouts' factories, by registered name, until they join LinearWeightLayouts (one line each there):
///   "csr"  density d in (0, 1]         uniformly random pattern of round(d·Out·In) entries
///   "nm"   N and M (2:4, 1:4, 2:8, 4:8) N random positions in every group of M inputs; M must divide In
///   "bsr"  block R×C and density d      round(d·blocks) random blocks of R×C; R | Out, C | In
/// A spec string names one: "csr:0.1", "nm:2:4", "bsr:4x4:0.25".
/// </summary>
internal static class LinearWeightLayoutsSparse
{
    public static readonly IReadOnlyDictionary<string, Func<int, int, string[], Rng, ILinearWeight>> Factories =
        new Dictionary<string, Func<int, int, string[], Rng, ILinearWeight>>
        {
            ["csr"] = (o, i, a, rng) => CsrLinearWeight.Random(o, i, Density(a, 0, "csr:DENSITY"), rng),
            ["nm"] = (o, i, a, rng) => NmLinearWeight.Random(o, i, Int(a, 0, "nm:N:M"), Int(a, 1, "nm:N:M"), rng),
            ["bsr"] = (o, i, a, rng) =>
            {
                var (r, c) = Block(a, 0, "bsr:RxC:DENSITY");
                return BsrLinearWeight.Random(o, i, r, c, Density(a, 1, "bsr:RxC:DENSITY"), rng);
            },
        };

    /// <summary>The layout a spec names ("csr:0.1", "nm:2:4", "bsr:4x4:0.25") for a Linear of the given shape.</summary>
    public static ILinearWeight Create(string spec, int outFeatures, int inFeatures, Rng rng)
    {
        var parts = spec.Split(':');
        if (!Factories.TryGetValue(parts[0], out var factory))
            throw new ArgumentException($"weight layout '{spec}': unknown layout '{parts[0]}', expected one of {string.Join(", ", Factories.Keys)}", nameof(spec));
        return factory(outFeatures, inFeatures, parts[1..], rng);
    }

    static string At(string[] a, int index, string form) =>
        index < a.Length ? a[index] : throw new ArgumentException($"weight layout: expected {form}, got {a.Length} argument(s) after the name");

    static double Density(string[] a, int index, string form)
    {
        string v = At(a, index, form);
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d > 0 && d <= 1
            ? d : throw new ArgumentException($"weight layout {form}: density '{v}' is not a number in (0, 1]");
    }

    static int Int(string[] a, int index, string form)
    {
        string v = At(a, index, form);
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n : throw new ArgumentException($"weight layout {form}: '{v}' is not an integer");
    }

    static (int, int) Block(string[] a, int index, string form)
    {
        string v = At(a, index, form);
        var p = v.Split('x');
        return p.Length == 2 && int.TryParse(p[0], out int r) && int.TryParse(p[1], out int c)
            ? (r, c) : throw new ArgumentException($"weight layout {form}: block '{v}' is not RxC");
    }
}
