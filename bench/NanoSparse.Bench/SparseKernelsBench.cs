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
        var command = new Command("kernels", "sparse formats and kernels vs dense GEMM, OpenBLAS, SciPy, PyTorch, Eigen");
        command.Options.Add(quick);
        command.Options.Add(json);
        command.Options.Add(png);
        command.Options.Add(threads);
        command.Options.Add(reps);
        command.Options.Add(noPeers);
        command.SetAction(r =>
        {
            int t = r.GetValue(threads);
            if (t < 1) throw new ArgumentException($"--threads must be at least 1, got {t}");
            Run(r.GetValue(quick), r.GetValue(json), r.GetValue(png) ?? "bench-results/sparse_kernels", t, Math.Max(1, r.GetValue(reps)), !r.GetValue(noPeers));
            return 0;
        });
        return command;
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
        public double Gflops { get; set; }
        public double OursDenseMs { get; set; }
        public double SpeedupVsOursDense { get; set; }
        public double? OpenBlasDenseMs { get; set; }
        public double? SpeedupVsOpenBlas { get; set; }
        public double? BestSparsePeerMs { get; set; }
        public string? BestSparsePeer { get; set; }
        public double? SpeedupVsBestSparsePeer { get; set; }
        public Dictionary<string, double>? Peers { get; set; }
    }

    static void Run(bool quick, string? jsonPath, string pngPrefix, int threads, int reps, bool peers)
    {
        KernelThreads.Max = threads;
        var shapes = quick ? new[] { (768, 768), (768, 3072) } : Shapes;
        var ns = quick ? new[] { 1, 128 } : Ns;
        var sparsities = quick ? new[] { 0.7, 0.9 } : Sparsities;
        string dir = Path.Combine(Path.GetTempPath(), $"nanosparse-bench-kernels-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        Console.WriteLine($"bench kernels: threads {threads}, reps {reps}, temp {dir}");
        try
        {
            var rows = new List<Row>();
            var manifestDense = new List<Dictionary<string, object>>();
            var manifestCases = new List<Dictionary<string, object>>();
            foreach (var (m, k) in shapes)
            {
                var patterns = new List<Pattern>();
                ulong seed = (ulong)(m * 7919 + k);
                foreach (double sp in sparsities) patterns.Add(Unstructured(m, k, sp, seed++));
                patterns.Add(TwoFour(m, k, seed++));
                foreach (var p in patterns) WriteCsr(dir, p);
                foreach (int n in ns)
                {
                    var x = Random(k * n, seed + (ulong)n * 31);
                    var xt = Random(m * n, seed + (ulong)n * 37);
                    string xPath = Write(dir, $"x_{m}x{k}_{n}.f32", x), xtPath = Write(dir, $"xt_{m}x{k}_{n}.f32", xt);
                    string denseId = $"{m}x{k}_n{n}";
                    manifestDense.Add(new() { ["id"] = denseId, ["m"] = m, ["k"] = k, ["n"] = n, ["x"] = xPath, ["xt"] = xtPath, ["s"] = Path.Combine(dir, $"dense_{patterns[0].Id}.f32") });
                    double oursDense = TimeOurDense(m, k, n, patterns[0].Dense, x, reps);
                    Console.WriteLine($"{m}x{k} N={n}: our dense GEMM {oursDense:F3} ms");
                    foreach (var p in patterns)
                    {
                        string caseId = $"{p.Id}_n{n}";
                        manifestCases.Add(new()
                        {
                            ["id"] = caseId, ["m"] = m, ["k"] = k, ["n"] = n, ["x"] = xPath,
                            ["indptr"] = Path.Combine(dir, $"indptr_{p.Id}.i32"), ["indices"] = Path.Combine(dir, $"indices_{p.Id}.i32"), ["data"] = Path.Combine(dir, $"data_{p.Id}.f32"),
                        });
                        foreach (var row in TimeKernels(p, n, x, xt, reps))
                        {
                            row.OursDenseMs = oursDense;
                            row.SpeedupVsOursDense = oursDense / row.MedianMs;
                            rows.Add(row);
                            Tag(row, denseId, caseId);
                        }
                    }
                }
            }

            PeerResults? peerResults = null;
            if (peers)
            {
                var manifest = new Dictionary<string, object> { ["threads"] = threads, ["reps"] = reps, ["dense"] = manifestDense, ["cases"] = manifestCases };
                string manifestPath = Path.Combine(dir, "manifest.json");
                File.WriteAllText(manifestPath, JsonSerializer.Serialize(manifest));
                peerResults = RunPeers(manifestPath, Path.Combine(dir, "peers.json"), threads);
            }
            Combine(rows, peerResults);
            Print(rows);
            if (jsonPath is not null) WriteJson(jsonPath, rows, threads);
            Plot(rows, pngPrefix, peerResults is not null);
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    // Rows remember which peer entries they compare with (set by Tag, read by Combine).
    static readonly Dictionary<Row, (string DenseId, string CaseId)> Tags = new(ReferenceEqualityComparer.Instance);
    static void Tag(Row row, string denseId, string caseId) => Tags[row] = (denseId, caseId);

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

    /// <summary>Median ms per call; each sample repeats the call until it lasts ≥ 0.5 ms (µs-scale SpMV).</summary>
    static double Median(Action run, int reps)
    {
        run();
        var sw = Stopwatch.StartNew();
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
        return samples[reps / 2];
    }

    static double TimeOurDense(int m, int k, int n, float[] s, float[] x, int reps)
    {
        var y = new float[m * n];
        void Run() => Gemm.Multiply(false, false, m, n, k, 1f, s, k, x, n, 0f, y, n);
        // A slow placeholder GEMM would dominate the run: one timed call is enough when a call takes > 0.2 s.
        var sw = Stopwatch.StartNew();
        Run();
        double first = sw.Elapsed.TotalMilliseconds;
        return first > 200 ? first : Median(Run, reps);
    }

    static IEnumerable<Row> TimeKernels(Pattern p, int n, float[] x, float[] xt, int reps)
    {
        int m = p.M, k = p.K;
        var csr = p.Csr;
        long nnz = csr.NonZeroCount;
        var y = new float[m * n];
        var yt = new float[k * n];
        var list = new List<(string Kernel, string Format, long Nnz, Action Run)>();
        list.Add(("S·X", "CSR", nnz, () => CsrSpmm.Multiply(csr, x, n, y)));
        if (p.Nm is { } nm) list.Add(("S·X", "2:4", nnz, () => NmSpmm.Multiply(nm, x, n, y)));
        var coo = csr.ToCoo();
        list.Add(("S·X", "COO", nnz, () => CooSpmm.Multiply(coo, x, n, y)));
        var csc = csr.ToCsc();
        list.Add(("S·X", "CSC", nnz, () => CscSpmm.Multiply(csc, x, n, y)));
        var bitmap = BitmapMatrix.FromCsr(csr);
        list.Add(("S·X", "Bitmap", nnz, () => BitmapSpmm.Multiply(bitmap, x, n, y)));
        var bsr = BsrMatrix.FromDense(p.Dense, m, k, 4, 4);
        list.Add(("S·X", "BSR4x4", nnz, () => BsrSpmm.Multiply(bsr, x, n, y)));
        list.Add(("S·X", "dense-zero-skip", nnz, () => ZeroSkippingGemm.Multiply(m, n, k, p.Dense, x, y)));
        list.Add(("Sᵀ·X", "CSR", nnz, () => CsrSpmmTransposed.Multiply(csr, xt, n, yt)));
        list.Add(("Sᵀ·X", "CSC", nnz, () => CscSpmm.MultiplyTransposed(csc, xt, n, yt)));
        var grad = new float[nnz];
        list.Add(("SDDMM", "CSR", nnz, () => Sddmm.Compute(csr, xt, x.AsSpan(0, k * n), n, grad)));
        foreach (var (kernel, format, count, run) in list)
        {
            double ms = Median(run, reps);
            yield return new Row
            {
                M = m, K = k, N = n, Pattern = p.Label, Sparsity = p.Sparsity, Kernel = kernel, Format = format, Nnz = count,
                MedianMs = ms, Gflops = 2.0 * count * n / (ms * 1e6),
            };
        }
    }

    sealed record PeerResults(Dictionary<string, Dictionary<string, double>> Dense, Dictionary<string, Dictionary<string, double>> Cases);

    static string? EnsureEigen()
    {
        string source = FindPeerFile("eigen_spmm.cpp");
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

    static string FindPeerFile(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "bench", "peers", name);
            if (File.Exists(candidate)) return candidate;
        }
        string cwd = Path.Combine(Environment.CurrentDirectory, "bench", "peers", name);
        if (File.Exists(cwd)) return cwd;
        throw new FileNotFoundException($"peer file bench/peers/{name} not found above {AppContext.BaseDirectory} or in {Environment.CurrentDirectory}");
    }

    static PeerResults? RunPeers(string manifestPath, string outPath, int threads)
    {
        string? eigen = null;
        try { eigen = EnsureEigen(); } catch (Exception e) { Console.Error.WriteLine($"Eigen peer skipped: {e.Message}"); }
        var psi = new ProcessStartInfo("/usr/bin/python3", [FindPeerFile("sparse_peers.py"), manifestPath, outPath, eigen ?? "-"]);
        psi.Environment.Remove("OPENBLAS_CORETYPE");
        psi.Environment["OPENBLAS_NUM_THREADS"] = threads.ToString();
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString();
        psi.Environment["MKL_NUM_THREADS"] = threads.ToString();
        Console.WriteLine($"running peers: {psi.FileName} {string.Join(' ', psi.ArgumentList)}");
        using var proc = Process.Start(psi)!;
        proc.WaitForExit();
        if (proc.ExitCode != 0 || !File.Exists(outPath)) { Console.Error.WriteLine($"peers failed (exit {proc.ExitCode}); ratios against peers omitted"); return null; }
        using var doc = JsonDocument.Parse(File.ReadAllText(outPath));
        static Dictionary<string, Dictionary<string, double>> Read(JsonElement e) =>
            e.EnumerateObject().ToDictionary(o => o.Name, o => o.Value.EnumerateObject().ToDictionary(v => v.Name, v => v.Value.GetDouble()));
        return new PeerResults(Read(doc.RootElement.GetProperty("dense")), Read(doc.RootElement.GetProperty("cases")));
    }

    static void Combine(List<Row> rows, PeerResults? peers)
    {
        if (peers is null) return;
        foreach (var row in rows)
        {
            var (denseId, caseId) = Tags[row];
            var all = new Dictionary<string, double>();
            if (peers.Dense.TryGetValue(denseId, out var d)) foreach (var kv in d) all[kv.Key] = kv.Value;
            if (peers.Cases.TryGetValue(caseId, out var c)) foreach (var kv in c) all[kv.Key] = kv.Value;
            row.Peers = all;
            // The dense yardstick for each kernel is the dense product computing the same thing:
            // S·X → S@X, Sᵀ·X → S.T@X', SDDMM → the full A@Bᵀ.
            string denseKey = row.Kernel switch { "Sᵀ·X" => "numpy_dense_t", "SDDMM" => "numpy_dense_sddmm", _ => "numpy_dense" };
            if (all.TryGetValue(denseKey, out double ob)) { row.OpenBlasDenseMs = ob; row.SpeedupVsOpenBlas = ob / row.MedianMs; }
            if (row.Kernel == "S·X")
            {
                var sparse = all.Where(kv => kv.Key is "scipy_csr" or "torch_csr" or "eigen_csr").OrderBy(kv => kv.Value).ToList();
                if (sparse.Count > 0)
                {
                    row.BestSparsePeer = sparse[0].Key;
                    row.BestSparsePeerMs = sparse[0].Value;
                    row.SpeedupVsBestSparsePeer = sparse[0].Value / row.MedianMs;
                }
            }
        }
    }

    static void Print(List<Row> rows)
    {
        Console.WriteLine();
        Console.WriteLine($"{"shape",-10} {"N",4} {"pattern",-6} {"kernel",-6} {"format",-15} {"ms",9} {"GFLOP/s",8} {"xOurDense",9} {"xOpenBLAS",9} {"xBestSp",8} {"best sparse peer",-16}");
        foreach (var r in rows)
            Console.WriteLine($"{r.M + "x" + r.K,-10} {r.N,4} {r.Pattern,-6} {r.Kernel,-6} {r.Format,-15} {r.MedianMs,9:F4} {r.Gflops,8:F1} {r.SpeedupVsOursDense,9:F2} {Fmt(r.SpeedupVsOpenBlas),9} {Fmt(r.SpeedupVsBestSparsePeer),8} {(r.BestSparsePeer is null ? "" : $"{r.BestSparsePeer} {r.BestSparsePeerMs:F3}"),-16}");
        Console.WriteLine();
        Console.WriteLine("x = speed-up (their ms / our ms); OpenBLAS = NumPy dense sgemm of the same product; best sparse peer = fastest of SciPy CSR, torch CSR, Eigen.");
    }

    static string Fmt(double? v) => v is { } x ? x.ToString("F2") : "-";

    static void WriteJson(string path, List<Row> rows, int threads)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(new { threads, rows }, new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, path, overwrite: true);
        Console.WriteLine($"wrote {rows.Count} rows to {path}");
    }

    /// <summary>One PNG per shape: CSR S·X speed-up over dense (OpenBLAS when peers ran, else ours) against sparsity, a line per N.</summary>
    static void Plot(List<Row> rows, string prefix, bool havePeers)
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
                double[] ys = line.Select(r => (havePeers ? r.SpeedupVsOpenBlas : r.SpeedupVsOursDense) ?? double.NaN).ToArray();
                var scatter = plot.Add.Scatter(xs, ys);
                scatter.LegendText = $"N={n}";
            }
            var one = plot.Add.HorizontalLine(1);
            one.LinePattern = ScottPlot.LinePattern.Dashed;
            plot.Title($"CSR S·X, S {shape.M}x{shape.K}: speed-up over dense {(havePeers ? "OpenBLAS sgemm" : "NanoSparse GEMM")}");
            plot.XLabel("sparsity");
            plot.YLabel("speed-up (x)");
            plot.ShowLegend();
            string path = $"{prefix}_{shape.M}x{shape.K}.png";
            plot.SavePng(path, 900, 560);
            Console.WriteLine($"wrote {path}");
        }
    }
}
