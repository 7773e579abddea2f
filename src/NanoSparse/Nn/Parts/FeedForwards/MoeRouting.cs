namespace NanoSparse.Nn.Parts.FeedForwards;

/// <summary>
/// The routing rules of <see cref="MoeFeedForward"/>, on one sequence's router probabilities p (T, E) at a time.
///   topk:          each token picks its top_k experts by p (ties: the lower expert index first), best first. With a
///                  capacity c an expert accepts at most c assignments per sequence, served in this order: every token's
///                  first choice in position order, then every token's second choice in position order, and so on
///                  (GShard's priority); an assignment past the capacity is dropped (its token keeps its other experts;
///                  a token that loses all of them passes through the residual only).
///   expert_choice: each expert picks the c tokens of the sequence with the highest p for it (ties: the earlier
///                  position first), c = ceil(capacity_factor·T·top_k/E); a token no expert picks passes through the
///                  residual only.
/// </summary>
public static class MoeRouting
{
    /// <summary>top (k) = the k largest entries of p (E), best first; ties go to the lower index. Returns Σ p over them.</summary>
    public static float TopK(ReadOnlySpan<float> p, Span<int> top)
    {
        int k = top.Length, filled = 0;
        for (int e = 0; e < p.Length; e++)
        {
            float v = p[e];
            if (filled == k && !(v > p[top[k - 1]])) continue;
            int i = filled < k ? filled++ : k - 1;
            // shift the worse ones down; strict > keeps the lower index ahead on ties
            while (i > 0 && v > p[top[i - 1]]) { top[i] = top[i - 1]; i--; }
            top[i] = e;
        }
        float sum = 0;
        for (int j = 0; j < k; j++) sum += p[top[j]];
        return sum;
    }

    /// <summary>
    /// topk capacity: keep (T·k, row-major by token) = 1 where assignment (t, j) fits, 0 where dropped; counts (E)
    /// receives the kept assignments per expert. top is (T·k) as <see cref="TopK"/> filled it. Returns the dropped count.
    /// </summary>
    public static int ApplyCapacity(ReadOnlySpan<int> top, Span<byte> keep, Span<int> counts, int T, int k, int capacity)
    {
        counts.Clear();
        int dropped = 0;
        for (int j = 0; j < k; j++)
            for (int t = 0; t < T; t++)
            {
                int e = top[t * k + j];
                if (counts[e] < capacity) { counts[e]++; keep[t * k + j] = 1; }
                else { keep[t * k + j] = 0; dropped++; }
            }
        return dropped;
    }

    /// <summary>
    /// expert_choice: chosen (T·E, row-major by token) = 1 where expert e picked token t. p is (T, E); keys and rows
    /// are T-long scratch. Each expert picks exactly min(bucket, T) tokens. Returns the tokens no expert picked.
    /// </summary>
    public static int ExpertChoice(ReadOnlySpan<float> p, Span<byte> chosen, int T, int E, int bucket, Span<float> keys, Span<int> rows)
    {
        chosen.Clear();
        bucket = Math.Min(bucket, T);
        for (int e = 0; e < E; e++)
        {
            for (int t = 0; t < T; t++) { keys[t] = p[t * E + e]; rows[t] = t; }
            // a partial selection sort would do bucket·T work; sorting (by descending p, then position) is simpler and T is small
            SortDescending(keys, rows, T);
            for (int i = 0; i < bucket; i++) chosen[rows[i] * E + e] = 1;
        }
        int unpicked = 0;
        for (int t = 0; t < T; t++)
        {
            bool any = false;
            for (int e = 0; e < E; e++) any |= chosen[t * E + e] != 0;
            if (!any) unpicked++;
        }
        return unpicked;
    }

    // Insertion sort by (key descending, row ascending): stable and allocation-free; T is the sequence length.
    static void SortDescending(Span<float> keys, Span<int> rows, int n)
    {
        for (int i = 1; i < n; i++)
        {
            float k = keys[i];
            int r = rows[i], j = i - 1;
            while (j >= 0 && keys[j] < k) { keys[j + 1] = keys[j]; rows[j + 1] = rows[j]; j--; }
            keys[j + 1] = k;
            rows[j + 1] = r;
        }
    }
}
