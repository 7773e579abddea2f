using NanoSparse.Bench;
using NanoSparse.Data;
using NanoSparse.Tests.Data;

namespace NanoSparse.Tests.Bench;

public class PruneBenchTests
{
    static PruneCellResult Result(string method, string variant, string level, double ppl, string fingerprint = "f") => new()
    {
        Method = method, Variant = variant, Level = level, Fingerprint = fingerprint, Perplexity = ppl, ValLoss = Math.Log(ppl),
        SparsityReached = 0.5, ModelBytes = 1234, ModelDir = "models/x", DecodeTokens = 8, DecodeTokensPerSecond = 200, DenseDecodeTokensPerSecond = 100,
    };

    [Fact]
    public void CachedCellRoundTripsAndIsFoundOnlyWithTheSameFingerprintAndCell()
    {
        using var dir = new TempDir();
        var cache = new PruneCellCache(dir.Path);
        var cell = new PruneCell("wanda", PruneCell.OwlDsnot, "0.7");
        var r = Result("wanda", PruneCell.OwlDsnot, "0.7", 9.818, "settings-A");
        Assert.Null(cache.TryLoad(cell, "settings-A"));
        cache.Save(r);
        Assert.Equal(r, cache.TryLoad(cell, "settings-A"));
        Assert.Null(cache.TryLoad(cell, "settings-B"));
        Assert.Null(cache.TryLoad(new PruneCell("wanda", PruneCell.Owl, "0.7"), "settings-A"));
        Assert.Equal(2.0, cache.TryLoad(cell, "settings-A")!.DecodeSpeedup);
        // Only the cell's own file is in the folder: the write left no temporary file behind.
        Assert.Equal([cache.PathOf(cell)], Directory.GetFiles(Path.Combine(dir.Path, "cells")));
    }

    [Theory]
    [InlineData("")]
    [InlineData("{\"format\": \"nanosparse-prune-bench-cell\", \"version\": 1, \"fingerprint\": \"f\", \"method\": \"wanda\"")]
    [InlineData("{\"format\": \"something-else\", \"version\": 1, \"fingerprint\": \"f\", \"method\": \"wanda\", \"variant\": \"plain\", \"level\": \"0.5\", \"perplexity\": 6}")]
    [InlineData("{\"format\": \"nanosparse-prune-bench-cell\", \"version\": 2, \"fingerprint\": \"f\", \"method\": \"wanda\", \"variant\": \"plain\", \"level\": \"0.5\", \"perplexity\": 6}")]
    [InlineData("{\"format\": \"nanosparse-prune-bench-cell\", \"version\": 1, \"fingerprint\": \"f\", \"method\": \"magnitude\", \"variant\": \"plain\", \"level\": \"0.5\", \"perplexity\": 6}")]
    [InlineData("{\"format\": \"nanosparse-prune-bench-cell\", \"version\": 1, \"fingerprint\": \"f\", \"method\": \"wanda\", \"variant\": \"plain\", \"level\": \"0.5\", \"perplexity\": \"x\"}")]
    public void UnreadableOrForeignCellFileIsAMissNotAnError(string text)
    {
        using var dir = new TempDir();
        var cache = new PruneCellCache(dir.Path);
        var cell = new PruneCell("wanda", PruneCell.Plain, "0.5");
        dir.Write(Path.Combine("cells", cell.Id + ".json"), text);
        Assert.Null(cache.TryLoad(cell, "f"));
        // The same file with the right content is a hit (the test's files differ from a good one only where stated).
        cache.Save(Result("wanda", PruneCell.Plain, "0.5", 6));
        Assert.NotNull(cache.TryLoad(cell, "f"));
    }

    [Fact]
    public void FingerprintChangesWithEverySharedSetting()
    {
        string a = PruneCellCache.Fingerprint("abc", "data/brown", 128, 0, 64, 1337, "auto");
        Assert.Equal(a, PruneCellCache.Fingerprint("abc", "data/brown", 128, 0, 64, 1337, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abd", "data/brown", 128, 0, 64, 1337, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abc", "data/other", 128, 0, 64, 1337, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abc", "data/brown", 64, 0, 64, 1337, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abc", "data/brown", 128, 1, 64, 1337, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abc", "data/brown", 128, 0, 32, 1337, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abc", "data/brown", 128, 0, 64, 1, "auto"));
        Assert.NotEqual(a, PruneCellCache.Fingerprint("abc", "data/brown", 128, 0, 64, 1337, "csr"));
    }

    [Fact]
    public void MatrixHasEveryMethodVariantAndLevelExceptOwlAtNm()
    {
        var cells = PruneCell.Matrix(PruneBench.DefaultMethods, PruneCell.Variants, PruneBench.DefaultLevels);
        // dense + 4 methods × (4 variants × 4 unstructured levels + 2 variants × 2 N:M levels)
        Assert.Equal(1 + 4 * (4 * 4 + 2 * 2), cells.Count);
        Assert.Equal(cells.Count, cells.Select(c => c.Id).Distinct().Count());
        Assert.Equal(PruneCell.DenseCell, cells[0]);
        Assert.DoesNotContain(cells, c => c.IsNm && c.UsesOwl);
        Assert.Contains(new PruneCell("random", PruneCell.OwlDsnot, "0.8"), cells);
        Assert.Contains(new PruneCell("sparsegpt", PruneCell.Dsnot, "4:8"), cells);
        // Every method's plain cells come before any other variant's.
        int lastPlain = cells.FindLastIndex(c => c.Variant == PruneCell.Plain);
        int firstOther = cells.FindIndex(c => c.Variant != PruneCell.Plain);
        Assert.True(lastPlain < firstOther);
    }

    [Theory]
    [InlineData("0.50", "0.5", 0.5)]
    [InlineData("0.7", "0.7", 0.7)]
    [InlineData("2:4", "2:4", 0.5)]
    [InlineData(" 1:4 ", "1:4", 0.75)]
    public void LevelsParseToTheirSparsity(string text, string level, double sparsity)
    {
        Assert.Equal(level, PruneCell.ParseLevel(text));
        Assert.Equal(sparsity, new PruneCell("magnitude", PruneCell.Plain, level).Sparsity, 12);
    }

    [Theory]
    [InlineData("1")]
    [InlineData("0")]
    [InlineData("-0.5")]
    [InlineData("4:2")]
    [InlineData("2:2")]
    [InlineData("half")]
    public void BadLevelIsRefusedNamingTheOption(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => PruneCell.ParseLevel(text));
        Assert.StartsWith("--levels: '" + text + "'", e.Message);
    }

    static Dictionary<PruneCell, double> Ppl(params (string Method, string Variant, string Level, double Ppl)[] cells)
    {
        var d = new Dictionary<PruneCell, double> { [PruneCell.DenseCell] = 5.0 };
        foreach (var c in cells) d[new PruneCell(c.Method, c.Variant, c.Level)] = c.Ppl;
        return d;
    }

    [Fact]
    public void OrderingExpectationHoldsOnlyWhenEachMethodIsAtMostTheNext()
    {
        var ppl = Ppl(("sparsegpt", "plain", "0.5", 5.1), ("wanda", "plain", "0.5", 5.3), ("magnitude", "plain", "0.5", 5.3), ("random", "plain", "0.5", 20),
            ("sparsegpt", "plain", "0.7", 6.0), ("wanda", "plain", "0.7", 11.2), ("magnitude", "plain", "0.7", 9.3), ("random", "plain", "0.7", 25),
            ("sparsegpt", "plain", "2:4", 5.6), ("wanda", "plain", "2:4", 7.0), ("magnitude", "plain", "2:4", 7.4));
        var list = PruneExpectations.Check(ppl, ["0.5", "0.7", "2:4"]);
        var at50 = list.Single(e => e.Name.EndsWith("at 50%"));
        Assert.True(at50.Held);                                  // ties count as held
        var at70 = list.Single(e => e.Name.EndsWith("at 70%"));
        Assert.False(at70.Held);
        Assert.Contains("wanda 11.2 > magnitude 9.3", at70.Detail);
        Assert.DoesNotContain("sparsegpt 6 >", at70.Detail);
        var at24 = list.Single(e => e.Name.EndsWith("at 2:4"));
        Assert.Null(at24.Held);                                   // random 2:4 missing
        Assert.Contains("random", at24.Detail);
    }

    [Fact]
    public void LevelsBelowHalfAreNotCheckedForTheOrdering()
    {
        var ppl = Ppl(("sparsegpt", "plain", "0.3", 9), ("wanda", "plain", "0.3", 8), ("magnitude", "plain", "0.3", 7), ("random", "plain", "0.3", 6));
        Assert.DoesNotContain(PruneExpectations.Check(ppl, ["0.3"]), e => e.Name.Contains("30%"));
    }

    [Theory]
    [InlineData(5.14, true)]      // 2.8% above dense 5.0: within
    [InlineData(5.1501, false)]
    [InlineData(4.9, true)]
    public void SparseGptAtHalfMustBeWithinThreePercentOfDense(double sgpt, bool held)
    {
        var e = PruneExpectations.Check(Ppl(("sparsegpt", "plain", "0.5", sgpt)), ["0.5"]).Single(x => x.Name.Contains("within 3%"));
        Assert.Equal(held, e.Held);
    }

    [Theory]
    [InlineData(7.4, 9.0, 10.0, true)]     // owl+dsnot ≤ 2/3 of 11.25 = 7.5
    [InlineData(7.6, 9.0, 10.0, false)]
    [InlineData(11.5, 7.5, 12.0, true)]    // owl alone suffices (exactly a third)
    public void WandaSeventyMustBeCutByAThirdByOneOfTheVariants(double owlDsnot, double owl, double dsnot, bool held)
    {
        var ppl = Ppl(("wanda", "plain", "0.7", 11.25), ("wanda", "owl+dsnot", "0.7", owlDsnot), ("wanda", "owl", "0.7", owl), ("wanda", "dsnot", "0.7", dsnot));
        var e = PruneExpectations.Check(ppl, ["0.7"]).Single(x => x.Name.StartsWith("OWL or DSnoT"));
        Assert.Equal(held, e.Held);
        Assert.Contains("needs <= 7.5", e.Detail);
    }

    [Fact]
    public void MissingCellsLeaveExpectationsUnchecked()
    {
        var list = PruneExpectations.Check(new Dictionary<PruneCell, double>(), ["0.5", "0.7"]);
        Assert.All(list, e => Assert.Null(e.Held));
        Assert.Equal(4, list.Count);
    }

    [Fact]
    public void WindowStartsReproduceTheSamplersWindows()
    {
        using var dir = new TempDir();
        var ids = Enumerable.Range(0, 5000).Select(i => (i * 7919 + i / 13) % 97).ToArray();
        TokenFileWriter.Write(dir["val.bin"], ids, TokenDtype.UInt16, 97);
        using var file = TokenFile.Open(dir["val.bin"], TokenDtype.UInt16, 97);
        const int T = 32, windows = 9;
        var expected = NanoSparse.Training.PruneRun.SampleWindows(file, windows, T, 42);
        var starts = PruneBench.WindowStarts(file.Length, T, windows, 42);
        for (int k = 0; k < windows; k++)
            Assert.Equal(ids.AsSpan((int)starts[k], T).ToArray(), expected.AsSpan(k * T, T).ToArray());
    }
}
