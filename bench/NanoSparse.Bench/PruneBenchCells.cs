using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace NanoSparse.Bench;

/// <summary>
/// One cell of `bench prune`'s matrix: a method (magnitude, random, wanda, sparsegpt; "dense" for the unpruned model),
/// a variant (plain, dsnot, owl, owl+dsnot) and a level ("0.5" … "0.8" unstructured, or "2:4", "4:8").
/// </summary>
public sealed record PruneCell(string Method, string Variant, string Level)
{
    public const string Dense = "dense", Plain = "plain", Dsnot = "dsnot", Owl = "owl", OwlDsnot = "owl+dsnot";
    public static readonly string[] Variants = [Plain, Dsnot, Owl, OwlDsnot];
    public static readonly PruneCell DenseCell = new(Dense, Plain, "0");

    public bool IsNm => Level.Contains(':');
    public bool UsesOwl => Variant is Owl or OwlDsnot;
    public bool UsesDsnot => Variant is Dsnot or OwlDsnot;

    /// <summary>The fraction of weights removed: the level, or 1 − N/M.</summary>
    public double Sparsity
    {
        get
        {
            if (!IsNm) return double.Parse(Level, CultureInfo.InvariantCulture);
            var p = Level.Split(':');
            return 1 - double.Parse(p[0], CultureInfo.InvariantCulture) / double.Parse(p[1], CultureInfo.InvariantCulture);
        }
    }

    /// <summary>A file name for the cell: "wanda-0.7-owl-dsnot", "sparsegpt-2of4-plain", "dense".</summary>
    public string Id => Method == Dense ? Dense : $"{Method}-{Level.Replace(":", "of")}-{Variant.Replace("+", "-")}";

    /// <summary>Level as shown: "50%" or "2:4".</summary>
    public string LevelLabel => Method == Dense ? "dense" : IsNm ? Level : $"{Sparsity * 100:0}%";

    public string Label => Method == Dense ? Dense : Variant == Plain ? Method : $"{Method} + {Variant.Replace("+", " + ")}";

    /// <summary>
    /// The matrix: every method × variant × level, where OWL is left out of N:M levels (an N:M pattern fixes every
    /// block's sparsity at 1 − N/M, so OWL's per-block sparsities have nothing to set); dense first, then variant by variant.
    /// </summary>
    public static List<PruneCell> Matrix(IEnumerable<string> methods, IEnumerable<string> variants, IEnumerable<string> levels)
    {
        var cells = new List<PruneCell> { DenseCell };
        var lv = levels.ToList();
        var ms = methods.ToList();
        // Variant by variant (every method's plain cells first), so a run cut short still has whole comparisons.
        foreach (var v in variants)
            foreach (var m in ms)
                foreach (var l in lv)
                {
                    var c = new PruneCell(m, v, l);
                    if (c.IsNm && c.UsesOwl) continue;
                    cells.Add(c);
                }
        return cells;
    }

    /// <summary>A level as given on the command line: a fraction in (0, 1) or N:M; normalised ("0.50" → "0.5").</summary>
    public static string ParseLevel(string text)
    {
        string t = text.Trim();
        if (t.Contains(':'))
        {
            var p = t.Split(':');
            if (p.Length == 2 && int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
                && int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int m) && n >= 1 && n < m)
                return $"{n}:{m}";
        }
        else if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s > 0 && s < 1)
            return s.ToString("0.####", CultureInfo.InvariantCulture);
        throw new ArgumentException($"--levels: '{text}' is neither a sparsity in (0, 1) nor N:M with 1 <= N < M (e.g. 0.5, 2:4)");
    }
}

/// <summary>What one cell measured. Speed fields are re-timed by --remeasure-speed; the rest is fixed once pruned.</summary>
public sealed record PruneCellResult
{
    public const string FormatName = "nanosparse-prune-bench-cell";

    [JsonPropertyName("format")] public string Format { get; init; } = FormatName;
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    /// <summary>The settings every cell of one matrix shares (model hash, data, windows, seeds); a cached cell counts only when they match.</summary>
    [JsonPropertyName("fingerprint")] public string Fingerprint { get; init; } = "";
    [JsonPropertyName("method")] public string Method { get; init; } = "";
    [JsonPropertyName("variant")] public string Variant { get; init; } = "";
    [JsonPropertyName("level")] public string Level { get; init; } = "";
    /// <summary>Zeros over all pruned weights / their size.</summary>
    [JsonPropertyName("sparsity_reached")] public double SparsityReached { get; init; }
    [JsonPropertyName("val_loss")] public double ValLoss { get; init; }
    [JsonPropertyName("perplexity")] public double Perplexity { get; init; }
    /// <summary>Bytes of the pruned checkpoint's model.safetensors.</summary>
    [JsonPropertyName("model_bytes")] public long ModelBytes { get; init; }
    /// <summary>Wall seconds of pruning (calibration included) and writing the checkpoint.</summary>
    [JsonPropertyName("prune_seconds")] public double PruneSeconds { get; init; }
    /// <summary>Folder of the pruned checkpoint, relative to the results folder ("" for dense: the input itself).</summary>
    [JsonPropertyName("model_dir")] public string ModelDir { get; init; } = "";
    [JsonPropertyName("decode_tokens")] public int DecodeTokens { get; init; }
    [JsonPropertyName("decode_tokens_per_s")] public double? DecodeTokensPerSecond { get; init; }
    /// <summary>The dense model's decode tokens/s, timed in turns with this cell's (the speed-up's denominator).</summary>
    [JsonPropertyName("dense_decode_tokens_per_s")] public double? DenseDecodeTokensPerSecond { get; init; }
    [JsonPropertyName("threads")] public int Threads { get; init; }
    [JsonPropertyName("speed_measured_utc")] public string? SpeedMeasuredUtc { get; init; }

    [JsonIgnore] public PruneCell Cell => new(Method, Variant, Level);
    [JsonIgnore] public double? DecodeSpeedup => DecodeTokensPerSecond / DenseDecodeTokensPerSecond;
}

/// <summary>
/// The per-cell cache of `bench prune`: one JSON file per cell (cells/ID.json) under the results folder, written
/// atomically, so an interrupted run resumes where it stopped. A file that is missing, unreadable, of another format
/// or made with other settings (fingerprint) is a miss, never an error: the cell is measured again.
/// </summary>
public sealed class PruneCellCache(string folder)
{
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public string Folder { get; } = folder;

    public string PathOf(PruneCell cell) => Path.Combine(Folder, "cells", cell.Id + ".json");

    public PruneCellResult? TryLoad(PruneCell cell, string fingerprint)
    {
        string path = PathOf(cell);
        if (!File.Exists(path)) return null;
        PruneCellResult? r;
        try { r = JsonSerializer.Deserialize<PruneCellResult>(File.ReadAllText(path), Json); }
        catch (Exception e) when (e is JsonException or IOException or NotSupportedException) { return null; }
        if (r is null || r.Format != PruneCellResult.FormatName || r.Version != 1 || r.Fingerprint != fingerprint) return null;
        if (r.Method != cell.Method || r.Variant != cell.Variant || r.Level != cell.Level) return null;
        if (!double.IsFinite(r.Perplexity)) return null;
        return r;
    }

    /// <summary>Writes the cell's file atomically (temporary file in the same folder, flushed, renamed over).</summary>
    public void Save(PruneCellResult result)
    {
        string path = PathOf(result.Cell);
        WriteAtomic(path, JsonSerializer.SerializeToUtf8Bytes(result, Json));
    }

    public static void WriteAtomic(string path, ReadOnlySpan<byte> bytes)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>The fingerprint of a matrix's shared settings, as stored in each cell.</summary>
    public static string Fingerprint(string modelSha256, string data, int calibrationWindows, ulong calibrationSeed, int evalWindows,
        ulong evalSeed, string storageFormat) =>
        new JsonObject
        {
            ["model_sha256"] = modelSha256, ["data"] = Path.GetFullPath(data), ["calibration_windows"] = calibrationWindows,
            ["calibration_seed"] = calibrationSeed, ["eval_windows"] = evalWindows, ["eval_seed"] = evalSeed, ["format"] = storageFormat,
        }.ToJsonString();
}

/// <summary>One of the issue's expectations, checked against the matrix: held, failed, or not checkable (cells missing).</summary>
public sealed record PruneExpectation(string Name, bool? Held, string Detail);

/// <summary>
/// The pruning issue's expectations on `bench prune`'s matrix (perplexities by cell):
///   1. SparseGPT ≤ Wanda ≤ magnitude ≤ random, plain variants, at every level from 50% up (N:M levels included);
///   2. SparseGPT at 50% within 3% of dense: ppl ≤ 1.03 · dense;
///   3. OWL or DSnoT cutting uniform Wanda's 70% perplexity by at least a third: the best of Wanda 70% + DSnoT,
///      + OWL, + OWL + DSnoT ≤ (2/3) · plain Wanda 70%.
/// </summary>
public static class PruneExpectations
{
    public static readonly string[] Order = ["sparsegpt", "wanda", "magnitude", "random"];

    public static List<PruneExpectation> Check(IReadOnlyDictionary<PruneCell, double> ppl, IEnumerable<string> levels)
    {
        var inv = CultureInfo.InvariantCulture;
        var list = new List<PruneExpectation>();
        foreach (var level in levels)
        {
            var cell0 = new PruneCell(Order[0], PruneCell.Plain, level);
            if (cell0.Sparsity < 0.5 - 1e-12) continue;
            string name = $"sparsegpt <= wanda <= magnitude <= random at {cell0.LevelLabel}";
            var values = Order.Select(m => ppl.TryGetValue(new PruneCell(m, PruneCell.Plain, level), out double v) ? v : (double?)null).ToArray();
            if (values.Any(v => v is null))
            {
                list.Add(new(name, null, "not measured: " + string.Join(", ", Order.Where((_, i) => values[i] is null))));
                continue;
            }
            var broken = new List<string>();
            for (int i = 0; i + 1 < Order.Length; i++)
                if (!(values[i] <= values[i + 1])) broken.Add($"{Order[i]} {values[i]!.Value.ToString("0.###", inv)} > {Order[i + 1]} {values[i + 1]!.Value.ToString("0.###", inv)}");
            string all = string.Join(" / ", values.Select(v => v!.Value.ToString("0.###", inv)));
            list.Add(new(name, broken.Count == 0, broken.Count == 0 ? all : $"{all}; fails: {string.Join("; ", broken)}"));
        }

        {
            string name = "sparsegpt 50% within 3% of dense";
            bool hasDense = ppl.TryGetValue(PruneCell.DenseCell, out double dense);
            bool hasSgpt = ppl.TryGetValue(new PruneCell("sparsegpt", PruneCell.Plain, "0.5"), out double sgpt);
            if (!hasDense || !hasSgpt) list.Add(new(name, null, "not measured: " + (hasDense ? "sparsegpt 50%" : "dense")));
            else
            {
                double above = sgpt / dense - 1;
                list.Add(new(name, sgpt <= 1.03 * dense, string.Create(inv, $"{sgpt:0.###} vs dense {dense:0.###}: {above * 100:+0.0;-0.0}%")));
            }
        }

        {
            string name = "OWL or DSnoT cut uniform wanda's 70% perplexity by >= 1/3";
            if (!ppl.TryGetValue(new PruneCell("wanda", PruneCell.Plain, "0.7"), out double plain))
                list.Add(new(name, null, "not measured: wanda 70%"));
            else
            {
                var others = new[] { PruneCell.Dsnot, PruneCell.Owl, PruneCell.OwlDsnot }
                    .Where(v => ppl.ContainsKey(new PruneCell("wanda", v, "0.7")))
                    .Select(v => (Variant: v, Ppl: ppl[new PruneCell("wanda", v, "0.7")])).ToList();
                if (others.Count == 0) list.Add(new(name, null, "not measured: wanda 70% with dsnot, owl or owl+dsnot"));
                else
                {
                    var best = others.MinBy(o => o.Ppl);
                    string each = string.Join(", ", others.Select(o => string.Create(inv, $"+{o.Variant} {o.Ppl:0.###} ({(1 - o.Ppl / plain) * 100:+0.0;-0.0}% cut)")));
                    list.Add(new(name, best.Ppl <= plain * 2.0 / 3.0, string.Create(inv, $"plain {plain:0.###}; {each}; needs <= {plain * 2 / 3:0.###}")));
                }
            }
        }
        return list;
    }
}
