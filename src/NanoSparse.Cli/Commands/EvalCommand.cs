using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

public static class EvalCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory (a run's out_dir)", Required = true };
        var dataset = new Option<string?>("--dataset") { Description = "dataset directory (default: the one the checkpoint was trained on)" };
        var iters = new Option<int?>("--iters") { Description = "batches per split (default: the run's eval_iters)" };
        var cmd = new Command("eval", "train and val loss of a checkpoint (eval mode, fixed batches)");
        cmd.Options.Add(checkpoint);
        cmd.Options.Add(dataset);
        cmd.Options.Add(iters);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string dir = parse.GetValue(checkpoint)!;
            var state = Checkpoint.ReadState(dir);
            string data = parse.GetValue(dataset) ?? state.Dataset;
            int n = parse.GetValue(iters) ?? state.Config.EvalIters;
            if (n <= 0) throw new UsageException($"--iters ({n}) must be positive");
            var meta = DatasetMeta.Load(Path.Combine(data, "meta.json"));
            if (meta.VocabSize != state.Model.VocabSize)
                throw new InvalidDataException($"dataset {data} has vocab_size {meta.VocabSize} but checkpoint {dir} has {state.Model.VocabSize}");
            using var train = TokenFile.OpenSplit(data, "train", meta, fullScan: true);
            using var val = TokenFile.OpenSplit(data, "val", meta, fullScan: true);
            var gpt = Checkpoint.LoadModel(dir, state.Config.BatchSize, state.Config.BlockSize, out _);
            var x = new int[gpt.BatchSize * gpt.SeqLen];
            var y = new int[x.Length];
            float trainLoss = Evaluator.MeanLoss(gpt, train, n, Evaluator.SplitSeed(state.Config.Seed, "train"), x, y);
            float valLoss = Evaluator.MeanLoss(gpt, val, n, Evaluator.SplitSeed(state.Config.Seed, "val"), x, y);
            var table = new Table().AddColumn("split").AddColumn(new TableColumn("loss").RightAligned()).AddColumn(new TableColumn("batches").RightAligned());
            table.AddRow("train", trainLoss.ToString("F4", CultureInfo.InvariantCulture), n.ToString(CultureInfo.InvariantCulture));
            table.AddRow("val", valLoss.ToString("F4", CultureInfo.InvariantCulture), n.ToString(CultureInfo.InvariantCulture));
            cli.Console.MarkupLine($"checkpoint {Markup.Escape(dir)} at step {state.IterNum}, dataset {Markup.Escape(data)}");
            cli.Console.Write(table);
            return 0;
        });
        return cmd;
    }
}
