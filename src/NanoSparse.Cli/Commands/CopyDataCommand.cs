using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse copy-data`: a synthetic copying dataset (<see cref="CopyProbe"/>): train.bin and val.bin hold segments
/// "| run run" of random distinct tokens from a reserved alphabet, run lengths (the copy distances) log-uniform in
/// [min, max]; meta.json holds its char symbols. `train --set dataset=DIR` reads it like any char dataset;
/// `eval --probe copy` and `probe-compare --probe copy` measure copy accuracy against distance on its val stream.
/// Every file is written atomically.
/// </summary>
public static class CopyDataCommand
{
    public static Command Create(CliContext cli)
    {
        var output = new Option<string>("--out") { Description = "output dataset directory", Required = true };
        var alphabet = new Option<int>("--alphabet") { Description = $"distinct run tokens (2-{CopyProbe.MaxAlphabet}; chance is 1/alphabet; at least --max-distance)", DefaultValueFactory = _ => 256 };
        var minDistance = new Option<int>("--min-distance") { Description = "shortest run (copy distance), at least 1", DefaultValueFactory = _ => 8 };
        var maxDistance = new Option<int>("--max-distance") { Description = "longest run; run lengths are log-uniform in [min, max]", DefaultValueFactory = _ => 250 };
        var trainTokens = new Option<long>("--train-tokens") { Description = "tokens of train.bin", DefaultValueFactory = _ => 4_000_000 };
        var valTokens = new Option<long>("--val-tokens") { Description = "tokens of val.bin", DefaultValueFactory = _ => 200_000 };
        var drawFrom = new Option<int?>("--draw-from") { Description = "a run of L tokens draws from the first max(this, L) symbols only (default: the whole alphabet): short runs reuse a few frequent symbols, a curriculum over the same vocabulary" };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337UL };
        var cmd = new Command("copy-data", "write a synthetic copying dataset (runs of random tokens, each followed by its repeat, at controlled distances)");
        foreach (var o in new Option[] { output, alphabet, minDistance, maxDistance, drawFrom, trainTokens, valTokens, seed }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string dst = parse.GetValue(output)!;
            int a = parse.GetValue(alphabet), min = parse.GetValue(minDistance), max = parse.GetValue(maxDistance);
            long nTrain = parse.GetValue(trainTokens), nVal = parse.GetValue(valTokens);
            if (a is < 2 or > CopyProbe.MaxAlphabet) throw new UsageException($"--alphabet ({a}) must lie in [2, {CopyProbe.MaxAlphabet}]");
            if (min < 1 || max < min) throw new UsageException($"--min-distance ({min}) and --max-distance ({max}) must satisfy 1 <= min <= max");
            int draw = parse.GetValue(drawFrom) ?? a;
            if (draw < 2 || draw > a) throw new UsageException($"--draw-from ({draw}) must lie in [2, {a}] (--alphabet)");
            if (max > a) throw new UsageException($"--max-distance ({max}) must not exceed --alphabet ({a}): a run's tokens are distinct");
            foreach (var (name, n) in new[] { ("--train-tokens", nTrain), ("--val-tokens", nVal) })
                if (n < 2L * max + 1 || n > Array.MaxLength)
                    throw new UsageException($"{name} ({n}) must lie in [{2L * max + 1}, {Array.MaxLength}] (room for a separator and the longest run twice)");
            var task = new CopyProbe(a);
            Directory.CreateDirectory(dst);
            var rng = new Rng(parse.GetValue(seed));
            var inv = CultureInfo.InvariantCulture;
            foreach (var (split, n) in new[] { ("train", nTrain), ("val", nVal) })
            {
                var tokens = new int[n];
                var segments = new List<CopyProbe.Segment>();
                task.Generate(tokens, min, max, rng, segments, draw);
                TokenFileWriter.Write(Path.Combine(dst, split + ".bin"), tokens, TokenDtype.UInt16, task.VocabSize);
                long predictable = segments.Sum(s => (long)s.Length - 1);
                double meanL = segments.Count == 0 ? 0 : segments.Average(s => (double)s.Length);
                cli.Out.WriteLine(string.Create(inv,
                    $"{split}: {n:N0} tokens, {segments.Count:N0} segments, {predictable:N0} predictable copy positions ({(double)predictable / n:P1}), distances {min}-{max} log-uniform (mean {meanL:F0})"));
            }
            new DatasetMeta
            {
                VocabSize = task.VocabSize,
                Dtype = TokenDtype.UInt16,
                Tokenizer = Tokenizers.Char,
                Symbols = task.Symbols(),
                Corpus = CopyProbe.CorpusName,
                TrainTokens = nTrain,
                ValTokens = nVal,
            }.Save(Path.Combine(dst, DatasetMeta.FileName));
            cli.Out.WriteLine($"wrote {dst}");
            return 0;
        });
        return cmd;
    }
}
