using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse eval`: train and val loss of a checkpoint. A training checkpoint brings its dataset, batch size, block
/// size, eval_iters and seed; an imported one (model.safetensors + config.json) needs --data, and takes the others
/// from the options (defaults: batch 8, the model's block size, 20 batches, seed 1337).
/// </summary>
public static class EvalCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory (a run's out_dir, or an imported model)", Required = true };
        var dataset = new Option<string?>("--data") { Description = "dataset directory (default: the one the checkpoint was trained on)" };
        dataset.Aliases.Add("--dataset");
        var iters = new Option<int?>("--iters") { Description = "batches per split (default: the run's eval_iters, 20 for an imported model)" };
        var batchSize = new Option<int?>("--batch-size") { Description = "sequences per batch (default: the run's batch_size, 8 for an imported model)" };
        var blockSize = new Option<int?>("--block-size") { Description = "tokens per sequence (default: the run's block_size, the model's for an imported one)" };
        var seed = new Option<ulong?>("--seed") { Description = "seed of the evaluation batches (default: the run's seed, 1337)" };
        var tokenizerOptions = new TokenizerOptions();
        var cmd = new Command("eval", "train and val loss of a checkpoint (eval mode, fixed batches)");
        foreach (var o in new Option[] { checkpoint, dataset, iters, batchSize, blockSize, seed }) cmd.Options.Add(o);
        cmd.Options.Add(tokenizerOptions.Kind);
        var kvEval = new KvEvalOptions();
        kvEval.AddTo(cmd);
        var actSparsity = new ActSparsityOptions();
        actSparsity.AddTo(cmd);
        var activationStats = new ActivationStatsOutput();
        activationStats.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string dir = parse.GetValue(checkpoint)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
            CheckpointState? state = Checkpoint.Exists(dir) ? Checkpoint.ReadState(dir) : null;
            string data = parse.GetValue(dataset) ?? state?.Dataset
                ?? throw new UsageException($"{dir} is an imported model (no {Checkpoint.StateFile}): give --data DIR, a dataset prepared with its tokenizer");
            int n = parse.GetValue(iters) ?? state?.Config.EvalIters ?? 20;
            int b = parse.GetValue(batchSize) ?? state?.Config.BatchSize ?? 8;
            if (n <= 0) throw new UsageException($"--iters ({n}) must be positive");
            if (b <= 0) throw new UsageException($"--batch-size ({b}) must be positive");
            var kvCache = kvEval.Kv.Resolve(parse);
            actSparsity.Resolve(parse, dir);
            bool measureActivations = activationStats.Resolve(parse, out float activationEpsilon, out string activationPng);
            var meta = DatasetMeta.Load(Path.Combine(data, DatasetMeta.FileName));

            // The dataset's ids must mean what the model was trained on: same tokenizer kind when one is known.
            string? expectedKind = parse.GetValue(tokenizerOptions.Kind);
            string? recorded = TokenizerOptions.RecordedMetaPath(dir, state);
            DatasetMeta? recordedMeta = recorded is null ? null : DatasetMeta.Load(recorded);
            expectedKind ??= recordedMeta?.Tokenizer;
            if (expectedKind is not null && expectedKind != meta.Tokenizer)
                throw new InvalidDataException($"dataset {data} is tokenized with {meta.Tokenizer} but the model expects {expectedKind}");
            // Char vocabularies come from the text: the same kind is not enough, the symbols must be the same too.
            if (recordedMeta is { Tokenizer: Tokenizers.Char } && meta.Tokenizer == Tokenizers.Char && !recordedMeta.Symbols.SequenceEqual(meta.Symbols))
                throw new InvalidDataException($"dataset {data} has a different char vocabulary ({meta.VocabSize} symbols) from the model's {recorded} ({recordedMeta.VocabSize} symbols)");

            using var train = TokenFile.OpenSplit(data, "train", meta, fullScan: true);
            using var val = TokenFile.OpenSplit(data, "val", meta, fullScan: true);
            int t = parse.GetValue(blockSize) ?? state?.Config.BlockSize ?? int.MaxValue;
            if (t <= 0) throw new UsageException($"--block-size ({t}) must be positive");
            // Buffer sizes in long before anything is allocated: a huge --batch-size or --block-size is refused by name.
            var modelConfig = state?.Model.ToConfig() ?? Checkpoint.ReadAnyConfig(dir);
            int seqLen = Math.Min(t, modelConfig.BlockSize);
            try
            {
                GptSize.Check(GptSize.DimsOf(modelConfig, b, seqLen), GptUse.Evaluation,
                    [new("--batch-size", b, (d, v) => d with { B = v }), new("--block-size", seqLen, (d, v) => d with { T = v })]);
            }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            var gpt = Checkpoint.LoadAnyModel(dir, b, t, out _);
            gpt.PrepareForInference();   // forward only: sparse layouts drop their training structures
            // TEAL / WINA: the token-by-token path (a sparse KV cache) decodes through the sparse-input kernel; predictor: Deja Vu MLPs
            gpt = actSparsity.Apply(parse, dir, gpt, decodeCopies: kvCache.Kind != KvCacheSpec.Dense, out var thresholds, out var predicted);
            if (state is not null ? meta.VocabSize != gpt.Config.VocabSize : meta.VocabSize > gpt.Config.VocabSize)
                throw new InvalidDataException($"dataset {data} has vocab_size {meta.VocabSize} but checkpoint {dir} has {gpt.Config.VocabSize}");
            long shortest = Math.Min(train.Length, val.Length);
            if (shortest <= gpt.SeqLen)
                throw new UsageException($"dataset {data}: a split holds only {shortest} tokens, too few for --block-size {gpt.SeqLen}; give a smaller --block-size");
            ulong s = parse.GetValue(seed) ?? state?.Config.Seed ?? 1337UL;
            if (parse.GetValue(kvEval.Probe) is not null) return kvEval.RunProbe(cli, parse, gpt, meta, val, data, s);
            var x = new int[gpt.BatchSize * gpt.SeqLen];
            var y = new int[x.Length];
            // a sparse KV cache: every position decoded one token at a time through it
            var (trainLoss, valLoss) = kvCache.Kind != KvCacheSpec.Dense ? kvEval.CachedLosses(cli, parse, gpt, train, val, n, s)
                : ((double)Evaluator.MeanLoss(gpt, train, n, Evaluator.SplitSeed(s, "train"), x, y), (double)Evaluator.MeanLoss(gpt, val, n, Evaluator.SplitSeed(s, "val"), x, y));
            var table = new Table().AddColumn("split").AddColumn(new TableColumn("loss").RightAligned()).AddColumn(new TableColumn("batches").RightAligned());
            table.AddRow("train", trainLoss.ToString("F4", CultureInfo.InvariantCulture), n.ToString(CultureInfo.InvariantCulture));
            table.AddRow("val", valLoss.ToString("F4", CultureInfo.InvariantCulture), n.ToString(CultureInfo.InvariantCulture));
            if (kvCache.Kind != KvCacheSpec.Dense) cli.Console.MarkupLine(Markup.Escape($"KV cache: {kvCache} (token by token)"));
            if (thresholds is not null)
                cli.Console.MarkupLine(Markup.Escape($"activation sparsity: {thresholds.Method} calibrated to {thresholds.TargetSparsity.ToString(CultureInfo.InvariantCulture)}; " +
                    $"measured {Sparsity.Activation.ActivationSparsity.MeasuredSparsity(gpt).ToString("P2", CultureInfo.InvariantCulture)} of the block Linear inputs zeroed, " +
                    $"{Sparsity.Activation.ActivationSparsity.MeasuredWeightSparsity(gpt).ToString("P2", CultureInfo.InvariantCulture)} of their weight reads skipped ({thresholds.Allocation} allocation)"));
            cli.Console.MarkupLine(state is not null
                ? $"checkpoint {Markup.Escape(dir)} at step {state.IterNum}, dataset {Markup.Escape(data)}"
                : $"imported model {Markup.Escape(dir)}, dataset {Markup.Escape(data)} ({meta.Tokenizer}), batch {gpt.BatchSize} x {gpt.SeqLen}");
            cli.Console.Write(table);
            if (ActSparsityOptions.Summary(gpt) is { } predictedSummary) cli.Console.MarkupLine(Markup.Escape(predictedSummary + " (train and val rows)"));
            if (measureActivations)
                ActivationStatsOutput.Run(cli, gpt, val, n, Evaluator.SplitSeed(s, "val"), activationEpsilon, activationPng,
                    string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)))}, val loss {valLoss:F4}"));
            return 0;
        });
        return cmd;
    }
}
