using System.CommandLine;
using NanoSparse.Kernels;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench attention</c>: the attention core (between c_attn and c_proj) of B sequences (1 by default; the
/// `wide` training step is --batch 8 --lengths 256 per layer), NH heads of hs,
/// at several lengths T: our dense causal attention (<see cref="Attention"/>: <see cref="FlashAttention"/>, FlashAttention-2
/// in 64×64 blocks, at every T) and, up to T = 4096, the dense pattern of the sparse kernels (FlashAttention over
/// <see cref="SparseAttentionHead"/>: the yardstick past 4096 before FlashAttention landed), against each sparse pattern
/// (<see cref="SparseAttention"/>). Forward, and forward + backward, timed in rounds that alternate the contenders'
/// order after one untimed forward + backward of each; figures are medians over rounds. The fraction of pairs is what the pattern's tiles evaluated (whole 16-key
/// chunks, masked lanes included) over the T(T+1)/2 causal pairs per head; the selection scores (q against one mean
/// key per block: at most 1/block of the pairs) are not counted.
/// </summary>
public static class AttentionBench
{
    public static Command CreateCommand()
    {
        var lengthsOpt = new Option<string>("--lengths") { Description = "sequence lengths T, comma-separated", DefaultValueFactory = _ => "1024,4096,16384" };
        var batchOpt = new Option<int>("--batch") { Description = "sequences (batch size)", DefaultValueFactory = _ => 1 };
        var headsOpt = new Option<int>("--heads") { Description = "attention heads", DefaultValueFactory = _ => 12 };
        var headSizeOpt = new Option<int>("--head-size") { Description = "head size (a multiple of 16)", DefaultValueFactory = _ => 64 };
        var patternsOpt = new Option<string>("--patterns") { Description = "sparse patterns, comma-separated (window, block, topk, nsa)", DefaultValueFactory = _ => "window,block,topk,nsa" };
        var windowOpt = new Option<int>("--window") { Description = "window: positions (also NSA's window)", DefaultValueFactory = _ => 256 };
        var blockOpt = new Option<int>("--block") { Description = "key block of block, topk and nsa (a multiple of 16)", DefaultValueFactory = _ => 64 };
        var topkOpt = new Option<int>("--topk") { Description = "topk, nsa: blocks selected per query besides its own", DefaultValueFactory = _ => 8 };
        var localOpt = new Option<int>("--local") { Description = "block: local blocks (own included)", DefaultValueFactory = _ => 4 };
        var globalOpt = new Option<int>("--global") { Description = "block: global blocks at the start", DefaultValueFactory = _ => 1 };
        var strideOpt = new Option<int>("--stride") { Description = "block: every stride-th block is seen too (0: none)", DefaultValueFactory = _ => 16 };
        var nsaStrideOpt = new Option<int>("--nsa-stride") { Description = "nsa: compression stride (divides --block)", DefaultValueFactory = _ => 64 };
        var roundsOpt = new Option<int>("--rounds") { Description = "rounds (every contender once per round, order alternating)", DefaultValueFactory = _ => 3 };
        var threadsOpt = new Option<int>("--threads") { Description = "threads (0: all processors)", DefaultValueFactory = _ => 0 };
        var cpuOpt = new Option<bool>("--cpu-time") { Description = "time by the process's CPU time instead of the wall clock (steadier on a shared machine; use with --threads 1)" };
        var plotOpt = new Option<string>("--plot") { Description = "PNG of the speed-ups (none: no plot); its folder is created", DefaultValueFactory = _ => Path.Combine("bench-results", "attention.png") };
        var command = new Command("attention", "attention patterns (window, block, top-k, NSA) against our dense causal attention: forward and forward+backward time, pairs computed");
        foreach (var o in new Option[] { lengthsOpt, batchOpt, headsOpt, headSizeOpt, patternsOpt, windowOpt, blockOpt, topkOpt, localOpt, globalOpt, strideOpt, nsaStrideOpt, roundsOpt, threadsOpt, cpuOpt, plotOpt })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            int rounds = r.GetValue(roundsOpt), B = r.GetValue(batchOpt), NH = r.GetValue(headsOpt), hs = r.GetValue(headSizeOpt), threads = r.GetValue(threadsOpt);
            BenchUtil.CheckRepetitions("--rounds", rounds);
            BenchUtil.CheckRange("--heads", NH, 1, 1024, "heads");
            BenchUtil.CheckRange("--batch", B, 1, 4096, "sequences");
            if (hs <= 0 || hs % 16 != 0) throw new ArgumentException($"--head-size must be a positive multiple of 16, got {hs}");
            BenchUtil.CheckRange("--threads", threads, 0, 4096, "threads (0: all)");
            var lengths = r.GetValue(lengthsOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
                int.TryParse(v, out int n) && n >= 16 ? n : throw new ArgumentException($"--lengths: '{v}' is not an integer of at least 16")).ToArray();
            var patterns = r.GetValue(patternsOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(name => name switch
            {
                "window" => new SparsePattern(AttentionKind.Window, Window: r.GetValue(windowOpt)),
                "block" => new SparsePattern(AttentionKind.Block, Block: r.GetValue(blockOpt), Local: r.GetValue(localOpt), Global: r.GetValue(globalOpt), Stride: r.GetValue(strideOpt)),
                "topk" => new SparsePattern(AttentionKind.TopK, Block: r.GetValue(blockOpt), TopK: r.GetValue(topkOpt)),
                "nsa" => new SparsePattern(AttentionKind.Nsa, Window: r.GetValue(windowOpt), Block: r.GetValue(blockOpt), Stride: r.GetValue(nsaStrideOpt), TopK: r.GetValue(topkOpt)),
                _ => throw new ArgumentException($"--patterns: '{name}' is not one of window, block, topk, nsa"),
            }).ToArray();
            foreach (int T in lengths)
                foreach (var p in patterns)
                    try { p.Validate(T, hs); }
                    catch (ArgumentException e) { throw new ArgumentException($"--patterns {p.Name} at T = {T}: {e.Message}"); }
            int saved = KernelThreads.Max;
            try
            {
                if (threads > 0) KernelThreads.Max = threads;
                Run(lengths, B, NH, hs, patterns, rounds, r.GetValue(cpuOpt), r.GetValue(plotOpt)!);
            }
            finally { KernelThreads.Max = saved; }
            return 0;
        });
        return command;
    }

    /// <summary>Lengths up to which the sparse kernels' dense pattern is timed too (past it, it only adds minutes).</summary>
    const int SparseKernelDenseUpToT = 4096;

    sealed record Result(int T, string Contender, string Pattern, List<double> Forward, List<double> ForwardBackward)
    {
        public double Fraction { get; set; } = double.NaN;
    }

    static void Run(int[] lengths, int B, int NH, int hs, SparsePattern[] patterns, int rounds, bool cpuTime, string plotPath)
    {
        int C = NH * hs;
        Console.WriteLine($"bench attention: batch {B}, {NH} heads of {hs}, {(cpuTime ? "CPU time" : "wall clock")}, {rounds} round(s), " +
                          $"{KernelThreads.Max} thread(s), dense = FlashAttention-2 (64×64 blocks)");
        var results = new List<Result>();
        foreach (int T in lengths)
        {
            var rng = new Random(T);
            var qkv = new float[(long)B * T * 3 * C];
            for (int i = 0; i < qkv.Length; i++) qkv[i] = (float)(rng.NextDouble() * 2 - 1);
            var dy = new float[(long)B * T * C];
            for (int i = 0; i < dy.Length; i++) dy[i] = (float)(rng.NextDouble() * 2 - 1) * 0.01f;
            var y = new float[(long)B * T * C];
            var dqkv = new float[qkv.Length];
            var lse = new float[(long)B * NH * T];
            var gates = new float[(long)B * T * 3 * NH];
            Array.Fill(gates, 0.5f);
            var dgates = new float[gates.Length];
            var contenders = new List<(string Name, string Pattern, Action Forward, Action Backward, Func<double> Fraction)>
            {
                ("dense (flash2)", "dense",
                    () => Attention.Forward(y, lse, qkv, B, T, C, NH), () => Attention.Backward(dqkv, dy, qkv, lse, B, T, C, NH, y: y), () => 1.0),
            };
            if (T <= SparseKernelDenseUpToT)
                contenders.Add(("dense (sparse kernels)", "dense", () => SparseAttention.DenseForward(y, lse, qkv, B, T, C, NH),
                    () => SparseAttention.DenseBackward(dqkv, dy, qkv, y, lse, B, T, C, NH), () => 1.0));
            foreach (var p in patterns)
            {
                var kept = new float[(long)B * T * p.KeptWidth(C, NH)];
                var g = p.Kind == AttentionKind.Nsa ? gates : [];
                var dg = p.Kind == AttentionKind.Nsa ? dgates : [];
                contenders.Add((p.Name, p.Describe(), () => SparseAttention.Forward(p, y, kept, qkv, g, B, T, C, NH),
                    () => SparseAttention.Backward(p, dqkv, dg, dy, qkv, y, kept, g, B, T, C, NH), () =>
                    {
                        SparseAttentionHead.ResetPairs();
                        SparseAttention.Forward(p, y, kept, qkv, g, B, T, C, NH);
                        return SparseAttentionHead.PairsEvaluated / ((double)B * NH * (T * (T + 1.0) / 2));
                    }));
            }
            var rows = contenders.Select(c => new Result(T, c.Name, c.Pattern, [], [])).ToList();
            for (int i = 0; i < contenders.Count; i++)
            {
                rows[i].Fraction = contenders[i].Fraction();   // also the forward pass's warm-up
                contenders[i].Backward();   // and the backward pass's: no timed round pays for first-call JIT tiers or buffers
            }
            var order = Enumerable.Range(0, contenders.Count).ToList();
            for (int round = 0; round < rounds; round++)
            {
                if (round % 2 == 1) order.Reverse();
                foreach (int i in order)
                {
                    var c = contenders[i];
                    double t0 = BenchUtil.Now(cpuTime);
                    c.Forward();
                    double t1 = BenchUtil.Now(cpuTime);
                    c.Backward();
                    double t2 = BenchUtil.Now(cpuTime);
                    rows[i].Forward.Add((t1 - t0) * 1e3);
                    rows[i].ForwardBackward.Add((t2 - t0) * 1e3);
                }
                Console.WriteLine($"  T = {T}: round {round + 1}/{rounds} done");
            }
            results.AddRange(rows);
        }
        Render(results, lengths, B, plotPath);
    }

    static void Render(List<Result> results, int[] lengths, int B, string plotPath)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"attention core, batch {B} (ms, medians over rounds; speed-up = our dense's time / this one's)")
            .AddColumn(new TableColumn("T").RightAligned()).AddColumn("kernel").AddColumn("pattern")
            .AddColumn(new TableColumn("pairs").RightAligned())
            .AddColumn(new TableColumn("fwd ms").RightAligned()).AddColumn(new TableColumn("fwd+bwd ms").RightAligned())
            .AddColumn(new TableColumn("fwd x").RightAligned()).AddColumn(new TableColumn("fwd+bwd x").RightAligned());
        foreach (int T in lengths)
        {
            var dense = results.First(r => r.T == T);
            double df = BenchUtil.Median(dense.Forward), dfb = BenchUtil.Median(dense.ForwardBackward);
            foreach (var r in results.Where(r => r.T == T))
            {
                double f = BenchUtil.Median(r.Forward), fb = BenchUtil.Median(r.ForwardBackward);
                table.AddRow(T.ToString(), r.Contender, r.Pattern, $"{r.Fraction:P1}", $"{f:F1}", $"{fb:F1}", $"{df / f:F2}", $"{dfb / fb:F2}");
            }
        }
        AnsiConsole.Write(table);
        Console.WriteLine("pairs = (query, key) pairs the attention tiles evaluated over the T(T+1)/2 causal pairs per head (dense: 100% by definition); " +
                          "the first row at each T is our dense attention, which the speed-ups divide.");
        if (plotPath == "none") return;
        var plot = new ScottPlot.Plot();
        var names = results.Select(r => r.Contender).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        for (int c = 0; c < names.Count; c++)
        {
            var bars = new List<ScottPlot.Bar>();
            for (int i = 0; i < lengths.Length; i++)
            {
                var dense = results.First(r => r.T == lengths[i]);
                var r = results.FirstOrDefault(x => x.T == lengths[i] && x.Contender == names[c] && !ReferenceEquals(x, dense))
                        ?? (names[c] == dense.Contender ? dense : null);
                if (r is null) continue;
                double speedup = BenchUtil.Median(dense.ForwardBackward) / BenchUtil.Median(r.ForwardBackward);
                bars.Add(new ScottPlot.Bar { Position = i * (names.Count + 1) + c, Value = speedup, FillColor = palette.GetColor(c) });
            }
            plot.Add.Bars(bars).LegendText = names[c];
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, lengths.Length).Select(i => i * (names.Count + 1) + (names.Count - 1) / 2.0).ToArray(),
            lengths.Select(T => $"T = {T}").ToArray());
        plot.Title("attention forward + backward: speed-up over our dense causal attention");
        plot.YLabel("dense time / pattern time");
        plot.Axes.SetLimitsY(0, results.Max(r => BenchUtil.Median(results.First(d => d.T == r.T).ForwardBackward) / BenchUtil.Median(r.ForwardBackward)) * 1.1);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        if (Path.GetDirectoryName(Path.GetFullPath(plotPath)) is { } dir) Directory.CreateDirectory(dir);
        plot.SavePng(plotPath, 1100, 600);
        Console.WriteLine($"wrote {plotPath}");
    }
}
