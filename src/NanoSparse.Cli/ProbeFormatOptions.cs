using System.CommandLine;
using System.Globalization;
using NanoSparse.Data;

namespace NanoSparse.Cli;

/// <summary>
/// The retrieval probe's record format, shared by probe-data, eval --probe and probe-compare (a model trained on one
/// format is measured on the same): --key-length letters per key, --value-length digits per value.
/// </summary>
public static class ProbeFormatOptions
{
    public static Option<int> KeyLength() => new("--key-length")
    {
        Description = "retrieval probe: letters per key (1-8; 1 gives 26 keys, an induction-head task)",
        DefaultValueFactory = _ => RetrievalProbe.DefaultKeyLength,
    };

    public static Option<int> ValueLength() => new("--value-length")
    {
        Description = "retrieval probe: digits per value (1-8)",
        DefaultValueFactory = _ => RetrievalProbe.DefaultValueLength,
    };

    /// <summary>The probe over a dataset's char vocabulary in the format the options give; bad values are one-line errors.</summary>
    public static RetrievalProbe Create(ParseResult parse, Option<int> keyLength, Option<int> valueLength, DatasetMeta meta, string metaPath)
    {
        int k = parse.GetValue(keyLength), v = parse.GetValue(valueLength);
        if (k is < 1 or > 8) throw new UsageException($"--key-length ({k}) must lie in [1, 8] letters");
        if (v is < 1 or > 8) throw new UsageException($"--value-length ({v}) must lie in [1, 8] digits");
        try { return new RetrievalProbe(meta.Symbols, metaPath, k, v); }
        catch (ArgumentException e) { throw new InvalidDataException(e.Message); }
    }

    /// <summary>The probes `eval --probe` and `probe-compare --probe` know.</summary>
    public const string Retrieval = "retrieval", Recall = "recall", Copy = "copy";

    /// <summary>The copying probe over a dataset `copy-data` wrote (its val stream is measured as it is); bad data is a one-line error.</summary>
    public static CopyProbe CreateCopy(DatasetMeta meta, string dataDir)
    {
        if (meta.Tokenizer != Tokenizers.Char)
            throw new UsageException($"--probe {Copy} needs a char-level dataset; {dataDir} is tokenized with {meta.Tokenizer}");
        if (meta.Corpus != CopyProbe.CorpusName)
            throw new UsageException($"--probe {Copy}: --data {dataDir} has corpus \"{meta.Corpus}\"; a dataset written by copy-data (corpus \"{CopyProbe.CorpusName}\") was expected");
        return CopyProbe.FromSymbols(meta.Symbols, Path.Combine(dataDir, DatasetMeta.FileName));
    }

    /// <summary>
    /// The task a probe name asks for over a dataset: retrieval (the "&amp;KEY:VALUE" probe written into the dataset's
    /// text, in the format --key-length/--value-length give) or recall (<see cref="AssociativeRecall"/>: the dataset
    /// must be one `recall-data` wrote; its val stream is the filler). Bad values are one-line errors.
    /// </summary>
    public static IRetrievalTask CreateTask(string kind, ParseResult parse, Option<int> keyLength, Option<int> valueLength, DatasetMeta meta, string dataDir)
    {
        string metaPath = Path.Combine(dataDir, DatasetMeta.FileName);
        if (meta.Tokenizer != Tokenizers.Char)
            throw new UsageException($"--probe {kind} needs a char-level dataset; {dataDir} is tokenized with {meta.Tokenizer}");
        if (kind == Recall) return AssociativeRecall.FromSymbols(meta.Symbols, metaPath);
        if (meta.Corpus == CopyProbe.CorpusName)
            throw new UsageException($"--data {dataDir} is a copying-probe dataset (corpus \"{meta.Corpus}\"); measure it with --probe copy");
        if (meta.Corpus == AssociativeRecall.CorpusName)
            throw new UsageException($"--data {dataDir} is an associative-recall dataset (corpus \"{meta.Corpus}\"); measure it with --probe recall");
        return Create(parse, keyLength, valueLength, meta, metaPath);
    }

    /// <summary>Chance of guessing every token of an answer, as a percentage.</summary>
    public static string Chance(IRetrievalTask probe) =>
        (100 * Math.Pow(probe.ChancePerToken, probe.ValueLength)).ToString("0.######", CultureInfo.InvariantCulture) + "%";

    /// <summary>Chance of guessing one answer token, as a percentage.</summary>
    public static string ChancePerToken(IRetrievalTask probe) =>
        (100 * probe.ChancePerToken).ToString("0.##", CultureInfo.InvariantCulture) + "%";
}
