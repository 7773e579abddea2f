using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NanoSparse.IO;
using NanoSparse.Nn;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// The decode peers of <c>bench sparse-model</c>, run on the dense model of the run (the same weights our dense rows
/// decode with): ONNX Runtime in this process (<see cref="OrtDecoder"/>, on the graph bench/peers/export_onnx.py exports
/// from those weights and checks against PyTorch), and PyTorch's own KV-cache decode loop on the same weights (the same
/// script, <c>--time-decode</c>), which says whether ONNX Runtime is the strong peer. Owns a scratch folder with the
/// exported checkpoint and graph per vocabulary, removed by <see cref="Dispose"/>.
/// </summary>
public sealed class DecodePeers : IDisposable
{
    public const string OrtContender = "ONNX Runtime";
    public const string TorchContender = "PyTorch (KV cache)";
    public const double Tolerance = 1e-4;

    /// <summary>ONNX Runtime's logits on the prompt against our dense model's, before its timing.</summary>
    public sealed record Check(string Model, int Threads, double MaxAbsDiff, double Scale, bool Ok);

    readonly string _python;
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"nanosparse-ort-{Guid.NewGuid():N}");
    readonly Dictionary<int, (string Checkpoint, string Onnx)?> _exported = new();
    readonly string? _missing;

    public List<Check> Checks { get; } = new();
    /// <summary>export_onnx.py's report (sizes, the graph's check against PyTorch) per model.</summary>
    public List<(string Model, JsonElement Report)> Exports { get; } = new();

    public DecodePeers(string python)
    {
        _python = python;
        _missing = MissingPrerequisite(python);
        if (_missing != null)
            AnsiConsole.MarkupLine($"[yellow]ONNX Runtime and PyTorch decode peers skipped:[/] {Markup.Escape(_missing)}");
    }

    /// <summary>What the export needs and this machine lacks (null: nothing): the interpreter, torch, onnx, SciPy.</summary>
    public static string? MissingPrerequisite(string python)
    {
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("import importlib.util as u, sys; m = [n for n in ('torch', 'onnx', 'scipy') if u.find_spec(n) is None]; print(' '.join(m)); sys.exit(1 if m else 0)");
        try
        {
            using var p = Process.Start(psi)!;
            string missing = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            if (p.ExitCode == 0) return null;
            return missing.Length > 0
                ? $"{python} has no Python module(s) {missing} (Debian/Ubuntu: sudo apt-get install {string.Join(" ", missing.Split(' ').Select(m => $"python3-{m}"))})"
                : $"{python} exited with code {p.ExitCode} when asked for torch, onnx and scipy";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return $"--python '{python}' not found (expected a Python 3 with torch, onnx and scipy; Debian/Ubuntu: sudo apt-get install python3-torch python3-onnx python3-scipy)";
        }
    }

    public bool Available => _missing == null;

    /// <summary>
    /// Rows of both peers for the dense model <paramref name="gpt"/> at every thread count: exports it once per
    /// vocabulary, checks ONNX Runtime's prompt logits against ours, then times the same decode as our rows (the prompt,
    /// then N steps each feeding the token picked from the last logits' bits back in).
    /// </summary>
    public IEnumerable<SparseModelBench.Row> Rows(Gpt gpt, string model, int[] promptTokens, SparseModelBench.Options options, int round)
    {
        if (!Available) yield break;
        var config = gpt.Config;
        if (!_exported.TryGetValue(config.VocabSize, out var files))
            _exported[config.VocabSize] = files = Export(gpt, model);
        if (files is not var (checkpoint, onnx)) yield break;

        var prompt = promptTokens.AsSpan(0, options.Prompt).ToArray();
        var cache = gpt.CreateKvCache();
        var ours = gpt.ForwardCached(cache, prompt).ToArray();
        foreach (int threads in options.Threads)
        {
            using var ort = new OrtDecoder(onnx, config, threads);
            var check = Compare(model, threads, ours, ort.Prefill(prompt));
            Checks.Add(check);
            if (round == 0 || !check.Ok)
                AnsiConsole.MarkupLine(check.Ok
                    ? $"[grey]  {OrtContender} check, {Markup.Escape(model)}, {threads} thread(s): logits on the {prompt.Length}-token prompt equal our dense model's " +
                      $"(max |diff| {check.MaxAbsDiff:G3} ≤ {Tolerance:G} × {check.Scale:G3})[/]"
                    : $"[red]WARNING[/]: {OrtContender}'s logits on the {prompt.Length}-token prompt differ from our dense model's by up to {check.MaxAbsDiff:G3} " +
                      $"(tolerance {Tolerance:G} × {check.Scale:G3}), {Markup.Escape(model)}, {threads} thread(s): the peer does not run the same model");
            (double Wall, double Cpu) Generate()
            {
                var logits = ort.Prefill(prompt);
                double c0 = SparseModelBench.ProcessCpuSeconds();
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < options.NewTokens; i++)
                    logits = ort.Decode(SparseModelBench.NextToken(logits, i, config.VocabSize));
                return (Stopwatch.GetElapsedTime(t0).TotalSeconds, SparseModelBench.ProcessCpuSeconds() - c0);
            }
            Generate();   // a fresh session: first runs size its arena
            var runs = Enumerable.Range(0, options.Reps).Select(_ => Generate()).ToArray();
            var s = runs.Select(r => options.NewTokens / r.Wall).ToArray();
            var cpu = runs.Select(r => options.NewTokens / r.Cpu).ToArray();
            AnsiConsole.MarkupLine($"[grey]  decode {OrtContender} dense vocab {config.VocabSize} {threads} thread(s): {BenchUtil.Median(s):F1} tokens/s ({BenchUtil.Median(cpu):F1} per CPU-second)[/]");
            yield return new SparseModelBench.Row("decode", model, "dense", "dense", 1.0, OrtContender, threads, s, BenchUtil.Median(s), "tokens/s", cpu);
        }
        foreach (int threads in options.Threads)
        {
            var r = TorchPeer.Run(_python, "export_onnx.py",
            [
                "--checkpoint", checkpoint, "--time-decode", "--prompt", options.Prompt.ToString(CultureInfo.InvariantCulture),
                "--new-tokens", options.NewTokens.ToString(CultureInfo.InvariantCulture), "--repeats", options.Reps.ToString(CultureInfo.InvariantCulture),
                "--threads", threads.ToString(CultureInfo.InvariantCulture),
            ], blasThreads: threads, torchThreads: threads);
            var d = r.GetProperty("torch_decode");
            var s = d.GetProperty("tokens_per_s").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            var cpu = d.GetProperty("tokens_per_cpu_s").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            AnsiConsole.MarkupLine($"[grey]  decode {Markup.Escape(TorchContender)} dense vocab {config.VocabSize} {threads} thread(s): {BenchUtil.Median(s):F1} tokens/s ({BenchUtil.Median(cpu):F1} per CPU-second)[/]");
            yield return new SparseModelBench.Row("decode", model, "dense", "dense", 1.0, TorchContender, threads, s, BenchUtil.Median(s), "tokens/s", cpu);
        }
    }

    /// <summary>Max |ours - theirs| over the logits, against Tolerance × max(1, max |ours|).</summary>
    public static Check Compare(string model, int threads, ReadOnlySpan<float> ours, ReadOnlySpan<float> theirs)
    {
        if (ours.Length != theirs.Length) return new Check(model, threads, double.PositiveInfinity, 1, false);
        double diff = 0, scale = 1;
        for (int i = 0; i < ours.Length; i++)
        {
            double d = Math.Abs((double)ours[i] - theirs[i]);
            diff = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(diff, d);
            scale = Math.Max(scale, Math.Abs((double)ours[i]));
        }
        return new Check(model, threads, diff, scale, diff <= Tolerance * scale);
    }

    // Writes the dense model as a nanoGPT checkpoint and exports + checks the ONNX graph (null, with one line, if that fails).
    (string, string)? Export(Gpt gpt, string model)
    {
        if (gpt.Config.Activation != GptConfig.Gelu)
        {
            AnsiConsole.MarkupLine($"[yellow]ONNX Runtime and PyTorch decode peers skipped for {Markup.Escape(model)}:[/] activation {Markup.Escape(gpt.Config.Activation)}, the peers' GPT has exact GELU");
            return null;
        }
        string folder = Path.Combine(_dir, $"v{gpt.Config.VocabSize}");
        string checkpoint = Path.Combine(folder, "nanogpt"), onnx = Path.Combine(folder, "model.onnx");
        Directory.CreateDirectory(folder);
        AnsiConsole.MarkupLine($"[grey]  {OrtContender}: exporting the dense {Markup.Escape(model)} (our weights, nanoGPT names) to ONNX with bench/peers/export_onnx.py ...[/]");
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            ModelImporter.Write(ModelFormat.NanoGpt, GptInterop.ToDims(gpt.Config), GptInterop.FromGpt(gpt), checkpoint);
            var r = TorchPeer.Run(_python, "export_onnx.py", ["--checkpoint", checkpoint, "--out", onnx]);
            var c = r.GetProperty("check");
            double pre = c.GetProperty("prefill").GetProperty("logits_max_abs_diff").GetDouble(), dec = c.GetProperty("decode").GetProperty("logits_max_abs_diff").GetDouble();
            AnsiConsole.MarkupLine($"[grey]  {OrtContender}: {r.GetProperty("onnx_bytes").GetInt64() / 1e6:F0} MB graph (opset {r.GetProperty("opset").GetInt32()}) in " +
                                   $"{Stopwatch.GetElapsedTime(t0).TotalSeconds:F0} s; the graph (NumPy) equals PyTorch on a random prompt (max |diff| logits {pre:G3}) and one decode step ({dec:G3})[/]");
            Exports.Add((model, r));
            return (checkpoint, onnx);
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException or JsonException or KeyNotFoundException)
        {
            AnsiConsole.MarkupLine($"[yellow]ONNX Runtime and PyTorch decode peers skipped for {Markup.Escape(model)}:[/] {Markup.Escape(e.Message.Split('\n')[0])}");
            return null;
        }
    }

    public void Dispose()
    {
        try { if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true); }
        catch (IOException e) { AnsiConsole.MarkupLine($"[yellow]warning:[/] could not delete {Markup.Escape(_dir)}: {Markup.Escape(e.Message)}"); }
    }
}
