using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse recall-data`: a purely synthetic associative-recall dataset (<see cref="AssociativeRecall"/>):
/// train.bin and val.bin hold streams of key-value records and their queries at log-uniform distances over a reserved
/// vocabulary, meta.json its char symbols. `train --set dataset=DIR` reads it like any char dataset;
/// `eval --probe recall` and `probe-compare --probe recall` measure accuracy against distance on its val stream.
/// Every file is written atomically.
/// </summary>
public static class RecallDataCommand
{
    public static Command Create(CliContext cli)
    {
        var output = new Option<string>("--out") { Description = "output dataset directory", Required = true };
        var keys = new Option<int>("--keys") { Description = $"distinct key tokens (2-{AssociativeRecall.MaxAlphabet})", DefaultValueFactory = _ => 128 };
        var values = new Option<int>("--values") { Description = $"distinct value tokens (2-{AssociativeRecall.MaxAlphabet}; chance is 1/values)", DefaultValueFactory = _ => 64 };
        var every = new Option<int>("--every") { Description = "a record starts every this many tokens on average", DefaultValueFactory = _ => 8 };
        var minDistance = new Option<int>("--min-distance") { Description = "shortest distance (tokens between a record's end and its query)", DefaultValueFactory = _ => 0 };
        var maxDistance = new Option<int>("--max-distance") { Description = "longest distance; distances are log-uniform in [min, max]", DefaultValueFactory = _ => 1000 };
        var reuse = new Option<int>("--reuse-distance")
        {
            Description = "tokens after a key's query before the key may start a new record (a window of up to this + 1 tokens holds one record/query per key: at least the block you train)",
            DefaultValueFactory = _ => 1024,
        };
        var trainTokens = new Option<long>("--train-tokens") { Description = "tokens of train.bin", DefaultValueFactory = _ => 8_000_000 };
        var valTokens = new Option<long>("--val-tokens") { Description = "tokens of val.bin", DefaultValueFactory = _ => 500_000 };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337UL };
        var cmd = new Command("recall-data", "write a synthetic associative-recall dataset (key-value records and queries at controlled distances over a reserved vocabulary)");
        foreach (var o in new Option[] { output, keys, values, every, minDistance, maxDistance, reuse, trainTokens, valTokens, seed }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string dst = parse.GetValue(output)!;
            int k = parse.GetValue(keys), v = parse.GetValue(values), e = parse.GetValue(every);
            int min = parse.GetValue(minDistance), max = parse.GetValue(maxDistance), r = parse.GetValue(reuse);
            long nTrain = parse.GetValue(trainTokens), nVal = parse.GetValue(valTokens);
            int max16 = AssociativeRecall.MaxAlphabet;
            if (k is < 2 || k > max16) throw new UsageException($"--keys ({k}) must lie in [2, {max16}]");
            if (v is < 2 || v > max16) throw new UsageException($"--values ({v}) must lie in [2, {max16}]");
            if (e < 1) throw new UsageException($"--every ({e}) must be at least 1");
            if (min < 0 || max < min) throw new UsageException($"--min-distance ({min}) and --max-distance ({max}) must satisfy 0 <= min <= max");
            if (r < 0) throw new UsageException($"--reuse-distance ({r}) must be >= 0");
            foreach (var (name, n) in new[] { ("--train-tokens", nTrain), ("--val-tokens", nVal) })
                if (n < max + 4L || n > Array.MaxLength)
                    throw new UsageException($"{name} ({n}) must lie in [{max + 4L}, {Array.MaxLength}] (room for a record, the longest distance and its query)");
            var task = new AssociativeRecall(k, v);
            Directory.CreateDirectory(dst);
            var rng = new Rng(parse.GetValue(seed));
            var inv = CultureInfo.InvariantCulture;
            foreach (var (split, n) in new[] { ("train", nTrain), ("val", nVal) })
            {
                var tokens = new int[n];
                var pairs = new List<AssociativeRecall.Pair>();
                task.Generate(tokens, e, min, max, r, rng, pairs);
                TokenFileWriter.Write(Path.Combine(dst, split + ".bin"), tokens, TokenDtype.UInt16, task.VocabSize);
                double answerShare = 2.0 * pairs.Count / n, meanD = pairs.Count == 0 ? 0 : pairs.Average(p => (double)p.Distance);
                cli.Out.WriteLine(string.Create(inv,
                    $"{split}: {n:N0} tokens, {pairs.Count:N0} record/query pairs ({answerShare:P1} of tokens are queries), distances {min}-{max} log-uniform (mean {meanD:F0})"));
            }
            new DatasetMeta
            {
                VocabSize = task.VocabSize,
                Dtype = TokenDtype.UInt16,
                Tokenizer = Tokenizers.Char,
                Symbols = task.Symbols(),
                Corpus = AssociativeRecall.CorpusName,
                TrainTokens = nTrain,
                ValTokens = nVal,
            }.Save(Path.Combine(dst, DatasetMeta.FileName));
            cli.Out.WriteLine($"wrote {dst}");
            // the value alphabet: a record's value (unpredictable) or a query's answer; MQAR-style training on them only
            cli.Out.WriteLine($"loss on the values only: train --set loss_targets={task.ValueId(0)}-{task.ValueId(v - 1)}");
            return 0;
        });
        return cmd;
    }
}
