using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public unsafe class KernelThreadsTests
{
    struct Args { public int* Hits; public int Throw; }

    static void Body(ref Args a, int i)
    {
        Interlocked.Increment(ref a.Hits[i]);
        if (i == a.Throw) throw new InvalidOperationException($"item {i} failed");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void EveryItemRunsOnceAndAnItemsExceptionReachesTheCaller(int threads)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var hits = new int[64];
            fixed (int* h = hits)
            {
                var ok = new Args { Hits = h, Throw = -1 };
                KernelThreads.For(hits.Length, ref ok, &Body);
                Assert.All(hits, x => Assert.Equal(1, x));

                var bad = new Args { Hits = h, Throw = 37 };
                var ex = Assert.Throws<InvalidOperationException>(() => KernelThreads.For(hits.Length, ref bad, &Body));
                Assert.Equal("item 37 failed", ex.Message);

                // The threads are usable again afterwards.
                Array.Clear(hits);
                KernelThreads.For(hits.Length, ref ok, &Body);
                Assert.All(hits, x => Assert.Equal(1, x));
            }
        }
        finally { KernelThreads.Max = saved; }
    }
}
