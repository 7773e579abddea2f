using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// output[q] = source[index[q]] for every q: a permutation's copy (a sparse Linear's Wᵀ values gathered from W's each
/// backward pass). Eight lanes per AVX2 gather (.NET has no AVX-512 gather), the output in ranges of <see cref="Chunk"/> over the threads. The
/// scalar loop it replaces ran on one thread, about 1% of an 80% sparse `wide` step at one thread (perf), so twice that
/// share of a two-thread step.
/// </summary>
public static unsafe class IndexGather
{
    /// <summary>Outputs per work item (and below which one thread does it all).</summary>
    const int Chunk = 1 << 15;

    struct Args { public float* Source, Output; public int* Index; public int Count, SourceLength; }

    /// <summary>output[q] = source[index[q]] for q &lt; output.Length; every index must lie in [0, source.Length) (checked).</summary>
    public static void Run(ReadOnlySpan<float> source, ReadOnlySpan<int> index, Span<float> output)
    {
        if (index.Length < output.Length) throw new ArgumentException($"index has {index.Length} entries, fewer than the output's {output.Length}", nameof(index));
        if (output.IsEmpty) return;
        fixed (float* s = source, o = output)
        fixed (int* ix = index)
        {
            var a = new Args { Source = s, Output = o, Index = ix, Count = output.Length, SourceLength = source.Length };
            int items = (output.Length + Chunk - 1) / Chunk;
            if (items == 1) Item(ref a, 0);
            else KernelThreads.For(items, ref a, &Item);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Item(ref Args a, int item)
    {
        int from = item * Chunk, to = Math.Min(a.Count, from + Chunk);
        float* s = a.Source;
        int* ix = a.Index;
        float* o = a.Output;
        uint n = (uint)a.SourceLength;
        int q = from;
        if (Avx2.IsSupported)
        {
            var limit = Vector256.Create(n);
            for (; q + 8 <= to; q += 8)
            {
                var idx = Vector256.Load(ix + q);
                // An index outside [0, n) (as unsigned, so negatives too) would read outside the source: refuse it.
                if (!Vector256.LessThanAll(idx.AsUInt32(), limit)) throw OutOfRange(a, q, 8);
                Avx2.GatherVector256(s, idx, 4).Store(o + q);
            }
        }
        for (; q < to; q++)
        {
            int i = ix[q];
            if ((uint)i >= n) throw OutOfRange(a, q, 1);
            o[q] = s[i];
        }
    }

    static ArgumentOutOfRangeException OutOfRange(in Args a, int q, int count)
    {
        for (int k = q; k < q + count; k++)
            if ((uint)a.Index[k] >= (uint)a.SourceLength)
                return new ArgumentOutOfRangeException("index", a.Index[k], $"index[{k}] = {a.Index[k]} lies outside the source's {a.SourceLength} entries");
        return new ArgumentOutOfRangeException("index");
    }
}
