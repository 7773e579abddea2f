using System.Diagnostics;

namespace NanoSparse.Bench;

/// <summary>Timing and peer-process helpers shared by the benchmark suites.</summary>
public static class BenchUtil
{
    /// <summary>
    /// Most timed repetitions, iterations or rounds one option may ask for: timings are kept in arrays sized by the
    /// count (2^31 − 1 would ask for 16 GiB up front), and a million of the cheapest measurement already runs for hours.
    /// </summary>
    public const int MaxRepetitions = 1_000_000;

    /// <summary>Largest n of an n×n matrix whose elements fit one array (n² ≤ Array.MaxLength).</summary>
    public static int MaxSquareSide => (int)Math.Sqrt(Array.MaxLength);

    /// <summary>Throws an ArgumentException "--option (value) must lie in [min, max] (why)" when value is outside.</summary>
    public static void CheckRange(string option, long value, long min, long max, string why)
    {
        if (value < min || value > max)
            throw new ArgumentException($"{option} ({value}) must lie in [{min}, {max:N0}] ({why})");
    }

    /// <summary>Refuses a count of repetitions (iterations, rounds, batches) above <see cref="MaxRepetitions"/>, naming the option.</summary>
    public static void CheckRepetitions(string option, long value, long min = 1) =>
        CheckRange(option, value, min, MaxRepetitions, "a million repetitions already run for hours");

    /// <summary>
    /// Refuses a --vocab whose model would not fit (parameters, activations, attention scratch: see GptSize), naming
    /// the option and the largest vocabulary that fits with the preset's other sizes.
    /// </summary>
    public static void CheckVocab(string option, NanoSparse.Nn.GptConfig config, int batchSize, int seqLen, NanoSparse.Nn.GptUse use)
    {
        var d = NanoSparse.Nn.GptSize.DimsOf(config with { VocabSize = 1 }, batchSize, seqLen) with { V = config.VocabSize };
        NanoSparse.Nn.GptSize.Check(d, use, [new(option, config.VocabSize, (dims, v) => dims with { V = v })]);
    }

    /// <summary>Seconds of each of <paramref name="reps"/> calls, after <paramref name="warmup"/> untimed calls.</summary>
    public static double[] Time(Action action, int warmup, int reps)
    {
        for (int i = 0; i < warmup; i++) action();
        var seconds = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            action();
            seconds[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        return seconds;
    }

    /// <summary>
    /// Seconds per call, one value per rep; a rep repeats the call until it has run at least
    /// <paramref name="minSeconds"/>, so that short calls are not lost in timer and scheduler noise.
    /// </summary>
    public static double[] TimePerCall(Action action, int warmup, int reps, double minSeconds = 0.02, bool cpuTime = false)
    {
        // Warm up for at least `warmup` calls and 0.25 s, so tiered JIT compilation has reached its final code.
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < Math.Max(1, warmup) || Stopwatch.GetElapsedTime(start).TotalSeconds < 0.25; i++) action();
        double once = Time(action, 0, 1)[0];
        int inner = (int)Math.Clamp(minSeconds / Math.Max(once, 1e-9), 1, 1_000_000);
        var seconds = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            double t0 = Now(cpuTime);
            for (int i = 0; i < inner; i++) action();
            seconds[r] = (Now(cpuTime) - t0) / inner;
        }
        return seconds;
    }

    /// <summary>
    /// Seconds on the wall clock, or of CPU time used by the whole process (steadier than wall time on a machine
    /// shared with other jobs, but it counts every thread, spinning ones included: meaningful for one thread).
    /// </summary>
    public static double Now(bool cpuTime) => cpuTime
        ? Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds
        : Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;

    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        int h = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[h] : 0.5 * (sorted[h - 1] + sorted[h]);
    }

    /// <summary>
    /// Finds bench/peers/<paramref name="script"/> (a peer script or source) in the first bench/peers folder that holds
    /// it, looking from the current directory upward (a checkout), then from the executable's directory upward (a build
    /// in a checkout, or the installed tool, whose package carries bench/peers beside NanoSparse.Cli.dll).
    /// </summary>
    public static string FindPeer(string script)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "bench", "peers", script);
                if (File.Exists(candidate)) return candidate;
            }
        }
        throw new FileNotFoundException(
            $"peer file bench/peers/{script} not found in a bench/peers folder above '{Directory.GetCurrentDirectory()}' or '{AppContext.BaseDirectory}'; " +
            "run from a NanoSparse checkout, or reinstall the nanosparse tool (its package carries bench/peers)", script);
    }

    /// <summary>
    /// Runs a peer script with /usr/bin/python3 (or the interpreter its extension asks for) and returns its stdout.
    /// The environment pins the BLAS/OpenMP thread count to <paramref name="threads"/> and drops OPENBLAS_CORETYPE so
    /// OpenBLAS picks its own kernels for this CPU.
    /// </summary>
    public static string RunPeer(string script, string args, int threads, string? stdin = null)
    {
        var path = File.Exists(script) ? script : FindPeer(script);
        var info = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin != null,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(path);
        foreach (var a in args.Split(' ', StringSplitOptions.RemoveEmptyEntries)) info.ArgumentList.Add(a);
        info.Environment.Remove("OPENBLAS_CORETYPE");
        var t = threads.ToString();
        info.Environment["OPENBLAS_NUM_THREADS"] = t;
        info.Environment["OMP_NUM_THREADS"] = t;
        info.Environment["MKL_NUM_THREADS"] = t;

        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start /usr/bin/python3 {path}");
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin != null)
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"peer {path} exited with code {process.ExitCode}: {stderr.Result}");
        return stdout;
    }
}
