using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;
using NanoSparse.Sparse;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench kernels`: every sparse format and kernel against our dense GEMM and, in the same run, against
/// NumPy/OpenBLAS dense sgemm, SciPy CSR, PyTorch dense and sparse CSR and Eigen (bench/peers/sparse_peers.py,
/// bench/peers/eigen_spmm.cpp), all on the same thread count and the same matrices (written here to a temp dir).
/// Cases: S (M×K) in {(768,768), (3072,768), (768,3072)}, X (K×N) with N in {1,16,128,512}, sparsity in
/// {0, .5, .7, .8, .9, .95, .98} with uniformly random positions, plus 2:4 by magnitude.
/// Effective GFLOP/s counts useful work only: 2·nnz·N.
/// </summary>
public static class SparseKernelsBench
{
    static readonly (int M, int K)[] Shapes = [(768, 768), (3072, 768), (768, 3072)];
    static readonly int[] Ns = [1, 16, 128, 512];
    static readonly double[] Sparsities = [0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98];

    public static Command CreateCommand()
    {
        var quick = new Option<bool>("--quick") { Description = "a small subset: (768,768) and (768,3072), N in {1,128}, sparsity {0.7, 0.9, 2:4}" };
        var json = new Option<string?>("--json") { Description = "write every row to this JSON file" };
        var png = new Option<string?>("--png") { Description = "speed-up plot path prefix (default bench-results/sparse_kernels)" };
        var threads = new Option<int>("--threads") { Description = "threads for us and every peer (default 2)", DefaultValueFactory = _ => 2 };
        var reps = new Option<int>("--reps") { Description = "timed repetitions per measurement (median reported)", DefaultValueFactory = _ => 5 };
        var noPeers = new Option<bool>("--no-peers") { Description = "skip the Python/Eigen peers" };
        var rounds = new Option<int>("--rounds") { Description = "measure every case this many times in turn and report per-case medians across rounds (ratios: the median of the per-round ratios)", DefaultValueFactory = _ => 1 };
        var shapesOpt = new Option<string?>("--shapes") { Description = "only these shapes, MxK comma-separated (e.g. 768x768,768x3072)" };
        var nsOpt = new Option<string?>("--ns") { Description = "only these N, comma-separated (e.g. 1,128)" };
        var patternsOpt = new Option<string?>("--patterns") { Description = "only these patterns, comma-separated (e.g. s0.90,2:4)" };
        var formatsOpt = new Option<string?>("--formats") { Description = "only these kernel/format rows, comma-separated: a format (CSR, 2:4, BSR4x4, ...) or kernel:format with kernel sx, stx or sddmm (e.g. sx:CSR,sddmm:CSR)" };
        var command = new Command("kernels", "sparse formats and kernels vs dense GEMM, OpenBLAS, SciPy, PyTorch, Eigen");
        command.Options.Add(quick);
        command.Options.Add(json);
        command.Options.Add(png);
        command.Options.Add(threads);
        command.Options.Add(reps);
        command.Options.Add(noPeers);
        command.Options.Add(rounds);
        command.Options.Add(shapesOpt);
        command.Options.Add(nsOpt);
        command.Options.Add(patternsOpt);
        command.Options.Add(formatsOpt);
        command.SetAction(r =>
        {
            int t = r.GetValue(threads);
            if (t < 1) throw new ArgumentException($"--threads must be at least 1, got {t}");
            var filter = Filter.Parse(r.GetValue(shapesOpt), r.GetValue(nsOpt), r.GetValue(patternsOpt), r.GetValue(formatsOpt));
            int rc = r.GetValue(rounds);
            if (rc < 1) throw new ArgumentException($"--rounds must be at least 1, got {rc}");
            BenchUtil.CheckRepetitions("--rounds", rc);
            BenchUtil.CheckRepetitions("--reps", Math.Max(1, r.GetValue(reps)));
            Run(r.GetValue(quick), r.GetValue(json), r.GetValue(png) ?? "bench-results/sparse_kernels", t, Math.Max(1, r.GetValue(reps)), !r.GetValue(noPeers), filter, rc);
            return 0;
        });
        return command;
    }

    /// <summary>Which cases to run (narrow A/B runs while tuning one kernel); null lists mean all.</summary>
    sealed record Filter((int M, int K)[]? Shapes, int[]? Ns, string[]? Patterns, (string? Kernel, string Format)[]? Formats)
    {
        public static readonly Filter All = new(null, null, null, null);

        static string[]? Split(string? list) =>
            string.IsNullOrWhiteSpace(list) ? null : list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        public static Filter Parse(string? shapes, string? ns, string? patterns, string? formats) => new(
            Split(shapes)?.Select(ParseShape).ToArray(),
            Split(ns)?.Select(v => int.TryParse(v, out int n) && n >= 1 ? n : throw new ArgumentException($"--ns: '{v}' is not a positive integer")).ToArray(),
            Split(patterns),
            Split(formats)?.Select(ParseFormat).ToArray());

        static (int, int) ParseShape(string v)
        {
            var parts = v.Split('x');
            if (parts.Length == 2 && int.TryParse(parts[0], out int m) && int.TryParse(parts[1], out int k) && m > 0 && k > 0) return (m, k);
            throw new ArgumentException($"--shapes: '{v}' is not MxK (e.g. 768x3072)");
        }

        static (string?, string) ParseFormat(string v)
        {
            int colon = v.IndexOf(':');
            // "2:4" is a format, not kernel:format.
            if (colon < 0 || v == "2:4") return (null, v);
            string kernel = v[..colon].ToLowerInvariant() switch
            {
                "sx" or "s·x" => "S·X",
                "stx" or "sᵀ·x" => "Sᵀ·X",
                "sddmm" => "SDDMM",
                var other => throw new ArgumentException($"--formats: kernel '{other}' in '{v}' is not sx, stx or sddmm"),
            };
            return (kernel, v[(colon + 1)..]);
        }

        public bool Shape(int m, int k) => Shapes is null || Shapes.Contains((m, k));
        public bool N(int n) => Ns is null || Ns.Contains(n);
        public bool Pattern(string label) => Patterns is null || Patterns.Contains(label, StringComparer.OrdinalIgnoreCase);
        public bool Row(string kernel, string format) => Formats is null
            || Formats.Any(f => (f.Kernel is null || f.Kernel == kernel) && string.Equals(f.Format, format, StringComparison.OrdinalIgnoreCase));
    }

    sealed record Pattern(int M, int K, string Label, double Sparsity, CsrMatrix Csr, float[] Dense, NmSparseMatrix? Nm)
    {
        public string Id => $"{M}x{K}_{Label}";
    }

    sealed class Row
    {
        public int M { get; set; }
        public int K { get; set; }
        public int N { get; set; }
        public string Pattern { get; set; } = "";
        public double Sparsity { get; set; }
        public string Kernel { get; set; } = "";
        public string Format { get; set; } = "";
        public long Nnz { get; set; }
        public double MedianMs { get; set; }
        public double MinMs { get; set; }
        public double Gflops { get; set; }
        public double OursDenseMs { get; set; }
        public double SpeedupVsOursDense { get; set; }
        public string? OpenBlasRoutine { get; set; }
        public double? OpenBlasDenseMs { get; set; }
        public double? SpeedupVsOpenBlas { get; set; }
        public double? OpenBlasDenseMinMs { get; set; }
        public double? SpeedupVsOpenBlasOfMins { get; set; }
        public double? BestSparsePeerMs { get; set; }
        public string? BestSparsePeer { get; set; }
        public double? SpeedupVsBestSparsePeer { get; set; }
        public Dictionary<string, double>? Peers { get; set; }
    }

    static void Run(bool quick, string? jsonPath, string pngPrefix, int threads, int reps, bool peers, Filter filter, int rounds)
    {
        KernelThreads.Max = threads;
        OpenBlas.SetThreads(threads);
        var shapes = (quick ? new[] { (768, 768), (768, 3072) } : Shapes).Where(s => filter.Shape(s.Item1, s.Item2)).ToArray();
        var ns = (quick ? new[] { 1, 128 } : Ns).Where(filter.N).ToArray();
        var sparsities = quick ? new[] { 0.7, 0.9 } : Sparsities;
        string dir = Path.Combine(Path.GetTempPath(), $"nanosparse-bench-kernels-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        Console.WriteLine($"bench kernels: threads {threads}, reps {reps}, rounds {rounds}, temp {dir}");
        string core = OpenBlas.CoreName;
        Console.WriteLine($"in-process OpenBLAS: {core} kernels" + (OpenBlas.RemovedCoreType is { } removed
            ? $" (OPENBLAS_CORETYPE={removed} removed before it loaded, as for the peers)" : ""));
        var warnings = new List<string>();
        PeerServer? python = null, eigen = null;
        try
        {
            if (peers)
            {
                python = PeerServer.StartPython(threads, reps);
                eigen = PeerServer.StartEigen(threads, reps);
                string? peerCore = python?.ReadyField("openblas_core");
                if (peerCore is not null && peerCore != core)
                    warnings.Add($"WARNING: the in-process OpenBLAS runs {core} kernels, NumPy's runs {peerCore}: the dense yardstick is not NumPy's");
                foreach (var w in warnings) Console.WriteLine(w);
            }
            var perRound = new List<List<Row>>();
            for (int round = 1; round <= rounds; round++)
            {
                var rows = new List<Row>();
                perRound.Add(rows);
                foreach (var (m, k) in shapes)
                {
                    var patterns = new List<Pattern>();
                    ulong seed = (ulong)(m * 7919 + k);
                    foreach (double sp in sparsities) patterns.Add(Unstructured(m, k, sp, seed++));
                    patterns.Add(TwoFour(m, k, seed++));
                    foreach (var p in patterns) WriteCsr(dir, p);
                    string densePath = Write(dir, $"dense_{m}x{k}.f32", patterns[0].Dense);
                    foreach (int n in ns)
                    {
                        var x = Random(k * n, seed + (ulong)n * 31);
                        var xt = Random(m * n, seed + (ulong)n * 37);
                        string xPath = Write(dir, $"x_{m}x{k}_{n}.f32", x), xtPath = Write(dir, $"xt_{m}x{k}_{n}.f32", xt);
                        double oursDense = TimeOurDense(m, k, n, patterns[0].Dense, x, reps);
                        // Dense OpenBLAS in this process, timed before every sparse measurement, so the dense
                        // yardstick is taken over the same minutes (and the same machine load) as the kernels.
                        var blas = new DenseBlas(m, k, n, patterns[0].Dense, x, xt, reps);
                        var group = new List<Row>();
                        foreach (var p in patterns)
                        {
                            // The dense pattern (s0.00) is generated even when filtered out: it is the dense yardstick.
                            if (!filter.Pattern(p.Label)) continue;
                            var mine = TimeKernels(p, n, x, xt, reps, blas, filter).ToList();
                            if (mine.Count == 0) continue;
                            var sparsePeers = new Dictionary<string, double>();
                            string indptr = Path.Combine(dir, $"indptr_{p.Id}.i32"), indices = Path.Combine(dir, $"indices_{p.Id}.i32"), data = Path.Combine(dir, $"data_{p.Id}.f32");
                            bool spmm = mine.Any(r => r.Kernel == "S·X");
                            if (python is not null && spmm)
                                foreach (var kv in python.Ask(JsonSerializer.Serialize(new Dictionary<string, object>
                                {
                                    ["op"] = "sparse", ["m"] = m, ["k"] = k, ["n"] = n, ["x"] = xPath, ["indptr"] = indptr, ["indices"] = indices, ["data"] = data,
                                })))
                                    sparsePeers[kv.Key] = kv.Value;
                            if (eigen is not null && spmm)
                                sparsePeers["eigen_csr"] = eigen.AskNumber($"{m} {k} {n} {indptr} {indices} {data} {xPath}");
                            foreach (var row in mine)
                            {
                                row.OursDenseMs = oursDense;
                                row.SpeedupVsOursDense = oursDense / row.MedianMs;
                                row.Peers = new(sparsePeers);
                                group.Add(row);
                            }
                        }
                        if (group.Count == 0) continue;
                        var densePeers = python?.Ask(JsonSerializer.Serialize(new Dictionary<string, object>
                        {
                            ["op"] = "dense", ["m"] = m, ["k"] = k, ["n"] = n, ["s"] = densePath, ["x"] = xPath, ["xt"] = xtPath,
                        }));
                        foreach (var row in group)
                        {
                            if (densePeers is not null) foreach (var kv in densePeers) row.Peers![kv.Key] = kv.Value;
                            row.OpenBlasRoutine = YardstickCheck.Routine(row.Kernel, n);
                            row.OpenBlasDenseMs = MedianOf(blas.Pool(row.Kernel));
                            row.SpeedupVsOpenBlas = row.OpenBlasDenseMs / row.MedianMs;
                            row.OpenBlasDenseMinMs = blas.Min(row.Kernel);
                            row.SpeedupVsOpenBlasOfMins = row.OpenBlasDenseMinMs / row.MinMs;
                            if (row.Kernel == "S·X")
                            {
                                var best = row.Peers!.Where(kv => kv.Key is "scipy_csr" or "torch_csr" or "eigen_csr").OrderBy(kv => kv.Value).ToList();
                                if (best.Count > 0)
                                {
                                    row.BestSparsePeer = best[0].Key;
                                    row.BestSparsePeerMs = best[0].Value;
                                    row.SpeedupVsBestSparsePeer = best[0].Value / row.MedianMs;
                                }
                            }
                        }
                        rows.AddRange(group);
                        var csr90 = group.FirstOrDefault(r => r.Kernel == "S·X" && r.Format == "CSR" && r.Pattern == "s0.90");
                        Console.WriteLine((rounds > 1 ? $"round {round}/{rounds} " : "") + $"{m}x{k} N={n}: our dense GEMM {oursDense:F3} ms, OpenBLAS {MedianOf(blas.Pool("S·X")):F3} ms"
                            + (csr90 is null ? "" : $"; CSR S·X at 90%: {csr90.MedianMs:F3} ms = {csr90.SpeedupVsOpenBlas:F2}x OpenBLAS, {Fmt(csr90.SpeedupVsBestSparsePeer)}x best sparse peer ({csr90.BestSparsePeer})"));
                    }
                }
            }
            var result = rounds == 1 ? perRound[0] : MedianAcrossRounds(perRound);
            if (rounds > 1) Console.WriteLine($"medians across {rounds} rounds (ratios: median of the per-round ratios; min columns: fastest sample of any round):");
            Print(result);
            var checks = YardstickCheck.Compare(result.Select(r => new YardstickCheck.Case(r.M, r.K, r.N, r.Kernel, r.OpenBlasDenseMs, r.OpenBlasDenseMinMs, r.Peers)));
            PrintCheck(checks, warnings);
            if (jsonPath is not null) WriteJson(jsonPath, result, threads, rounds, core, checks, warnings);
            if (filter == Filter.All) Plot(result, pngPrefix);
        }
        finally
        {
            python?.Dispose();
            eigen?.Dispose();
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// One row per case from several rounds of the same cases: times and every ratio are the medians over rounds (a
    /// ratio's median is taken over its per-round values, each from one round's back-to-back measurements, so a slow
    /// stretch of the machine that hits one round does not skew it); the min columns keep the fastest sample.
    /// </summary>
    static List<Row> MedianAcrossRounds(List<List<Row>> rounds)
    {
        static double Med(IEnumerable<double> v) => MedianOf(v.ToList());
        static double? MedOpt(IEnumerable<double?> v) { var l = v.Where(x => x.HasValue).Select(x => x!.Value).ToList(); return l.Count == 0 ? null : MedianOf(l); }
        var result = new List<Row>();
        foreach (var first in rounds[0])
        {
            var same = rounds.Select(r => r.Find(x => x.M == first.M && x.K == first.K && x.N == first.N && x.Pattern == first.Pattern
                && x.Kernel == first.Kernel && x.Format == first.Format)).Where(x => x is not null).Select(x => x!).ToList();
            var row = new Row
            {
                M = first.M, K = first.K, N = first.N, Pattern = first.Pattern, Sparsity = first.Sparsity, Kernel = first.Kernel,
                Format = first.Format, Nnz = first.Nnz,
                MedianMs = Med(same.Select(x => x.MedianMs)),
                MinMs = same.Min(x => x.MinMs),
                OursDenseMs = Med(same.Select(x => x.OursDenseMs)),
                SpeedupVsOursDense = Med(same.Select(x => x.SpeedupVsOursDense)),
                OpenBlasRoutine = first.OpenBlasRoutine,
                OpenBlasDenseMs = MedOpt(same.Select(x => x.OpenBlasDenseMs)),
                SpeedupVsOpenBlas = MedOpt(same.Select(x => x.SpeedupVsOpenBlas)),
                OpenBlasDenseMinMs = same.Any(x => x.OpenBlasDenseMinMs.HasValue) ? same.Where(x => x.OpenBlasDenseMinMs.HasValue).Min(x => x.OpenBlasDenseMinMs) : null,
                BestSparsePeerMs = MedOpt(same.Select(x => x.BestSparsePeerMs)),
                SpeedupVsBestSparsePeer = MedOpt(same.Select(x => x.SpeedupVsBestSparsePeer)),
                BestSparsePeer = same.Where(x => x.BestSparsePeer is not null).GroupBy(x => x.BestSparsePeer).OrderByDescending(g => g.Count()).FirstOrDefault()?.Key,
            };
            row.Gflops = 2.0 * row.Nnz * row.N / (row.MedianMs * 1e6);
            row.SpeedupVsOpenBlasOfMins = row.OpenBlasDenseMinMs / row.MinMs;
            if (same.Any(x => x.Peers is not null))
                row.Peers = same.Where(x => x.Peers is not null).SelectMany(x => x.Peers!).GroupBy(kv => kv.Key)
                    .ToDictionary(g => g.Key, g => g.Key.EndsWith(YardstickCheck.MinSuffix) ? g.Min(kv => kv.Value) : Med(g.Select(kv => kv.Value)));
            result.Add(row);
        }
        return result;
    }

    static double MedianOf(List<double> samples)
    {
        if (samples.Count == 0) return double.NaN;
        var sorted = samples.OrderBy(v => v).ToArray();
        return sorted[sorted.Length / 2];
    }

    /// <summary>
    /// The dense products each sparse kernel replaces, through OpenBLAS in this process, sampled on demand. Operands
    /// and result are 64-byte-aligned copies (<see cref="AlignedBuffer"/>), as in the Python peer.
    /// </summary>
    sealed class DenseBlas(int m, int k, int n, float[] dense, float[] xSource, float[] xtSource, int reps)
    {
        readonly AlignedBuffer _s = new(dense), _x = new(xSource), _xt = new(xtSource);
        readonly AlignedBuffer _y = new((int)Math.Max((long)m * n, Math.Max((long)k * n, (long)m * k)));
        readonly Dictionary<string, List<double>> _pools = new() { ["S·X"] = [], ["Sᵀ·X"] = [], ["SDDMM"] = [] };

        readonly Dictionary<string, double> _mins = new();

        public List<double> Pool(string kernel) => _pools[kernel];
        public double Min(string kernel) => _mins.GetValueOrDefault(kernel, double.NaN);

        /// <summary>
        /// Times the product (the median of <c>reps</c> samples after the warm-up, as the peers time theirs) and adds
        /// it to that kernel's pool. N &gt; 1: sgemm of S@X, Sᵀ@X' and the full X'@Xᵀ.
        /// N = 1: sgemv for S·x and Sᵀ·x' (as NumPy's S @ x with a 1-D x, and torch.mv), and for SDDMM the rank-1
        /// update G += x'·xᵀ by sger. That is how a dense layer forms its weight gradient at batch 1 (it accumulates
        /// into the gradient, so no zeroing pass is owed), and it was the fastest dense way to get all M·K products:
        /// SciPy's sger into a kept array against sgemm with inner dimension 1 and beta = 0 (which zeroes C, then adds
        /// into it), fastest samples of 15 on the shared machine, 2 threads, Cooperlake kernels: 768×768 0.027–0.030
        /// against 0.032 ms, 3072×768 0.14–0.72 against 0.73–1.77 ms, 768×3072 0.18–0.35 against 1.37–4.7 ms.
        /// </summary>
        public void Sample(string kernel)
        {
            Action run = (kernel, n) switch
            {
                ("Sᵀ·X", 1) => () => OpenBlas.Sgemv(true, m, k, _s, _xt, _y),
                ("SDDMM", 1) => () => OpenBlas.Sger(m, k, _xt, _x, _y),
                (_, 1) => () => OpenBlas.Sgemv(false, m, k, _s, _x, _y),
                ("Sᵀ·X", _) => () => OpenBlas.Sgemm(true, false, k, n, m, _s, k, _xt, n, _y, n),
                ("SDDMM", _) => () => OpenBlas.Sgemm(false, true, m, k, n, _xt, n, _x, n, _y, k),
                _ => () => OpenBlas.Sgemm(false, false, m, n, k, _s, k, _x, n, _y, n),
            };
            Settle.Before("openblas");
            var (median, min) = MedianAndMin(run, reps);
            Settle.After("openblas");
            _pools[kernel].Add(median);
            _mins[kernel] = Math.Min(_mins.GetValueOrDefault(kernel, double.MaxValue), min);
        }
    }

    static Pattern Unstructured(int m, int k, double sparsity, ulong seed)
    {
        // Uniformly random positions: each element kept with probability 1 - sparsity; values N(0, 1).
        var rng = new Rng(seed);
        var dense = new float[m * k];
        for (int i = 0; i < dense.Length; i++)
            if (rng.NextDouble() >= sparsity) { float v = (float)rng.NextGaussian(); dense[i] = v == 0 ? 1e-3f : v; }
        return new Pattern(m, k, $"s{sparsity:0.00}", sparsity, CsrMatrix.FromDense(dense, m, k), dense, null);
    }

    static Pattern TwoFour(int m, int k, ulong seed)
    {
        var full = Random(m * k, seed);
        var nm = NmSparseMatrix.Prune(full, m, k, 2, 4);
        var dense = nm.ToDense();
        return new Pattern(m, k, "2:4", 0.5, CsrMatrix.FromDense(dense, m, k), dense, nm);
    }

    static float[] Random(int length, ulong seed)
    {
        var rng = new Rng(seed);
        var a = new float[length];
        for (int i = 0; i < a.Length; i++) a[i] = (float)rng.NextGaussian();
        return a;
    }

    static string Write(string dir, string name, ReadOnlySpan<float> data)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data).ToArray());
        return path;
    }

    static void WriteCsr(string dir, Pattern p)
    {
        var csr = p.Csr;
        var indices = new int[csr.NonZeroCount];
        for (int q = 0; q < indices.Length; q++) indices[q] = csr.ColumnIndex(q);
        File.WriteAllBytes(Path.Combine(dir, $"indptr_{p.Id}.i32"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(csr.RowPointers.AsSpan()).ToArray());
        File.WriteAllBytes(Path.Combine(dir, $"indices_{p.Id}.i32"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(indices.AsSpan()).ToArray());
        Write(dir, $"data_{p.Id}.f32", csr.Values);
        Write(dir, $"dense_{p.Id}.f32", p.Dense);
    }

    /// <summary>
    /// Every contender (ours, OpenBLAS here, the Python and Eigen peers) runs untimed for this long before its samples.
    /// On these virtual machines a core that sat idle (during a peer's turn, or a <see cref="Settle"/> wait) runs a
    /// two-thread kernel at about one thread's speed for its first few ms: CSR S·X 768×768 N = 128 at 90% after a
    /// 150 ms sleep measured 263–361 µs per call (medians of 40, scratch) with no warm-up, 181–185 µs after 10 ms and
    /// 142 µs after 30–100 ms of calls, against 147–152 µs with no sleep at all.
    /// </summary>
    const double WarmupMs = 30;

    /// <summary>Median ms per call; each sample repeats the call until it lasts ≥ 0.5 ms (µs-scale SpMV).</summary>
    static double Median(Action run, int reps) => MedianAndMin(run, reps).Median;

    /// <summary>Median and fastest sample (ms per call). On a loaded machine the minimum is the better estimate of speed.</summary>
    static (double Median, double Min) MedianAndMin(Action run, int reps)
    {
        var sw = Stopwatch.StartNew();
        do run(); while (sw.Elapsed.TotalMilliseconds < WarmupMs);
        sw.Restart();
        run();
        double once = sw.Elapsed.TotalMilliseconds;
        int iters = once < 0.5 ? Math.Min(1000, (int)(0.5 / Math.Max(once, 1e-6)) + 1) : 1;
        var samples = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            sw.Restart();
            for (int i = 0; i < iters; i++) run();
            samples[r] = sw.Elapsed.TotalMilliseconds / iters;
        }
        Array.Sort(samples);
        return (samples[reps / 2], samples[0]);
    }

    static double TimeOurDense(int m, int k, int n, float[] s, float[] x, int reps)
    {
        var y = new float[m * n];
        void Run() => Gemm.Multiply(false, false, m, n, k, 1f, s, k, x, n, 0f, y, n);
        // A slow placeholder GEMM would dominate the run: one timed call is enough when a call takes > 0.2 s.
        Settle.Before("ours");
        var sw = Stopwatch.StartNew();
        Run();
        double first = sw.Elapsed.TotalMilliseconds;
        double ms = first > 200 ? first : Median(Run, reps);
        Settle.After("ours");
        return ms;
    }

    static IEnumerable<Row> TimeKernels(Pattern p, int n, float[] x, float[] xt, int reps, DenseBlas blas, Filter filter)
    {
        int m = p.M, k = p.K;
        var csr = p.Csr;
        long nnz = csr.NonZeroCount;
        var y = new float[m * n];
        var yt = new float[k * n];
        var grad = new float[nnz];
        // Conversions are lazy so a filtered run builds only the formats it times.
        var coo = new Lazy<CooMatrix>(csr.ToCoo);
        var csc = new Lazy<CscMatrix>(() => csr.ToCsc());
        var list = new List<(string Kernel, string Format, Func<Action> Make)>
        {
            ("S·X", "CSR", () => () => CsrSpmm.Multiply(csr, x, n, y)),
        };
        if (p.Nm is { } nm) list.Add(("S·X", "2:4", () => () => NmSpmm.Multiply(nm, x, n, y)));
        list.Add(("S·X", "COO", () => { var c = coo.Value; return () => CooSpmm.Multiply(c, x, n, y); }));
        list.Add(("S·X", "CSC", () => { var c = csc.Value; return () => CscSpmm.Multiply(c, x, n, y); }));
        list.Add(("S·X", "Bitmap", () => { var b = BitmapMatrix.FromCsr(csr); return () => BitmapSpmm.Multiply(b, x, n, y); }));
        list.Add(("S·X", "SELL", () => { var q = SellMatrix.FromCsr(csr); return () => SellSpmm.Multiply(q, x, n, y); }));
        if (n == 1)   // the decode SpMV formats (one vector only)
        {
            list.Add(("S·X", "SELL-128", () => { var q = SellWideMatrix.FromCsr(csr, 128); return () => SellWideSpmv.Multiply(q, x.AsSpan(0, k), y); }));
            list.Add(("S·X", "SELL-256", () => { var q = SellWideMatrix.FromCsr(csr, 256); return () => SellWideSpmv.Multiply(q, x.AsSpan(0, k), y); }));
            list.Add(("S·X", "Bitmap-SpMV", () => { var b = BitmapMatrix.FromCsr(csr); return () => BitmapSpmv.Multiply(b, x.AsSpan(0, k), y); }));
        }
        list.Add(("S·X", "BSR4x4", () => { var b = BsrMatrix.FromDense(p.Dense, m, k, 4, 4); return () => BsrSpmm.Multiply(b, x, n, y); }));
        list.Add(("S·X", "dense-zero-skip", () => () => ZeroSkippingGemm.Multiply(m, n, k, p.Dense, x, y)));
        list.Add(("Sᵀ·X", "CSR", () => () => CsrSpmmTransposed.Multiply(csr, xt, n, yt)));
        list.Add(("Sᵀ·X", "CSC", () => { var c = csc.Value; return () => CscSpmm.MultiplyTransposed(c, xt, n, yt); }));
        list.Add(("SDDMM", "CSR", () => () => Sddmm.Compute(csr, xt, x.AsSpan(0, k * n), n, grad)));
        foreach (var (kernel, format, make) in list)
        {
            if (!filter.Row(kernel, format)) continue;
            var run = make();
            long count = nnz;
            blas.Sample(kernel);
            Settle.Before("ours");
            var (ms, min) = MedianAndMin(run, reps);
            Settle.After("ours");
            yield return new Row
            {
                M = m, K = k, N = n, Pattern = p.Label, Sparsity = p.Sparsity, Kernel = kernel, Format = format, Nnz = count,
                MedianMs = ms, MinMs = min, Gflops = 2.0 * count * n / (ms * 1e6),
            };
        }
    }

    internal static string? EnsureEigen()
    {
        string source = BenchUtil.FindPeer("eigen_spmm.cpp");
        string cache = Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "nanosparse", "peers");
        Directory.CreateDirectory(cache);
        string binary = Path.Combine(cache, "eigen_spmm");
        if (File.Exists(binary) && File.GetLastWriteTimeUtc(binary) >= File.GetLastWriteTimeUtc(source)) return binary;
        Console.WriteLine($"compiling Eigen peer into {binary}");
        var psi = new ProcessStartInfo("g++", ["-O3", "-march=native", "-fopenmp", "-DNDEBUG", "-I/usr/include/eigen3", "-o", binary + ".tmp", source]) { RedirectStandardError = true };
        using var proc = Process.Start(psi)!;
        string err = proc.StandardError.ReadToEnd();
        proc.WaitForExit();
        if (proc.ExitCode != 0) { Console.Error.WriteLine($"Eigen peer did not compile (g++ exit {proc.ExitCode}): {err}"); return null; }
        File.Move(binary + ".tmp", binary, overwrite: true);
        return binary;
    }

    static void Print(List<Row> rows)
    {
        Console.WriteLine();
        Console.WriteLine($"{"shape",-10} {"N",4} {"pattern",-6} {"kernel",-6} {"format",-15} {"ms",9} {"GFLOP/s",8} {"xOurDense",9} {"xOpenBLAS",9} {"xBestSp",8} {"xOB(min)",8} {"best sparse peer",-16}");
        foreach (var r in rows)
            Console.WriteLine($"{r.M + "x" + r.K,-10} {r.N,4} {r.Pattern,-6} {r.Kernel,-6} {r.Format,-15} {r.MedianMs,9:F4} {r.Gflops,8:F1} {r.SpeedupVsOursDense,9:F2} {Fmt(r.SpeedupVsOpenBlas),9} {Fmt(r.SpeedupVsBestSparsePeer),8} {Fmt(r.SpeedupVsOpenBlasOfMins),8} {(r.BestSparsePeer is null ? "" : $"{r.BestSparsePeer} {r.BestSparsePeerMs:F3}"),-16}");
        Console.WriteLine();
        Console.WriteLine("x = speed-up (their ms / our ms); OurDense = our dense GEMM (at N = 1 too: NanoSparse has no dense matrix-vector kernel); OpenBLAS = the dense product through OpenBLAS (in-process, sampled between our kernels): sgemm for N > 1, sgemv at N = 1 (SDDMM: sger); best sparse peer = fastest of SciPy CSR, torch CSR, Eigen; xOB(min) = the same ratio from the fastest samples (less sensitive to a loaded machine).");
    }

    /// <summary>The in-process dense yardstick against NumPy's time for the same product, and a WARNING line for each miss.</summary>
    static void PrintCheck(List<YardstickCheck.Comparison> checks, List<string> warnings)
    {
        if (checks.Count > 0)
        {
            Console.WriteLine();
            Console.WriteLine($"dense yardstick check (in-process OpenBLAS vs NumPy, same product, same run; allowed: within {YardstickCheck.Tolerance * 100:0}%):");
            Console.WriteLine($"{"shape",-10} {"N",4} {"kernel",-6} {"routine",-7} {"in-process ms",13} {"NumPy ms",9} {"ratio",6} {"min ratio",9}");
            foreach (var c in checks)
                Console.WriteLine($"{c.M + "x" + c.K,-10} {c.N,4} {c.Kernel,-6} {c.Routine,-7} {c.InProcessMs,13:F4} {c.NumPyMs,9:F4} {c.Ratio,6:F2} {Fmt(c.MinRatio),9}{(c.Within ? "" : "  <- outside")}");
            Console.WriteLine("ratio = in-process ms / NumPy ms (medians; the check); min ratio = the same from the fastest samples (near 1 while the ratio is not: the machine's load, not the routine; the in-process side samples before every kernel row, so with many rows its fastest sample comes from more tries)");
        }
        foreach (var c in checks.Where(c => !c.Within)) warnings.Add(c.Warning);
        foreach (var w in warnings) Console.WriteLine(w);
        if (checks.Count > 0 && checks.All(c => c.Within)) Console.WriteLine($"dense yardstick check: all {checks.Count} within {YardstickCheck.Tolerance * 100:0}% of NumPy");
    }

    static string Fmt(double? v) => v is { } x ? x.ToString("F2") : "-";

    static void WriteJson(string path, List<Row> rows, int threads, int rounds, string openBlasCore, List<YardstickCheck.Comparison> yardstickCheck, List<string> warnings)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        string tmp = path + ".tmp";
        var check = yardstickCheck.Select(c => new { c.M, c.K, c.N, c.Kernel, c.Routine, c.InProcessMs, c.NumPyMs, c.Ratio, c.Within, c.InProcessMinMs, c.NumPyMinMs, c.MinRatio });
        File.WriteAllText(tmp, JsonSerializer.Serialize(new { threads, rounds, openBlasCore, tolerance = YardstickCheck.Tolerance, yardstickCheck = check, warnings, rows },
            new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, path, overwrite: true);
        Console.WriteLine($"wrote {rows.Count} rows to {path}");
    }

    /// <summary>One PNG per shape: CSR S·X speed-up over dense OpenBLAS against sparsity, a line per N.</summary>
    static void Plot(List<Row> rows, string prefix)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(prefix));
        if (folder is not null) Directory.CreateDirectory(folder);
        foreach (var shape in rows.Select(r => (r.M, r.K)).Distinct())
        {
            var plot = new ScottPlot.Plot();
            foreach (int n in rows.Select(r => r.N).Distinct())
            {
                var line = rows.Where(r => r.M == shape.M && r.K == shape.K && r.N == n && r.Kernel == "S·X" && r.Format == "CSR" && r.Pattern != "2:4")
                    .OrderBy(r => r.Sparsity).ToList();
                if (line.Count == 0) continue;
                double[] xs = line.Select(r => r.Sparsity).ToArray();
                // Log scale: speed-ups span 0.1x to 100x.
                double[] ys = line.Select(r => Math.Log10(r.SpeedupVsOpenBlas ?? double.NaN)).ToArray();
                var scatter = plot.Add.Scatter(xs, ys);
                scatter.LegendText = $"N={n}";
            }
            var one = plot.Add.HorizontalLine(0);
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                LabelFormatter = y => $"{Math.Pow(10, y):0.##}x",
            };
            one.LinePattern = ScottPlot.LinePattern.Dashed;
            plot.Title($"CSR S·X, S {shape.M}x{shape.K}: speed-up over dense OpenBLAS (sgemm; sgemv at N = 1)");
            plot.XLabel("sparsity");
            plot.YLabel("speed-up (log scale; 1x = as fast as dense)");
            plot.ShowLegend();
            string path = $"{prefix}_{shape.M}x{shape.K}.png";
            plot.SavePng(path, 900, 560);
            Console.WriteLine($"wrote {path}");
        }
    }
}

/// <summary>
/// Dense BLAS from the system OpenBLAS (the library NumPy uses here), called in-process as the dense yardstick: sgemm
/// for N &gt; 1, and at N = 1 the level-2 routines a dense layer runs at batch 1 (sgemv for S·x and Sᵀ·x, sger for the
/// rank-1 gradient). OpenBLAS 0.3.21's sgemm with n = 1 does not hand over to its matrix-vector kernel (issue 16: at
/// 3072×768, 0.34–0.59 ms against sgemv's 0.065–0.069 ms), so an sgemm yardstick at N = 1 flattered SpMV about 5x.
/// </summary>
internal static unsafe class OpenBlas
{
    const string Lib = "libopenblas.so.0";
    const int RowMajor = 101, NoTrans = 111, Trans = 112;
    [System.Runtime.InteropServices.DllImport(Lib)] static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);
    [System.Runtime.InteropServices.DllImport(Lib)] static extern void cblas_sgemv(int order, int trans, int m, int n, float alpha, float* a, int lda, float* x, int incx, float beta, float* y, int incy);
    [System.Runtime.InteropServices.DllImport(Lib)] static extern void cblas_sger(int order, int m, int n, float alpha, float* x, int incx, float* y, int incy, float* a, int lda);
    [System.Runtime.InteropServices.DllImport(Lib)] static extern void openblas_set_num_threads(int threads);
    [System.Runtime.InteropServices.DllImport(Lib)] static extern nint openblas_get_corename();
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "unsetenv")] static extern int UnsetNativeEnvironmentVariable(string name);

    /// <summary>The OPENBLAS_CORETYPE this process started with (removed before OpenBLAS loaded), or null.</summary>
    public static readonly string? RemovedCoreType = Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE");

    /// <summary>
    /// OpenBLAS picks its kernels once, when the library loads, and obeys OPENBLAS_CORETYPE if set. This machine sets it
    /// to Haswell (AVX2 kernels) while the peers run without it, so NumPy gets the kernels OpenBLAS detects for the CPU
    /// (Cooperlake, AVX-512, on the development machine). The variable is removed from the C library's environment
    /// before the first call here loads OpenBLAS, so both run the same kernels (<see cref="CoreName"/> says which).
    /// Environment.SetEnvironmentVariable would not do: on Linux it changes only .NET's own copy of the environment.
    /// This runs in the static constructor, i.e. before any P/Invoke of this class (they are all reached through
    /// the public methods below); if something else in the process loaded OpenBLAS earlier the removal comes too late,
    /// which the core name printed by the bench, and its check against NumPy's timings, would show.
    /// </summary>
    static OpenBlas()
    {
        if (RemovedCoreType is not null && !OperatingSystem.IsWindows()) UnsetNativeEnvironmentVariable("OPENBLAS_CORETYPE");
    }

    public static void SetThreads(int threads)
    {
        try { openblas_set_num_threads(threads); }
        catch (DllNotFoundException e) { throw new InvalidOperationException($"{Lib} not found: install libopenblas (the dense yardstick); {e.Message}"); }
    }

    /// <summary>The kernel set OpenBLAS chose when it loaded (e.g. Cooperlake, SkylakeX, Zen, Haswell).</summary>
    public static string CoreName => System.Runtime.InteropServices.Marshal.PtrToStringAnsi(openblas_get_corename()) ?? "?";

    /// <summary>Row-major C (m×n) = op(A)·op(B).</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, AlignedBuffer a, int lda, AlignedBuffer b, int ldb, AlignedBuffer c, int ldc) =>
        cblas_sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, 1f, a.Pointer, lda, b.Pointer, ldb, 0f, c.Pointer, ldc);

    /// <summary>y = A·x (y has m entries) or, with <paramref name="trans"/>, y = Aᵀ·x (k entries); A is row-major m×k.</summary>
    public static void Sgemv(bool trans, int m, int k, AlignedBuffer a, AlignedBuffer x, AlignedBuffer y) =>
        cblas_sgemv(RowMajor, trans ? Trans : NoTrans, m, k, 1f, a.Pointer, k, x.Pointer, 1, 0f, y.Pointer, 1);

    /// <summary>A += x·yᵀ with A row-major m×k, x m entries, y k entries (the rank-1 update).</summary>
    public static void Sger(int m, int k, AlignedBuffer x, AlignedBuffer y, AlignedBuffer a) =>
        cblas_sger(RowMajor, m, k, 1f, x.Pointer, 1, y.Pointer, 1, a.Pointer, k);
}

/// <summary>
/// Keeps contenders from being timed while another one's idle threads still spin. After a call, OpenBLAS's worker
/// threads (in this process and in the Python peer) busy-wait for 2^28 TSC cycles before they sleep: measured here,
/// 11 ms of CPU per 10 ms for 95–99 ms after one sgemm. Timed inside that window, a two-thread kernel shares a core
/// with the spinning thread: CSR S·X 768×768 N = 128 at 90% measured 287–395 µs per call right after an sgemm, against
/// 148–151 µs with OPENBLAS_THREAD_TIMEOUT=4 and 147–152 µs with no OpenBLAS (scratch, medians of 40 samples per run). So before timing one contender, wait
/// until every other one has been idle for its spin time: 150 ms for OpenBLAS and the peers (OpenMP's spin is
/// shorter), 1 ms for NanoSparse (its workers spin 100 µs). No contender's own spinning is cut short.
/// </summary>
internal static class Settle
{
    static readonly Stopwatch Clock = Stopwatch.StartNew();
    static readonly Dictionary<string, double> LastMs = new();

    static double SpinMs(string who) => who == "ours" ? 1 : 150;

    public static void Before(string who)
    {
        double until = 0;
        foreach (var (other, last) in LastMs)
            if (other != who) until = Math.Max(until, last + SpinMs(other));
        double wait = until - Clock.Elapsed.TotalMilliseconds;
        if (wait > 0) Thread.Sleep(TimeSpan.FromMilliseconds(wait));
    }

    public static void After(string who) => LastMs[who] = Clock.Elapsed.TotalMilliseconds;
}

/// <summary>A peer process answering one request line with one reply line (sparse_peers.py, eigen_spmm).</summary>
internal sealed class PeerServer : IDisposable
{
    readonly Process _process;
    readonly string _name;
    readonly string _ready;

    PeerServer(string name, ProcessStartInfo psi, int threads)
    {
        _name = name;
        psi.RedirectStandardInput = true;
        psi.RedirectStandardOutput = true;
        psi.UseShellExecute = false;
        psi.Environment.Remove("OPENBLAS_CORETYPE");
        psi.Environment["OPENBLAS_NUM_THREADS"] = threads.ToString();
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString();
        psi.Environment["MKL_NUM_THREADS"] = threads.ToString();
        _process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {name}");
        string? ready = _process.StandardOutput.ReadLine();
        if (ready is null) throw new InvalidOperationException($"peer {name} exited at start (exit {(_process.HasExited ? _process.ExitCode : -1)})");
        Console.WriteLine($"peer {name}: {ready}");
        _ready = ready;
    }

    /// <summary>A string field of the peer's first line (a JSON object for the Python peer), or null.</summary>
    public string? ReadyField(string name)
    {
        try
        {
            using var doc = JsonDocument.Parse(_ready);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        }
        catch (JsonException) { return null; }
    }

    public static PeerServer? StartPython(int threads, int reps)
    {
        try { return new PeerServer("python", new ProcessStartInfo("/usr/bin/python3", [BenchUtil.FindPeer("sparse_peers.py"), threads.ToString(), reps.ToString()]), threads); }
        catch (Exception e) { Console.Error.WriteLine($"Python peers skipped: {e.Message}"); return null; }
    }

    public static PeerServer? StartEigen(int threads, int reps)
    {
        try
        {
            string? binary = SparseKernelsBench.EnsureEigen();
            return binary is null ? null : new PeerServer("eigen", new ProcessStartInfo(binary, [threads.ToString(), reps.ToString()]), threads);
        }
        catch (Exception e) { Console.Error.WriteLine($"Eigen peer skipped: {e.Message}"); return null; }
    }

    string AskLine(string request)
    {
        Settle.Before(_name);
        _process.StandardInput.WriteLine(request);
        _process.StandardInput.Flush();
        string? reply = _process.StandardOutput.ReadLine();
        Settle.After(_name);
        return reply ?? throw new InvalidOperationException($"peer {_name} stopped answering (request: {request})");
    }

    public Dictionary<string, double> Ask(string jsonRequest)
    {
        using var doc = JsonDocument.Parse(AskLine(jsonRequest));
        return doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
    }

    public double AskNumber(string request) => double.Parse(AskLine(request), System.Globalization.CultureInfo.InvariantCulture);

    public void Dispose()
    {
        try { _process.StandardInput.Close(); if (!_process.WaitForExit(5000)) _process.Kill(); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
