using System.Runtime.Intrinsics.X86;

namespace NanoSparse.Kernels;

/// <summary>
/// The level-1 data cache of the core the process runs on, from CPUID: AMD's leaf 0x8000_0005 (ECX bits 31..24: size
/// in KiB), else the deterministic cache parameters of leaf 4 (Intel: ways × partitions × line × sets of the level-1
/// data cache). 0 where neither answers (not x86, or a hypervisor that hides them). Kernels whose blocking depends on
/// the L1 size read it here once, so a host always makes the same choice.
/// </summary>
public static class CpuCaches
{
    /// <summary>Bytes of level-1 data cache per core (0: unknown).</summary>
    public static int L1DataBytes { get; } = DetectL1Data();

    static int DetectL1Data()
    {
        if (!X86Base.IsSupported) return 0;
        var (maxExtended, _, _, _) = X86Base.CpuId(unchecked((int)0x8000_0000), 0);
        if ((uint)maxExtended >= 0x8000_0005)
        {
            var (_, _, ecx, _) = X86Base.CpuId(unchecked((int)0x8000_0005), 0);
            int kib = (int)((uint)ecx >> 24);
            if (kib > 0) return kib * 1024;
        }
        var (maxBasic, _, _, _) = X86Base.CpuId(0, 0);
        if (maxBasic < 4) return 0;
        for (int sub = 0; sub < 16; sub++)
        {
            var (eax, ebx, ecx, _) = X86Base.CpuId(4, sub);
            int type = eax & 0x1F, level = (eax >> 5) & 0x7;
            if (type == 0) break;   // no more caches
            if (type == 1 && level == 1)
            {
                long ways = ((uint)ebx >> 22) + 1, partitions = (((uint)ebx >> 12) & 0x3FF) + 1, line = (ebx & 0xFFF) + 1, sets = (uint)ecx + 1L;
                long bytes = ways * partitions * line * sets;
                return bytes is > 0 and <= int.MaxValue ? (int)bytes : 0;
            }
        }
        return 0;
    }
}
