using System.Globalization;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Which KV cache a decoding sequence uses, and its parameters:
///   dense   every position's key and value (the exact cache);
///   pruned  Mustafar: each token's key and value keep their largest-magnitude entries per head (Sparsity of them
///           dropped), stored as bitmaps plus packed values (<see cref="KvPrunedCache"/>);
///   h2o     H2O: per head at most Budget positions, the Recent most recent ones plus the heavy hitters by
///           accumulated attention (<see cref="KvHeavyHitterCache"/>);
///   quest   Quest: every position kept, in pages of PageSize with per-page elementwise key bounds; each query
///           attends the Budget / PageSize pages with the highest bound on q·k (<see cref="KvPageCache"/>).
/// </summary>
public sealed record KvCacheSpec
{
    public const string Dense = "dense", Pruned = "pruned", H2O = "h2o", Quest = "quest";
    public static IReadOnlyList<string> Kinds { get; } = [Dense, Pruned, H2O, Quest];

    /// <summary>The exact cache of today's decode.</summary>
    public static KvCacheSpec Exact { get; } = new();

    public string Kind { get; init; } = Dense;
    /// <summary>pruned: fraction of each head's key and value entries dropped per token, in [0, 1).</summary>
    public double Sparsity { get; init; } = 0.7;
    /// <summary>h2o: positions kept per head; quest: positions attended per query (whole pages). At least 1.</summary>
    public int Budget { get; init; } = 256;
    /// <summary>h2o: the most recent positions always kept, in [0, Budget); −1: half the budget (as the H2O paper).</summary>
    public int Recent { get; init; } = -1;
    /// <summary>quest: positions per page, at least 1 and at most the budget.</summary>
    public int PageSize { get; init; } = 16;

    /// <summary>h2o: the recent window actually used.</summary>
    public int RecentWindow => Recent < 0 ? Budget / 2 : Recent;

    /// <summary>Throws a one-line ArgumentException naming the field, the value and what was expected.</summary>
    public KvCacheSpec Validate()
    {
        if (!Kinds.Contains(Kind))
            throw new ArgumentException($"unknown KV cache '{Kind}': expected one of {string.Join(", ", Kinds)}");
        if (Kind == Pruned && !(Sparsity >= 0 && Sparsity < 1))
            throw new ArgumentException($"KV sparsity {Sparsity.ToString(CultureInfo.InvariantCulture)} must lie in [0, 1) (the fraction of each head's key and value entries dropped)");
        if (Kind is H2O or Quest && Budget < 1)
            throw new ArgumentException($"KV budget {Budget} must be at least 1 (positions kept per head)");
        if (Kind == H2O && RecentWindow >= Budget)
            throw new ArgumentException($"KV recent window {RecentWindow} must be smaller than the budget {Budget} (the rest holds the heavy hitters)");
        if (Kind == Quest && (PageSize < 1 || PageSize > Budget))
            throw new ArgumentException($"KV page size {PageSize} must lie in [1, budget {Budget}]");
        return this;
    }

    /// <summary>One layer's cache: up to capacity (block_size) positions of width C = heads · hs.</summary>
    public IKvCache Create(int capacity, int width, int heads)
    {
        Validate();
        if (heads < 1 || width % heads != 0)
            throw new ArgumentException($"a KV cache of width {width} needs a whole number of heads, got {heads}");
        return Kind switch
        {
            Pruned => new KvPrunedCache(capacity, width, heads, Sparsity),
            H2O => new KvHeavyHitterCache(capacity, width, heads, Budget, RecentWindow),
            Quest => new KvPageCache(capacity, width, heads, Budget, PageSize),
            _ => new DenseKvCache(capacity, width),
        };
    }

    /// <summary>A short label, e.g. "pruned 70%", "h2o 1024 (recent 512)", "quest 1024 (pages of 16)".</summary>
    public override string ToString() => Kind switch
    {
        Pruned => $"pruned {Sparsity * 100:0.#}%",
        H2O => $"h2o {Budget} (recent {RecentWindow})",
        Quest => $"quest {Budget} (pages of {PageSize})",
        _ => Dense,
    };
}
