namespace NanoSparse.Sparsity.Pruning;

/// <summary>
/// Turns per-weight scores into a mask: the lowest scores are removed. Ties go by position (of two equal scores the
/// one at the lower index is removed first), so a choice is one exact set, reproducible anywhere. Masks hold 1 for a
/// kept weight and 0 for a removed one. W and its scores are (Out, In) row-major; N:M groups run along In.
/// </summary>
public static class MaskSelection
{
    /// <summary>A score and its position: orders by score, then by position.</summary>
    public readonly record struct Ranked(double Score, long Index) : IComparable<Ranked>
    {
        public int CompareTo(Ranked other)
        {
            int c = Score.CompareTo(other.Score);
            return c != 0 ? c : Index.CompareTo(other.Index);
        }
    }

    /// <summary>
    /// Prunes <paramref name="request"/> by <paramref name="scores"/> (Out·In) to its target: N:M keeps the N highest of
    /// every group of M inputs in a row; unstructured removes the target's count of lowest scores, compared across
    /// the whole layer or (<paramref name="withinRows"/>, Wanda) within each output row. Zeroes the removed weights.
    /// </summary>
    public static void PruneByScore(LayerPruneRequest request, ReadOnlySpan<double> scores, bool withinRows)
    {
        int rows = request.OutFeatures, cols = request.InFeatures;
        var target = request.Target;
        if (target.IsNm) KeepHighestPerGroup(scores, rows, cols, target.N, target.M, request.Mask);
        else if (withinRows) PruneLowestPerRow(scores, rows, cols, target.PrunedCount(cols), request.Mask);
        else PruneLowest(scores, target.PrunedCount((long)rows * cols), request.Mask);
        ApplyMask(request.Weight, request.Mask);
    }

    /// <summary>Removes the <paramref name="count"/> lowest of <paramref name="scores"/>; keeps the rest.</summary>
    public static void PruneLowest(ReadOnlySpan<double> scores, long count, Span<byte> mask)
    {
        CheckCount(count, scores.Length);
        mask[..scores.Length].Fill(1);
        if (count == 0) return;
        var ranked = new Ranked[scores.Length];
        for (int i = 0; i < ranked.Length; i++) ranked[i] = new Ranked(scores[i], i);
        Array.Sort(ranked);
        for (long k = 0; k < count; k++) mask[(int)ranked[k].Index] = 0;
    }

    /// <summary>Removes the <paramref name="perRow"/> lowest scores of every row (rows × cols).</summary>
    public static void PruneLowestPerRow(ReadOnlySpan<double> scores, int rows, int cols, long perRow, Span<byte> mask)
    {
        CheckCount(perRow, cols);
        var ranked = new Ranked[cols];
        for (int r = 0; r < rows; r++)
        {
            var row = scores.Slice(r * cols, cols);
            var m = mask.Slice(r * cols, cols);
            m.Fill(1);
            if (perRow == 0) continue;
            for (int j = 0; j < cols; j++) ranked[j] = new Ranked(row[j], j);
            Array.Sort(ranked);
            for (long k = 0; k < perRow; k++) m[(int)ranked[k].Index] = 0;
        }
    }

    /// <summary>N:M: in every group of <paramref name="m"/> consecutive inputs of a row, keeps the <paramref name="n"/> highest scores.</summary>
    public static void KeepHighestPerGroup(ReadOnlySpan<double> scores, int rows, int cols, int n, int m, Span<byte> mask)
    {
        if (n < 0 || m <= 0 || n > m) throw new ArgumentException($"N:M needs 0 <= N <= M and M > 0, got {n}:{m}");
        if (cols % m != 0) throw new ArgumentException($"M = {m} does not divide the {cols} inputs of a row");
        var ranked = new Ranked[m];
        for (long g = 0; g < (long)rows * cols; g += m)
        {
            for (int j = 0; j < m; j++) ranked[j] = new Ranked(scores[(int)g + j], j);
            Array.Sort(ranked);
            for (int j = 0; j < m; j++) mask[(int)g + (int)ranked[j].Index] = (byte)(j < m - n ? 0 : 1);
        }
    }

    /// <summary>W ⊙ mask: every removed weight becomes exactly +0.</summary>
    public static void ApplyMask(Span<float> weight, ReadOnlySpan<byte> mask)
    {
        for (int i = 0; i < weight.Length; i++)
            if (mask[i] == 0) weight[i] = 0f;
    }

    static void CheckCount(long count, long of)
    {
        if (count < 0 || count > of) throw new ArgumentOutOfRangeException(nameof(count), count, $"must lie in [0, {of}]");
    }
}
