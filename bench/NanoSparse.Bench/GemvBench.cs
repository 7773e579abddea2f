using System.CommandLine;
using System.Globalization;
using NanoSparse.Kernels;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench gemv</c>: the dense Linear at decode sizes, y (rows, Out) = x (rows, In) · Wᵀ, three ways in one
/// process: our <see cref="Gemv"/>, our blocked GEMM (<see cref="Linear.Forward"/>, what a dense decode ran before),
/// and OpenBLAS (cblas_sgemv at one row, cblas_sgemm above), on the same 64-byte-aligned operands. A matrix-vector
/// product reads every weight once, so besides the time it prints the bandwidth, (Out·In + rows·(In + Out))·4 bytes per
/// call. Rounds interleave the contenders (the order alternates), each waiting for the others' spinning threads
/// (<see cref="Settle"/>); figures are medians over all rounds' samples.
/// </summary>
public static class GemvBench
{
    public static Command CreateCommand()
    {
        var shapesOpt = new Option<string>("--shapes") { Description = "Out x In shapes of W, comma-separated", DefaultValueFactory = _ => "768x768,2304x768,3072x768,768x3072,50257x768" };
        var rowsOpt = new Option<string>("--rows") { Description = "rows of x per call, comma-separated (1 = decode; at most 4)", DefaultValueFactory = _ => "1" };
        var threadsOpt = new Option<string>("--threads-list") { Description = "thread counts, comma-separated", DefaultValueFactory = _ => "1,2" };
        var roundsOpt = new Option<int>("--rounds") { Description = "rounds (every contender once per round, order alternating)", DefaultValueFactory = _ => 5 };
        var cpuOpt = new Option<bool>("--cpu-time") { Description = "one-thread cases: time by the process's CPU time instead of the wall clock (steadier on a shared machine)" };
        var sparseOpt = new Option<string>("--sparse") { Description = "rows = 1 only: densities (comma-separated, e.g. 0.1,0.3,0.5) at which W, with that share of its weights kept at random, also runs through the decode SpMV formats (CSR16, SELL, SELL-128, SELL-256, SELL-128-σ and SELL-256-σ with rows packed as in the decode copies, Bitmap); ratios are against Gemv on the dense W", DefaultValueFactory = _ => "" };
        var plotOpt = new Option<string>("--plot") { Description = "PNG of the bandwidths (none: no plot); its folder is created", DefaultValueFactory = _ => Path.Combine("bench-results", "gemv.png") };
        var command = new Command("gemv", "the dense Linear at 1-4 rows: our Gemv vs our GEMM vs OpenBLAS sgemv/sgemm, ms and GB/s");
        foreach (var o in new Option[] { shapesOpt, rowsOpt, threadsOpt, roundsOpt, cpuOpt, sparseOpt, plotOpt }) command.Options.Add(o);
        command.SetAction(r =>
        {
            int rounds = r.GetValue(roundsOpt);
            if (rounds < 1) throw new ArgumentException($"--rounds must be at least 1, got {rounds}");
            var rows = Ints(r.GetValue(rowsOpt)!, "--rows");
            if (rows.Any(n => n > Gemv.MaxRows)) throw new ArgumentException($"--rows: {string.Join(",", rows)} has a count above {Gemv.MaxRows}, the most Gemv takes");
            var sparse = SparseGemv.Densities(r.GetValue(sparseOpt)!);
            Run(Shapes(r.GetValue(shapesOpt)!), rows, Ints(r.GetValue(threadsOpt)!, "--threads-list"), rounds, r.GetValue(cpuOpt), r.GetValue(plotOpt)!, sparse);
            return 0;
        });
        return command;
    }

    static (int Out, int In)[] Shapes(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
    {
        var p = v.Split('x');
        return p.Length == 2 && int.TryParse(p[0], out int o) && int.TryParse(p[1], out int i) && o > 0 && i > 0 && (long)o * i <= Array.MaxLength
            ? (o, i) : throw new ArgumentException($"--shapes: '{v}' is not OUTxIN with positive integers (at most {Array.MaxLength} weights)");
    }).ToArray();

    static int[] Ints(string list, string option) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
        int.TryParse(v, out int n) && n >= 1 ? n : throw new ArgumentException($"{option}: '{v}' is not a positive integer")).ToArray();

    sealed record Result(int Out, int In, int Rows, int Threads, string Contender, List<double> Ms);

    static void Run((int Out, int In)[] shapes, int[] rowsList, int[] threadsList, int rounds, bool cpuTime, string plotPath, double[] sparse)
    {
        Console.WriteLine($"bench gemv: {(cpuTime ? "CPU time (one-thread cases)" : "wall clock")}, {rounds} round(s), OpenBLAS core {SafeCoreName()}" +
                          (OpenBlas.RemovedCoreType is { } t ? $" (OPENBLAS_CORETYPE={t} removed)" : "") + $", {Environment.ProcessorCount} processors");
        var results = new Dictionary<(int, int, int, int, string), Result>();
        int savedMax = KernelThreads.Max;
        try
        {
            foreach (var (outF, inF) in shapes)
            {
                var rng = new Random(outF * 31 + inF);
                var w = new AlignedBuffer(outF * inF);
                foreach (ref float v in w.Span) v = (float)(rng.NextDouble() * 2 - 1) * 0.02f;
                int maxRows = rowsList.Max();
                var x = new AlignedBuffer(maxRows * inF);
                foreach (ref float v in x.Span) v = (float)(rng.NextDouble() * 2 - 1);
                var y = new AlignedBuffer(maxRows * outF);
                var yBlas = new AlignedBuffer(maxRows * outF);
                var sparseCalls = SparseGemv.Contenders(w.Span, outF, inF, x.Span.Slice(0, inF), sparse);
                for (int round = 0; round < rounds; round++)
                    foreach (int rows in rowsList)
                        foreach (int threads in threadsList)
                        {
                            var contenders = new List<(string Name, string Who, Action Call)>
                            {
                                ("NanoSparse Gemv", "ours", () => Gemv.Forward(y.Span, x.Span.Slice(0, rows * inF), w.Span, default, rows, inF, outF)),
                                ("NanoSparse GEMM", "ours", () => Linear.Forward(y.Span, x.Span.Slice(0, rows * inF), w.Span, default, rows, inF, outF)),
                                (rows == 1 ? "OpenBLAS sgemv" : "OpenBLAS sgemm", "openblas", rows == 1
                                    ? () => OpenBlas.Sgemv(false, outF, inF, w, x, yBlas)
                                    : () => OpenBlas.Sgemm(false, true, rows, outF, inF, x, inF, w, inF, yBlas, outF)),
                            };
                            if (rows == 1) contenders.AddRange(sparseCalls.Select(c => (c.Name, "ours", c.Call)));
                            if (round % 2 == 1) contenders.Reverse();
                            foreach (var (name, who, call) in contenders)
                            {
                                KernelThreads.Max = threads;
                                OpenBlas.SetThreads(threads);
                                Settle.Before(who);
                                var seconds = BenchUtil.TimePerCall(call, 3, 5, 0.02, cpuTime && threads == 1);
                                Settle.After(who);
                                var key = (outF, inF, rows, threads, name);
                                if (!results.TryGetValue(key, out var res)) results[key] = res = new Result(outF, inF, rows, threads, name, []);
                                res.Ms.AddRange(seconds.Select(s => s * 1e3));
                            }
                            if (round == 0) CheckAgreement(y.Span, yBlas.Span, rows * outF, outF, inF, rows);
                        }
            }
        }
        finally { KernelThreads.Max = savedMax; }
        Render(results.Values.Where(r => !SparseGemv.IsSparse(r.Contender)).ToList(), plotPath);
        if (sparse.Length > 0)
            SparseGemv.Render(results.Values.Where(r => r.Rows == 1).Select(r => (r.Out, r.In, r.Threads, r.Contender, BenchUtil.Median(r.Ms))).ToList());
    }

    static string SafeCoreName()
    {
        try { OpenBlas.SetThreads(1); return OpenBlas.CoreName; }
        catch (InvalidOperationException e) { throw new InvalidOperationException($"bench gemv needs OpenBLAS in process: {e.Message}"); }
    }

    /// <summary>Ours and OpenBLAS must compute the same product (a wrong kernel would be fast for nothing).</summary>
    static void CheckAgreement(ReadOnlySpan<float> ours, ReadOnlySpan<float> blas, int count, int outF, int inF, int rows)
    {
        double worst = 0;
        for (int i = 0; i < count; i++) worst = Math.Max(worst, Math.Abs(ours[i] - blas[i]));
        if (worst > 1e-4 * Math.Sqrt(inF))
            throw new InvalidOperationException($"bench gemv {outF}x{inF} rows {rows}: our product differs from OpenBLAS's by {worst:g3}");
    }

    static double Gigabytes(Result r) => 4.0 * ((double)r.Out * r.In + (double)r.Rows * (r.In + r.Out)) / 1e9;

    static void Render(List<Result> results, string plotPath)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
        var table = new Table().Border(TableBorder.Rounded)
            .Title("dense Linear at decode sizes (ms per call, medians; GB/s = bytes of W, x and y per call / time)")
            .AddColumn("W (Out x In)").AddColumn(new TableColumn("rows").RightAligned()).AddColumn(new TableColumn("threads").RightAligned())
            .AddColumn(new TableColumn("Gemv ms").RightAligned()).AddColumn(new TableColumn("GB/s").RightAligned())
            .AddColumn(new TableColumn("GEMM ms").RightAligned())
            .AddColumn(new TableColumn("OpenBLAS ms").RightAligned()).AddColumn(new TableColumn("GB/s").RightAligned())
            .AddColumn(new TableColumn("Gemv / OpenBLAS").RightAligned()).AddColumn(new TableColumn("min / min").RightAligned()).AddColumn("");
        foreach (var g in results.GroupBy(r => (r.Out, r.In, r.Rows, r.Threads)))
        {
            var ours = g.Single(r => r.Contender == "NanoSparse Gemv");
            var gemm = g.Single(r => r.Contender == "NanoSparse GEMM");
            var blas = g.Single(r => r.Contender.StartsWith("OpenBLAS"));
            double o = BenchUtil.Median(ours.Ms), b = BenchUtil.Median(blas.Ms), m = BenchUtil.Median(gemm.Ms);
            double ratio = o / b;
            table.AddRow($"{g.Key.Out}x{g.Key.In}", g.Key.Rows.ToString(), g.Key.Threads.ToString(),
                $"{o:F4}", $"{Gigabytes(ours) / (o / 1e3):F1}", $"{m:F4}", $"{b:F4}", $"{Gigabytes(blas) / (b / 1e3):F1}",
                $"{ratio:F2}", $"{ours.Ms.Min() / blas.Ms.Min():F2}",
                ratio <= 1.10 ? "[green]within 10%[/]" : "[red]slower than 1.1x[/]");
        }
        AnsiConsole.Write(table);
        Console.WriteLine("Gemv / OpenBLAS = our time over OpenBLAS's (target ≤ 1.10); min / min = the same from the fastest samples (less sensitive to a loaded machine); GEMM = our blocked GEMM at the same rows (the dense decode path before Gemv).");
        if (plotPath == "none") return;
        var plot = new ScottPlot.Plot();
        var groups = results.GroupBy(r => (r.Out, r.In, r.Rows, r.Threads)).ToList();
        var names = new[] { "NanoSparse Gemv", "OpenBLAS", "NanoSparse GEMM" };
        var palette = new ScottPlot.Palettes.Category10();
        for (int c = 0; c < names.Length; c++)
        {
            var bars = new List<ScottPlot.Bar>();
            for (int i = 0; i < groups.Count; i++)
            {
                var r = groups[i].Single(x => x.Contender.StartsWith(names[c]));
                bars.Add(new ScottPlot.Bar { Position = i * (names.Length + 1) + c, Value = Gigabytes(r) / (BenchUtil.Median(r.Ms) / 1e3), FillColor = palette.GetColor(c) });
            }
            plot.Add.Bars(bars).LegendText = names[c];
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, groups.Count).Select(i => i * (names.Length + 1) + 1.0).ToArray(),
            groups.Select(g => $"{g.Key.Out}x{g.Key.In}\nrows {g.Key.Rows}, {g.Key.Threads} thr").ToArray());
        plot.Title("dense Linear at decode sizes: bandwidth (higher is faster)");
        plot.YLabel("GB/s (bytes of W, x, y per call / time)");
        plot.ShowLegend();
        if (Path.GetDirectoryName(Path.GetFullPath(plotPath)) is { } folder) Directory.CreateDirectory(folder);
        plot.SavePng(plotPath, Math.Clamp(110 * groups.Count, 900, 2400), 600);
        Console.WriteLine($"wrote {plotPath}");
    }
}
