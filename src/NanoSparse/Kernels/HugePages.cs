using System.Runtime.InteropServices;

namespace NanoSparse.Kernels;

/// <summary>
/// Asks Linux to back large, long-lived arrays that kernels stream (a model's parameters, the decode copies of sparse
/// weights, KV caches) with 2 MB transparent huge pages: madvise(MADV_HUGEPAGE) on the 2 MB-aligned extents the array
/// touches, then madvise(MADV_COLLAPSE) so pages already written move to huge pages now rather than when the kernel's
/// background scan gets there. A decode step streams every weight once per token: with 4 KB pages that is a TLB miss
/// and a page walk every 64 cache lines, and the hardware prefetchers stop at every 4 KB boundary. Advice only: the
/// contents never change, and where it is refused (another OS, THP "never", an older kernel without MADV_COLLAPSE) the
/// array simply stays on small pages. The extents round outward, so a 2 MB page may also hold the array's neighbours
/// (on the GC heap, which reserves its address space in regions of at least 4 MB; RSS can grow by up to 2 MB per
/// extent). Set the environment variable NANOSPARSE_HUGE_PAGES=0, or <see cref="Enabled"/> = false before building a
/// model, to keep small pages (the benchmarks' A/B).
/// </summary>
public static unsafe class HugePages
{
    const long PageBytes = 2L << 20;
    const int MadvHugePage = 14, MadvCollapse = 25;

    /// <summary>Arrays below this size are left alone (a syscall each, and at most one huge page's worth of gain).</summary>
    public const long MinBytes = 64 << 10;

    /// <summary>True unless NANOSPARSE_HUGE_PAGES=0 or transparent huge pages are off ("never") on this machine.</summary>
    public static bool Enabled { get; set; } = DefaultEnabled();

    static long _advised, _collapsed;

    /// <summary>Bytes (whole 2 MB extents) advised so far, and those madvise(MADV_COLLAPSE) moved to huge pages.</summary>
    public static (long Advised, long Collapsed) Totals => (Interlocked.Read(ref _advised), Interlocked.Read(ref _collapsed));

    /// <summary>One line for benchmark headers: whether advice is on and what it has covered.</summary>
    public static string Describe()
    {
        var (a, c) = Totals;
        return Enabled ? $"huge pages: on ({a >> 20} MB advised, {c >> 20} MB collapsed)" : "huge pages: off";
    }

    /// <summary>
    /// Advises the 2 MB extents holding <paramref name="array"/> (nothing below <see cref="MinBytes"/>) and returns the
    /// bytes of them that MADV_COLLAPSE put on huge pages now. The array should not move afterwards: large arrays (the
    /// large object heap is not compacted unless asked) and pinned ones qualify; if it does move, only the speed-up is lost.
    /// </summary>
    public static long Advise<T>(T[]? array) where T : unmanaged
    {
        if (array is null || !Enabled) return 0;
        long bytes = (long)array.Length * sizeof(T);
        if (bytes < MinBytes) return 0;
        fixed (T* p = array) return Advise(p, bytes);
    }

    /// <summary>Advises the 2 MB extents holding [p, p + bytes) (nothing below <see cref="MinBytes"/>); returns the bytes collapsed.</summary>
    public static long Advise(void* p, long bytes)
    {
        if (!Enabled || bytes < MinBytes || !OperatingSystem.IsLinux()) return 0;
        long start = (long)p & ~(PageBytes - 1);
        long end = ((long)p + bytes + PageBytes - 1) & ~(PageBytes - 1);
        long collapsed = 0;
        try
        {
            if (madvise((nint)start, (nuint)(end - start), MadvHugePage) != 0) return 0;
            Interlocked.Add(ref _advised, end - start);
            // One extent at a time: a range call fails as a whole when one extent does (at the edge of what the GC has
            // committed so far), and those extents are tried again by CollapsePending.
            for (long at = start; at < end; at += PageBytes)
                if (madvise((nint)at, (nuint)PageBytes, MadvCollapse) == 0) collapsed += PageBytes;
                else lock (Pending) if (Pending.Count < MaxPending) Pending.Add(at);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Enabled = false;
        }
        Interlocked.Add(ref _collapsed, collapsed);
        return collapsed;
    }

    const int MaxPending = 1 << 16;
    static readonly List<long> Pending = [];   // 2 MB extents whose collapse failed

    /// <summary>
    /// Tries MADV_COLLAPSE again on the extents where it failed, e.g. because the GC had not yet committed all of an
    /// extent when an array at its start was advised; call it once a model's arrays are all built
    /// (<see cref="Nn.Gpt.PrepareForInference"/> and <see cref="Nn.Gpt.CreateKvCache"/> do). Returns the bytes collapsed now.
    /// </summary>
    public static long CollapsePending()
    {
        if (!Enabled) return 0;
        long[] extents;
        lock (Pending) { extents = [.. Pending.Distinct()]; Pending.Clear(); }
        long done = 0;
        try
        {
            foreach (long at in extents)
                if (madvise((nint)at, (nuint)PageBytes, MadvCollapse) == 0) done += PageBytes;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { Enabled = false; }
        Interlocked.Add(ref _collapsed, done);
        return done;
    }

    static bool DefaultEnabled()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("NANOSPARSE_HUGE_PAGES") == "0") return false;
        try
        {
            // "always [madvise] never": the bracketed word is the mode in force
            string mode = File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled");
            return !mode.Contains("[never]", StringComparison.Ordinal);
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    [DllImport("libc", SetLastError = true)]
    static extern int madvise(nint address, nuint length, int advice);
}
