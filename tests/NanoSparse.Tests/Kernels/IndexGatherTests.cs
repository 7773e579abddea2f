using NanoSparse.Kernels;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Kernels;

/// <summary>
/// IndexGather against the element-by-element copy it replaces: permutations and repeated indices, lengths that are
/// not a multiple of the eight-lane gather (and shorter than it), one work item and many (over 1 and 2 threads), an
/// output shorter than the index; an index outside the source (negative or too large) is refused by name, in the
/// vector part and in the tail.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class IndexGatherTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 7)]
    [InlineData(8, 8)]
    [InlineData(100, 67)]
    [InlineData(70_001, 70_001)]      // three work items, a 1-element tail
    [InlineData(200_000, 131_075)]    // a source longer than the output, repeats
    public void EqualsTheScalarCopy(int sourceLength, int count)
    {
        var rng = new Rng((ulong)(sourceLength + count));
        var source = new float[sourceLength];
        for (int i = 0; i < sourceLength; i++) source[i] = (float)rng.NextDouble() - 0.5f + i;
        var index = new int[count + 3];   // longer than the output: the extra entries are never read
        for (int q = 0; q < index.Length; q++) index[q] = q < count && count == sourceLength ? q : rng.NextInt(sourceLength);
        if (count == sourceLength)
            for (int q = count - 1; q > 0; q--) { int j = rng.NextInt(q + 1); (index[q], index[j]) = (index[j], index[q]); }
        index[count] = -1;   // beyond the output: must not be read
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                var output = new float[count];
                Array.Fill(output, float.NaN);
                IndexGather.Run(source, index, output);
                for (int q = 0; q < count; q++)
                    Assert.True(output[q] == source[index[q]], $"threads={threads}: output[{q}] = {output[q]}, expected source[{index[q]}] = {source[index[q]]}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(3, -1)]      // in the first eight (vector part)
    [InlineData(5, 40)]
    [InlineData(17, 40)]     // in the tail
    [InlineData(17, -7)]
    public void AnIndexOutsideTheSourceIsRefused(int at, int bad)
    {
        var source = new float[40];
        var index = new int[18];
        for (int q = 0; q < index.Length; q++) index[q] = q;
        index[at] = bad;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => IndexGather.Run(source, index, new float[18]));
        Assert.Contains($"index[{at}] = {bad}", e.Message);
        Assert.Throws<ArgumentException>(() => IndexGather.Run(source, new int[3], new float[4]));
    }
}
