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

    struct StealArgs { public int* Hits; public int Count, Done, OthersDoneFirst; }

    /// <summary>
    /// Item 0 holds the thread that claims it until every other item has run (at most 30 s): the rest of that thread's
    /// range can then only run on threads that finished their own. Whether the caller or a worker claims item 0 is up to
    /// the scheduler (a worker woken before the caller reaches its range may steal it), so the test does not assume it.
    /// </summary>
    static void HeldBody(ref StealArgs a, int i)
    {
        if (i == 0)
        {
            long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + 30 * System.Diagnostics.Stopwatch.Frequency;
            while (Volatile.Read(ref a.Done) < a.Count - 1 && System.Diagnostics.Stopwatch.GetTimestamp() < deadline) Thread.Sleep(1);
            a.OthersDoneFirst = Volatile.Read(ref a.Done) == a.Count - 1 ? 1 : 0;
        }
        Interlocked.Increment(ref a.Hits[i]);
        Interlocked.Increment(ref a.Done);
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
            fixed (int* h = hits)
            {
                // Item 0 opens thread 0's range [0, count/threads); while it is held, the threads that finish their own
                // ranges must run the rest of it, or item 0 waits out its deadline.
                var a = new StealArgs { Hits = h, Count = count };
                KernelThreads.For(count, ref a, &HeldBody);
                Assert.All(hits, x => Assert.Equal(1, x));
                Assert.Equal(1, a.OthersDoneFirst);

                // After the workers have gone to sleep (they poll ~100 µs, then block), a region still wakes them: the
                // other items again run while item 0 is held.
                Thread.Sleep(20);
                Array.Clear(hits);
                a = new StealArgs { Hits = h, Count = count };
                KernelThreads.For(count, ref a, &HeldBody);
                Assert.All(hits, x => Assert.Equal(1, x));
                Assert.Equal(1, a.OthersDoneFirst);
            }
        }
        finally { KernelThreads.Max = saved; }
    }
}
