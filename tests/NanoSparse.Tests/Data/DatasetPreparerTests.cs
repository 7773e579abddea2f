using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public class DatasetPreparerTests
{
    sealed class SyncProgress(Action<(string Stage, double Fraction)> onReport) : IProgress<(string Stage, double Fraction)>
    {
        public void Report((string Stage, double Fraction) value) => onReport(value);
    }

    // 12 documents in nested folders, created in an order different from their sorted names.
    static Dictionary<string, string> WriteFolder(TempDir dir, string folder, bool reverse = false)
    {
        var texts = new Dictionary<string, string>();
        var names = Enumerable.Range(0, 12).Select(i => i < 6 ? $"doc{i:D2}.txt" : $"sub/part{i:D2}.txt").ToList();
        if (reverse) names.Reverse();
        foreach (string name in names)
        {
            int i = int.Parse(name[^6..^4]);
            string text = $"Document {i}: the quick brown fox {new string((char)('a' + i), i + 1)}." + (i % 2 == 0 ? "\n" : "");
            dir.Write(Path.Combine(folder, name), text);
            texts[name] = text.EndsWith('\n') ? text : text + "\n";
        }
        return texts;
    }

    static int[] ReadAll(string path, DatasetMeta meta)
    {
        using var f = TokenFile.Open(path, meta.Dtype, meta.VocabSize);
        var ids = new int[f.Length];
        f.Read(0, ids);
        return ids;
    }

    [Fact]
    public void Folder_round_trips_each_split_and_each_document()
    {
        using var dir = new TempDir();
        var texts = WriteFolder(dir, "in");
        var r = DatasetPreparer.Prepare(new PrepareOptions { Input = dir["in"], OutDir = dir["out"] });
        var meta = DatasetMeta.Load(r.MetaPath);
        var tok = meta.CreateTokenizer();
        Assert.Equal(TokenDtype.UInt16, meta.Dtype);
        Assert.Equal(CharTokenizer.FromText(string.Concat(texts.Values)).Symbols, meta.Symbols);

        // Sorted names; document 9 (0-based) is the one val document for f = 0.1.
        var sorted = texts.Keys.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(sorted, meta.Documents.Select(d => d.Name));
        Assert.Equal([sorted[9]], meta.Documents.Where(d => d.Split == "val").Select(d => d.Name));
        Assert.Equal((11, 1), (r.TrainDocuments, r.ValDocuments));

        string trainText = tok.Decode(ReadAll(r.TrainPath, meta));
        string valText = tok.Decode(ReadAll(r.ValPath, meta));
        Assert.Equal(string.Concat(sorted.Where((_, i) => i != 9).Select(n => texts[n])), trainText);
        Assert.Equal(texts[sorted[9]], valText);
        Assert.Equal(meta.TrainTokens, trainText.Length);

        foreach (var d in meta.Documents)
        {
            string split = d.Split == "train" ? trainText : valText;
            Assert.Equal(texts[d.Name], split.Substring((int)d.Offset, (int)d.Count));
        }
    }

    [Fact]
    public void Single_file_is_split_by_position_last_tenth_to_val()
    {
        using var dir = new TempDir();
        string text = string.Concat(Enumerable.Range(0, 100).Select(i => $"line {i}\n"));
        string input = dir.Write("input.txt", text);
        var r = DatasetPreparer.Prepare(new PrepareOptions { Input = input, OutDir = dir["out"] });
        var meta = r.Meta;
        int n = text.Length, nTrain = (int)(n * 0.9); // nanoGPT: data[:int(n*0.9)]
        Assert.Equal(nTrain, meta.TrainTokens);
        Assert.Equal(n - nTrain, meta.ValTokens);
        var tok = meta.CreateTokenizer();
        Assert.Equal(text[..nTrain], tok.Decode(ReadAll(r.TrainPath, meta)));
        Assert.Equal(text[nTrain..], tok.Decode(ReadAll(r.ValPath, meta)));
        Assert.Equal("input", meta.Corpus);
    }

    [Fact]
    public void Split_by_document_is_every_tenth_by_sorted_name()
    {
        bool[] isVal = DatasetPreparer.SplitByDocument(25, 0.1);
        Assert.Equal([9, 19], Enumerable.Range(0, 25).Where(i => isVal[i]));
        // Too few documents for one tenth: the last one still goes to val.
        Assert.Equal([false, false, true], DatasetPreparer.SplitByDocument(3, 0.1));
        Assert.Equal(50, DatasetPreparer.SplitByDocument(500, 0.1).Count(v => v)); // Brown: 500 documents
    }

    [Fact]
    public void Prepare_is_deterministic_whatever_the_file_creation_order()
    {
        using var dir = new TempDir();
        WriteFolder(dir, "a");
        WriteFolder(dir, "b", reverse: true);
        DatasetPreparer.Prepare(new PrepareOptions { Input = dir["a"], OutDir = dir["outa"] });
        DatasetPreparer.Prepare(new PrepareOptions { Input = dir["b"], OutDir = dir["outb"] });
        foreach (string f in new[] { "train.bin", "val.bin" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir["outa"], f)), File.ReadAllBytes(Path.Combine(dir["outb"], f)));
        Assert.Equal(DatasetMeta.Load(Path.Combine(dir["outa"], "meta.json")).Documents,
                     DatasetMeta.Load(Path.Combine(dir["outb"], "meta.json")).Documents);
    }

    [Fact]
    public void Vocabulary_above_65536_symbols_selects_uint32()
    {
        using var dir = new TempDir();
        var symbols = DatasetMetaTests.BigVocabulary(69_999); // + "\n" = 70,000 distinct characters
        string text = string.Concat(symbols) + "\n";
        string input = dir.Write("big.txt", text);
        var r = DatasetPreparer.Prepare(new PrepareOptions { Input = input, OutDir = dir["out"] });
        var meta = DatasetMeta.Load(r.MetaPath);
        Assert.Equal(TokenDtype.UInt32, meta.Dtype);
        Assert.Equal(70_000, meta.VocabSize);
        Assert.Equal(meta.TrainTokens * 4, new FileInfo(r.TrainPath).Length);
        var tok = meta.CreateTokenizer();
        var val = ReadAll(r.ValPath, meta);
        Assert.True(val.Max() >= 65536);
        Assert.Equal(text, tok.Decode(ReadAll(r.TrainPath, meta)) + tok.Decode(val));
    }

    [Fact]
    public void Failing_prepare_leaves_the_existing_dataset_untouched()
    {
        using var dir = new TempDir();
        WriteFolder(dir, "in");
        string outDir = dir["out"];
        DatasetPreparer.Prepare(new PrepareOptions { Input = dir["in"], OutDir = outDir });
        var before = Directory.GetFiles(outDir).Order().ToDictionary(f => f, File.ReadAllBytes);

        // A failure after train.bin's temporary file is complete (injected through the progress callback).
        dir.Write("in2/other.txt", "completely different text\n");
        dir.Write("in2/more.txt", "and more of it\n");
        var fail = new SyncProgress(p => { if (p.Stage == "write" && p.Fraction > 0) throw new IOException("disk full (simulated)"); });
        Assert.Throws<IOException>(() => DatasetPreparer.Prepare(new PrepareOptions { Input = dir["in2"], OutDir = outDir }, fail));

        // A failure while reading input (invalid UTF-8).
        File.WriteAllBytes(dir["in2/bad.txt"], [0x61, 0xFF, 0xFE, 0x62]);
        var e = Assert.Throws<InvalidDataException>(() => DatasetPreparer.Prepare(new PrepareOptions { Input = dir["in2"], OutDir = outDir }));
        Assert.Contains("bad.txt", e.Message);

        var after = Directory.GetFiles(outDir).Order().ToDictionary(f => f, File.ReadAllBytes);
        Assert.Equal(before.Keys, after.Keys); // no temporary files left
        foreach (var (f, bytes) in before) Assert.Equal(bytes, after[f]);
    }

    [Fact]
    public void Progress_reports_each_stage_up_to_completion()
    {
        using var dir = new TempDir();
        WriteFolder(dir, "in");
        var reports = new List<(string Stage, double Fraction)>();
        DatasetPreparer.Prepare(new PrepareOptions { Input = dir["in"], OutDir = dir["out"] }, new SyncProgress(reports.Add));
        foreach (string stage in new[] { "read", "vocabulary", "encode", "write" })
            Assert.Equal(1.0, reports.Where(r => r.Stage == stage).Max(r => r.Fraction));
    }

    [Fact]
    public void Missing_input_names_the_path()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<FileNotFoundException>(() =>
            DatasetPreparer.Prepare(new PrepareOptions { Input = dir["missing"], OutDir = dir["out"] }));
        Assert.Contains(dir["missing"], e.Message);
        Assert.False(Directory.Exists(dir["out"]));
    }
}
