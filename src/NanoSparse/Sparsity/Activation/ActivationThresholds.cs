using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Data;
using NanoSparse.Nn;

namespace NanoSparse.Sparsity.Activation;

/// <summary>The scores activation thresholds compare.</summary>
public static class ActivationMethods
{
    /// <summary>TEAL: |x_i| against one threshold per weight.</summary>
    public const string Teal = "teal";
    /// <summary>WINA: |x_i|·‖W_:,i‖₂ against one threshold per weight.</summary>
    public const string Wina = "wina";
    public static readonly IReadOnlyList<string> All = [Teal, Wina];
}

/// <summary>One block Linear weight's calibrated threshold.</summary>
/// <param name="Name">state_dict name, "transformer.h.0.mlp.c_fc.weight"</param>
/// <param name="OutFeatures">Out of W (Out, In)</param>
/// <param name="InFeatures">In of W: the inputs thresholded</param>
/// <param name="Threshold">t: an input is kept when its score (|x_i|, or |x_i|·‖W_:,i‖₂ for WINA) is ≥ t</param>
/// <param name="CalibrationSparsity">fraction of the calibration scores below t</param>
public sealed record WeightThreshold(string Name, int OutFeatures, int InFeatures, float Threshold, double CalibrationSparsity);

/// <summary>
/// The thresholds of every block Linear weight of one model, as calibrated by <see cref="TealCalibration"/>, and the
/// small JSON file that holds them next to a checkpoint (teal.json / wina.json):
///   { "format": "nanosparse-activation-thresholds", "version": 1, "method": "teal" | "wina", "target_sparsity": 0.4,
///     "n_layer": 6, "n_embd": 256, "allocation": "uniform" | "greedy", "calibration": { "data", "windows", "block_size", "seed", "rows_sampled" },
///     "weights": [ { "name", "out_features", "in_features", "threshold", "calibration_sparsity" }, ... ] }
/// </summary>
public sealed record ActivationThresholds
{
    public const string Format = "nanosparse-activation-thresholds";
    public const int Version = 1;

    public required string Method { get; init; }
    public required double TargetSparsity { get; init; }
    public required int NLayer { get; init; }
    public required int NEmbd { get; init; }
    public required IReadOnlyList<WeightThreshold> Weights { get; init; }
    public string? CalibrationData { get; init; }
    public int CalibrationWindows { get; init; }
    public int CalibrationBlockSize { get; init; }
    public ulong CalibrationSeed { get; init; }
    public long CalibrationRowsSampled { get; init; }
    /// <summary>"uniform" (every weight at the target) or "greedy" (<see cref="TealAllocation"/>: per weight within each block, the block's average by weights read at the target).</summary>
    public string Allocation { get; init; } = TealAllocation.Uniform;

    /// <summary>The target sparsity checked: in [0, 1).</summary>
    public static double CheckSparsity(double sparsity, string what)
    {
        if (!(sparsity >= 0 && sparsity < 1))
            throw new ArgumentException($"{what} ({sparsity.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1)");
        return sparsity;
    }

    public static string CheckMethod(string method, string what)
    {
        if (!ActivationMethods.All.Contains(method))
            throw new ArgumentException($"{what} \"{method}\" is not an activation-sparsity method: expected {string.Join(" or ", ActivationMethods.All)}");
        return method;
    }

    /// <summary>Checks that these thresholds are for <paramref name="model"/>: one per block Linear weight, same shapes.</summary>
    public void CheckMatches(Gpt model, string source)
    {
        var expected = new Dictionary<string, (int Out, int In)>();
        foreach (var p in model.Parameters)
            if (p.Layout is { } w && p.Name.StartsWith("transformer.h.", StringComparison.Ordinal)) expected[p.Name] = (w.OutFeatures, w.InFeatures);
        if (NLayer != model.Config.NLayer || NEmbd != model.Config.NEmbd)
            throw new InvalidDataException($"{source}: thresholds are for n_layer {NLayer}, n_embd {NEmbd}, but the model has n_layer {model.Config.NLayer}, n_embd {model.Config.NEmbd}");
        var seen = new HashSet<string>();
        foreach (var t in Weights)
        {
            if (!expected.TryGetValue(t.Name, out var shape))
                throw new InvalidDataException($"{source}: weights: \"{t.Name}\" is not a block Linear weight of this model (expected names like transformer.h.0.mlp.c_fc.weight)");
            if (shape != (t.OutFeatures, t.InFeatures))
                throw new InvalidDataException($"{source}: weights: {t.Name} is ({t.OutFeatures}, {t.InFeatures}) in the file but ({shape.Out}, {shape.In}) in the model");
            if (!seen.Add(t.Name)) throw new InvalidDataException($"{source}: weights: {t.Name} appears twice");
        }
        var missing = expected.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{source}: weights: no threshold for {missing[0]}{(missing.Count > 1 ? $" (and {missing.Count - 1} more)" : "")}; expected one per block Linear weight ({expected.Count})");
    }

    public void Save(string path)
    {
        var weights = new JsonArray();
        foreach (var w in Weights)
            weights.Add(new JsonObject
            {
                ["name"] = w.Name, ["out_features"] = w.OutFeatures, ["in_features"] = w.InFeatures,
                ["threshold"] = w.Threshold, ["calibration_sparsity"] = w.CalibrationSparsity,
            });
        var root = new JsonObject
        {
            ["format"] = Format, ["version"] = Version, ["method"] = Method, ["target_sparsity"] = TargetSparsity,
            ["n_layer"] = NLayer, ["n_embd"] = NEmbd, ["allocation"] = Allocation,
            ["calibration"] = new JsonObject
            {
                ["data"] = CalibrationData, ["windows"] = CalibrationWindows, ["block_size"] = CalibrationBlockSize,
                ["seed"] = CalibrationSeed, ["rows_sampled"] = CalibrationRowsSampled,
            },
            ["weights"] = weights,
        };
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(root, new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.Write(path, fs => fs.Write(bytes));
    }

    /// <summary>Reads a thresholds file; a malformed one is an InvalidDataException naming the file and the field.</summary>
    public static ActivationThresholds Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"activation thresholds file {path} does not exist (make it with `nanosparse teal calibrate`)", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (root is not JsonObject o) throw new InvalidDataException($"{path}: expected a JSON object");
        string format = Str(o, "format", path);
        if (format != Format) throw new InvalidDataException($"{path}: format \"{format}\", expected \"{Format}\"");
        int version = Int(o, "version", path);
        if (version != Version) throw new InvalidDataException($"{path}: version {version}, expected {Version}");
        string method = Str(o, "method", path);
        if (!ActivationMethods.All.Contains(method)) throw new InvalidDataException($"{path}: method \"{method}\", expected {string.Join(" or ", ActivationMethods.All)}");
        double target = Num(o, "target_sparsity", path);
        if (!(target >= 0 && target < 1)) throw new InvalidDataException($"{path}: target_sparsity {target.ToString(CultureInfo.InvariantCulture)}, expected a value in [0, 1)");
        if (o["weights"] is not JsonArray arr) throw new InvalidDataException($"{path}: weights missing or not an array");
        var list = new List<WeightThreshold>();
        for (int i = 0; i < arr.Count; i++)
        {
            if (arr[i] is not JsonObject w) throw new InvalidDataException($"{path}: weights[{i}] is not an object");
            string where = $"{path}: weights[{i}]";
            float t = (float)Num(w, "threshold", where);
            if (!(t >= 0) || float.IsInfinity(t)) throw new InvalidDataException($"{where}.threshold {t.ToString(CultureInfo.InvariantCulture)}, expected a finite value >= 0");
            int outF = Int(w, "out_features", where), inF = Int(w, "in_features", where);
            if (outF <= 0 || inF <= 0) throw new InvalidDataException($"{where}: shape ({outF}, {inF}), expected positive features");
            list.Add(new WeightThreshold(Str(w, "name", where), outF, inF, t, w["calibration_sparsity"] is JsonValue cs ? cs.GetValue<double>() : double.NaN));
        }
        var cal = o["calibration"] as JsonObject;
        return new ActivationThresholds
        {
            Method = method, TargetSparsity = target, NLayer = Int(o, "n_layer", path), NEmbd = Int(o, "n_embd", path), Weights = list,
            CalibrationData = cal?["data"]?.GetValue<string>(), CalibrationWindows = cal?["windows"]?.GetValue<int>() ?? 0,
            CalibrationBlockSize = cal?["block_size"]?.GetValue<int>() ?? 0, CalibrationSeed = cal?["seed"]?.GetValue<ulong>() ?? 0,
            CalibrationRowsSampled = cal?["rows_sampled"]?.GetValue<long>() ?? 0,
            Allocation = o["allocation"] is null ? TealAllocation.Uniform : Str(o, "allocation", path),
        };
    }

    static string Str(JsonObject o, string key, string where) =>
        o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new InvalidDataException($"{where}: {key} missing or not a string");

    static int Int(JsonObject o, string key, string where) =>
        o[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : throw new InvalidDataException($"{where}: {key} missing or not an integer");

    static double Num(JsonObject o, string key, string where) =>
        o[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d : throw new InvalidDataException($"{where}: {key} missing or not a number");
}
