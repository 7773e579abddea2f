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

    /// <summary>Runs <c>python bench/peers/{script} args...</c>; stderr lines are passed to <paramref name="onStderr"/>.</summary>
    public static JsonElement Run(string python, string script, IEnumerable<string> args, Action<string>? onStderr = null, int? blasThreads = null)
    {
        var path = BenchUtil.FindPeer(script);
        var psi = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(path);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("OPENBLAS_CORETYPE");
        // Debian's torch multiplies through OpenBLAS, whose own thread pool ignores torch.set_num_threads: without
        // this, a "1-thread" PyTorch still runs its GEMMs on every core.
        if (blasThreads is int bt) psi.Environment["OPENBLAS_NUM_THREADS"] = bt.ToString();
        else psi.Environment.Remove("OPENBLAS_NUM_THREADS");

        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start '{python}'");
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
            throw new InvalidOperationException($"{script} exited with code {process.ExitCode}: {LastLines(stderr.ToString(), 8)}");
        var last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault(l => l.StartsWith('{'))
            ?? throw new InvalidDataException($"{script} printed no JSON line; stdout was: {LastLines(stdout, 4)}");
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.Clone();
    }

    static string LastLines(string text, int count) =>
        string.Join(" | ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(count));
}
