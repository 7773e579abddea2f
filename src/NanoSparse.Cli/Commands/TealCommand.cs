using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse teal calibrate`: TEAL (or, with --wina, WINA) thresholds for every block Linear weight of a checkpoint,
/// calibrated to a target input sparsity (one for every weight, or allocated per block by TEAL's greedy search) on windows of a dataset's train.bin (or val.bin), written as a small JSON file next to the
/// checkpoint (teal.json / wina.json; the checkpoint's own files are not touched). `eval` and `sample` apply them with
/// --act-sparsity.
/// </summary>
public static class TealCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory (read only)", Required = true };
        var data = new Option<string?>("--data") { Description = "dataset directory: calibration windows from its train.bin (default: the checkpoint's own dataset)" };
        var sparsity = new Option<double[]>("--sparsity") { Description = "target fraction of each weight's inputs zeroed (greedy: each block's average by weights read), in [0, 1); several values write one file each (OUT with -S before its extension)", Required = true, AllowMultipleArgumentsPerToken = true };
        var greedyWindows = new Option<int>("--greedy-windows") { Description = "greedy allocation: measure the block errors on the first N calibration windows only (0: all; rounded up to whole forward passes)", DefaultValueFactory = _ => 0 };
        var wina = new Option<bool>("--wina") { Description = "WINA: score inputs by |x_i|·‖W_:,i‖₂ instead of TEAL's |x_i|" };
        var windows = new Option<int>("--windows") { Description = "calibration windows of block_size tokens", DefaultValueFactory = _ => 16 };
        var seed = new Option<ulong>("--seed") { Description = "seed of the calibration windows' offsets", DefaultValueFactory = _ => 1234UL };
        var maxSamples = new Option<int>("--max-samples") { Description = "scores kept per weight for the quantile (whole rows, evenly strided)", DefaultValueFactory = _ => TealCalibration.DefaultMaxSamples };
        var allocation = new Option<string>("--allocation") { Description = "uniform: every weight's inputs at --sparsity; greedy: TEAL's block-wise greedy search shares each block's --sparsity (average by weights read) among its four inputs by the error each adds to the block's output", DefaultValueFactory = _ => TealAllocation.Uniform };
        var step = new Option<double>("--step") { Description = "greedy allocation: sparsity step per move, in (0, 0.5]", DefaultValueFactory = _ => TealAllocation.DefaultStep };
        var split = new Option<string>("--split") { Description = "dataset split the calibration windows come from: train or val (val is held out from training but is what eval measures on)", DefaultValueFactory = _ => "train" };
        var output = new Option<string?>("--out") { Description = "thresholds file to write (default: CHECKPOINT/teal.json, or wina.json with --wina)" };
        var calibrate = new Command("calibrate", "calibrate TEAL/WINA input thresholds of every block Linear weight to a target sparsity");
        foreach (var o in new Option[] { checkpoint, data, sparsity, wina, windows, seed, maxSamples, allocation, step, greedyWindows, split, output }) calibrate.Options.Add(o);
        calibrate.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string dir = parse.GetValue(checkpoint)!;
            double[] targets = parse.GetValue(sparsity)!;
            int w = parse.GetValue(windows), max = parse.GetValue(maxSamples), gw = parse.GetValue(greedyWindows);
            if (targets.Length == 0) throw new UsageException("--sparsity: give at least one target sparsity in [0, 1)");
            foreach (double t in targets)
                if (!(t >= 0 && t < 1)) throw new UsageException($"--sparsity ({t.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1)");
            if (targets.Distinct().Count() != targets.Length) throw new UsageException($"--sparsity: {string.Join(" ", targets.Select(t => t.ToString(CultureInfo.InvariantCulture)))} repeats a value");
            if (gw < 0) throw new UsageException($"--greedy-windows ({gw}) must be >= 0 (0: every calibration window)");
            if (w < 1) throw new UsageException($"--windows ({w}) must be at least 1");
            if (max < 1) throw new UsageException($"--max-samples ({max}) must be at least 1");
            string method = parse.GetValue(wina) ? ActivationMethods.Wina : ActivationMethods.Teal;
            string alloc = parse.GetValue(allocation)!, splitName = parse.GetValue(split)!;
            double stepSize = parse.GetValue(step);
            if (alloc == TealAllocation.Greedy && targets.Any(t => t > TealAllocation.MaxSparsity))
                throw new UsageException($"--sparsity ({targets.Max().ToString(CultureInfo.InvariantCulture)}) must be at most {TealAllocation.MaxSparsity.ToString(CultureInfo.InvariantCulture)} with --allocation greedy");
            if (!TealAllocation.All.Contains(alloc)) throw new UsageException($"--allocation \"{alloc}\": expected {string.Join(" or ", TealAllocation.All)}");
            if (!(stepSize > 0 && stepSize <= 0.5)) throw new UsageException($"--step ({stepSize.ToString(CultureInfo.InvariantCulture)}) must lie in (0, 0.5]");
            if (splitName is not ("train" or "val")) throw new UsageException($"--split \"{splitName}\": expected train or val");
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
            CheckpointState? state = Checkpoint.Exists(dir) ? Checkpoint.ReadState(dir) : null;
            string dataDir = parse.GetValue(data) ?? state?.Dataset
                ?? throw new UsageException($"{dir} records no dataset: give --data DIR (calibration windows come from its {splitName}.bin)");
            if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"--data: dataset directory {dataDir} does not exist");
            string outPath = parse.GetValue(output) ?? Path.Combine(dir, method + ".json");
            string[] outPaths = targets.Length == 1 ? [outPath]
                : targets.Select(t => Path.Combine(Path.GetDirectoryName(outPath) ?? "", Path.GetFileNameWithoutExtension(outPath) + "-" + t.ToString(CultureInfo.InvariantCulture) + Path.GetExtension(outPath))).ToArray();
            var config = Checkpoint.ReadAnyConfig(dir);
            var meta = DatasetMeta.Load(Path.Combine(dataDir, DatasetMeta.FileName));
            if (meta.VocabSize != config.VocabSize)
                throw new InvalidDataException($"--data: dataset {dataDir} has vocab_size {meta.VocabSize}, but checkpoint {dir} has {config.VocabSize}");
            int T = config.BlockSize;
            // A few windows per forward pass: the largest divisor of --windows up to 8.
            int batch = Enumerable.Range(1, Math.Min(8, w)).Last(b => w % b == 0);
            GptSize.Check(GptSize.DimsOf(config, batch, T), GptUse.Evaluation, GptSize.ModelKeys(config), $"checkpoint {dir}: ");
            using var train = TokenFile.OpenSplit(dataDir, splitName, meta, fullScan: false);
            if (train.Length <= T) throw new InvalidDataException($"--data: dataset {dataDir}: {splitName}.bin holds {train.Length} tokens, too few for one window of block_size {T} + 1");
            var tokens = PruneRun.SampleWindows(train, w, T, parse.GetValue(seed));
            var model = Checkpoint.LoadAnyModel(dir, batch, T, out _);
            model.PrepareForInference();

            var inv = CultureInfo.InvariantCulture;
            cli.Console.MarkupLine(Markup.Escape($"calibrating {method} thresholds of {dir} to sparsity {string.Join(", ", targets.Select(t => t.ToString(inv)))} ({alloc} allocation{(alloc == TealAllocation.Greedy ? $", step {stepSize.ToString(inv)}" : "")}) on {w} windows × {T} tokens of {dataDir}/{splitName}.bin"));
            ActivationThresholds[]? results = null;
            cli.Console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("forward passes", maxValue: 1.0);
                    var progress = new SyncProgress<CalibrationProgress>(p =>
                    {
                        task.Description = string.Create(inv, $"{p.Done}/{p.Total} forward passes  {p.PerSecond * batch:F2} windows/s  ETA {p.Remaining?.TotalSeconds ?? 0:F0} s");
                        task.Value = (double)p.Done / p.Total;
                    });
                    string dataName = splitName == "train" ? dataDir : $"{dataDir} ({splitName})";
                    if (alloc == TealAllocation.Uniform)
                    {
                        var scores = TealCalibration.CollectScores(model, tokens, method, max, progress);
                        results = targets.Select(t => TealCalibration.FromScores(model, scores, method, t, dataName, parse.GetValue(seed), tokens.Length / T)).ToArray();
                    }
                    else
                    {
                        var search = ctx.AddTask("greedy allocation", maxValue: 1.0);
                        var greedy = new SyncProgress<AllocationProgress>(p =>
                        {
                            search.Description = string.Create(inv, $"block {p.Layer + 1}/{p.Layers}  average {p.Reached:P1} of {p.Target:P1}  {p.Evaluations} block runs  {p.PerSecond:F2}/s  ETA {p.Remaining?.TotalSeconds ?? 0:F0} s");
                            search.Value = (p.Layer + (p.Target > 0 ? p.Reached / p.Target : 1)) / p.Layers;
                        });
                        results = TealAllocation.Calibrate(model, tokens, method, targets, stepSize, max, progress, greedy, dataName, parse.GetValue(seed),
                            gw == 0 ? 0 : (gw + batch - 1) / batch);
                        search.Value = 1.0;
                    }
                    task.Value = 1.0;
                });
            for (int i = 0; i < results!.Length; i++)
            {
                var result = results[i];
                result.Save(outPaths[i]);
                var table = new Table().AddColumn("weight").AddColumn("shape").AddColumn(new TableColumn("threshold").RightAligned())
                    .AddColumn(new TableColumn("calibration sparsity").RightAligned());
                foreach (var t in result.Weights)
                    table.AddRow(Markup.Escape(t.Name), $"{t.OutFeatures}x{t.InFeatures}", t.Threshold.ToString("G5", inv), t.CalibrationSparsity.ToString("P2", inv));
                if (results.Length > 1) table.Title = new TableTitle($"sparsity {result.TargetSparsity.ToString(inv)}");
                cli.Console.Write(table);
                if (alloc == TealAllocation.Greedy)
                    cli.Console.MarkupLine(Markup.Escape("block averages (by weights read): " +
                        string.Join(" ", TealAllocation.BlockAverages(model, result).Select(a => a.ToString("P1", inv)))));
                cli.Console.MarkupLine(Markup.Escape($"wrote {outPaths[i]} (apply with: eval|sample --checkpoint {dir} --act-sparsity {method}:{outPaths[i]})"));
            }
            return 0;
        });
        var teal = new Command("teal", "training-free activation sparsity (TEAL / WINA input thresholds)");
        teal.Subcommands.Add(calibrate);
        return teal;
    }

    /// <summary>Reports on the calling thread (System.Progress would post to the thread pool).</summary>
    sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
