using System.Globalization;
using NanoSparse.Nn;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// How a Deja Vu predictor file is applied to a model, written FILE[:S[:HEADS]] (after "predictor:" on the command line):
///   S      MLP neuron sparsity in [0, 1) (top-k per token); empty: the neurons with a positive logit; "-": MLPs dense
///   HEADS  attention heads computed per token (top-k, 1..n_head); empty: the heads with a positive logit; "-": dense;
///          "oracleK": the K heads whose outputs are truly largest (every head computed, then masked: a bound on what a
///          perfect predictor would give, for quality only)
/// A part the file does not hold stays dense when its field is empty or absent; asking for it is an error.
/// </summary>
public sealed record PredictorSpec(string File, bool UseMlp, double? Sparsity, bool UseHeads, int? KeepHeads, bool OracleHeads = false)
{
    /// <summary>Parses FILE[:S[:HEADS]]; a malformed value is an ArgumentException naming it (<paramref name="option"/> first).</summary>
    public static PredictorSpec Parse(string value, string option = "--act-sparsity predictor")
    {
        var fields = value.Split(':');
        string? mlp = null, heads = null;
        int fileFields = fields.Length;
        if (fields.Length >= 3 && IsHeads(fields[^1]) && IsSparsity(fields[^2])) { mlp = fields[^2]; heads = fields[^1]; fileFields -= 2; }
        else if (fields.Length >= 2 && IsSparsity(fields[^1])) { mlp = fields[^1]; fileFields -= 1; }
        string file = string.Join(':', fields.Take(fileFields));
        if (file.Length == 0) throw new ArgumentException($"{option} \"{value}\": expected FILE[:SPARSITY[:HEADS]]");
        double? sparsity = null;
        if (mlp is { Length: > 0 } and not "-")
        {
            double s = double.Parse(mlp, NumberStyles.Float, CultureInfo.InvariantCulture);
            if (!(s >= 0 && s < 1)) throw new ArgumentException($"{option}: sparsity {mlp} must lie in [0, 1)");
            sparsity = s;
        }
        int? keep = null;
        bool oracle = heads is not null && heads.StartsWith(Oracle, StringComparison.Ordinal);
        if (heads is { Length: > 0 } and not "-")
        {
            int k = int.Parse(oracle ? heads[Oracle.Length..] : heads, NumberStyles.None, CultureInfo.InvariantCulture);
            if (k < 1) throw new ArgumentException($"{option}: heads per token {heads} must be at least 1");
            keep = k;
        }
        return new PredictorSpec(file, mlp != "-", sparsity, heads != "-", keep, oracle);
    }

    const string Oracle = "oracle";

    static bool IsSparsity(string f) => f.Length == 0 || f == "-" || double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out _);
    static bool IsHeads(string f) => f.Length == 0 || f == "-"
        || int.TryParse(f.StartsWith(Oracle, StringComparison.Ordinal) ? f[Oracle.Length..] : f, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    /// <summary>
    /// Loads the file and swaps the model's MLPs and/or attention parts for predicted ones (model held for inference).
    /// Returns the parts installed (empty arrays for a part left dense).
    /// </summary>
    public (PredictedMlp[] Mlp, PredictedHeadsAttention[] Heads) Install(Gpt gpt)
    {
        var predictor = DejaVuPredictor.Load(File);
        if (Sparsity is not null && !predictor.HasMlp)
            throw new ArgumentException($"predictor {File}: an MLP sparsity was given but the file holds no MLP predictors (kinds \"{predictor.Kinds}\")");
        if (KeepHeads is not null && !predictor.HasHeads)
            throw new ArgumentException($"predictor {File}: heads per token were given but the file holds no head predictors (kinds \"{predictor.Kinds}\"); train them with `dejavu train --target heads` or both");
        predictor.CheckMatches(gpt.Config, File);
        var heads = UseHeads && predictor.HasHeads ? PredictedHeadsAttention.Install(gpt, predictor, KeepHeads, File) : [];
        foreach (var h in heads) h.Oracle = OracleHeads;
        var mlp = UseMlp && predictor.HasMlp ? PredictedMlp.Install(gpt, predictor, Sparsity, File) : [];
        if (mlp.Length == 0 && heads.Length == 0)
            throw new ArgumentException($"predictor {File}: nothing to apply (kinds \"{predictor.Kinds}\", MLP {(UseMlp ? "on" : "-")}, heads {(UseHeads ? "on" : "-")})");
        return (mlp, heads);
    }

    /// <summary>One line per kind on what the predicted parts computed in the rows Forward evaluated; null when the model has none.</summary>
    public static string? Summary(Gpt gpt)
    {
        var mlp = gpt.Blocks.Select(b => b.FeedForward).OfType<PredictedMlp>().ToList();
        var heads = gpt.Blocks.Select(b => b.Attention).OfType<PredictedHeadsAttention>().ToList();
        var lines = new List<string>();
        if (mlp.Count > 0)
        {
            var inv = CultureInfo.InvariantCulture;
            double selected = mlp.Average(p => p.SelectedFraction), recall = mlp.Average(p => p.Recall);
            string perLayer = string.Join(" ", mlp.Select(p => string.Create(inv, $"{p.SelectedFraction:P1}/{p.Recall:P1}")));
            lines.Add(string.Create(inv, $"predictor: MLP neurons computed {selected:P1} per token (sparsity {1 - selected:P1}), recall of the label {recall:P1}; per layer computed/recall: {perLayer}"));
        }
        if (heads.Count > 0) lines.Add(PredictedHeadsAttention.Summary(heads));
        return lines.Count == 0 ? null : string.Join(Environment.NewLine, lines);
    }
}
