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
/// calibrated to a target input sparsity on windows of a dataset's train.bin, written as a small JSON file next to the
/// checkpoint (teal.json / wina.json; the checkpoint's own files are not touched). `eval` and `sample` apply them with
/// --act-sparsity.
/// </summary>
public static class TealCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory (read only)", Required = true };
        var data = new Option<string?>("--data") { Description = "dataset directory: calibration windows from its train.bin (default: the checkpoint's own dataset)" };
        var sparsity = new Option<double>("--sparsity") { Description = "target fraction of each weight's inputs zeroed, in [0, 1)", Required = true };
        var wina = new Option<bool>("--wina") { Description = "WINA: score inputs by |x_i|·‖W_:,i‖₂ instead of TEAL's |x_i|" };
        var windows = new Option<int>("--windows") { Description = "calibration windows of block_size tokens", DefaultValueFactory = _ => 16 };
        var seed = new Option<ulong>("--seed") { Description = "seed of the calibration windows' offsets", DefaultValueFactory = _ => 1234UL };
        var maxSamples = new Option<int>("--max-samples") { Description = "scores kept per weight for the quantile (whole rows, evenly strided)", DefaultValueFactory = _ => TealCalibration.DefaultMaxSamples };
        var output = new Option<string?>("--out") { Description = "thresholds file to write (default: CHECKPOINT/teal.json, or wina.json with --wina)" };
        var calibrate = new Command("calibrate", "calibrate TEAL/WINA input thresholds of every block Linear weight to a target sparsity");
        foreach (var o in new Option[] { checkpoint, data, sparsity, wina, windows, seed, maxSamples, output }) calibrate.Options.Add(o);
        calibrate.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string dir = parse.GetValue(checkpoint)!;
            double s = parse.GetValue(sparsity);
            int w = parse.GetValue(windows), max = parse.GetValue(maxSamples);
            if (!(s >= 0 && s < 1)) throw new UsageException($"--sparsity ({s.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1)");
            if (w < 1) throw new UsageException($"--windows ({w}) must be at least 1");
            if (max < 1) throw new UsageException($"--max-samples ({max}) must be at least 1");
            string method = parse.GetValue(wina) ? ActivationMethods.Wina : ActivationMethods.Teal;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
            CheckpointState? state = Checkpoint.Exists(dir) ? Checkpoint.ReadState(dir) : null;
            string dataDir = parse.GetValue(data) ?? state?.Dataset
                ?? throw new UsageException($"{dir} records no dataset: give --data DIR (calibration windows come from its train.bin)");
            if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"--data: dataset directory {dataDir} does not exist");
            string outPath = parse.GetValue(output) ?? Path.Combine(dir, method + ".json");
            var config = Checkpoint.ReadAnyConfig(dir);
            var meta = DatasetMeta.Load(Path.Combine(dataDir, DatasetMeta.FileName));
            if (meta.VocabSize != config.VocabSize)
                throw new InvalidDataException($"--data: dataset {dataDir} has vocab_size {meta.VocabSize}, but checkpoint {dir} has {config.VocabSize}");
            int T = config.BlockSize;
            // A few windows per forward pass: the largest divisor of --windows up to 8.
            int batch = Enumerable.Range(1, Math.Min(8, w)).Last(b => w % b == 0);
            GptSize.Check(GptSize.DimsOf(config, batch, T), GptUse.Evaluation, GptSize.ModelKeys(config), $"checkpoint {dir}: ");
            using var train = TokenFile.OpenSplit(dataDir, "train", meta, fullScan: false);
            if (train.Length <= T) throw new InvalidDataException($"--data: dataset {dataDir}: train.bin holds {train.Length} tokens, too few for one window of block_size {T} + 1");
            var tokens = PruneRun.SampleWindows(train, w, T, parse.GetValue(seed));
            var model = Checkpoint.LoadAnyModel(dir, batch, T, out _);
            model.PrepareForInference();

            var inv = CultureInfo.InvariantCulture;
            cli.Console.MarkupLine(Markup.Escape($"calibrating {method} thresholds of {dir} to sparsity {s.ToString(inv)} on {w} windows × {T} tokens of {dataDir}/train.bin"));
            ActivationThresholds? result = null;
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
                    result = TealCalibration.Calibrate(model, tokens, method, s, max, progress, dataDir, parse.GetValue(seed));
                    task.Value = 1.0;
                });
            result!.Save(outPath);
            var table = new Table().AddColumn("weight").AddColumn("shape").AddColumn(new TableColumn("threshold").RightAligned())
                .AddColumn(new TableColumn("calibration sparsity").RightAligned());
            foreach (var t in result.Weights)
                table.AddRow(Markup.Escape(t.Name), $"{t.OutFeatures}x{t.InFeatures}", t.Threshold.ToString("G5", inv), t.CalibrationSparsity.ToString("P2", inv));
            cli.Console.Write(table);
            cli.Console.MarkupLine(Markup.Escape($"wrote {outPath} (apply with: eval|sample --checkpoint {dir} --act-sparsity {method}:{outPath})"));
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
