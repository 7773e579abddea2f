using System.CommandLine;
using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Cli;

/// <summary>
/// `--act-sparsity` on the commands that run a model forward (eval, sample): activation sparsity applied when the
/// model is loaded for inference. Kinds: none; teal[:FILE] and wina[:FILE] (input thresholds from
/// `nanosparse teal calibrate`; FILE defaults to CHECKPOINT/teal.json or CHECKPOINT/wina.json); predictor:FILE[:SPARSITY]
/// (Deja Vu predictors from `nanosparse dejavu train`; SPARSITY is the share of MLP neurons skipped per token, top-k by
/// predictor score; without it every neuron with a positive logit runs).
/// </summary>
public sealed class ActSparsityOptions
{
    public const string PredictorKind = "predictor";

    public Option<string> Spec { get; } = new("--act-sparsity")
    {
        Description = "activation sparsity at inference: none, teal[:FILE] or wina[:FILE] (thresholds from `nanosparse teal calibrate`; " +
                      "FILE defaults to CHECKPOINT/teal.json or CHECKPOINT/wina.json), or predictor:FILE[:SPARSITY] (Deja Vu predictors " +
                      "from `nanosparse dejavu train`; SPARSITY = share of MLP neurons skipped per token, default: the neurons with a " +
                      "positive predictor logit)",
        DefaultValueFactory = _ => "none",
    };

    public void AddTo(Command cmd) => cmd.Options.Add(Spec);

    /// <summary>What the option asks for; a bad value is a one-line usage error (checked before anything is loaded).</summary>
    public Choice? Resolve(ParseResult parse, string checkpointDir)
    {
        string spec = parse.GetValue(Spec) ?? "none";
        if (spec == "none") return null;
        if (spec.StartsWith(PredictorKind + ":", StringComparison.Ordinal))
        {
            var (file, sparsity) = ParsePredictor(spec);
            return new Choice(PredictorKind, file, sparsity);
        }
        int colon = spec.IndexOf(':');
        string method = colon < 0 ? spec : spec[..colon];
        if (!ActivationMethods.All.Contains(method))
            throw new UsageException($"--act-sparsity '{spec}': expected none, teal[:FILE], wina[:FILE] or {PredictorKind}:FILE[:SPARSITY]");
        string path = colon < 0 ? Path.Combine(checkpointDir, method + ".json") : spec[(colon + 1)..];
        if (path.Length == 0) throw new UsageException($"--act-sparsity '{spec}': the file after ':' is empty");
        return new Choice(method, path, null);
    }

    /// <summary>A resolved --act-sparsity: the kind (teal, wina, predictor), its file and, for a predictor, the sparsity.</summary>
    public sealed record Choice(string Kind, string Path, double? Sparsity);

    /// <summary>The predictor file and sparsity of "predictor:FILE[:SPARSITY]"; a malformed value is a UsageException naming it.</summary>
    public static (string File, double? Sparsity) ParsePredictor(string value)
    {
        string rest = value[(PredictorKind.Length + 1)..];
        double? sparsity = null;
        int colon = rest.LastIndexOf(':');
        if (colon > 0 && double.TryParse(rest.AsSpan(colon + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out double s))
        {
            if (!(s >= 0 && s < 1)) throw new UsageException($"--act-sparsity: sparsity {rest[(colon + 1)..]} must lie in [0, 1)");
            sparsity = s;
            rest = rest[..colon];
        }
        if (rest.Length == 0) throw new UsageException($"--act-sparsity \"{value}\": expected {PredictorKind}:FILE[:SPARSITY]");
        return (rest, sparsity);
    }

    /// <summary>
    /// The model with the option applied, or the model itself for none. TEAL / WINA: thresholds applied
    /// (<see cref="ActivationSparsity.Apply"/>; the file's method must be the one the option names, and its weights the
    /// model's). predictor: the MLPs replaced in place by predicted ones (returned in <paramref name="predicted"/>).
    /// </summary>
    public Gpt Apply(ParseResult parse, string checkpointDir, Gpt model, bool decodeCopies, out ActivationThresholds? thresholds,
        out PredictedMlp[]? predicted)
    {
        thresholds = null;
        predicted = null;
        if (Resolve(parse, checkpointDir) is not { } r) return model;
        if (r.Kind == PredictorKind)
        {
            predicted = PredictedMlp.Install(model, DejaVuPredictor.Load(r.Path), r.Sparsity, r.Path);
            return model;
        }
        var t = ActivationThresholds.Load(r.Path);
        if (t.Method != r.Kind)
            throw new InvalidDataException($"--act-sparsity {r.Kind}: {r.Path} holds {t.Method} thresholds, not {r.Kind}");
        thresholds = t;
        return ActivationSparsity.Apply(model, t, decodeCopies, r.Path);
    }

    /// <summary>One line on what the predicted MLPs computed in the rows they evaluated (eval's masked forward).</summary>
    public static string Summary(PredictedMlp[] parts)
    {
        var inv = CultureInfo.InvariantCulture;
        double selected = parts.Average(p => p.SelectedFraction), recall = parts.Average(p => p.Recall);
        string perLayer = string.Join(" ", parts.Select(p => string.Create(inv, $"{p.SelectedFraction:P1}/{p.Recall:P1}")));
        return string.Create(inv, $"predictor: MLP neurons computed {selected:P1} per token (sparsity {1 - selected:P1}), recall of the label {recall:P1}; per layer computed/recall: {perLayer}");
    }
}
