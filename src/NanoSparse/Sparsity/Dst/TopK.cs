using System.Runtime.InteropServices;
using NanoSparse.Kernels;

namespace NanoSparse.Sparsity.Dst;

/// <summary>
/// The k largest scores of a span, ties broken towards the lower index, in O(n): a quickselect (median-of-three
/// pivots, no randomness) finds the k-th largest value τ on a scratch copy, then one scan takes every score above τ
/// and the first ones equal to τ. Equivalent to sorting by (score descending, index ascending) and taking k.
/// From <see cref="RadixTopK.HistogramMinimum"/> scores on (a topology update ranks every cell of a layer: 2.4M for
/// 3072 × 768) the same set comes from RadixTopK's histogram radix select on the scratch: in the `wide` model's RigL
/// update the quickselect took about a third of the topology update's time.
/// </summary>
public static class TopK
{
    /// <summary>
    /// Writes into <paramref name="chosen"/> (k ints) the indices of the k largest <paramref name="scores"/>, ascending.
    /// <paramref name="scratch"/> holds at least scores.Length floats. Scores must not be NaN (−∞ is allowed and ranks last).
    /// </summary>
    public static void Largest(ReadOnlySpan<float> scores, int k, Span<float> scratch, Span<int> chosen)
    {
        int n = scores.Length;
        if ((uint)k > (uint)n) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must lie in [0, {n}] (the number of scores)");
        if (chosen.Length < k) throw new ArgumentException($"chosen has {chosen.Length} elements, expected at least k = {k}", nameof(chosen));
        if (k == 0) return;
        if (k == n)
        {
            for (int i = 0; i < n; i++) chosen[i] = i;
            return;
        }
        if (n >= RadixTopK.HistogramMinimum)
        {
            // Millions of scores (a topology update's cells): the radix select's histogram passes, the same set.
            RadixTopK.Largest(scores, k, chosen, MemoryMarshal.Cast<float, uint>(scratch.Slice(0, n)));
            return;
        }
        var a = scratch.Slice(0, n);
        scores.CopyTo(a);
        float tau = Select(a, k - 1);
        int above = 0;
        foreach (float s in scores) if (s > tau) above++;
        int equalNeeded = k - above, taken = 0;
        for (int i = 0; i < n && taken < k; i++)
        {
            float s = scores[i];
            if (s > tau) chosen[taken++] = i;
            else if (s == tau && equalNeeded > 0) { chosen[taken++] = i; equalNeeded--; }
        }
    }

    /// <summary>The value at position <paramref name="rank"/> of <paramref name="a"/> sorted descending (a is reordered).</summary>
    static float Select(Span<float> a, int rank)
    {
        int lo = 0, hi = a.Length - 1;
        while (hi > lo)
        {
            int mid = lo + (hi - lo) / 2;
            // median of three, descending order
            if (a[mid] > a[lo]) (a[mid], a[lo]) = (a[lo], a[mid]);
            if (a[hi] > a[lo]) (a[hi], a[lo]) = (a[lo], a[hi]);
            if (a[hi] > a[mid]) (a[hi], a[mid]) = (a[mid], a[hi]);
            float pivot = a[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] > pivot) i++;
                while (a[j] < pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (rank <= j) hi = j;
            else if (rank >= i) lo = i;
            else return a[rank];
        }
        return a[rank];
    }
}
