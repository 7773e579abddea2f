using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// The indices of the k largest of n scores, ascending, by a most-significant-bit-first radix select: the same set as
/// <c>Sparsity.Dst.TopK.Largest</c> (sort by score descending, ties to the lower index, take k) in a fixed number of
/// branch-free vector passes instead of a quickselect. For a decode step's neuron selection (n = H = 3,072, one call
/// per layer and token) it runs serially between two parallel products, so its time is on the critical path at every
/// thread count.
/// A float maps to a 32-bit key whose unsigned order is the float order (sign bit flipped for positives, every bit
/// flipped for negatives; −0 taken as +0, which compares equal to it). The k-th largest key τ is then found one bit at
/// a time from the top: with the bits above fixed to t, bit b is 1 in τ iff at least k keys are ≥ t | 2^b. Each of the
/// 32 decisions is one count over the key array (in L1: 12 KB at n = 3,072), 16 compares per AVX-512 instruction and no
/// data-dependent branch; the earlier radix-by-histogram version (11-bit buckets) spent 12 µs per call at n = 3,072 in
/// scalar counting and compaction, 31 µs while its key mapping still branched on the sign. The collecting pass takes
/// every key above τ and the first (k − above) equal to τ, walking the set bits of each 16-key block's compare mask.
/// Without AVX-512 the same passes run scalar. Scores must not be NaN (they would rank above +∞).
/// </summary>
public static class RadixTopK
{
    static readonly bool UseVectors = Vector512.IsHardwareAccelerated;

    /// <summary>Writes into <paramref name="chosen"/> the indices of the k largest <paramref name="scores"/>, ascending.</summary>
    public static void Largest(ReadOnlySpan<float> scores, int k, Span<int> chosen) => Largest(scores, k, chosen, KeyBuffer(scores.Length));

    /// <summary>
    /// The same selection for large n (a topology update ranks millions of positions), with the caller's scratch of n
    /// keys: 32 counting passes over all n keys cost more than a histogram. One pass maps the scores to keys; one counts
    /// their top 11 bits (2,048 buckets), which fixes τ's top bits and how many keys lie above its bucket; the keys of
    /// that bucket move to the front of the scratch (a forward compaction in place), and τ's lower 21 bits come from
    /// counting passes over them only; the keys are then mapped again for the collecting pass. When one bucket
    /// holds more than an eighth of the keys (many equal scores) the counting passes run over all of them instead.
    /// About five passes over n against the quickselect's branchy partitions; for n below <see cref="HistogramMinimum"/>
    /// the 32 counting passes over all keys.
    /// </summary>
    public static void Largest(ReadOnlySpan<float> scores, int k, Span<int> chosen, Span<uint> scratch)
    {
        int n = scores.Length;
        if ((uint)k > (uint)n) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must lie in [0, {n}] (the number of scores)");
        if (chosen.Length < k) throw new ArgumentException($"chosen has {chosen.Length} elements, expected at least k = {k}", nameof(chosen));
        if (scratch.Length < n) throw new ArgumentException($"scratch has {scratch.Length} elements, expected at least n = {n}", nameof(scratch));
        if (k == 0) return;
        if (k == n)
        {
            for (int i = 0; i < n; i++) chosen[i] = i;
            return;
        }
        var keys = scratch.Slice(0, n);
        Keys(scores, keys);
        // τ, the k-th largest key, bit by bit from the top: a bit is kept where at least k keys reach the prefix with
        // it. The histogram fixes the top bits at once for large n; the counting passes then need only the keys of τ's
        // bucket when it is small enough to move them to the front (the keys above it are counted in `above`).
        uint tau = 0;
        int above = 0, topBit = 31;
        bool compacted = false;
        ReadOnlySpan<uint> candidates = keys;
        if (n >= HistogramMinimum)
        {
            Span<int> histogram = stackalloc int[1 << TopBits];
            histogram.Clear();
            foreach (uint key in keys) histogram[(int)(key >> (32 - TopBits))]++;
            int bucket = histogram.Length - 1, reached = 0;
            for (; bucket > 0 && reached + histogram[bucket] < k; bucket--) reached += histogram[bucket];
            tau = (uint)bucket << (32 - TopBits);
            topBit = 31 - TopBits;
            if (histogram[bucket] <= n / 8)
            {
                int count = 0;
                for (int i = 0; i < n; i++)
                {
                    uint key = keys[i];
                    keys[count] = key;
                    count += (key >> (32 - TopBits)) == (uint)bucket ? 1 : 0;
                }
                candidates = keys.Slice(0, count);
                compacted = true;
                above = reached;
            }
        }
        for (int b = topBit; b >= 0; b--)
        {
            uint candidate = tau | 1u << b;
            if (above + CountAtLeast(candidates, candidate) >= k) tau = candidate;
        }
        above += tau == uint.MaxValue ? 0 : CountAtLeast(candidates, tau + 1);
        if (compacted) Keys(scores, keys);   // the collecting pass needs every key in place again
        Collect(keys, tau, k - above, k, chosen);
    }

    /// <summary>Scores from which the histogram path runs (below, the 32 counting passes are cheap: the keys sit in L2).</summary>
    public const int HistogramMinimum = 1 << 16;

    /// <summary>Bits of the key the histogram pass buckets on.</summary>
    const int TopBits = 11;

    [ThreadStatic] static uint[]? _keys;

    /// <summary>This thread's key buffer (n keys), grown once: a decode step allocates nothing.</summary>
    static Span<uint> KeyBuffer(int n)
    {
        var c = _keys;
        if (c is null || c.Length < n) _keys = c = new uint[Math.Max(n, 4096)];
        return c.AsSpan(0, n);
    }

    static void Keys(ReadOnlySpan<float> scores, Span<uint> keys)
    {
        int n = scores.Length, i = 0;
        if (UseVectors)
        {
            var signBit = Vector512.Create(0x8000_0000u);
            for (; i + 16 <= n; i += 16)
            {
                // s + 0 turns −0 into +0 and leaves every other value as it is
                var bits = (Vector512.LoadUnsafe(ref Unsafe.AsRef(in scores[i])) + Vector512<float>.Zero).AsUInt32();
                var flip = Vector512.ShiftRightArithmetic(bits.AsInt32(), 31).AsUInt32() | signBit;
                (bits ^ flip).StoreUnsafe(ref keys[i]);
            }
        }
        for (; i < n; i++) keys[i] = Key(scores[i]);
    }

    /// <summary>How many keys are ≥ t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int CountAtLeast(ReadOnlySpan<uint> keys, uint t)
    {
        int n = keys.Length, i = 0, count = 0;
        if (UseVectors)
        {
            // a true compare lane is all ones (−1): subtracting it counts; two accumulators cover the add's latency
            var vt = Vector512.Create(t);
            Vector512<int> a0 = default, a1 = default;
            ref uint k0 = ref Unsafe.AsRef(in keys[0]);
            for (; i + 32 <= n; i += 32)
            {
                a0 -= Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref k0, (nuint)i), vt).AsInt32();
                a1 -= Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref k0, (nuint)(i + 16)), vt).AsInt32();
            }
            for (; i + 16 <= n; i += 16)
                a0 -= Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref k0, (nuint)i), vt).AsInt32();
            count = Vector512.Sum(a0 + a1);
        }
        for (; i < n; i++) count += keys[i] >= t ? 1 : 0;
        return count;
    }

    /// <summary>chosen (k) = the indices, ascending, of every key above τ and of the first <paramref name="equalLeft"/> equal to τ.</summary>
    static void Collect(ReadOnlySpan<uint> keys, uint tau, int equalLeft, int k, Span<int> chosen)
    {
        int n = keys.Length, i = 0, taken = 0;
        if (UseVectors)
        {
            var vt = Vector512.Create(tau);
            ref uint k0 = ref Unsafe.AsRef(in keys[0]);
            for (; i + 16 <= n && taken < k; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref k0, (nuint)i);
                uint take = (uint)Vector512.GreaterThan(v, vt).ExtractMostSignificantBits();
                if (equalLeft > 0)
                {
                    uint equal = (uint)Vector512.Equals(v, vt).ExtractMostSignificantBits();
                    // the lowest equalLeft set bits of equal
                    while (equal != 0 && equalLeft > 0)
                    {
                        uint lowest = equal & (0u - equal);
                        take |= lowest;
                        equal ^= lowest;
                        equalLeft--;
                    }
                }
                while (take != 0)
                {
                    chosen[taken++] = i + BitOperations.TrailingZeroCount(take);
                    take &= take - 1;
                }
            }
        }
        for (; i < n && taken < k; i++)
        {
            uint key = keys[i];
            int equal = (key == tau ? 1 : 0) & (equalLeft > 0 ? 1 : 0);
            equalLeft -= equal;
            chosen[taken] = i;
            taken += (key > tau ? 1 : 0) | equal;
        }
    }

    /// <summary>Without a branch: random scores have random signs, and a sign test mispredicts on half of them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static uint Key(float s)
    {
        uint bits = BitConverter.SingleToUInt32Bits(s + 0f);
        return bits ^ ((uint)((int)bits >> 31) | 0x8000_0000u);   // negative: every bit flipped; positive: the sign bit set
    }
}
