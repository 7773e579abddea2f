using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Quest (Tang et al. 2024, "Query-aware sparsity for long-context LLM inference"): every position's key and value are
/// kept (as in the dense cache), grouped in pages of P positions; each page also keeps the elementwise minimum m and
/// maximum M of its keys. For a query q, page p's bound
///   U_p = Σ_d max(q_d · m_d, q_d · M_d)  ≥  q · k  for every key k of the page
/// (each term bounds q_d·k_d because k_d lies in [m_d, M_d]). Per head, the ⌊Budget / P⌋ pages with the largest
/// bound (ties: the earlier page) are attended exactly; the rest are skipped. While the context fits the budget,
/// every position is attended. The saving is in reads and arithmetic, not memory: the cache holds everything plus
/// two bound rows per page.
/// </summary>
public sealed class KvPageCache : IKvCache
{
    readonly int _heads, _headSize, _pageSize, _pagesPerQuery, _budget;
    readonly float[] _keys, _values;        // (capacity, C) as the dense cache
    readonly float[] _pageMin, _pageMax;    // (pages, C)
    readonly int[] _selected;               // (pages) scratch: the pages one head attends
    readonly float[] _bounds;               // (pages) scratch: each page's bound for one head

    public KvPageCache(int capacity, int width, int heads, int budget, int pageSize)
    {
        if (capacity <= 0 || width <= 0 || heads <= 0 || width % heads != 0)
            throw new ArgumentException($"a KV cache needs positive capacity and width of whole heads, got ({capacity}, {width}, {heads} heads)");
        if (budget < 1) throw new ArgumentException($"KV budget {budget} must be at least 1 (positions attended per query)", nameof(budget));
        if (pageSize < 1 || pageSize > budget) throw new ArgumentException($"KV page size {pageSize} must lie in [1, budget {budget}]", nameof(pageSize));
        Capacity = capacity;
        Width = width;
        _heads = heads;
        _headSize = width / heads;
        _pageSize = pageSize;
        _budget = budget;
        _pagesPerQuery = budget / pageSize;
        int pages = (capacity + pageSize - 1) / pageSize;
        _keys = new float[(long)capacity * width];
        _values = new float[(long)capacity * width];
        Kernels.HugePages.Advise(_keys);
        Kernels.HugePages.Advise(_values);
        _pageMin = new float[(long)pages * width];
        _pageMax = new float[(long)pages * width];
        _selected = new int[pages];
        _bounds = new float[pages];
    }

    public int Capacity { get; }
    public int Width { get; }
    public int PageSize => _pageSize;
    /// <summary>Pages each query attends once the context exceeds the budget: ⌊Budget / PageSize⌋.</summary>
    public int PagesPerQuery => _pagesPerQuery;

    public void Write(int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        if ((uint)position >= (uint)Capacity)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"position must lie in [0, {Capacity}) (block_size)");
        int C = Width;
        key.Slice(0, C).CopyTo(_keys.AsSpan(position * C, C));
        value.Slice(0, C).CopyTo(_values.AsSpan(position * C, C));
        var min = _pageMin.AsSpan(position / _pageSize * C, C);
        var max = _pageMax.AsSpan(position / _pageSize * C, C);
        if (position % _pageSize == 0)
        {
            key.Slice(0, C).CopyTo(min);
            key.Slice(0, C).CopyTo(max);
        }
        else
        {
            TensorPrimitives.Min(min, key.Slice(0, C), min);
            TensorPrimitives.Max(max, key.Slice(0, C), max);
        }
    }

    public ReadOnlySpan<float> Keys(int count) => _keys.AsSpan(0, count * Width);
    public ReadOnlySpan<float> Values(int count) => _values.AsSpan(0, count * Width);

    public long Bytes(int count)
    {
        long pages = (count + _pageSize - 1) / _pageSize;
        return 2L * count * Width * sizeof(float) + 2L * pages * Width * sizeof(float);
    }

    /// <summary>U = Σ_d max(q_d·min_d, q_d·max_d) over head h's channels of page p: an upper bound on q·k of its keys.</summary>
    public float PageBound(ReadOnlySpan<float> qh, int page, int head)
    {
        int hs = _headSize, C = Width;
        var min = _pageMin.AsSpan(page * C + head * hs, hs);
        var max = _pageMax.AsSpan(page * C + head * hs, hs);
        int d = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && hs >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; d <= hs - 16; d += 16)
            {
                var qv = Vector512.Create(qh.Slice(d, 16));
                acc += Vector512.Max(qv * Vector512.Create(min.Slice(d, 16)), qv * Vector512.Create(max.Slice(d, 16)));
            }
            sum = Vector512.Sum(acc);
        }
        for (; d < hs; d++) sum += MathF.Max(qh[d] * min[d], qh[d] * max[d]);
        return sum;
    }

    /// <summary>
    /// The pages head h's query qh (hs) at <paramref name="position"/> attends, ascending, into
    /// <paramref name="pages"/>; returns their count. Every page while the context fits the budget; else the
    /// ⌊Budget / P⌋ with the largest bound, ties to the earlier page.
    /// </summary>
    public int SelectPages(ReadOnlySpan<float> qh, int position, int head, Span<int> pages)
    {
        int np = position / _pageSize + 1;
        if (position + 1 <= _budget || np <= _pagesPerQuery)
        {
            for (int p = 0; p < np; p++) pages[p] = p;
            return np;
        }
        var bounds = _bounds.AsSpan(0, np);
        for (int p = 0; p < np; p++) bounds[p] = PageBound(qh, p, head);
        // Top-K by bound with a min-heap of K pages (root: the weakest kept page, by bound, then the later page).
        int K = _pagesPerQuery;
        var heap = pages.Slice(0, K);
        for (int p = 0; p < K; p++) { heap[p] = p; SiftUp(heap, p, bounds); }
        for (int p = K; p < np; p++)
            if (bounds[p] > bounds[heap[0]])
            {
                heap[0] = p;
                SiftDown(heap, 0, K, bounds);
            }
        heap.Sort();
        return K;
    }

    // a ranks below b: smaller bound, or equal bound and later page
    static bool Weaker(int a, int b, Span<float> bounds) => bounds[a] < bounds[b] || (bounds[a] == bounds[b] && a > b);

    static void SiftUp(Span<int> heap, int i, Span<float> bounds)
    {
        while (i > 0)
        {
            int parent = (i - 1) / 2;
            if (!Weaker(heap[i], heap[parent], bounds)) break;
            (heap[i], heap[parent]) = (heap[parent], heap[i]);
            i = parent;
        }
    }

    static void SiftDown(Span<int> heap, int i, int n, Span<float> bounds)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, weakest = i;
            if (l < n && Weaker(heap[l], heap[weakest], bounds)) weakest = l;
            if (r < n && Weaker(heap[r], heap[weakest], bounds)) weakest = r;
            if (weakest == i) return;
            (heap[i], heap[weakest]) = (heap[weakest], heap[i]);
            i = weakest;
        }
    }

    public void Attend(Span<float> y, ReadOnlySpan<float> q, int position, int heads, Span<float> scores)
    {
        if (heads != _heads) throw new ArgumentException($"the cache was made for {_heads} heads, got {heads}", nameof(heads));
        int C = Width, hs = _headSize, P = _pageSize;
        float scale = 1f / MathF.Sqrt(hs);
        for (int h = 0; h < heads; h++)
        {
            // y[h] = softmax(q·kᵀ · scale over the positions ≤ position of the selected pages) · v
            var qh = q.Slice(h * hs, hs);
            int count = SelectPages(qh, position, h, _selected);
            int n = 0;
            for (int i = 0; i < count; i++)
            {
                int first = _selected[i] * P, end = Math.Min(first + P, position + 1);
                for (int j = first; j < end; j++)
                    scores[n++] = TensorPrimitives.Dot(qh, _keys.AsSpan(j * C + h * hs, hs)) * scale;
            }
            var s = scores.Slice(0, n);
            Softmax.Row(s, s);
            var yh = y.Slice(h * hs, hs);
            yh.Clear();
            n = 0;
            for (int i = 0; i < count; i++)
            {
                int first = _selected[i] * P, end = Math.Min(first + P, position + 1);
                for (int j = first; j < end; j++)
                    TensorPrimitives.MultiplyAdd(_values.AsSpan(j * C + h * hs, hs), s[n++], yh, yh);
            }
        }
    }
}
