using NanoSparse.Bench;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Tests.Bench;

public class KvBenchTests
{
    [Fact]
    public void CacheListEntriesParseIntoValidatedSpecs()
    {
        Assert.Equal(KvCacheSpec.Dense, KvBench.ParseCache("dense").Kind);
        Assert.Equal(0.7, KvBench.ParseCache("pruned:0.7").Sparsity);
        var h2o = KvBench.ParseCache("h2o:1024:100");
        Assert.Equal((KvCacheSpec.H2O, 1024, 100), (h2o.Kind, h2o.Budget, h2o.RecentWindow));
        Assert.Equal(512, KvBench.ParseCache("h2o:1024").RecentWindow);
        var quest = KvBench.ParseCache("quest:256:32");
        Assert.Equal((KvCacheSpec.Quest, 256, 32), (quest.Kind, quest.Budget, quest.PageSize));
    }

    [Theory]
    [InlineData("h2o:0", "KV budget 0")]
    [InlineData("pruned:1.5", "KV sparsity 1.5")]
    [InlineData("pruned", "is not dense, pruned:SPARSITY")]
    [InlineData("lru:8", "is not dense, pruned:SPARSITY")]
    [InlineData("quest:x", "needs an integer for the budget")]
    public void BadCacheListEntriesNameTheEntry(string entry, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => KvBench.ParseCache(entry));
        Assert.Contains(message, e.Message);
    }
}
