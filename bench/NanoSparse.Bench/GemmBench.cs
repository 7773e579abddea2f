using System.CommandLine;
using System.Text.Json;
using NanoSparse.Kernels;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench gemm`: GFLOP/s of <see cref="Gemm.Multiply"/> against NumPy's OpenBLAS sgemm, run as a peer
/// process in the same run at the same thread count, on every GEMM of a training step of the baby and small presets.
/// </summary>
public static class GemmBench
{
    /// <summary>One product C (m×n) = op(A) (m×k) · op(B) (k×n).</summary>
    public sealed record Shape(string Name, bool TransA, bool TransB, int M, int N, int K)
    {
        public double Flops => 2.0 * M * N * K;
    }

    /// <summary>Products of at least this many FLOPs carry the ≥ 0.9× OpenBLAS target.</summary>
    public const double TargetFlops = 1 << 27;

    /// <summary>
    /// The GEMMs of one training step of a GPT with rows = B·T, width C and vocabulary V. Each Linear with weight
    /// W (OC, C) does forward Y = X·Wᵀ (NT), backward dX = dY·W (NN) and dW += dYᵀ·X (TN).
    /// </summary>
    public static IEnumerable<Shape> TrainingShapes(string preset, int rows, int c, int vocab)
    {
        (string Name, int OC, int In)[] linears =
        [
            ("attn.c_attn", 3 * c, c), ("attn.c_proj", c, c), ("mlp.c_fc", 4 * c, c), ("mlp.c_proj", c, 4 * c),
            ("lm_head", vocab, c),
        ];
        foreach (var (name, oc, inC) in linears)
        {
            yield return new Shape($"{preset} {name} fwd", false, true, rows, oc, inC);   // Y (BT, OC) = X (BT, In) · Wᵀ
            yield return new Shape($"{preset} {name} dX", false, false, rows, inC, oc);   // dX (BT, In) = dY (BT, OC) · W
            yield return new Shape($"{preset} {name} dW", true, false, oc, inC, rows);    // dW (OC, In) = dYᵀ · X
        }
    }

    /// <summary>baby: B=12, T=64, n_embd 128; small: B=64, T=256, n_embd 384; brown char vocabulary ≈ 100; plus 4096³.</summary>
    public static IReadOnlyList<Shape> DefaultShapes() =>
    [
        .. TrainingShapes("baby", 12 * 64, 128, 100),
        .. TrainingShapes("small", 64 * 256, 384, 100),
        new Shape("square 4096", false, false, 4096, 4096, 4096),
    ];

    public sealed record Result(string Name, bool TransA, bool TransB, int M, int N, int K, int Threads,
        double OursGflops, double PeerGflops, double Ratio, bool Targeted, string Isa, string Peer, string Statistic);

    public static Command CreateCommand()
    {
        var threadsOption = new Option<int[]>("--threads")
        {
            Description = "thread counts to run (default: 1 and 2)",
            AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => [1, 2],
        };
        var repsOption = new Option<int>("--reps")
        {
            Description = "timed repetitions per shape; the median is reported",
            DefaultValueFactory = _ => 7,
        };
        var jsonOption = new Option<FileInfo?>("--json") { Description = "also write the results as JSON to this file" };
        var filterOption = new Option<string?>("--filter") { Description = "only shapes whose name contains this text" };
        var cpuOption = new Option<bool>("--cpu-time")
        {
            Description = "time with process CPU time instead of the wall clock (steadier on a busy machine; use with --threads 1)",
        };
        var command = new Command("gemm", "dense GEMM of the training step vs NumPy/OpenBLAS sgemm (GFLOP/s, medians)");
        command.Options.Add(threadsOption);
        command.Options.Add(repsOption);
        command.Options.Add(jsonOption);
        command.Options.Add(filterOption);
        command.Options.Add(cpuOption);
        var bestOption = new Option<bool>("--best") { Description = "report the fastest repetition instead of the median (busy machines)" };
        command.Options.Add(bestOption);
        command.SetAction(parse =>
        {
            var threads = parse.GetValue(threadsOption) ?? [1, 2];
            int reps = parse.GetValue(repsOption);
            if (reps < 1) throw new ArgumentOutOfRangeException("--reps", reps, "--reps must be at least 1");
            BenchUtil.CheckRepetitions("--reps", reps);
            var filter = parse.GetValue(filterOption);
            var shapes = DefaultShapes().Where(s => filter == null || s.Name.Contains(filter, StringComparison.OrdinalIgnoreCase)).ToList();
            var results = Run(shapes, threads, reps, parse.GetValue(cpuOption), parse.GetValue(bestOption));
            Print(results);
            var json = parse.GetValue(jsonOption);
            if (json != null)
            {
                var tmp = json.FullName + ".tmp";
                File.WriteAllText(tmp, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
                File.Move(tmp, json.FullName, overwrite: true);
            }
            return 0;
        });
        return command;
    }

    public static List<Result> Run(IReadOnlyList<Shape> shapes, IReadOnlyList<int> threadCounts, int reps, bool cpuTime = false, bool best = false)
    {
        var results = new List<Result>();
        int savedThreads = KernelThreads.Max;
        try
        {
            foreach (int threads in threadCounts)
            {
                KernelThreads.Max = threads;
                foreach (var s in shapes)
                {
                    // One peer process per shape, timed right before ours, so that both see the same machine load.
                    var peer = RunNumpy([s], threads, reps, cpuTime);
                    Func<IReadOnlyList<double>, double> pick = best ? x => x.Min() : BenchUtil.Median;
                    double ours = s.Flops / pick(TimeOurs(s, RepsFor(s, reps), cpuTime)) / 1e9;
                    double theirs = peer.Seconds.TryGetValue(s.Name, out var sec) ? s.Flops / pick(sec) / 1e9 : double.NaN;
                    results.Add(new Result(s.Name, s.TransA, s.TransB, s.M, s.N, s.K, threads, ours, theirs, ours / theirs,
                        s.Flops >= TargetFlops, Gemm.InstructionSet, peer.Blas,
                        (best ? "best" : "median") + " of " + (cpuTime ? "CPU time" : "wall time")));
                }
            }
        }
        finally { KernelThreads.Max = savedThreads; }
        return results;
    }

    static int RepsFor(Shape s, int reps) => s.Flops < 2e10 ? reps : Math.Min(reps, 3);

    static double[] TimeOurs(Shape s, int reps, bool cpuTime)
    {
        var rng = new Random(0);
        int aLen = s.M * s.K, bLen = s.K * s.N;
        var a = new float[aLen];
        var b = new float[bLen];
        var c = new float[s.M * s.N];
        for (int i = 0; i < a.Length; i++) a[i] = rng.NextSingle() - 0.5f;
        for (int i = 0; i < b.Length; i++) b[i] = rng.NextSingle() - 0.5f;
        int lda = s.TransA ? s.M : s.K, ldb = s.TransB ? s.K : s.N;
        return BenchUtil.TimePerCall(() => Gemm.Multiply(s.TransA, s.TransB, s.M, s.N, s.K, 1f, a, lda, b, ldb, 0f, c, s.N), 1, reps, cpuTime: cpuTime);
    }

    sealed record PeerRun(string Blas, Dictionary<string, double[]> Seconds);

    static PeerRun RunNumpy(IReadOnlyList<Shape> shapes, int threads, int reps, bool cpuTime)
    {
        var request = JsonSerializer.Serialize(new
        {
            reps,
            clock = cpuTime ? "cpu" : "wall",
            shapes = shapes.Select(s => new { name = s.Name, transA = s.TransA, transB = s.TransB, m = s.M, n = s.N, k = s.K }),
        });
        var stdout = BenchUtil.RunPeer("gemm_numpy.py", "", threads, request);
        using var doc = JsonDocument.Parse(stdout);
        var seconds = new Dictionary<string, double[]>();
        foreach (var r in doc.RootElement.GetProperty("results").EnumerateArray())
            seconds[r.GetProperty("name").GetString()!] = r.GetProperty("seconds").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        var blas = doc.RootElement.GetProperty("blas").GetString() ?? "numpy";
        return new PeerRun(blas, seconds);
    }

    static void Print(IReadOnlyList<Result> results)
    {
        if (results.Count == 0) return;
        var table = new Table().Title($"GEMM GFLOP/s ({results[0].Statistic}): NanoSparse ({results[0].Isa}) vs NumPy ({Markup.Escape(results[0].Peer)})");
        table.AddColumns("shape", "op", "m×n×k", "GFLOP", "threads", "NanoSparse", "OpenBLAS", "ratio", "≥2^27 (≥0.9×)");
        foreach (var r in results)
        {
            string target = !r.Targeted ? "" : r.Ratio >= 0.9 ? "[green]ok[/]" : "[red]below[/]";
            string ratio = r.Ratio >= 1 ? $"[green]{r.Ratio:F2}[/]" : r.Ratio >= 0.9 ? $"{r.Ratio:F2}" : $"[yellow]{r.Ratio:F2}[/]";
            table.AddRow(Markup.Escape(r.Name), $"{(r.TransA ? 'T' : 'N')}{(r.TransB ? 'T' : 'N')}", $"{r.M}×{r.N}×{r.K}",
                $"{2.0 * r.M * r.N * r.K / 1e9:F2}", r.Threads.ToString(), $"{r.OursGflops:F1}", $"{r.PeerGflops:F1}", ratio, target);
        }
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 140);
        AnsiConsole.Write(table);
    }
}
