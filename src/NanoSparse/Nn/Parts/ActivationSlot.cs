namespace NanoSparse.Nn.Parts;

/// <summary>
/// A (B·T, Width) buffer of the training workspace, laid out row by row (one row per position) over the whole batch,
/// so a slice of whole sequences is a contiguous range of it. Kept buffers live from the forward into the backward
/// pass; scratch buffers live during one call of one part and share their memory with every other part's scratch.
/// Offset -1 when absent.
/// </summary>
public readonly record struct ActivationSlot(long Offset, int Width, bool IsScratch)
{
    public static readonly ActivationSlot Absent = new(-1, 0, false);
    public bool IsPresent => Offset >= 0;
}
