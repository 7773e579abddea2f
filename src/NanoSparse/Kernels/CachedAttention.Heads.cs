namespace NanoSparse.Kernels;

// Attention of one new position for a chosen subset of heads (Deja Vu's predicted heads): the same per-head kernel,
// run only for the listed heads; the others' outputs are left as they are and their keys and values are not read.
public static unsafe partial class CachedAttention
{
    struct ListedArgs
    {
        public Args Inner;
        public int* Heads;
    }

    /// <summary>
    /// y_h (hs) for each head h in <paramref name="heads"/> = attention of q_h over positions [0, count) of keys and
    /// values (count, A), A = width (heads side by side, as in qkv; hs = <paramref name="headSize"/>). Only the listed
    /// heads' slices of q, keys, values and y are read or written. scores: at least count floats of scratch.
    /// </summary>
    public static void ForwardHeads(Span<float> y, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        int count, int width, int headSize, ReadOnlySpan<int> heads, Span<float> scores)
    {
        if (headSize <= 0 || width <= 0 || width % headSize != 0)
            throw new ArgumentException($"width ({width}) must be a positive multiple of the head size ({headSize})");
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "attention needs at least one cached position");
        int NH = width / headSize;
        foreach (int h in heads)
            if ((uint)h >= (uint)NH) throw new ArgumentOutOfRangeException(nameof(heads), h, $"a head must lie in [0, {NH})");
        if (heads.IsEmpty) return;
        Check.Length(y, width, nameof(y));
        Check.Length(q, width, nameof(q));
        Check.Length(keys, (long)count * width, nameof(keys));
        Check.Length(values, (long)count * width, nameof(values));
        Check.Length(scores, count, nameof(scores));
        fixed (float* py = y, pq = q, pk = keys, pv = values, ps = scores)
        fixed (int* ph = heads)
        {
            var args = new ListedArgs
            {
                Inner = new Args { Y = py, Q = pq, Keys = pk, Values = pv, Scores = ps, Count = count, Width = width, HeadSize = headSize },
                Heads = ph,
            };
            if (count > StackPositions || (long)count * headSize * heads.Length < MinParallelFloats)
                for (int i = 0; i < heads.Length; i++) Head(ref args.Inner, ph[i]);
            else
                KernelThreads.For(heads.Length, ref args, &ListedHead);
        }
    }

    static void ListedHead(ref ListedArgs a, int i) => Head(ref a.Inner, a.Heads[i]);
}
