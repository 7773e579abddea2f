using System.CommandLine;
using NanoSparse.Data;
using NanoSparse.Numerics;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse probe-data`: a copy of a char-level dataset with retrieval-probe records and queries written over its
/// text (<see cref="RetrievalProbe.Inject"/>), so that training on it mixes running text with key-value retrieval at
/// distances the block reaches. The input dataset is read only; the output's train.bin, val.bin and meta.json are
/// written atomically.
/// </summary>
public static class ProbeDataCommand
{
    public static Command Create(CliContext cli)
    {
        var data = new Option<string>("--data") { Description = "char-level dataset directory to read (e.g. data/brown)", Required = true };
        var output = new Option<string>("--out") { Description = "output dataset directory", Required = true };
        var every = new Option<int>("--every") { Description = "a record starts every this many tokens on average", DefaultValueFactory = _ => 400 };
        var minDistance = new Option<int>("--min-distance") { Description = "shortest distance (tokens) from a record to its query", DefaultValueFactory = _ => 8 };
        var maxDistance = new Option<int>("--max-distance") { Description = "longest distance (tokens) from a record to its query", DefaultValueFactory = _ => 900 };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337UL };
        var keyLength = ProbeFormatOptions.KeyLength();
        var valueLength = ProbeFormatOptions.ValueLength();
        var cmd = new Command("probe-data", "write a copy of a char-level dataset with key-value retrieval records and queries mixed into its text");
        foreach (var o in new Option[] { data, output, every, minDistance, maxDistance, seed, keyLength, valueLength }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string src = parse.GetValue(data)!, dst = parse.GetValue(output)!;
            int e = parse.GetValue(every), min = parse.GetValue(minDistance), max = parse.GetValue(maxDistance);
            if (e < 1) throw new UsageException($"--every ({e}) must be at least 1");
            if (min < 0 || max < min) throw new UsageException($"--min-distance ({min}) and --max-distance ({max}) must satisfy 0 <= min <= max");
            if (Path.GetFullPath(src) == Path.GetFullPath(dst)) throw new UsageException($"--out ({dst}) must differ from --data: the input dataset is never modified");
            var meta = DatasetMeta.Load(Path.Combine(src, DatasetMeta.FileName));
            if (meta.Tokenizer != Tokenizers.Char) throw new UsageException($"--data {src} is tokenized with {meta.Tokenizer}; the retrieval probe needs a char-level dataset");
            var probe = ProbeFormatOptions.Create(parse, keyLength, valueLength, meta, Path.Combine(src, DatasetMeta.FileName));
            Directory.CreateDirectory(dst);
            var rng = new Rng(parse.GetValue(seed));
            foreach (string split in new[] { "train", "val" })
            {
                int[] tokens;
                using (var file = TokenFile.OpenSplit(src, split, meta, fullScan: true))
                {
                    if (file.Length > Array.MaxLength) throw new InvalidDataException($"{file.Path}: {file.Length} tokens, more than one array holds");
                    tokens = new int[file.Length];
                    file.Read(0, tokens);
                }
                int pairs = probe.Inject(tokens, e, min, max, rng);
                TokenFileWriter.Write(Path.Combine(dst, split + ".bin"), tokens, meta.Dtype, meta.VocabSize);
                cli.Out.WriteLine($"{split}: {tokens.Length:N0} tokens, {pairs:N0} record/query pairs at distances {min}-{max}");
            }
            meta.Save(Path.Combine(dst, DatasetMeta.FileName));
            cli.Out.WriteLine($"wrote {dst}");
            return 0;
        });
        return cmd;
    }
}
