namespace NanoSparse.Tests;

/// <summary>Steady-state allocation checks for the "allocates nothing after warm-up" tests.</summary>
public static class Allocations
{
    /// <summary>
    /// Bytes allocated on this thread by the least-allocating of a few windows, each running <paramref name="window"/>
    /// once. The runtime itself may allocate once on the calling thread while it tiers up hot methods (its tiering
    /// timer), which says nothing about the code under test; an allocation per call would show in every window, so
    /// the minimum is the steady state.
    /// </summary>
    public static long SteadyState(Action window, int windows = 5)
    {
        long least = long.MaxValue;
        for (int w = 0; w < windows && least != 0; w++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            window();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}
