using System.Diagnostics;
using System.Text.Json;

namespace NanoSparse.Bench;

/// <summary>
/// Runs a PyTorch peer script from bench/peers as a subprocess of the benchmark (same run, same machine) and returns
/// the JSON object it prints as its last stdout line. OPENBLAS_CORETYPE is removed from the child's environment
/// (Debian's torch misdetects the core with it set).
/// </summary>
public static class TorchPeer
{
    public const string DefaultPython = "/usr/bin/python3";

    /// <summary>Runs <c>python bench/peers/{script} args...</c>; stderr lines are passed to <paramref name="onStderr"/>.
    /// <paramref name="blasThreads"/> sets OpenBLAS's pool (null: removed, OpenBLAS's default of every core) and
    /// <paramref name="torchThreads"/>, when given, torch's own (see <see cref="ThreadEnvironment"/>).</summary>
    public static JsonElement Run(string python, string script, IEnumerable<string> args, Action<string>? onStderr = null,
        int? blasThreads = null, int? torchThreads = null)
    {
        var path = BenchUtil.FindPeer(script);
        var environment = new Dictionary<string, string?> { ["OPENBLAS_NUM_THREADS"] = blasThreads?.ToString() };
        if (torchThreads is int t) environment["OMP_NUM_THREADS"] = t.ToString();
        string stdout = RunScript(python, path, args, environment, workingDirectory: null, onStderr);
        var last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault(l => l.StartsWith('{'))
            ?? throw new InvalidDataException($"{script} printed no JSON line; stdout was: {LastLines(stdout, 4)}");
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.Clone();
    }

    /// <summary>
    /// The environment that sets PyTorch's two thread pools on Debian's torch 1.13: OMP_NUM_THREADS is torch's
    /// intra-op pool (OpenMP; what torch.set_num_threads changes), OPENBLAS_NUM_THREADS is OpenBLAS's own pool, which
    /// runs every matmul and which torch.set_num_threads does not change (OpenBLAS falls back to OMP_NUM_THREADS, then
    /// to every core, when it is unset).
    /// </summary>
    public static Dictionary<string, string?> ThreadEnvironment(int torchThreads, int blasThreads) => new()
    {
        ["OMP_NUM_THREADS"] = torchThreads.ToString(), ["OPENBLAS_NUM_THREADS"] = blasThreads.ToString(),
    };

    /// <summary>
    /// Runs <c>python scriptPath args...</c> in <paramref name="workingDirectory"/> (null: the current one) with
    /// <paramref name="environment"/> applied (a null value removes the variable) and OPENBLAS_CORETYPE removed; returns
    /// its stdout. A non-zero exit throws with the last lines of stderr.
    /// </summary>
    public static string RunScript(string python, string scriptPath, IEnumerable<string> args, IReadOnlyDictionary<string, string?> environment,
        string? workingDirectory, Action<string>? onStderr = null)
    {
        var psi = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (workingDirectory != null) psi.WorkingDirectory = workingDirectory;
        psi.ArgumentList.Add(scriptPath);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("OPENBLAS_CORETYPE");
        foreach (var (key, value) in environment)
        {
            if (value is null) psi.Environment.Remove(key);
            else psi.Environment[key] = value;
        }

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start '{python}'");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"--python '{python}' could not be started ({e.Message}); expected a Python with torch", e);
        }
        using var _ = process;
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data == null) return;
            lock (stderr) stderr.AppendLine(e.Data);
            onStderr?.Invoke(e.Data);
        };
        process.BeginErrorReadLine();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(scriptPath)} exited with code {process.ExitCode}: {LastLines(stderr.ToString(), 8)}");
        return stdout;
    }

    static string LastLines(string text, int count) =>
        string.Join(" | ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(count));
}
