namespace NanoSparse.Sparse;

/// <summary>
/// The row order of a SELL-C-σ layout (Kreutzer et al. 2014: rows reordered within windows of σ so that the C rows
/// of a slice have similar lengths, the output permuted back) for the column-blocked <see cref="SellWideMatrix"/>.
/// There a (slice, block) costs as many steps as its longest lane has entries in that block, so what should be alike
/// is a row's entry count per block, not its total: sorting by total length cuts SELL-128's bytes per value at 10%
/// density (random pattern) only from ~7.5 to ~7.25, while packing each slice greedily by its per-block maxima
/// reaches ~6.6 (SELL-256: 6.7 to ~6.0).
/// Greedy packing, per window: a slice starts with the longest row left (most entries; ties: the lowest row), then
/// takes, 15 times, the row whose per-block counts raise the slice's Σ_b max_lane count the least (ties: the longer
/// row, then the lower). Cost O(σ² · blocks) per window.
/// </summary>
public static class SellRowOrder
{
    /// <summary>Rows per window in the decode copies: large enough to find alike rows, small enough to pack quickly.</summary>
    public const int DefaultWindow = 256;

    /// <summary>
    /// order[r] = the row of W placed at position r of the layout (slice r / 16, lane r % 16), for W's CSR structure
    /// (rows × cols; row pointers, column of entry p) blocked by <paramref name="blockWidth"/> columns.
    /// <paramref name="window"/> = σ, a multiple of the slice height 16 (16: no reordering across slices).
    /// </summary>
    public static int[] Pack(int rows, int cols, ReadOnlySpan<int> rowPointers, Func<int, int> column, int blockWidth, int window = DefaultWindow)
    {
        if (blockWidth <= 0) throw new ArgumentOutOfRangeException(nameof(blockWidth), blockWidth, "block width must be positive");
        if (window <= 0 || window % SellWideMatrix.SliceHeight != 0)
            throw new ArgumentOutOfRangeException(nameof(window), window, $"the window σ must be a positive multiple of the slice height {SellWideMatrix.SliceHeight}");
        int blocks = Math.Max(1, (cols + blockWidth - 1) / blockWidth);
        var counts = new int[(long)rows * blocks];   // (rows, blocks): entries of each row in each column block
        var total = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            total[r] = rowPointers[r + 1] - rowPointers[r];
            for (int p = rowPointers[r]; p < rowPointers[r + 1]; p++) counts[(long)r * blocks + column(p) / blockWidth]++;
        }
        var order = new int[rows];
        var left = new List<int>(window);
        var longest = new int[blocks];
        int placed = 0;
        for (int w0 = 0; w0 < rows; w0 += window)
        {
            left.Clear();
            for (int r = w0; r < Math.Min(rows, w0 + window); r++) left.Add(r);
            while (left.Count > 0)
            {
                int seedAt = 0;
                for (int i = 1; i < left.Count; i++) if (total[left[i]] > total[left[seedAt]]) seedAt = i;
                int seed = Take(left, seedAt);
                order[placed++] = seed;
                for (int b = 0; b < blocks; b++) longest[b] = counts[(long)seed * blocks + b];
                for (int lane = 1; lane < SellWideMatrix.SliceHeight && left.Count > 0; lane++)
                {
                    int bestAt = -1, bestRaise = int.MaxValue;
                    for (int i = 0; i < left.Count; i++)
                    {
                        int r = left[i], raise = 0;
                        for (int b = 0; b < blocks; b++) raise += Math.Max(0, counts[(long)r * blocks + b] - longest[b]);
                        // left is in increasing row order, so the first of equal rows is the lowest
                        if (raise < bestRaise || (raise == bestRaise && total[r] > total[left[bestAt]])) { bestAt = i; bestRaise = raise; }
                    }
                    int row = Take(left, bestAt);
                    order[placed++] = row;
                    for (int b = 0; b < blocks; b++) longest[b] = Math.Max(longest[b], counts[(long)row * blocks + b]);
                }
            }
        }
        return order;
    }

    // removes and returns left[i], keeping the others in increasing row order
    static int Take(List<int> left, int i)
    {
        int row = left[i];
        left.RemoveAt(i);
        return row;
    }
}
