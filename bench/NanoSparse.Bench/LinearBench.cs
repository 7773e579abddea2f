using System.CommandLine;
using System.Globalization;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench linear`: a Linear layer's forward + backward with a sparse weight layout (csr at several
/// densities, N:M, BSR) against the dense Linear (Kernels/Linear.cs) on the same x, dy and shapes, in one process.
/// Training: rows = B·T token positions, forward then backward (dW, dBias, dx). Decode: rows = 1, forward only (CSR with
/// and without its SELL copy). Every case is timed once per round, rounds in turn; per-case medians across rounds,
/// ratios the median of the per-round ratios (the machine is shared and its speed drifts for seconds at a time).
/// </summary>
public static class LinearBench
{
    public static Command CreateCommand()
    {
        var shapesOpt = new Option<string>("--shapes") { Description = "In x Out shapes, comma-separated", DefaultValueFactory = _ => "768x3072,3072x768,768x2304" };
        var rowsOpt = new Option<string>("--rows") { Description = "rows (token positions) per call, comma-separated; 1 = decode (forward only)", DefaultValueFactory = _ => "2048,1" };
        var threadsOpt = new Option<string>("--threads-list") { Description = "thread counts, comma-separated", DefaultValueFactory = _ => "1,2" };
        var layoutsOpt = new Option<string>("--layouts") { Description = "layouts: csr:DENSITY, nm:N:M, bsr:RxC:DENSITY; csr-nosell:DENSITY times decode without the SELL copy", DefaultValueFactory = _ => "csr:0.5,csr:0.3,csr:0.2,csr:0.1,csr:0.05,nm:2:4" };
        var roundsOpt = new Option<int>("--rounds") { Description = "rounds (every case once per round)", DefaultValueFactory = _ => 3 };
        var forwardOpt = new Option<bool>("--forward-only") { Description = "time the forward pass only, at every rows" };
        var partsOpt = new Option<bool>("--parts") { Description = "instead: time the pieces of the CSR layout's training pass (transposes, S·X, SDDMM, Wᵀ·dY) at each csr density, and of nm:2:4's (forward, dW, dx of each kernel against the dense GEMM's)" };
        var cpuOpt = new Option<bool>("--cpu-time") { Description = "one-thread cases: time by the process's CPU time instead of the wall clock (steadier on a shared machine)" };
        var panelOpt = new Option<int?>("--panel-rows") { Description = "FeatureMajor.PanelRows for this run (token rows per transposed panel)" };
        var rowwiseOpt = new Option<int?>("--rowwise-max") { Description = "CsrLinearWeight.RowwiseMaxRows for this run (forward: SpMV per row up to this many rows)" };
        var command = new Command("linear", "sparse Linear weight layouts (csr, nm, bsr) forward+backward vs the dense Linear");
        foreach (var o in new Option[] { shapesOpt, rowsOpt, threadsOpt, layoutsOpt, roundsOpt, forwardOpt, rowwiseOpt, partsOpt, panelOpt, cpuOpt }) command.Options.Add(o);
        command.SetAction(r =>
        {
            int rounds = r.GetValue(roundsOpt);
            if (rounds < 1) throw new ArgumentException($"--rounds must be at least 1, got {rounds}");
            if (r.GetValue(rowwiseOpt) is int rw) CsrLinearWeight.RowwiseMaxRows = rw;
            if (r.GetValue(panelOpt) is int pr) FeatureMajor.PanelRows = pr >= 1 ? pr : throw new ArgumentException($"--panel-rows must be at least 1, got {pr}");
            if (r.GetValue(partsOpt))
            {
                Parts(ParseShapes(r.GetValue(shapesOpt)!), ParseInts(r.GetValue(rowsOpt)!, "--rows"), ParseInts(r.GetValue(threadsOpt)!, "--threads-list"),
                    r.GetValue(layoutsOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), r.GetValue(cpuOpt), rounds);
                return 0;
            }
            Run(ParseShapes(r.GetValue(shapesOpt)!), ParseInts(r.GetValue(rowsOpt)!, "--rows"), ParseInts(r.GetValue(threadsOpt)!, "--threads-list"),
                r.GetValue(layoutsOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), rounds, r.GetValue(forwardOpt), r.GetValue(cpuOpt));
            return 0;
        });
        return command;
    }

    static (int In, int Out)[] ParseShapes(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
    {
        var p = v.Split('x');
        return p.Length == 2 && int.TryParse(p[0], out int i) && int.TryParse(p[1], out int o) && i > 0 && o > 0
            ? (i, o) : throw new ArgumentException($"--shapes: '{v}' is not INxOUT with positive integers");
    }).ToArray();

    static int[] ParseInts(string list, string option) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
        int.TryParse(v, out int n) && n >= 1 ? n : throw new ArgumentException($"{option}: '{v}' is not a positive integer")).ToArray();

    /// <summary>A layout built from its spec, with random values (the pattern's own random draw, seeded by the shape).</summary>
    internal static (ILinearWeight Weight, float[] Values, bool Sell) Build(string spec, int inFeatures, int outFeatures, Rng rng)
    {
        var parts = spec.Split(':');
        ILinearWeight w;
        bool sell = false;
        switch (parts[0])
        {
            case "csr" or "csr-nosell" when parts.Length == 2 && double.TryParse(parts[1], CultureInfo.InvariantCulture, out double d):
                w = CsrLinearWeight.Random(outFeatures, inFeatures, d, rng);
                sell = parts[0] == "csr";
                break;
            case "nm" when parts.Length == 3 && int.TryParse(parts[1], out int n) && int.TryParse(parts[2], out int m):
                w = NmLinearWeight.Random(outFeatures, inFeatures, n, m, rng);
                break;
            case "bsr" when parts.Length == 3 && parts[1].Split('x') is [var r, var c] && int.TryParse(r, out int br) && int.TryParse(c, out int bc)
                && double.TryParse(parts[2], CultureInfo.InvariantCulture, out double bd):
                w = BsrLinearWeight.Random(outFeatures, inFeatures, br, bc, bd, rng);
                break;
            default:
                throw new ArgumentException($"--layouts: '{spec}' is not csr:DENSITY, csr-nosell:DENSITY, nm:N:M or bsr:RxC:DENSITY");
        }
        var values = new float[w.StoredCount];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextGaussian() * 0.02);
        return (w, values, sell);
    }

    sealed record Case(string Label, int In, int Out, int Rows, int Threads, string Layout);

    static void Run((int In, int Out)[] shapes, int[] rowsList, int[] threadsList, string[] layouts, int rounds, bool forwardOnly, bool cpuTime)
    {
        Console.WriteLine($"bench linear: {(cpuTime ? "CPU time (one-thread cases)" : "wall clock")}, rounds {rounds}, RowwiseMaxRows {CsrLinearWeight.RowwiseMaxRows}, PanelRows {FeatureMajor.PanelRows}, processors {Environment.ProcessorCount}");
        var cases = new List<Case>();
        foreach (var (inF, outF) in shapes)
            foreach (int rows in rowsList)
                foreach (int threads in rows == 1 ? threadsList.Take(1).Concat(threadsList.Skip(1)) : threadsList)
                    foreach (string layout in layouts)
                        cases.Add(new Case($"{inF}x{outF} rows {rows} t{threads}", inF, outF, rows, threads, layout));
        // Per case: seconds of the layout and of dense in each round.
        var sparseTimes = cases.ToDictionary(c => c, _ => new List<double>());
        var denseTimes = cases.ToDictionary(c => c, _ => new List<double>());
        int savedThreads = KernelThreads.Max;
        try
        {
            for (int round = 0; round < rounds; round++)
            {
                foreach (var group in cases.GroupBy(c => (c.In, c.Out, c.Rows, c.Threads)))
                {
                    var (inF, outF, rows, threads) = group.Key;
                    KernelThreads.Max = threads;
                    bool fwdOnly = forwardOnly || rows == 1;
                    var rng = new Rng((ulong)(inF * 31 + outF));
                    var x = Random(rng, rows * inF);
                    var dy = Random(rng, rows * outF);
                    var bias = Random(rng, outF);
                    var y = new float[rows * outF];
                    var dx = new float[rows * inF];
                    var dBias = new float[outF];
                    var wDense = Random(rng, outF * inF, 0.02);
                    var dW = new float[outF * inF];
                    var denseLayout = new DenseLinearWeight(outF, inF);   // its forward: Gemv at 1-4 rows, the GEMM above
                    double dense = Median(BenchUtil.TimePerCall(() =>
                    {
                        denseLayout.Forward(y, x, wDense, bias, default, rows, default);
                        if (!fwdOnly) Linear.Backward(dx, dW, dBias, dy, x, wDense, rows, inF, outF);
                    }, 2, 5, 0.05, cpuTime && threads == 1));
                    foreach (var c in group)
                    {
                        var (w, values, sell) = Build(c.Layout, inF, outF, new Rng((ulong)(inF * 7 + outF)));
                        if (sell && rows == 1 && w is CsrLinearWeight csr) csr.PrepareForInference(values);
                        var dValues = new float[w.StoredCount];
                        var workspace = new float[w.WorkspaceFloats(rows)];
                        double t = Median(BenchUtil.TimePerCall(() =>
                        {
                            w.Forward(y, x, values, bias, [], rows, workspace);
                            if (!fwdOnly) w.Backward(dx, dValues, dBias, dy, x, values, [], rows, workspace);
                        }, 2, 5, 0.05, cpuTime && threads == 1));
                        sparseTimes[c].Add(t);
                        denseTimes[c].Add(dense);
                    }
                }
                Console.WriteLine($"round {round + 1} of {rounds} done");
            }
        }
        finally { KernelThreads.Max = savedThreads; }

        Console.WriteLine();
        Console.WriteLine($"{"case",-28} {"layout",-14} {"pass",-8} {"dense ms",10} {"sparse ms",10} {"speed-up",9}");
        foreach (var c in cases)
        {
            var s = sparseTimes[c];
            var d = denseTimes[c];
            double ratio = Median(s.Zip(d, (a, b) => b / a).ToArray());
            string pass = forwardOnly || c.Rows == 1 ? "fwd" : "fwd+bwd";
            Console.WriteLine($"{c.Label,-28} {c.Layout,-14} {pass,-8} {1e3 * Median(d.ToArray()),10:F3} {1e3 * Median(s.ToArray()),10:F3} {ratio,8:F2}x");
        }
    }

    static double Median(double[] values) => BenchUtil.Median(values);

    /// <summary>The CSR layout's training pass piece by piece, through the public kernels (ms, median of 5).</summary>
    static void Parts((int In, int Out)[] shapes, int[] rowsList, int[] threadsList, string[] layouts, bool cpuTime, int rounds)
    {
        int saved = KernelThreads.Max;
        try
        {
            foreach (var (inF, outF) in shapes)
            foreach (int rows in rowsList)
            foreach (int threads in threadsList)
                if (layouts.Contains("nm:2:4")) NmParts(inF, outF, rows, threads, cpuTime, rounds);
            foreach (var (inF, outF) in shapes)
            foreach (int rows in rowsList)
            foreach (int threads in threadsList)
            foreach (var spec in layouts.Where(l => l.StartsWith("csr:", StringComparison.Ordinal)))
            {
                KernelThreads.Max = threads;
                var rng = new Rng(1);
                var w = CsrLinearWeight.Random(outF, inF, double.Parse(spec[4..], CultureInfo.InvariantCulture), rng).Structure;
                for (int i = 0; i < w.Values.Length; i++) w.Values[i] = (float)rng.NextGaussian();
                var wt = w.Transpose();
                var x = Random(rng, rows * inF);
                var dy = Random(rng, rows * outF);
                var xT = new float[rows * inF];
                var yT = new float[rows * outF];
                var y = new float[rows * outF];
                var dW = new float[w.NonZeroCount];
                double Ms(Action a) => 1e3 * Median(BenchUtil.TimePerCall(a, 1, 5, 0.05, cpuTime && threads == 1));
                double tx = Ms(() => Transpose.Run(x, inF, rows, xT));
                double ty = Ms(() => Transpose.Run(yT, rows, outF, y));
                double sx = Ms(() => CsrSpmm.Multiply(w, xT, rows, yT));
                double sd = Ms(() => Sddmm.Compute(w, yT, xT, rows, dW));
                double st = Ms(() => CsrSpmm.Multiply(wt, yT, rows, xT));
                double stx = Ms(() => CsrSpmmTransposed.Multiply(w, yT, rows, xT));
                Console.WriteLine($"{inF}x{outF} rows {rows} t{threads} {spec}: transpose x {tx:F2} ms, y {ty:F2} ms (x2 each per step); W·xT {sx:F2}; SDDMM {sd:F2}; Wt·dyT (CSR of Wt) {st:F2}; (CsrSpmmTransposed {stx:F2})");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// nm:2:4's three training products, each kernel on its own (every kernel once per round, rounds in turn; median
    /// and minimum over the rounds), against the dense GEMM's same product; GMAC/s counts useful multiply-adds (rows·In·Out for dense, half that for 2:4), and "per MAC" is the
    /// 2:4 kernel's rate over the GEMM's (0.5 = no faster than dense).
    /// </summary>
    static void NmParts(int inF, int outF, int rows, int threads, bool cpuTime, int rounds)
    {
        KernelThreads.Max = threads;
        var rng = new Rng(1);
        var w = NmLinearWeight.Random(outF, inF, 2, 4, rng);
        var values = Random(rng, w.StoredCount);
        var dense = new float[outF * inF];
        w.ToDense(values, dense);
        var x = Random(rng, rows * inF);
        var dy = Random(rng, rows * outF);
        var y = new float[rows * outF];
        var dx = new float[rows * inF];
        var dW = new float[outF * inF];
        int slots = inF / 2;
        bool cpu = cpuTime && threads == 1;
        // (product, kernel, action); the dense GEMM's of each product first.
        var cases = new List<(string Product, string Kernel, Action Run)>
        {
            ("forward", "GEMM", () => Gemm.Multiply(false, true, rows, outF, inF, 1f, x, inF, dense, inF, 0f, y, outF)),
            ("dW", "GEMM", () => Gemm.Multiply(true, false, outF, inF, rows, 1f, dy, outF, x, inF, 0f, dW, inF)),
            ("dx", "GEMM", () => Gemm.Multiply(false, false, rows, inF, outF, 1f, dy, outF, dense, inF, 0f, dx, inF)),
        };
        var indexTensor = w.ExportIndices()[0].Values;
        if (NmLinear.Supports(4))
        {
            long panel = NmLinear.PanelLength(outF, slots);
            var packed = new float[panel];
            var controls = new int[panel];
            var expanded = new float[outF * inF];
            NmLinear.PackIndices(q => indexTensor[q], outF, slots, controls);
            var gradient = new float[panel];
            var xBlock = new float[NmLinear.GradientWorkspace(rows, inF)];
            cases.Add(("forward", "NmLinear (permutes, pack included)", () =>
            {
                NmLinear.Pack(values, outF, slots, packed);
                NmLinear.Forward(x, rows, inF, outF, 2, 4, packed, controls, default, default, y);
            }));
            cases.Add(("dW", "NmLinear (permutes)", () => NmLinear.WeightGradient(dy, x, rows, inF, outF, 2, 4, controls, gradient, xBlock)));
            var gathered = new float[w.StoredCount];
            cases.Add(("dW", "GEMM on the dense shape, then gather", () =>
            {
                Gemm.Multiply(true, false, outF, inF, rows, 1f, dy, outF, x, inF, 0f, dW, inF);
                w.Gather(dW, gathered);
            }));
            cases.Add(("dx", "GEMM on W expanded (ToDense included)", () =>
            {
                w.ToDense(values, expanded);
                Gemm.Multiply(false, false, rows, inF, outF, 1f, dy, outF, expanded, inF, 0f, dx, inF);
            }));
        }
        if (Nm24Gradients.Supported)
        {
            var kernel = new Nm24Gradients(outF, inF, q => indexTensor[q]);
            var workspace = new float[kernel.InputGradientWorkspaceFloats(rows)];
            cases.Add(("dx", "Nm24Gradients (transposes included)", () => kernel.InputGradient(dy, rows, values, default, dx, workspace)));
            var gradientWorkspace = new float[kernel.WeightGradientWorkspaceFloats(rows)];
            var dValues = new float[w.StoredCount];
            cases.Add(("dW", "Nm24 class lists (transposes included)", () => kernel.WeightGradient(dy, x, rows, dValues, gradientWorkspace)));
        }
        // Every case once per round, rounds in turn (the machine's speed drifts); at least 0.05 s per timing.
        var inner = new int[cases.Count];
        for (int i = 0; i < cases.Count; i++)
        {
            cases[i].Run();
            double once = BenchUtil.TimePerCall(cases[i].Run, 1, 1, 0)[0];
            inner[i] = (int)Math.Clamp(0.05 / Math.Max(once, 1e-9), 1, 1000);
        }
        var ms = cases.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < cases.Count; i++)
            {
                double t0 = BenchUtil.Now(cpu);
                for (int r = 0; r < inner[i]; r++) cases[i].Run();
                ms[i].Add(1e3 * (BenchUtil.Now(cpu) - t0) / inner[i]);
            }
        double macs = (double)rows * inF * outF;
        Console.WriteLine($"{inF}x{outF} rows {rows} t{threads} nm:2:4 ({(cpu ? "CPU time" : "wall clock")}, {rounds} rounds; ms as median / min):");
        Console.WriteLine($"  {"product",-8} {"kernel",-40} {"ms",15} {"GMAC/s",7} {"per MAC",8} {"speed-up",9} {"(of mins)",9}");
        for (int i = 0; i < cases.Count; i++)
        {
            var (product, kernel, _) = cases[i];
            int d = cases.FindIndex(c => c.Product == product);
            double m = Median(ms[i].ToArray()), lo = ms[i].Min(), dm = Median(ms[d].ToArray()), dlo = ms[d].Min();
            bool sparse = i >= 3;
            double useful = sparse ? macs / 2 : macs;
            Console.WriteLine($"  {product,-8} {kernel,-40} {m,7:F2} / {lo,6:F2} {useful / m / 1e6,7:F1} {(sparse ? dm / m / 2 : 1),8:F2} {dm / m,8:F2}x {dlo / lo,8:F2}x");
        }
    }

    static float[] Random(Rng rng, int length, double scale = 1)
    {
        var a = new float[length];
        for (int i = 0; i < length; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }
}
