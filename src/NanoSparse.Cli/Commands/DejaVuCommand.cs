using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Activation;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse dejavu train`: Deja Vu predictors for a frozen checkpoint (one low-rank MLP per block that predicts
/// which of its MLP neurons a token needs), trained on the model's own activations over training windows, with the
/// recall and the selected share measured per layer on validation windows; with --target heads or both, also (or
/// only) one low-rank map per block from ln_1's output to its attention heads (Deja Vu §4). The file is used by
/// `eval`/`sample --act-sparsity predictor:FILE[:SPARSITY[:HEADS]]`.
/// </summary>
public static class DejaVuCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory (the frozen model)", Required = true };
        var dataset = new Option<string?>("--data") { Description = "dataset directory (default: the one the checkpoint was trained on)" };
        var output = new Option<string>("--out") { Description = "predictor file to write (safetensors)", Required = true };
        var rank = new Option<int>("--rank") { Description = "rank r of each predictor (C → r → H)", DefaultValueFactory = _ => 64 };
        var label = new Option<string?>("--label")
        {
            Description = "what counts as a needed neuron: active (activation ≠ 0: ReLU models) or top:F (the F·H largest |activation| " +
                          "of each token: GELU models); default: active for relu, top:0.1 for gelu",
        };
        var trainBatches = new Option<int>("--train-batches") { Description = "training windows, in batches of --batch-size", DefaultValueFactory = _ => 16 };
        var valBatches = new Option<int>("--val-batches") { Description = "validation windows for the recall report, in batches", DefaultValueFactory = _ => 4 };
        var epochs = new Option<int>("--epochs") { Description = "passes over the training rows", DefaultValueFactory = _ => 4 };
        var batchSize = new Option<int>("--batch-size") { Description = "sequences per model batch while collecting", DefaultValueFactory = _ => 8 };
        var blockSize = new Option<int?>("--block-size") { Description = "tokens per sequence (default: the model's block size)" };
        var lr = new Option<float>("--lr") { Description = "Adam learning rate", DefaultValueFactory = _ => 2e-3f };
        var seed = new Option<ulong>("--seed") { Description = "seed of the windows, the initialisation and the shuffles", DefaultValueFactory = _ => 1337UL };
        var target = new Option<string>("--target") { Description = "what to predict: mlp (MLP neurons, from ln_2's output), heads (attention heads, from ln_1's output) or both (one file)", DefaultValueFactory = _ => "mlp" };
        target.AcceptOnlyFromAmong("mlp", "heads", "both");
        var headRank = new Option<int>("--head-rank") { Description = "rank of each head predictor (C → r → n_head)", DefaultValueFactory = _ => 32 };
        var headLabel = new Option<string>("--head-label")
        {
            Description = "which heads a token needs, from the norm of each head's share of c_proj's output: top:F (the F·n_head largest) or share:F (norm ≥ F of the heads' total)",
            DefaultValueFactory = _ => DejaVuPredictor.DefaultHeadLabel,
        };
        var train = new Command("train", "train Deja Vu predictors (which MLP neurons each token needs) on a frozen checkpoint");
        foreach (var o in new Option[] { checkpoint, dataset, output, rank, label, trainBatches, valBatches, epochs, batchSize, blockSize, lr, seed, target, headRank, headLabel })
            train.Options.Add(o);
        train.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string dir = parse.GetValue(checkpoint)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
            CheckpointState? state = Checkpoint.Exists(dir) ? Checkpoint.ReadState(dir) : null;
            string data = parse.GetValue(dataset) ?? state?.Dataset
                ?? throw new UsageException($"{dir} is an imported model (no {Checkpoint.StateFile}): give --data DIR");
            int b = parse.GetValue(batchSize);
            if (b <= 0) throw new UsageException($"--batch-size ({b}) must be positive");
            var config = state?.Model.ToConfig() ?? Checkpoint.ReadAnyConfig(dir);
            int t = Math.Min(parse.GetValue(blockSize) ?? config.BlockSize, config.BlockSize);
            if (t <= 0) throw new UsageException($"--block-size ({t}) must be positive");
            string labelText = parse.GetValue(label) ?? (config.Activation is GptConfig.Gelu or GptConfig.GeluTanh ? "top:0.1" : "active");
            DejaVuTrainOptions options;
            try
            {
                options = new DejaVuTrainOptions(parse.GetValue(rank), parse.GetValue(trainBatches), parse.GetValue(valBatches), parse.GetValue(epochs),
                    256, parse.GetValue(lr), labelText, parse.GetValue(seed), parse.GetValue(target)!, parse.GetValue(headRank), parse.GetValue(headLabel)!).Validate();
            }
            catch (ArgumentException e)
            {
                string m = e.Message;
                throw new UsageException(m.StartsWith("rank (") || m.StartsWith("label \"") ? "--" + m
                    : m.StartsWith("head rank (") || m.StartsWith("head label \"") ? "--head-" + m[5..] : m);
            }
            string outPath = parse.GetValue(output)!;
            if (Directory.Exists(outPath)) throw new UsageException($"--out {outPath} is a directory; give a file name");

            var meta = DatasetMeta.Load(Path.Combine(data, DatasetMeta.FileName));
            using var trainFile = TokenFile.OpenSplit(data, "train", meta, fullScan: true);
            using var valFile = TokenFile.OpenSplit(data, "val", meta, fullScan: true);
            var gpt = Checkpoint.LoadAnyModel(dir, b, t, out _);
            gpt.PrepareForInference();
            if (meta.VocabSize > gpt.Config.VocabSize)
                throw new InvalidDataException($"dataset {data} has vocab_size {meta.VocabSize} but checkpoint {dir} has {gpt.Config.VocabSize}");
            if (Math.Min(trainFile.Length, valFile.Length) <= gpt.SeqLen)
                throw new UsageException($"dataset {data}: a split holds too few tokens for --block-size {gpt.SeqLen}");

            var inv = CultureInfo.InvariantCulture;
            string what = (options.TrainsMlp ? $"MLP rank {options.Rank}, label {options.Label}; " : "") +
                (options.TrainsHeads ? $"heads rank {options.HeadRank}, label {options.HeadLabel}; " : "");
            cli.Console.MarkupLine(Markup.Escape(string.Create(inv,
                $"Deja Vu predictors for {dir} ({options.Target}): {what}{options.TrainBatches}x{b}x{gpt.SeqLen} training tokens, {options.Epochs} epochs → {outPath}")));
            DejaVuTraining.Result result = null!;
            cli.Console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("collecting", maxValue: 1.0);
                    result = DejaVuTraining.Train(gpt, trainFile, valFile, options, p =>
                    {
                        double eta = (p.Total - p.Done) / Math.Max(p.PerSecond, 1e-9);
                        bool training = p.Stage.StartsWith("train", StringComparison.Ordinal);
                        task.Description = training
                            ? string.Create(inv, $"{p.Stage} layer {p.Layer + 1}/{p.Layers}: {p.Done}/{p.Total} steps  {p.PerSecond:F1} steps/s  ETA {eta:F0} s")
                            : string.Create(inv, $"{p.Stage}: {p.Done}/{p.Total} tokens  {p.PerSecond:F0} tokens/s  ETA {eta:F0} s");
                        task.Value = training ? p.OverallFraction : 0;
                    });
                    task.Description = "trained";
                    task.Value = 1.0;
                });
            var (predictor, reports, headReports) = result;
            var notes = new Dictionary<string, string>(predictor.Notes) { ["checkpoint"] = Path.GetFullPath(dir) };
            new DejaVuPredictor(predictor.Layers, predictor.Label, notes, predictor.HeadLayers, predictor.HeadLabel).Save(outPath);
            if (headReports.Count > 0) WriteHeadTable(cli, predictor, headReports);
            if (reports.Count == 0)
            {
                cli.Console.MarkupLine(Markup.Escape($"use it with eval/sample --act-sparsity {ActSparsityOptions.PredictorKind}:{outPath}::HEADS (HEADS = heads computed per token)"));
                cli.Console.MarkupLine(Markup.Escape($"wrote {outPath}"));
                return 0;
            }

            var table = new Table().AddColumn("layer").AddColumn(new TableColumn("BCE start").RightAligned()).AddColumn(new TableColumn("BCE train").RightAligned())
                .AddColumn(new TableColumn("BCE val").RightAligned()).AddColumn(new TableColumn("recall").RightAligned())
                .AddColumn(new TableColumn("selected").RightAligned()).AddColumn(new TableColumn("truly needed").RightAligned())
                .AddColumn(new TableColumn("cost / MLP").RightAligned());
            foreach (var r in reports)
            {
                var p = predictor.Layers[r.Layer];
                double cost = (double)p.MacsPerToken / (2.0 * p.Channels * p.Hidden);
                table.AddRow(r.Layer.ToString(inv), r.InitialLoss.ToString("F4", inv), r.TrainLoss.ToString("F4", inv), r.ValLoss.ToString("F4", inv),
                    r.Recall.ToString("P1", inv), r.Selected.ToString("P1", inv), r.Active.ToString("P1", inv), cost.ToString("P1", inv));
            }
            cli.Console.Write(table);
            cli.Console.MarkupLine(Markup.Escape("recall and selected: validation tokens, neurons with a positive predictor logit; " +
                $"use it with eval/sample --act-sparsity {ActSparsityOptions.PredictorKind}:{outPath}[:SPARSITY{(headReports.Count > 0 ? "[:HEADS]" : "")}]"));
            cli.Console.MarkupLine(Markup.Escape($"wrote {outPath}"));
            return 0;
        });
        var cmd = new Command("dejavu", "Deja Vu contextual sparsity: predictors of the MLP neurons and attention heads each token needs");
        cmd.Subcommands.Add(train);
        return cmd;
    }

    static void WriteHeadTable(CliContext cli, DejaVuPredictor predictor, IReadOnlyList<DejaVuHeadReport> reports)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().Title("head predictors").AddColumn("layer").AddColumn(new TableColumn("BCE start").RightAligned())
            .AddColumn(new TableColumn("BCE train").RightAligned()).AddColumn(new TableColumn("BCE val").RightAligned())
            .AddColumn(new TableColumn("recall").RightAligned()).AddColumn(new TableColumn("selected").RightAligned())
            .AddColumn(new TableColumn("truly needed").RightAligned()).AddColumn(new TableColumn("recall, top half").RightAligned())
            .AddColumn(new TableColumn("recall, top 3/4").RightAligned()).AddColumn(new TableColumn("cost / attention").RightAligned());
        foreach (var r in reports)
        {
            var p = predictor.HeadLayers[r.Layer];
            double cost = (double)p.MacsPerToken / (4.0 * p.Channels * p.Channels);   // c_attn + c_proj: 4·C·A with A = C
            table.AddRow(r.Layer.ToString(inv), r.InitialLoss.ToString("F4", inv), r.TrainLoss.ToString("F4", inv), r.ValLoss.ToString("F4", inv),
                r.Recall.ToString("P1", inv), r.Selected.ToString("P1", inv), r.Needed.ToString("P1", inv),
                $"{r.RecallHalf.ToString("P1", inv)} ({r.HalfHeads})", $"{r.RecallThreeQuarters.ToString("P1", inv)} ({r.ThreeQuarterHeads})", cost.ToString("P1", inv));
        }
        cli.Console.Write(table);
        cli.Console.MarkupLine(Markup.Escape($"heads: label {predictor.HeadLabel}; recall and selected on validation tokens (positive logit, then the top half / 3/4 of the heads by score); " +
            "cost: the predictor's multiply-adds over c_attn's and c_proj's"));
    }
}
