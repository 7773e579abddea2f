using System.Globalization;
using System.Runtime.CompilerServices;
using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

/// <summary>
/// The huge-page advice never changes what an array holds, covers whole 2 MB extents, and (where transparent huge pages
/// are on and the collapse succeeded) leaves the array's memory on huge pages, as /proc/self/smaps reports it.
/// </summary>
public class HugePagesTests
{
    [Fact]
    public void AdviceKeepsTheContents()
    {
        var r = new Random(5);
        var data = new float[(3 << 20) + 12345];   // ~12 MB: several 2 MB extents, not aligned to one
        for (int i = 0; i < data.Length; i++) data[i] = (float)(r.NextDouble() * 2 - 1);
        var copy = (float[])data.Clone();
        var before = HugePages.Totals;
        HugePages.Advise(data);
        Assert.Equal(copy, data);
        var after = HugePages.Totals;
        if (!HugePages.Enabled) { Assert.Equal(before, after); return; }
        long bytes = 4L * data.Length;
        // the extents round outward to 2 MB boundaries, so at least the array's bytes (other tests may add their own)
        long advised = after.Advised - before.Advised;
        Assert.True(advised >= bytes && advised % (2L << 20) == 0, $"advised {advised} bytes for a {bytes}-byte array");
    }

    [Fact]
    public unsafe void CollapsedArraysLieOnHugePages()
    {
        if (!HugePages.Enabled || !File.Exists("/proc/self/smaps"))
        {
            Assert.False(OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("NANOSPARSE_HUGE_PAGES") != "0"
                         && File.Exists("/sys/kernel/mm/transparent_hugepage/enabled")
                         && !File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]"),
                "huge pages are on in this kernel, yet advice is disabled");
            return;
        }
        var data = new float[8 << 20];   // 32 MB
        data.AsSpan().Fill(1.5f);
        long collapsed = HugePages.Advise(data);
        Assert.Equal(-1, Array.FindIndex(data, v => v != 1.5f));
        if (collapsed == 0) return;   // MADV_COLLAPSE refused on every extent (a kernel before 6.1, no free huge pages): advice only
        long address = (long)Unsafe.AsPointer(ref data[0]);
        long huge = AnonHugeBytesAround(address, address + 4L * data.Length);
        Assert.True(huge >= collapsed - (4L << 20), $"MADV_COLLAPSE reported {collapsed >> 20} MB of a 32 MB array's extents; smaps shows {huge >> 20} MB on huge pages");
    }

    /// <summary>Sum of AnonHugePages over the mappings that overlap [start, end).</summary>
    static long AnonHugeBytesAround(long start, long end)
    {
        long total = 0;
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && long.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, null, out long a)
                && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, null, out long b))
            {
                inside = a < end && b > start;
                continue;
            }
            if (inside && line.StartsWith("AnonHugePages:", StringComparison.Ordinal))
                total += 1024 * long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        }
        return total;
    }
}
