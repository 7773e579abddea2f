using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;

namespace NanoSparse.Tests.Kernels;

/// <summary>
/// The L1 size from CPUID: unknown (0) or a size some x86 core has (a whole number of KiB between 8 KiB and 512 KiB),
/// and the 2:4 weight gradient's panel width follows it as documented; widths that are not a positive multiple of 16
/// are refused.
/// </summary>
public class CpuCachesTests
{
    [Fact]
    public void L1DataSizeIsUnknownOrPlausible()
    {
        int bytes = CpuCaches.L1DataBytes;
        if (bytes == 0) return;   // a hypervisor that hides CPUID's cache leaves: nothing to check
        Assert.Equal(0, bytes % 1024);
        Assert.InRange(bytes, 8 * 1024, 512 * 1024);
    }

    [Fact]
    public void PanelWidthFollowsTheL1Size()
    {
        Assert.Equal(CpuCaches.L1DataBytes >= 48 * 1024 ? 128 : 256, Nm24Gradients.DefaultGradientPanelRows);
        var kernel = new Nm24Gradients(1, 4, q => (int)q);
        Assert.Equal(Nm24Gradients.DefaultGradientPanelRows, kernel.GradientPanelRows);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(-16)]
    public void PanelRowsNotAPositiveMultipleOf16AreRefused(int rows)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Nm24Gradients(1, 4, q => (int)q) { GradientPanelRows = rows });
        Assert.Contains("multiple of 16", e.Message);
    }
}
