using System.CommandLine;
using System.Globalization;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Cli;

/// <summary>
/// `--act-sparsity` on the commands that run a model forward (eval, sample): activation sparsity applied when the
/// model is loaded for inference. Kinds: none; teal[:FILE] and wina[:FILE] (input thresholds from
/// `nanosparse teal calibrate`; FILE defaults to CHECKPOINT/teal.json or CHECKPOINT/wina.json); predictor:FILE[:SPARSITY[:HEADS]]
/// (Deja Vu predictors from `nanosparse dejavu train`; SPARSITY is the share of MLP neurons skipped per token, top-k by
/// predictor score; without it every neuron with a positive logit runs; HEADS is the attention heads computed per token
/// when the file holds head predictors; "-" leaves that half dense; see <see cref="PredictorSpec"/>).
/// </summary>
public sealed class ActSparsityOptions
{
    public const string PredictorKind = "predictor";

    public Option<string> Spec { get; } = new("--act-sparsity")
    {
        Description = "activation sparsity at inference: none, teal[:FILE] or wina[:FILE] (thresholds from `nanosparse teal calibrate`; " +
                      "FILE defaults to CHECKPOINT/teal.json or CHECKPOINT/wina.json), or predictor:FILE[:SPARSITY[:HEADS]] (Deja Vu predictors " +
                      "from `nanosparse dejavu train`; SPARSITY = share of MLP neurons skipped per token, default: the neurons with a " +
                      "positive predictor logit; HEADS = attention heads computed per token when the file holds head predictors, default: " +
                      "the heads with a positive logit; '-' leaves the MLPs or the heads dense)",
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
            var p = ParsePredictor(spec);
            return new Choice(PredictorKind, p.File, p.Sparsity, p);
        }
        int colon = spec.IndexOf(':');
        string method = colon < 0 ? spec : spec[..colon];
        if (!ActivationMethods.All.Contains(method))
            throw new UsageException($"--act-sparsity '{spec}': expected none, teal[:FILE], wina[:FILE] or {PredictorKind}:FILE[:SPARSITY[:HEADS]]");
        string path = colon < 0 ? Path.Combine(checkpointDir, method + ".json") : spec[(colon + 1)..];
        if (path.Length == 0) throw new UsageException($"--act-sparsity '{spec}': the file after ':' is empty");
        return new Choice(method, path, null);
    }

    /// <summary>A resolved --act-sparsity: the kind (teal, wina, predictor), its file and, for a predictor, the sparsity and the whole spec.</summary>
    public sealed record Choice(string Kind, string Path, double? Sparsity, PredictorSpec? Predictor = null);

    /// <summary>"predictor:FILE[:SPARSITY[:HEADS]]" parsed; a malformed value is a UsageException naming it.</summary>
    public static PredictorSpec ParsePredictor(string value)
    {
        try { return PredictorSpec.Parse(value[(PredictorKind.Length + 1)..], "--act-sparsity"); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
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
            predicted = r.Predictor!.Install(model).Mlp;
            return model;
        }
        var t = ActivationThresholds.Load(r.Path);
        if (t.Method != r.Kind)
            throw new InvalidDataException($"--act-sparsity {r.Kind}: {r.Path} holds {t.Method} thresholds, not {r.Kind}");
        thresholds = t;
        return ActivationSparsity.Apply(model, t, decodeCopies, r.Path);
    }

    /// <summary>One line per kind (MLP neurons, heads) on what the predicted parts computed in the rows they evaluated (eval's masked forward); null without any.</summary>
    public static string? Summary(Gpt gpt) => PredictorSpec.Summary(gpt);
}
