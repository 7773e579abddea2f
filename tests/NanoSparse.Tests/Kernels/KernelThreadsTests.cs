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

    struct StealArgs { public int* Hits; public int* RanOn; public int SlowItem; }

    static void SlowBody(ref StealArgs a, int i)
    {
        if (i == a.SlowItem) Thread.Sleep(200);
        a.RanOn[i] = Environment.CurrentManagedThreadId;
        Interlocked.Increment(ref a.Hits[i]);
    }

    [Theory]
    [InlineData(2, 8)]
    [InlineData(2, 7)]
    [InlineData(3, 7)]
    [InlineData(3, 3)]
    [InlineData(2, 1)]
    public void AThreadThatFinishesItsRangeTakesOverTheRestOfASlowThreadsRange(int threads, int count)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var hits = new int[count];
            var ranOn = new int[count];
            fixed (int* h = hits, r = ranOn)
            {
                // Item 0 opens the caller's range (thread 0's range is [0, count/threads)) and blocks it; the
                // workers finish their ranges and must take the rest of the caller's.
                var a = new StealArgs { Hits = h, RanOn = r, SlowItem = 0 };
                KernelThreads.For(count, ref a, &SlowBody);
                Assert.All(hits, x => Assert.Equal(1, x));
                int caller = Environment.CurrentManagedThreadId;
                Assert.Equal(caller, ranOn[0]);
                int ownEnd = count / Math.Min(threads, count);
                for (int i = 1; i < ownEnd; i++) Assert.NotEqual(caller, ranOn[i]);

                // After the workers have gone to sleep (they poll ~100 µs, then block), a region still wakes them.
                Thread.Sleep(20);
                Array.Clear(hits);
                a.SlowItem = -1;
                KernelThreads.For(count, ref a, &SlowBody);
                Assert.All(hits, x => Assert.Equal(1, x));
            }
        }
        finally { KernelThreads.Max = saved; }
    }
}
