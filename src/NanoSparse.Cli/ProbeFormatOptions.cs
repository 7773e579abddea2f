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

    /// <summary>Chance of guessing every digit of a value, as a percentage.</summary>
    public static string Chance(RetrievalProbe probe) =>
        (100 * Math.Pow(10, -probe.ValueLength)).ToString("0.######", CultureInfo.InvariantCulture) + "%";
}
