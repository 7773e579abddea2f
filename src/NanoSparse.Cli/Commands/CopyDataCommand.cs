using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse copy-data`: a synthetic copying dataset (<see cref="CopyProbe"/>): train.bin and val.bin hold segments
/// "| run [fillers] run" of random distinct tokens from a reserved alphabet, copy distances log-uniform in [min, max]
/// (a run of min(distance, --run-length) tokens, fillers for the rest); meta.json holds its char symbols. `train --set dataset=DIR` reads it like any char dataset;
/// `eval --probe copy` and `probe-compare --probe copy` measure copy accuracy against distance on its val stream.
/// Every file is written atomically.
/// </summary>
public static class CopyDataCommand
{
    public static Command Create(CliContext cli)
    {
        var output = new Option<string>("--out") { Description = "output dataset directory", Required = true };
        var alphabet = new Option<int>("--alphabet") { Description = $"distinct run tokens (2-{CopyProbe.MaxAlphabet}; chance is 1/alphabet)", DefaultValueFactory = _ => 256 };
        var minDistance = new Option<int>("--min-distance") { Description = "shortest copy distance (tokens from a run's token to its repeat), at least 1", DefaultValueFactory = _ => 8 };
        var maxDistance = new Option<int>("--max-distance") { Description = "longest copy distance; distances are log-uniform in [min, max]", DefaultValueFactory = _ => 250 };
        var runLength = new Option<int?>("--run-length") { Description = "longest run (at most --alphabet; default: the smaller of --alphabet and --max-distance): a segment of distance D holds a run of min(D, this) tokens, then D minus that many fillers '.', then the repeat" };
        var trainTokens = new Option<long>("--train-tokens") { Description = "tokens of train.bin", DefaultValueFactory = _ => 4_000_000 };
        var valTokens = new Option<long>("--val-tokens") { Description = "tokens of val.bin", DefaultValueFactory = _ => 200_000 };
        var drawFrom = new Option<int?>("--draw-from") { Description = "a run of L tokens draws from the first max(this, L) symbols only (default: the whole alphabet): short runs reuse a few frequent symbols, a curriculum over the same vocabulary" };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337UL };
        var cmd = new Command("copy-data", "write a synthetic copying dataset (runs of random tokens, each followed by its repeat, at controlled distances)");
        foreach (var o in new Option[] { output, alphabet, minDistance, maxDistance, runLength, drawFrom, trainTokens, valTokens, seed }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string dst = parse.GetValue(output)!;
            int a = parse.GetValue(alphabet), min = parse.GetValue(minDistance), max = parse.GetValue(maxDistance);
            long nTrain = parse.GetValue(trainTokens), nVal = parse.GetValue(valTokens);
            if (a is < 2 or > CopyProbe.MaxAlphabet) throw new UsageException($"--alphabet ({a}) must lie in [2, {CopyProbe.MaxAlphabet}]");
            if (min < 1 || max < min) throw new UsageException($"--min-distance ({min}) and --max-distance ({max}) must satisfy 1 <= min <= max");
            int draw = parse.GetValue(drawFrom) ?? a;
            if (draw < 2 || draw > a) throw new UsageException($"--draw-from ({draw}) must lie in [2, {a}] (--alphabet)");
            int run = parse.GetValue(runLength) ?? Math.Min(a, max);
            if (run < 1 || run > a) throw new UsageException($"--run-length ({run}) must lie in [1, {a}] (--alphabet): a run's tokens are distinct");
            foreach (var (name, n) in new[] { ("--train-tokens", nTrain), ("--val-tokens", nVal) })
                if (n < max + Math.Min(run, max) + 1L || n > Array.MaxLength)
                    throw new UsageException($"{name} ({n}) must lie in [{max + Math.Min(run, max) + 1L}, {Array.MaxLength}] (room for the longest segment)");
            var task = new CopyProbe(a);
            Directory.CreateDirectory(dst);
            var rng = new Rng(parse.GetValue(seed));
            var inv = CultureInfo.InvariantCulture;
            foreach (var (split, n) in new[] { ("train", nTrain), ("val", nVal) })
            {
                var tokens = new int[n];
                var segments = new List<CopyProbe.Segment>();
                task.Generate(tokens, min, max, rng, segments, draw, run);
                TokenFileWriter.Write(Path.Combine(dst, split + ".bin"), tokens, TokenDtype.UInt16, task.VocabSize);
                long predictable = segments.Sum(s => (long)s.Run - 1);
                double meanL = segments.Count == 0 ? 0 : segments.Average(s => (double)s.Distance);
                cli.Out.WriteLine(string.Create(inv,
                    $"{split}: {n:N0} tokens, {segments.Count:N0} segments, {predictable:N0} predictable copy positions ({(double)predictable / n:P1}), distances {min}-{max} log-uniform (mean {meanL:F0}), runs of at most {run}"));
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
