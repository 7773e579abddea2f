using System.CommandLine;
using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Cli;

/// <summary>
/// `--act-sparsity KIND:...` on eval and sample: activation sparsity applied when the model is loaded for inference.
/// Kinds: predictor:FILE[:SPARSITY] (Deja Vu predictors from `nanosparse dejavu train`; SPARSITY is the share of MLP
/// neurons skipped per token, top-k by predictor score; without it every neuron with a positive logit runs).
/// </summary>
public sealed class ActSparsityOptions
{
    public const string PredictorKind = "predictor";

    public Option<string?> Option { get; } = new("--act-sparsity")
    {
        Description = "activation sparsity at inference: predictor:FILE[:SPARSITY] (Deja Vu predictors; SPARSITY = share of MLP " +
                      "neurons skipped per token, default: the neurons with a positive predictor logit)",
    };

    public void AddTo(Command cmd) => cmd.Options.Add(Option);

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
        if (rest.Length == 0) throw new UsageException($"--act-sparsity \"{value}\": expected predictor:FILE[:SPARSITY]");
        return (rest, sparsity);
    }

    /// <summary>Applies the option to a model held for inference; returns the predicted MLP parts (null without the option).</summary>
    public PredictedMlp[]? Apply(ParseResult parse, Gpt gpt)
    {
        string? value = parse.GetValue(Option);
        if (value is null) return null;
        if (!value.StartsWith(PredictorKind + ":", StringComparison.Ordinal))
            throw new UsageException($"--act-sparsity \"{value}\": unknown kind; expected {PredictorKind}:FILE[:SPARSITY]");
        var (file, sparsity) = ParsePredictor(value);
        return PredictedMlp.Install(gpt, DejaVuPredictor.Load(file), sparsity, file);
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
