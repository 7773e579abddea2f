using System.CommandLine;
using System.Globalization;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Cli;

/// <summary>--kv-cache and its parameters, for the commands that decode with a KV cache (sample, eval --kv-cache).</summary>
public sealed class KvCacheOptions
{
    public Option<string> Kind { get; } = new("--kv-cache")
    {
        Description = "KV cache: dense (exact), pruned (Mustafar: per-token magnitude pruning of K and V, bitmap-packed), " +
                      "h2o (heavy hitters + recent positions under --kv-budget) or quest (pages with key bounds, top pages per query)",
        DefaultValueFactory = _ => KvCacheSpec.Dense,
    };
    public Option<double> Sparsity { get; } = new("--kv-sparsity")
    {
        Description = "pruned: fraction of each head's key and value entries dropped per token, in [0, 1)",
        DefaultValueFactory = _ => 0.7,
    };
    public Option<int> Budget { get; } = new("--kv-budget")
    {
        Description = "h2o: positions kept per head; quest: positions attended per query (whole pages)",
        DefaultValueFactory = _ => 256,
    };
    public Option<int> Recent { get; } = new("--kv-recent")
    {
        Description = "h2o: most recent positions always kept, in [0, budget) (default: half the budget)",
        DefaultValueFactory = _ => -1,
    };
    public Option<int> Page { get; } = new("--kv-page")
    {
        Description = "quest: positions per page, in [1, budget]",
        DefaultValueFactory = _ => 16,
    };

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Kind, Sparsity, Budget, Recent, Page }) cmd.Options.Add(o);
    }

    /// <summary>The chosen cache, checked: a bad value is a one-line usage error naming the option.</summary>
    public KvCacheSpec Resolve(ParseResult parse)
    {
        string kind = parse.GetValue(Kind) ?? KvCacheSpec.Dense;
        double sparsity = parse.GetValue(Sparsity);
        int budget = parse.GetValue(Budget), recent = parse.GetValue(Recent), page = parse.GetValue(Page);
        if (!KvCacheSpec.Kinds.Contains(kind))
            throw new UsageException($"--kv-cache '{kind}' is not a KV cache: expected one of {string.Join(", ", KvCacheSpec.Kinds)}");
        if (!(sparsity >= 0 && sparsity < 1))
            throw new UsageException($"--kv-sparsity ({sparsity.ToString(CultureInfo.InvariantCulture)}) must lie in [0, 1)");
        if (budget < 1) throw new UsageException($"--kv-budget ({budget}) must be at least 1 (positions per head)");
        if (kind == KvCacheSpec.H2O && (recent < -1 || recent >= budget))
            throw new UsageException($"--kv-recent ({recent}) must lie in [0, --kv-budget ({budget}))");
        if (kind == KvCacheSpec.Quest && (page < 1 || page > budget))
            throw new UsageException($"--kv-page ({page}) must lie in [1, --kv-budget ({budget})]");
        return new KvCacheSpec { Kind = kind, Sparsity = sparsity, Budget = budget, Recent = recent, PageSize = page }.Validate();
    }
}
