using System.CommandLine;
using System.Diagnostics;
using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench data`: the data pipeline's memory and speed on a token file larger than the caches.
/// Writes a flat uint16 token file of --size-gib GiB, opens it with TokenFile (memory-mapped), draws random
/// batches as training does, and reports how much the process's resident memory grew (VmRSS from
/// /proc/self/status; target: under 64 MiB whatever the file size) and the time per batch, with and without
/// the prefetcher. The file is deleted at the end unless --keep.
/// </summary>
public static class DataBench
{
    public static Command CreateCommand()
    {
        var sizeGib = new Option<double>("--size-gib") { DefaultValueFactory = _ => 2.0, Description = "size of the generated token file in GiB" };
        var dir = new Option<string?>("--dir") { Description = "folder for the token file (default: the system temp folder)" };
        var batches = new Option<int>("--batches") { DefaultValueFactory = _ => 10_000, Description = "batches drawn per configuration" };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 12, Description = "B" };
        var blockSizes = new Option<int[]>("--block-size") { DefaultValueFactory = _ => [64, 1024], Description = "T (repeatable)", AllowMultipleArgumentsPerToken = true };
        var keep = new Option<bool>("--keep") { Description = "keep the token file" };
        var stepMs = new Option<double>("--simulated-step-ms") { DefaultValueFactory = _ => 0.0, Description = "use a stand-in training step (busy wait of this many ms) instead of the baby preset's real step for the prefetch on/off comparison" };
        var noPrefetch = new Option<bool>("--no-prefetch-bench") { Description = "skip the prefetch on/off comparison" };
        var cmd = new Command("data", "memory-mapped token file: resident memory growth and batch time on a multi-GiB file");
        foreach (var o in new Option[] { sizeGib, dir, batches, batchSize, blockSizes, keep, stepMs, noPrefetch }) cmd.Options.Add(o);
        cmd.SetAction(pr => Run(pr.GetValue(sizeGib), pr.GetValue(dir), pr.GetValue(batches), pr.GetValue(batchSize),
            pr.GetValue(blockSizes) ?? [64], pr.GetValue(keep), pr.GetValue(stepMs), !pr.GetValue(noPrefetch)));
        return cmd;
    }

    // Token ids are drawn from the Brown character vocabulary so that the baby preset's real step can train on the
    // same file for the prefetch comparison; the file is uint16 either way, so memory figures do not depend on it.
    const int Vocab = ModelPreset.BrownCharVocab;

    static int Run(double sizeGib, string? dir, int batches, int B, int[] blockSizes, bool keep, double stepMs, bool prefetchBench)
    {
        if (sizeGib <= 0) { Console.Error.WriteLine($"--size-gib {sizeGib} must be positive"); return 2; }
        BenchUtil.CheckRepetitions("--batches", batches);
        BenchUtil.CheckRange("--batch-size", B, 1, int.MaxValue, "sequences per batch");
        foreach (int T in blockSizes)
        {
            BenchUtil.CheckRange("--block-size", T, 1, int.MaxValue - 1, "a window reads T + 1 tokens");
            // x and y of one batch are int arrays of B·T tokens.
            if ((long)B * T > Array.MaxLength)
                throw new ArgumentException($"--batch-size ({B}) × --block-size ({T}) = {(long)B * T:N0} tokens per batch, more than the {Array.MaxLength:N0} one array holds");
        }
        dir ??= Path.GetTempPath();
        Directory.CreateDirectory(dir);
        long free = new DriveInfo(Path.GetFullPath(dir)).AvailableFreeSpace;
        if (sizeGib * (1L << 30) > free)
            throw new ArgumentException($"--size-gib ({sizeGib}) is more than the {free / (double)(1L << 30):F1} GiB free in {dir}");
        string path = Path.Combine(dir, $"nanosparse-databench-{Environment.ProcessId}.bin");
        long tokens = (long)(sizeGib * (1L << 30)) / 2;
        try
        {
            var sw = Stopwatch.StartNew();
            WriteRandomTokens(path, tokens, seed: 1);
            Console.WriteLine($"wrote {path}: {tokens:N0} uint16 tokens ({tokens * 2 / (double)(1 << 30):F2} GiB) in {sw.Elapsed.TotalSeconds:F1} s");
            Console.WriteLine($"{"config",-34} {"batches",8} {"us/batch",9} {"RSS growth MiB",15} {"(anon",8} {"file)",8}");
            foreach (int T in blockSizes)
            {
                Measure(path, tokens, B, T, batches, prefetch: false, trim: true);
                Measure(path, tokens, B, T, batches, prefetch: true, trim: true);
            }
            // Without releasing mapped pages, every page touched stays in the resident set: the reason for the trim.
            Measure(path, tokens, B, blockSizes[0], batches, prefetch: false, trim: false);
            Console.WriteLine("target: RSS growth < 64 MiB with trimming on (resident memory must not grow with the file size)");
            if (prefetchBench)
            {
                // The baby preset's training step (B=12, T=64) on batches drawn from the file, prefetcher off and on.
                using var file = TokenFile.Open(path, TokenDtype.UInt16, Vocab);
                var preset = ModelPreset.Baby;
                Action<int[], int[]> step;
                string what;
                if (stepMs > 0)
                {
                    long spin = (long)(stepMs * Stopwatch.Frequency / 1000);
                    step = (x, y) => { long end = Stopwatch.GetTimestamp() + spin; while (Stopwatch.GetTimestamp() < end) { } };
                    what = $"simulated {stepMs} ms step";
                }
                else
                {
                    step = TrainBench.CreatePresetStep(preset, Vocab);
                    what = "baby preset step";
                }
                double[] ms = MeasurePrefetch(file, preset.BatchSize, preset.BlockSize, iters: 100, repeats: 5, step);
                Console.WriteLine($"{what}, B={preset.BatchSize} T={preset.BlockSize}: {ms[0]:F3} ms/iter prefetch off, {ms[1]:F3} ms/iter on " +
                                  $"(median of 5 x 100); throughput with prefetch = {ms[0] / ms[1]:F3}x without");
            }
            return 0;
        }
        finally
        {
            if (!keep) File.Delete(path);
        }
    }

    static void Measure(string path, long tokens, int B, int T, int batches, bool prefetch, bool trim)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var before = Rss.Read();
        var sw = Stopwatch.StartNew();
        using (var file = TokenFile.Open(path, TokenDtype.UInt16, Vocab))
        {
            if (!trim) file.TrimIntervalBytes = 0;
            var sampler = new BatchSampler(file, B, T, seed: 1337);
            var x = new int[B * T];
            var y = new int[B * T];
            long check = 0;
            if (prefetch)
            {
                using var pf = new Prefetcher(sampler);
                for (int i = 0; i < batches; i++) { pf.Next(x, y); check += x[0]; }
            }
            else
            {
                for (int i = 0; i < batches; i++) { sampler.Next(x, y); check += x[0]; }
            }
            sw.Stop();
            var after = Rss.Read();
            string config = $"B={B} T={T} {(prefetch ? "prefetch" : "direct")}{(trim ? "" : " NO trim")}";
            Console.WriteLine($"{config,-34} {batches,8} {sw.Elapsed.TotalMicroseconds / batches,9:F1} {(after.Total - before.Total) / 1024.0,15:F1} {(after.Anon - before.Anon) / 1024.0,8:F1} {(after.File - before.File) / 1024.0,8:F1}");
            GC.KeepAlive(check);
        }
    }

    /// <summary>Fills the file with uniform random ids in [0, Vocab), 16 MiB at a time.</summary>
    static void WriteRandomTokens(string path, long tokens, ulong seed)
    {
        var rng = new Rng(seed);
        var buffer = new ushort[8 << 20]; // 16 MiB
        using var fs = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 0, PreallocationSize = tokens * 2,
        });
        for (long done = 0; done < tokens;)
        {
            int n = (int)Math.Min(buffer.Length, tokens - done);
            for (int i = 0; i < n; i += 4)
            {
                ulong r = rng.NextUInt64();
                // Four 16-bit pieces, each scaled to [0, Vocab) by a multiply-shift.
                for (int k = 0; k < 4 && i + k < n; k++)
                    buffer[i + k] = (ushort)((((r >> (16 * k)) & 0xFFFF) * Vocab) >> 16);
            }
            fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(buffer.AsSpan(0, n)));
            done += n;
        }
    }

    /// <summary>
    /// Hook for the trainer: ms per iteration with the prefetcher off and on, as [off, on]. <paramref name="step"/>
    /// is one training step's compute (e.g. forward + backward + optimizer of the baby preset) run on the batch in
    /// x, y; the batch is drawn directly before the step (off) or was built on the background thread during the
    /// previous step (on). Medians of <paramref name="repeats"/> runs of <paramref name="iters"/> iterations.
    /// </summary>
    public static double[] MeasurePrefetch(TokenFile file, int B, int T, int iters, int repeats, Action<int[], int[]> step)
    {
        double Once(bool on)
        {
            var sampler = new BatchSampler(file, B, T, seed: 1);
            var x = new int[B * T];
            var y = new int[B * T];
            using var pf = on ? new Prefetcher(sampler) : null;
            if (pf != null) pf.Next(x, y); else sampler.Next(x, y); // warm-up
            step(x, y);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < iters; i++)
            {
                if (pf != null) pf.Next(x, y); else sampler.Next(x, y);
                step(x, y);
            }
            return sw.Elapsed.TotalMilliseconds / iters;
        }
        double Median(bool on)
        {
            var t = Enumerable.Range(0, repeats).Select(_ => Once(on)).Order().ToArray();
            return t[t.Length / 2];
        }
        return [Median(false), Median(true)];
    }

    readonly record struct Rss(long Total, long Anon, long File)
    {
        /// <summary>VmRSS, RssAnon, RssFile in KiB from /proc/self/status (Linux); Environment.WorkingSet elsewhere.</summary>
        public static Rss Read()
        {
            if (!System.IO.File.Exists("/proc/self/status")) return new Rss(Environment.WorkingSet / 1024, 0, 0);
            long total = 0, anon = 0, file = 0;
            foreach (string line in System.IO.File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:")) total = Kib(line);
                else if (line.StartsWith("RssAnon:")) anon = Kib(line);
                else if (line.StartsWith("RssFile:")) file = Kib(line);
            }
            return new Rss(total, anon, file);
        }

        static long Kib(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    }
}
