using System.CommandLine;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Cli;

/// <summary>--act-sparsity for the commands that run a model forward (eval, sample): TEAL / WINA input thresholds.</summary>
public sealed class ActSparsityOptions
{
    public Option<string> Spec { get; } = new("--act-sparsity")
    {
        Description = "activation sparsity: none, teal[:FILE] or wina[:FILE] (thresholds from `nanosparse teal calibrate`; " +
                      "FILE defaults to CHECKPOINT/teal.json or CHECKPOINT/wina.json)",
        DefaultValueFactory = _ => "none",
    };

    public void AddTo(Command cmd) => cmd.Options.Add(Spec);

    /// <summary>The thresholds file named by the option and its method, or null for none; a bad value is a one-line usage error.</summary>
    public (string Method, string Path)? Resolve(ParseResult parse, string checkpointDir)
    {
        string spec = parse.GetValue(Spec) ?? "none";
        if (spec == "none") return null;
        int colon = spec.IndexOf(':');
        string method = colon < 0 ? spec : spec[..colon];
        if (!ActivationMethods.All.Contains(method))
            throw new UsageException($"--act-sparsity '{spec}': expected none, teal[:FILE] or wina[:FILE]");
        string path = colon < 0 ? System.IO.Path.Combine(checkpointDir, method + ".json") : spec[(colon + 1)..];
        if (path.Length == 0) throw new UsageException($"--act-sparsity '{spec}': the file after ':' is empty");
        return (method, path);
    }

    /// <summary>
    /// The model with the thresholds applied (<see cref="ActivationSparsity.Apply"/>), or the model itself for none. The
    /// file's method must be the one the option names, and its weights the model's.
    /// </summary>
    public Gpt Apply(ParseResult parse, string checkpointDir, Gpt model, bool decodeCopies, out ActivationThresholds? thresholds)
    {
        thresholds = null;
        if (Resolve(parse, checkpointDir) is not { } r) return model;
        var t = ActivationThresholds.Load(r.Path);
        if (t.Method != r.Method)
            throw new InvalidDataException($"--act-sparsity {r.Method}: {r.Path} holds {t.Method} thresholds, not {r.Method}");
        thresholds = t;
        return ActivationSparsity.Apply(model, t, decodeCopies, r.Path);
    }
}
