using System.Runtime.CompilerServices;

namespace NanoSparse.Kernels;

/// <summary>
/// The indices of the k largest of n scores, ascending, by radix select: the same set as
/// <c>Sparsity.Dst.TopK.Largest</c> (sort by score descending, ties to the lower index, take k) in a fixed number of
/// branch-free passes instead of a quickselect. For a decode step's neuron selection (n = H = 3,072, one call per layer
/// and token) the quickselect's data-dependent branches cost ~20–35 µs on one core; here it is three counting passes
/// over the scores and one collecting pass.
/// A float maps to a 32-bit key whose unsigned order is the float order (sign bit flipped for positives, every bit
/// flipped for negatives; −0 taken as +0, which compares equal to it). Pass 1 counts the keys' top 11 bits and finds the
/// bucket holding the k-th largest, pass 2 the next 11 bits within that bucket, pass 3 the last 10 bits: that key is
/// τ, the k-th largest score (passes 2 and 3 over the keys of pass 1's bucket only, compacted first). The collecting pass then takes every score above τ and the first (k − above) equal to τ.
/// Scores must not be NaN (they would rank above +∞).
/// </summary>
public static class RadixTopK
{
    /// <summary>Writes into <paramref name="chosen"/> the indices of the k largest <paramref name="scores"/>, ascending.</summary>
    [SkipLocalsInit]
    public static void Largest(ReadOnlySpan<float> scores, int k, Span<int> chosen)
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
        Span<int> count = stackalloc int[2048];
        // Pass 1: the top 11 bits; rank = how many of the wanted scores lie in the bucket found (the k-th largest is
        // the rank-th largest there).
        count.Clear();
        foreach (float s in scores) count[(int)(Key(s) >> 21)]++;
        int rank = k;
        uint top = Bucket(count, 2048, ref rank);
        // The keys in that bucket, compacted without branches (a bucket holds about half the scores when they share an
        // exponent, so a test per score would mispredict half the time): passes 2 and 3 read only them.
        var candidates = Candidates(n);
        int m = 0;
        foreach (float s in scores)
        {
            uint key = Key(s);
            candidates[m] = key;
            m += key >> 21 == top ? 1 : 0;
        }
        // Pass 2: bits 10..20 of the candidates.
        count.Clear();
        for (int i = 0; i < m; i++) count[(int)((candidates[i] >> 10) & 2047)]++;
        uint prefix = top << 11 | Bucket(count, 2048, ref rank);
        // Pass 3: the last 10 bits of the candidates with that 22-bit prefix.
        count.Slice(0, 1024).Clear();
        for (int i = 0; i < m; i++)
        {
            uint key = candidates[i];
            if (key >> 10 == prefix) count[(int)(key & 1023)]++;
        }
        float tau = Score(prefix << 10 | Bucket(count, 1024, ref rank));
        // rank is now how many scores equal to τ are taken; the rest of the k lie above τ.
        int equalLeft = rank, taken = 0;
        for (int i = 0; i < n; i++)
        {
            float s = scores[i];
            int equal = (s == tau ? 1 : 0) & (equalLeft > 0 ? 1 : 0);
            equalLeft -= equal;
            chosen[taken] = i;
            taken += (s > tau ? 1 : 0) | equal;
            if (taken == k) return;
        }
    }

    [ThreadStatic] static uint[]? _candidates;

    /// <summary>This thread's candidate buffer (n keys), grown once: a decode step allocates nothing.</summary>
    static uint[] Candidates(int n)
    {
        var c = _candidates;
        if (c is null || c.Length < n) _candidates = c = new uint[Math.Max(n, 4096)];
        return c;
    }

    /// <summary>The bucket, from the top, in which the rank-th largest key lies; rank becomes its rank inside that bucket.</summary>
    static uint Bucket(Span<int> count, int buckets, ref int rank)
    {
        for (int b = buckets - 1; b > 0; b--)
        {
            if (count[b] >= rank) return (uint)b;
            rank -= count[b];
        }
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static uint Key(float s)
    {
        uint bits = BitConverter.SingleToUInt32Bits(s);
        if (bits == 0x8000_0000u) bits = 0;   // −0 = +0
        return (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
    }

    static float Score(uint key) => BitConverter.UInt32BitsToSingle((key & 0x8000_0000u) != 0 ? key & 0x7FFF_FFFFu : ~key);
}
