using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Sparsity.Pruning;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench prune`: the pruning issue's matrix on a trained model (the `medium` preset on the Brown corpus):
/// val perplexity of dense and of every method (magnitude, random, wanda, sparsegpt) × variant (plain, + DSnoT, + OWL,
/// + OWL + DSnoT; OWL only at unstructured levels) × level (50–80% unstructured, 2:4, 4:8), each pruned model's size on
/// disk and its decode tokens/s beside the dense model's (timed in turns). Every cell runs the `prune` command's code
/// (<see cref="PruneRun.Run"/>) on the same calibration windows and is evaluated on the same val windows (both seeded),
/// keeps its pruned checkpoint, and is cached as JSON, so an interrupted run resumes and --remeasure-speed re-times
/// decoding from the kept checkpoints without pruning again. Prints the table, the issue's expectations (held or not),
/// writes markdown, JSON and a PNG (perplexity against sparsity, a line per method and variant, N:M as points).
/// With --peer, Wanda through the same path against bench/peers/prune_torch.py on the same windows (a windows file
/// holding exactly the offsets our seeded samplers draw).
/// </summary>
public static class PruneBench
{
    public static readonly string[] DefaultMethods = ["magnitude", "random", "wanda", "sparsegpt"];
    public static readonly string[] DefaultLevels = ["0.5", "0.6", "0.7", "0.8", "2:4", "4:8"];
    const string MarkerFile = "bench-prune-trained.json";

    public sealed record Options
    {
        public string? Checkpoint { get; init; }
        public string Cache { get; init; } = DefaultCache();
        public string Data { get; init; } = "data/brown";
        public string Out { get; init; } = "out/bench-prune";
        public IReadOnlyList<string> Methods { get; init; } = DefaultMethods;
        public IReadOnlyList<string> Variants { get; init; } = PruneCell.Variants;
        public IReadOnlyList<string> Levels { get; init; } = DefaultLevels;
        public int CalibrationWindows { get; init; } = 128;
        public ulong CalibrationSeed { get; init; }
        public int EvalWindows { get; init; } = 64;
        public ulong EvalSeed { get; init; } = 1337;
        public int DecodeTokens { get; init; } = 64;
        public int DecodeRounds { get; init; } = 3;
        public string StorageFormat { get; init; } = SparseLayoutChoice.Auto;
        public int Threads { get; init; } = Environment.ProcessorCount;
        public bool RemeasureSpeed { get; init; }
        public bool ReportOnly { get; init; }
        public bool Peer { get; init; }
        public IReadOnlyList<string> PeerLevels { get; init; } = ["0.5", "0.7", "2:4"];
        public int PeerThreads { get; init; } = Environment.ProcessorCount;
    }

    public static string DefaultCache() => Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "nanosparse", "bench-prune");

    public static Command CreateCommand()
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "trained checkpoint to prune (default: the medium preset trained on --data once, cached in --cache)" };
        var cache = new Option<string>("--cache") { DefaultValueFactory = _ => DefaultCache(), Description = "folder of the cached trained medium model" };
        var data = new Option<string>("--data") { DefaultValueFactory = _ => "data/brown", Description = "dataset: calibration windows from train.bin, val windows from val.bin (and training data for the cached model)" };
        var outDir = new Option<string>("--out") { DefaultValueFactory = _ => "out/bench-prune", Description = "results folder: cells/*.json (the per-cell cache), models/* (pruned checkpoints), prune-bench.md/.json/.png" };
        var methods = new Option<string[]>("--methods") { DefaultValueFactory = _ => DefaultMethods, AllowMultipleArgumentsPerToken = true, Description = "pruning methods" };
        var variants = new Option<string[]>("--variants") { DefaultValueFactory = _ => PruneCell.Variants, AllowMultipleArgumentsPerToken = true, Description = "plain, dsnot, owl, owl+dsnot (OWL only at unstructured levels)" };
        var levels = new Option<string[]>("--levels") { DefaultValueFactory = _ => DefaultLevels, AllowMultipleArgumentsPerToken = true, Description = "sparsities in (0, 1) and N:M patterns" };
        var calWindows = new Option<int>("--calibration-windows") { DefaultValueFactory = _ => 128, Description = "calibration windows of block_size tokens from train.bin (every cell the same)" };
        var calSeed = new Option<ulong>("--calibration-seed") { DefaultValueFactory = _ => 0UL };
        var evalWindows = new Option<int>("--eval-windows") { DefaultValueFactory = _ => 64, Description = "val windows of block_size tokens for the perplexity (every cell the same)" };
        var evalSeed = new Option<ulong>("--eval-seed") { DefaultValueFactory = _ => 1337UL };
        var decodeTokens = new Option<int>("--decode-tokens") { DefaultValueFactory = _ => 64, Description = "greedy decode steps timed per model after a 16-token prompt (0: no timing)" };
        var decodeRounds = new Option<int>("--decode-rounds") { DefaultValueFactory = _ => 3, Description = "rounds of dense and pruned decoding in turns; the best of each" };
        var format = new Option<string>("--format") { DefaultValueFactory = _ => SparseLayoutChoice.Auto, Description = "storage of the pruned weights (as prune --format)" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "kernel threads" };
        var remeasure = new Option<bool>("--remeasure-speed") { Description = "re-time decoding of every cached cell from its kept checkpoint (no pruning), then report" };
        var reportOnly = new Option<bool>("--report-only") { Description = "report the cached cells only (measure nothing)" };
        var peer = new Option<bool>("--peer") { Description = "also Wanda by bench/peers/prune_torch.py on the same model and windows, against our wanda cells" };
        var peerLevels = new Option<string[]>("--peer-levels") { DefaultValueFactory = _ => ["0.5", "0.7", "2:4"], AllowMultipleArgumentsPerToken = true };
        var peerThreads = new Option<int>("--peer-threads") { DefaultValueFactory = _ => Environment.ProcessorCount };
        var cmd = new Command("prune", "pruning matrix on a trained model: perplexity, size and decode speed of every method × variant × sparsity");
        foreach (var o in new Option[] { checkpoint, cache, data, outDir, methods, variants, levels, calWindows, calSeed, evalWindows, evalSeed,
                     decodeTokens, decodeRounds, format, threads, remeasure, reportOnly, peer, peerLevels, peerThreads })
            cmd.Options.Add(o);
        cmd.SetAction(pr => Run(new Options
        {
            Checkpoint = pr.GetValue(checkpoint), Cache = pr.GetValue(cache)!, Data = pr.GetValue(data)!, Out = pr.GetValue(outDir)!,
            Methods = pr.GetValue(methods)!, Variants = pr.GetValue(variants)!, Levels = pr.GetValue(levels)!,
            CalibrationWindows = pr.GetValue(calWindows), CalibrationSeed = pr.GetValue(calSeed), EvalWindows = pr.GetValue(evalWindows),
            EvalSeed = pr.GetValue(evalSeed), DecodeTokens = pr.GetValue(decodeTokens), DecodeRounds = pr.GetValue(decodeRounds),
            StorageFormat = pr.GetValue(format)!, Threads = pr.GetValue(threads), RemeasureSpeed = pr.GetValue(remeasure), ReportOnly = pr.GetValue(reportOnly),
            Peer = pr.GetValue(peer), PeerLevels = pr.GetValue(peerLevels)!, PeerThreads = pr.GetValue(peerThreads),
        }));
        return cmd;
    }

    static void Validate(Options o)
    {
        foreach (var m in o.Methods) PruningMethods.Pruner(m);
        foreach (var v in o.Variants)
            if (!PruneCell.Variants.Contains(v))
                throw new ArgumentException($"--variants: '{v}' is not one of {string.Join(", ", PruneCell.Variants)}");
        foreach (var l in o.Levels) PruneCell.ParseLevel(l);
        foreach (var l in o.PeerLevels) PruneCell.ParseLevel(l);
        BenchUtil.CheckRange("--calibration-windows", o.CalibrationWindows, 1, 1 << 20, "windows of block_size tokens");
        BenchUtil.CheckRange("--eval-windows", o.EvalWindows, 1, 1 << 20, "windows of block_size tokens");
        BenchUtil.CheckRange("--decode-tokens", o.DecodeTokens, 0, 1 << 20, "decode steps");
        BenchUtil.CheckRange("--decode-rounds", o.DecodeRounds, 1, 1000, "rounds");
        BenchUtil.CheckRange("--threads", o.Threads, 1, 1024, "kernel threads");
        BenchUtil.CheckRange("--peer-threads", o.PeerThreads, 1, 1024, "torch threads");
        SparseLayoutChoice.Validate(o.StorageFormat);
        if (!Directory.Exists(o.Data))
            throw new DirectoryNotFoundException($"--data: dataset directory {o.Data} does not exist (make it with `nanosparse prepare --corpus brown`)");
    }

    public static int Run(Options o)
    {
        Validate(o);
        KernelThreads.Max = o.Threads;
        var inv = CultureInfo.InvariantCulture;
        var levels = o.Levels.Select(PruneCell.ParseLevel).Distinct().ToList();
        string checkpoint = o.Checkpoint ?? EnsureTrained(o.Cache, o.Data);
        string modelFile = Path.Combine(checkpoint, Checkpoint.ModelFile);
        if (!File.Exists(modelFile)) throw new FileNotFoundException($"--checkpoint: {modelFile} does not exist", modelFile);
        string sha = Sha256(modelFile);
        string fingerprint = PruneCellCache.Fingerprint(sha, o.Data, o.CalibrationWindows, o.CalibrationSeed, o.EvalWindows, o.EvalSeed, o.StorageFormat);
        var cache = new PruneCellCache(o.Out);

        // The dense model, the val windows every cell is evaluated on (those `prune` draws with the same seed).
        var source = Checkpoint.LoadAnyModel(checkpoint, 1, 1, out _);
        int T = source.Config.BlockSize;
        var meta = DatasetMeta.Load(Path.Combine(o.Data, DatasetMeta.FileName));
        if (meta.VocabSize != source.Config.VocabSize)
            throw new InvalidDataException($"--data: dataset {o.Data} has vocab_size {meta.VocabSize}, but checkpoint {checkpoint} has {source.Config.VocabSize}");
        var (evalX, evalY) = (new int[o.EvalWindows * T], new int[o.EvalWindows * T]);
        using (var val = TokenFile.OpenSplit(o.Data, "val", meta))
            new BatchSampler(val, o.EvalWindows, T, o.EvalSeed).Next(evalX, evalY);
        var dense = PruneRun.DenseCopy(source);
        var denseDecoder = PruneRun.DenseCopy(source);
        denseDecoder.PrepareForInference();

        var cells = PruneCell.Matrix(o.Methods, o.Variants, levels);
        AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
            $"bench prune: {checkpoint} ({source.ParameterCount:N0} parameters), data {o.Data}; {cells.Count} cells; {o.CalibrationWindows} calibration windows (seed {o.CalibrationSeed}), {o.EvalWindows} val windows (seed {o.EvalSeed}); results in {o.Out}")));

        var results = new Dictionary<PruneCell, PruneCellResult>();
        if (o.RemeasureSpeed)
        {
            foreach (var c in cells)
                if (cache.TryLoad(c, fingerprint) is { } r) results[c] = r;
            Remeasure(o, cache, results, checkpoint, denseDecoder, evalX);
        }
        else
        {
            var todo = new List<PruneCell>();
            foreach (var c in cells)
                if (cache.TryLoad(c, fingerprint) is { } r) results[c] = r;
                else todo.Add(c);
            if (results.Count > 0) AnsiConsole.MarkupLine($"{results.Count} cell(s) from the cache in {Markup.Escape(Path.Combine(o.Out, "cells"))}; {todo.Count} {(o.ReportOnly ? "not measured (--report-only)" : "to measure")}");
            if (o.ReportOnly) todo.Clear();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < todo.Count; i++)
            {
                var cell = todo[i];
                var r = cell.Method == PruneCell.Dense
                    ? MeasureDense(o, fingerprint, checkpoint, dense, denseDecoder, evalX, evalY, T)
                    : MeasureCell(o, cell, fingerprint, checkpoint, denseDecoder, evalX, evalY, T);
                cache.Save(r);
                results[cell] = r;
                double perCell = clock.Elapsed.TotalSeconds / (i + 1);
                var eta = TimeSpan.FromSeconds(perCell * (todo.Count - i - 1));
                AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
                    $"[{i + 1}/{todo.Count}] {cell.Label} {cell.LevelLabel}: ppl {r.Perplexity:0.###}, {r.ModelBytes / 1e6:0.00} MB, decode {Speed(r)} ({r.PruneSeconds:0.0} s); {clock.Elapsed:hh\\:mm\\:ss} elapsed, {60 / perCell:0.0} cells/min, ETA {eta:hh\\:mm\\:ss}")));
            }
        }

        var peer = o.Peer && !o.ReportOnly ? RunPeer(o, checkpoint, cache, fingerprint, results, denseDecoder, evalX, evalY, T) : null;
        Report(o, cells.Where(results.ContainsKey).Select(c => results[c]).ToList(), levels, checkpoint, peer);
        return 0;
    }

    static string Speed(PruneCellResult r) => r.DecodeTokensPerSecond is double s
        ? string.Create(CultureInfo.InvariantCulture, $"{s:0} tok/s ({r.DecodeSpeedup:0.00}x dense)") : "not timed";

    /// <summary>Prunes one cell through the prune command's code, keeps its checkpoint, evaluates and times it.</summary>
    static PruneCellResult MeasureCell(Options o, PruneCell cell, string fingerprint, string checkpoint, Gpt denseDecoder,
        int[] evalX, int[] evalY, int T)
    {
        string rel = Path.Combine("models", cell.Id);
        string outDir = Path.Combine(o.Out, rel);
        // A folder left by an interrupted run of this cell (its JSON was never written): ours to replace.
        if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        var prune = new PruneOptions
        {
            Method = cell.Method,
            Sparsity = cell.IsNm ? 0 : cell.Sparsity,
            Pattern = cell.IsNm ? cell.Level : PruneOptions.Unstructured,
            Profile = cell.UsesOwl ? PruneOptions.OwlProfileName : PruneOptions.UniformProfile,
            Refiner = cell.UsesDsnot ? "dsnot" : null,
            CalibrationWindows = o.CalibrationWindows,
            CalibrationSeed = o.CalibrationSeed,
        };
        var run = new PruneRunOptions { Checkpoint = checkpoint, Calibration = o.Data, Prune = prune, StorageFormat = o.StorageFormat, EvalWindows = 0, DecodeTokens = 0 };
        var clock = Stopwatch.StartNew();
        var result = PruneRun.Run(run, outDir, new StageReporter(cell));
        double seconds = clock.Elapsed.TotalSeconds;
        ClearStage();
        var written = Checkpoint.LoadAnyModel(outDir, 1, 1, out _);
        float loss = PruneRun.MeanLoss(written, evalX, evalY, T);
        written.PrepareForInference();
        var (d, s) = TimeDecode(denseDecoder, written, evalX, o);
        return new PruneCellResult
        {
            Method = cell.Method, Variant = cell.Variant, Level = cell.Level, Fingerprint = fingerprint,
            SparsityReached = result.Report.OverallSparsity, ValLoss = loss, Perplexity = Math.Exp(loss),
            ModelBytes = result.BytesAfter, PruneSeconds = seconds, ModelDir = rel, DecodeTokens = o.DecodeTokens,
            DecodeTokensPerSecond = s, DenseDecodeTokensPerSecond = d, Threads = o.Threads,
            SpeedMeasuredUtc = s is null ? null : DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
        };
    }

    static PruneCellResult MeasureDense(Options o, string fingerprint, string checkpoint, Gpt dense, Gpt denseDecoder, int[] evalX, int[] evalY, int T)
    {
        float loss = PruneRun.MeanLoss(dense, evalX, evalY, T);
        var (d, s) = TimeDecode(denseDecoder, denseDecoder, evalX, o);
        var c = PruneCell.DenseCell;
        return new PruneCellResult
        {
            Method = c.Method, Variant = c.Variant, Level = c.Level, Fingerprint = fingerprint, SparsityReached = 0, ValLoss = loss,
            Perplexity = Math.Exp(loss), ModelBytes = new FileInfo(Path.Combine(checkpoint, Checkpoint.ModelFile)).Length, ModelDir = "",
            DecodeTokens = o.DecodeTokens, DecodeTokensPerSecond = s, DenseDecodeTokensPerSecond = d, Threads = o.Threads,
            SpeedMeasuredUtc = s is null ? null : DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
        };
    }

    /// <summary>Decode tokens/s of the dense and the pruned model in turns over the rounds; the best round of each.</summary>
    static (double? Dense, double? Pruned) TimeDecode(Gpt dense, Gpt pruned, int[] windows, Options o)
    {
        if (o.DecodeTokens == 0) return (null, null);
        double a = 0, b = 0;
        for (int round = 0; round < o.DecodeRounds; round++)
        {
            a = Math.Max(a, PruneRun.DecodeTokensPerSecond(dense, windows, o.DecodeTokens));
            b = Math.Max(b, PruneRun.DecodeTokensPerSecond(pruned, windows, o.DecodeTokens));
        }
        return (a, b);
    }

    /// <summary>Re-times decoding of every cached cell from its kept checkpoint, in turns with the dense model, and saves it.</summary>
    static void Remeasure(Options o, PruneCellCache cache, Dictionary<PruneCell, PruneCellResult> results, string checkpoint, Gpt denseDecoder, int[] evalX)
    {
        if (o.DecodeTokens == 0) throw new ArgumentException("--remeasure-speed needs --decode-tokens > 0");
        var inv = CultureInfo.InvariantCulture;
        var clock = Stopwatch.StartNew();
        var list = results.Values.ToList();
        if (list.Count == 0) AnsiConsole.MarkupLine("[yellow]no cached cell matches these settings: nothing to re-time[/]");
        for (int i = 0; i < list.Count; i++)
        {
            var r = list[i];
            Gpt model = denseDecoder;
            if (r.Method != PruneCell.Dense)
            {
                string dir = Path.Combine(o.Out, r.ModelDir);
                if (!Directory.Exists(dir))
                {
                    AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(r.Cell.Id)}: its checkpoint {Markup.Escape(dir)} is gone; speed left as cached[/]");
                    continue;
                }
                model = Checkpoint.LoadAnyModel(dir, 1, 1, out _);
                model.PrepareForInference();
            }
            var (d, s) = TimeDecode(denseDecoder, model, evalX, o);
            var updated = r with
            {
                DecodeTokens = o.DecodeTokens, DecodeTokensPerSecond = s, DenseDecodeTokensPerSecond = d, Threads = o.Threads,
                SpeedMeasuredUtc = DateTime.UtcNow.ToString("u", inv),
            };
            cache.Save(updated);
            results[r.Cell] = updated;
            double perCell = clock.Elapsed.TotalSeconds / (i + 1);
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
                $"[{i + 1}/{list.Count}] re-timed {r.Cell.Label} {r.Cell.LevelLabel}: {Speed(updated)}; ETA {TimeSpan.FromSeconds(perCell * (list.Count - i - 1)):hh\\:mm\\:ss}")));
        }
    }

    // ------------------------------------------------------------------------------------------- the cached model

    /// <summary>
    /// The medium preset trained on <paramref name="data"/> (configs/medium.json's recipe) in
    /// <paramref name="cache"/>/medium, trained once: a marker file written after training marks it complete, and
    /// later runs reuse it. An interrupted training resumes from its last checkpoint.
    /// </summary>
    public static string EnsureTrained(string cache, string data)
    {
        string dir = Path.Combine(cache, "medium");
        string marker = Path.Combine(dir, MarkerFile);
        if (File.Exists(marker) && File.Exists(Path.Combine(dir, Checkpoint.ModelFile)))
        {
            AnsiConsole.MarkupLine($"using the cached trained model {Markup.Escape(dir)} (delete the folder to train again)");
            return dir;
        }
        var cfg = MediumConfig(dir, data);
        if (File.Exists(Path.Combine(dir, Checkpoint.StateFile))) cfg.InitFrom = "resume";
        AnsiConsole.MarkupLine($"training the medium preset on {Markup.Escape(data)} into {Markup.Escape(dir)} (once; later runs reuse it)");
        using var trainer = new Trainer(cfg);
        var clock = Stopwatch.StartNew();
        int first = trainer.Step;
        trainer.StepCompleted = r =>
        {
            if ((r.Step + 1) % 20 != 0 && r.Step + 1 != r.MaxIters) return;
            double perStep = clock.Elapsed.TotalSeconds / Math.Max(1, r.Step + 1 - first);
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"  step {r.Step + 1}/{r.MaxIters}  loss {r.Loss:F4}  {r.MsPerIter:F0} ms/iter  ETA {TimeSpan.FromSeconds(perStep * (r.MaxIters - r.Step - 1)):hh\\:mm\\:ss}")));
        };
        trainer.Evaluated = e => AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"  step {e.Step}: val loss {e.ValLoss:F4}")));
        var summary = trainer.Run();
        PruneCellCache.WriteAtomic(marker, JsonSerializer.SerializeToUtf8Bytes(new JsonObject
        {
            ["data"] = Path.GetFullPath(data), ["best_val_loss"] = summary.BestValLoss, ["iterations"] = summary.FinalStep,
            ["seconds"] = summary.Seconds, ["utc"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
        }));
        return dir;
    }

    /// <summary>configs/medium.json, with the output folder and dataset given.</summary>
    public static TrainConfig MediumConfig(string outDir, string data)
    {
        var cfg = new TrainConfig();
        foreach (var (k, v) in new (string, string)[]
                 {
                     ("eval_interval", "200"), ("eval_iters", "20"), ("log_interval", "10"), ("always_save_checkpoint", "false"),
                     ("gradient_accumulation_steps", "1"), ("batch_size", "16"), ("block_size", "256"), ("n_layer", "6"), ("n_head", "8"),
                     ("n_embd", "256"), ("dropout", "0.0"), ("bias", "false"), ("learning_rate", "1e-3"), ("max_iters", "1200"),
                     ("lr_decay_iters", "1200"), ("min_lr", "1e-4"), ("beta2", "0.99"), ("warmup_iters", "100"),
                 })
            cfg.Set(k, v);
        cfg.OutDir = outDir;
        cfg.Dataset = data;
        return cfg;
    }

    // ------------------------------------------------------------------------------------------- progress

    /// <summary>The current cell's pruning stage on one terminal line (only when stdout is a terminal).</summary>
    sealed class StageReporter(PruneCell cell) : IProgress<PruneProgress>
    {
        long _last;

        public void Report(PruneProgress p)
        {
            if (Console.IsOutputRedirected) return;
            long now = Stopwatch.GetTimestamp();
            if (Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds < 250) return;
            _last = now;
            string eta = p.Remaining is TimeSpan r ? $", block ETA {r:mm\\:ss}" : "";
            Console.Write(string.Create(CultureInfo.InvariantCulture,
                $"\r  {cell.Label} {cell.LevelLabel}: {p.Stage} block {p.Block + 1}/{p.Blocks} {p.Done}/{p.Total} {p.Unit}{eta}, {p.OverallFraction * 100:0}% of the cell   "));
        }
    }

    static void ClearStage()
    {
        if (!Console.IsOutputRedirected) Console.Write("\r" + new string(' ', Math.Max(0, Math.Min(Console.WindowWidth - 1, 140))) + "\r");
    }

    static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }

    // ------------------------------------------------------------------------------------------- the peer

    /// <summary>Wanda by prune_torch.py against our wanda cells, per level: perplexity ratio and dense perplexities.</summary>
    public sealed record PeerRow(string Level, double OursDensePpl, double PeerDensePpl, double OursPpl, double PeerPpl, double PeerSeconds)
    {
        public double Ratio => OursPpl / PeerPpl;
    }

    static List<PeerRow> RunPeer(Options o, string checkpoint, PruneCellCache cache, string fingerprint,
        Dictionary<PruneCell, PruneCellResult> results, Gpt denseDecoder, int[] evalX, int[] evalY, int T)
    {
        var inv = CultureInfo.InvariantCulture;
        var meta = DatasetMeta.Load(Path.Combine(o.Data, DatasetMeta.FileName));
        string windows = Path.GetFullPath(Path.Combine(o.Out, "peer", "windows.json"));
        WriteWindowsFile(windows, o.Data, meta, T, o.CalibrationWindows, o.CalibrationSeed, o.EvalWindows, o.EvalSeed);
        var rows = new List<PeerRow>();
        var dense = results.GetValueOrDefault(PruneCell.DenseCell) ?? throw new InvalidOperationException("--peer needs the dense cell");
        foreach (var level in o.PeerLevels.Select(PruneCell.ParseLevel))
        {
            var cell = new PruneCell("wanda", PruneCell.Plain, level);
            if (!results.TryGetValue(cell, out var ours))
            {
                AnsiConsole.MarkupLine($"measuring {Markup.Escape(cell.Label)} {cell.LevelLabel} for the peer comparison");
                ours = MeasureCell(o, cell, fingerprint, checkpoint, denseDecoder, evalX, evalY, T);
                cache.Save(ours);
                results[cell] = ours;
            }
            string resultFile = Path.Combine(o.Out, "peer", $"wanda-{level.Replace(":", "of")}.json");
            JsonNode? doc = null;
            if (File.Exists(resultFile))
            {
                try
                {
                    doc = JsonNode.Parse(File.ReadAllText(resultFile));
                    if ((string?)doc?["fingerprint"] != fingerprint) doc = null;
                }
                catch (JsonException) { doc = null; }
            }
            if (doc is null)
            {
                string args = $"--model {Path.GetFullPath(checkpoint)} --data {Path.GetFullPath(o.Data)} --windows {windows} --method wanda --threads {o.PeerThreads} "
                    + (cell.IsNm ? $"--pattern {level}" : $"--sparsity {level}");
                AnsiConsole.MarkupLine($"peer: /usr/bin/python3 bench/peers/prune_torch.py {Markup.Escape(args)}");
                var clock = Stopwatch.StartNew();
                string stdout = BenchUtil.RunPeer("prune_torch.py", args, o.PeerThreads);
                var last = stdout.Trim().Split('\n')[^1];
                doc = JsonNode.Parse(last) ?? throw new InvalidDataException("prune_torch.py printed no JSON");
                doc["fingerprint"] = fingerprint;
                doc["seconds"] = clock.Elapsed.TotalSeconds;
                doc["command"] = "prune_torch.py " + args;
                PruneCellCache.WriteAtomic(resultFile, JsonSerializer.SerializeToUtf8Bytes(doc));
            }
            rows.Add(new PeerRow(level, dense.Perplexity, (double)doc["dense_ppl"]!, ours.Perplexity, (double)doc["pruned_ppl"]!, (double?)doc["seconds"] ?? double.NaN));
            var row = rows[^1];
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv,
                $"wanda {cell.LevelLabel}: ours {row.OursPpl:0.####} / peer {row.PeerPpl:0.####} = {row.Ratio:0.#####} (dense: ours {row.OursDensePpl:0.####}, peer {row.PeerDensePpl:0.####})")));
        }
        return rows;
    }

    /// <summary>The start offsets our seeded BatchSampler draws: window k starts at Rng(seed)'s k-th NextInt64(Length − T).</summary>
    public static long[] WindowStarts(long fileLength, int T, int windows, ulong seed)
    {
        var rng = new NanoSparse.Numerics.Rng(seed);
        var starts = new long[windows];
        for (int k = 0; k < windows; k++) starts[k] = rng.NextInt64(fileLength - T);
        return starts;
    }

    /// <summary>
    /// A windows file (bench/peers/README.md) holding exactly the calibration windows `prune` draws from train.bin and
    /// the val windows it evaluates on; checked against the tokens <see cref="PruneRun.SampleWindows"/> returns.
    /// </summary>
    public static void WriteWindowsFile(string path, string data, DatasetMeta meta, int T, int calibration, ulong calibrationSeed, int val, ulong valSeed)
    {
        var doc = new JsonObject { ["format"] = "nanosparse-windows", ["version"] = 1, ["block_size"] = T, ["seed"] = calibrationSeed };
        foreach (var (split, key, count, seed) in new[] { ("train", "calibration", calibration, calibrationSeed), ("val", "val", val, valSeed) })
        {
            using var file = TokenFile.OpenSplit(data, split, meta);
            var starts = WindowStarts(file.Length, T, count, seed);
            var expected = PruneRun.SampleWindows(file, count, T, seed);
            var window = new int[T];
            for (int k = 0; k < count; k++)
            {
                file.Read(starts[k], window);
                if (!window.AsSpan().SequenceEqual(expected.AsSpan(k * T, T)))
                    throw new InvalidOperationException($"{split}.bin window {k}: the offsets do not reproduce the sampler's windows");
            }
            doc[key] = new JsonObject { ["file"] = split + ".bin", ["starts"] = new JsonArray(starts.Select(s => (JsonNode)s).ToArray()) };
        }
        PruneCellCache.WriteAtomic(path, JsonSerializer.SerializeToUtf8Bytes(doc));
    }

    // ------------------------------------------------------------------------------------------- report

    static void Report(Options o, List<PruneCellResult> rows, List<string> levels, string checkpoint, List<PeerRow>? peer)
    {
        var inv = CultureInfo.InvariantCulture;
        var dense = rows.FirstOrDefault(r => r.Method == PruneCell.Dense);
        var byCell = rows.ToDictionary(r => r.Cell);
        var lines = rows.Where(r => r.Method != PruneCell.Dense).Select(r => (r.Method, r.Variant)).Distinct()
            .OrderBy(l => Array.IndexOf(DefaultMethods, l.Method)).ThenBy(l => Array.IndexOf(PruneCell.Variants, l.Variant)).ToList();
        string Lbl(string level) => new PruneCell("x", PruneCell.Plain, level).LevelLabel;

        // Perplexity matrix.
        var table = new Table().Border(TableBorder.Rounded).Title($"val perplexity (dense {(dense is null ? "?" : dense.Perplexity.ToString("0.###", inv))})");
        table.AddColumn("method");
        foreach (var l in levels) table.AddColumn(new TableColumn(Lbl(l)).RightAligned());
        foreach (var (m, v) in lines)
            table.AddRow([Markup.Escape(new PruneCell(m, v, "0.5").Label), .. levels.Select(l => byCell.TryGetValue(new(m, v, l), out var r) ? r.Perplexity.ToString("0.###", inv) : "")]);
        AnsiConsole.Write(table);

        // Size and speed, per level (plain variants; OWL and DSnoT change neither the count nor, much, the layout).
        var speed = new Table().Border(TableBorder.Rounded).Title("size on disk (MB) and decode tokens/s (x dense, timed in turns)");
        speed.AddColumn("cell");
        speed.AddColumn(new TableColumn("sparsity").RightAligned());
        speed.AddColumn(new TableColumn("ppl").RightAligned());
        speed.AddColumn(new TableColumn("MB").RightAligned());
        speed.AddColumn(new TableColumn("tok/s").RightAligned());
        speed.AddColumn(new TableColumn("x dense").RightAligned());
        speed.AddColumn(new TableColumn("prune s").RightAligned());
        foreach (var r in rows)
            speed.AddRow(Markup.Escape($"{r.Cell.Label} {r.Cell.LevelLabel}"), r.SparsityReached.ToString("0.000", inv), r.Perplexity.ToString("0.###", inv),
                (r.ModelBytes / 1e6).ToString("0.00", inv), r.DecodeTokensPerSecond?.ToString("0", inv) ?? "", r.DecodeSpeedup?.ToString("0.00", inv) ?? "",
                r.Method == PruneCell.Dense ? "" : r.PruneSeconds.ToString("0.0", inv));
        AnsiConsole.Write(speed);

        var ppl = rows.ToDictionary(r => r.Cell, r => r.Perplexity);
        var expectations = PruneExpectations.Check(ppl, levels);
        foreach (var e in expectations)
            AnsiConsole.MarkupLine($"{(e.Held is null ? "[grey]not checked[/]" : e.Held.Value ? "[green]held[/]" : "[red]failed[/]")}  {Markup.Escape(e.Name)}: {Markup.Escape(e.Detail)}");
        if (peer is not null)
            foreach (var p in peer)
                AnsiConsole.MarkupLine(Markup.Escape(string.Create(inv, $"wanda vs PyTorch peer at {Lbl(p.Level)}: ours {p.OursPpl:0.####}, peer {p.PeerPpl:0.####}, ratio {p.Ratio:0.#####} ({(Math.Abs(p.Ratio - 1) <= 0.01 ? "within 1%" : "NOT within 1%")})")));

        Directory.CreateDirectory(o.Out);
        string md = Path.Combine(o.Out, "prune-bench.md");
        PruneCellCache.WriteAtomic(md, System.Text.Encoding.UTF8.GetBytes(Markdown(rows, levels, lines, byCell, dense, expectations, peer, checkpoint, o)));
        string json = Path.Combine(o.Out, "prune-bench.json");
        PruneCellCache.WriteAtomic(json, JsonSerializer.SerializeToUtf8Bytes(new JsonObject
        {
            ["bench"] = "prune", ["checkpoint"] = checkpoint, ["data"] = o.Data,
            ["cells"] = JsonSerializer.SerializeToNode(rows),
            ["expectations"] = new JsonArray(expectations.Select(e => (JsonNode)new JsonObject { ["name"] = e.Name, ["held"] = e.Held, ["detail"] = e.Detail }).ToArray()),
            ["peer_wanda"] = peer is null ? null : JsonSerializer.SerializeToNode(peer.Select(p => new { level = p.Level, ours_ppl = p.OursPpl, peer_ppl = p.PeerPpl, ratio = p.Ratio, ours_dense_ppl = p.OursDensePpl, peer_dense_ppl = p.PeerDensePpl })),
        }, new JsonSerializerOptions { WriteIndented = true }));
        string png = Path.Combine(o.Out, "prune-bench.png");
        Plot(rows, lines, dense, png);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(md)}, {Markup.Escape(json)}, {Markup.Escape(png)}");
    }

    static string Markdown(List<PruneCellResult> rows, List<string> levels, List<(string Method, string Variant)> lines,
        Dictionary<PruneCell, PruneCellResult> byCell, PruneCellResult? dense, List<PruneExpectation> expectations, List<PeerRow>? peer,
        string checkpoint, Options o)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new System.Text.StringBuilder();
        string Lbl(string level) => new PruneCell("x", PruneCell.Plain, level).LevelLabel;
        sb.AppendLine(string.Create(inv, $"Val perplexity ({o.EvalWindows} val windows, seed {o.EvalSeed}; {o.CalibrationWindows} calibration windows, seed {o.CalibrationSeed}); dense: {dense?.Perplexity:0.###}"));
        sb.AppendLine();
        sb.AppendLine("| method | " + string.Join(" | ", levels.Select(Lbl)) + " |");
        sb.AppendLine("|---|" + string.Concat(levels.Select(_ => "---:|")));
        foreach (var (m, v) in lines)
            sb.AppendLine($"| {new PruneCell(m, v, "0.5").Label} | " + string.Join(" | ", levels.Select(l => byCell.TryGetValue(new(m, v, l), out var r) ? r.Perplexity.ToString("0.###", inv) : "")) + " |");
        sb.AppendLine();
        sb.AppendLine(string.Create(inv, $"Size of model.safetensors (MB) and decode tokens/s ({o.DecodeTokens} greedy steps after a 16-token prompt, best of {o.DecodeRounds} rounds in turns with the dense model; x dense = pruned / dense of the same turns), plain variants:"));
        sb.AppendLine();
        sb.AppendLine("| method | " + string.Join(" | ", levels.Select(Lbl)) + " |");
        sb.AppendLine("|---|" + string.Concat(levels.Select(_ => "---:|")));
        if (dense is not null)
            sb.AppendLine(string.Create(inv, $"| dense | {dense.ModelBytes / 1e6:0.00} MB, {dense.DecodeTokensPerSecond:0} tok/s |") + string.Concat(levels.Skip(1).Select(_ => " |")));
        foreach (var m in lines.Select(l => l.Method).Distinct())
            sb.AppendLine($"| {m} | " + string.Join(" | ", levels.Select(l => byCell.TryGetValue(new(m, PruneCell.Plain, l), out var r)
                ? string.Create(inv, $"{r.ModelBytes / 1e6:0.00} MB, {r.DecodeTokensPerSecond:0} tok/s ({r.DecodeSpeedup:0.00}x)") : "")) + " |");
        sb.AppendLine();
        sb.AppendLine("Expectations:");
        sb.AppendLine();
        foreach (var e in expectations)
            sb.AppendLine($"- {(e.Held is null ? "not checked" : e.Held.Value ? "held" : "**failed**")}: {e.Name} ({e.Detail})");
        if (peer is not null)
        {
            sb.AppendLine();
            sb.AppendLine("| wanda vs PyTorch peer | dense ppl ours | dense ppl peer | ppl ours | ppl peer | ours / peer |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach (var p in peer)
                sb.AppendLine(string.Create(inv, $"| {Lbl(p.Level)} | {p.OursDensePpl:0.####} | {p.PeerDensePpl:0.####} | {p.OursPpl:0.####} | {p.PeerPpl:0.####} | {p.Ratio:0.#####} |"));
        }
        sb.AppendLine();
        sb.AppendLine("All cells:");
        sb.AppendLine();
        sb.AppendLine("| cell | sparsity reached | ppl | vs dense | MB | decode tok/s | x dense | prune s |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(string.Create(inv, $"| {r.Cell.Label} {r.Cell.LevelLabel} | {r.SparsityReached:0.000} | {r.Perplexity:0.###} | {(dense is null ? "" : ((r.Perplexity / dense.Perplexity - 1) * 100).ToString("+0.0;-0.0", inv) + "%")} | {r.ModelBytes / 1e6:0.00} | {r.DecodeTokensPerSecond:0} | {r.DecodeSpeedup:0.00} | {(r.Method == PruneCell.Dense ? "" : r.PruneSeconds.ToString("0.0", inv))} |"));
        return sb.ToString();
    }

    /// <summary>Perplexity (log scale) against sparsity: a line per method and variant (colour = method, pattern = variant); N:M as points at 50%.</summary>
    static void Plot(List<PruneCellResult> rows, List<(string Method, string Variant)> lines, PruneCellResult? dense, string path)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var patterns = new Dictionary<string, ScottPlot.LinePattern>
        {
            [PruneCell.Plain] = ScottPlot.LinePattern.Solid, [PruneCell.Dsnot] = ScottPlot.LinePattern.Dashed,
            [PruneCell.Owl] = ScottPlot.LinePattern.Dotted, [PruneCell.OwlDsnot] = ScottPlot.LinePattern.DenselyDashed,
        };
        foreach (var (m, v) in lines)
        {
            var color = palette.GetColor(Math.Max(0, Array.IndexOf(DefaultMethods, m)));
            var line = rows.Where(r => r.Method == m && r.Variant == v && !r.Cell.IsNm).OrderBy(r => r.Cell.Sparsity).ToList();
            if (line.Count > 0)
            {
                var s = plot.Add.Scatter(line.Select(r => r.Cell.Sparsity).ToArray(), line.Select(r => Math.Log10(r.Perplexity)).ToArray());
                s.Color = color;
                s.LinePattern = patterns[v];
                s.LineWidth = v == PruneCell.Plain ? 2 : 1.5f;
                s.LegendText = new PruneCell(m, v, "0.5").Label;
            }
            foreach (var r in rows.Where(r => r.Method == m && r.Variant == v && r.Cell.IsNm))
            {
                // 2:4 and 4:8 are both 50% sparse: drawn just left and right of 0.5, filled for plain, open with DSnoT.
                bool first = r.Level == "2:4";
                var marker = plot.Add.Marker(r.Cell.Sparsity + (first ? -0.012 : 0.012), Math.Log10(r.Perplexity));
                marker.Color = color;
                marker.Size = 9;
                marker.Shape = v == PruneCell.Plain
                    ? first ? ScottPlot.MarkerShape.FilledSquare : ScottPlot.MarkerShape.FilledTriangleUp
                    : first ? ScottPlot.MarkerShape.OpenSquare : ScottPlot.MarkerShape.OpenTriangleUp;
            }
        }
        if (dense is not null)
        {
            var h = plot.Add.HorizontalLine(Math.Log10(dense.Perplexity));
            h.LinePattern = ScottPlot.LinePattern.Dashed;
            h.Color = ScottPlot.Colors.Gray;
            h.LegendText = $"dense {dense.Perplexity:0.###}";
        }
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            LabelFormatter = y => $"{Math.Pow(10, y):0.#}",
        };
        plot.Title("pruned medium model: val perplexity against sparsity (squares 2:4, triangles 4:8; open = + DSnoT)");
        plot.XLabel("sparsity of the block Linear weights");
        plot.YLabel("val perplexity (log scale)");
        plot.Axes.SetLimitsX(0.45, 0.85);
        plot.ShowLegend(ScottPlot.Edge.Right);
        plot.SavePng(path, 1250, 700);
    }
}
