namespace NanoSparse.Nn.Parts;

/// <summary>Where a parameter lives in the model's flat parameter (and gradient) buffer; Offset -1 when absent (no bias).</summary>
public readonly record struct ParameterSlot(int Offset, int Length)
{
    public static readonly ParameterSlot Absent = new(-1, 0);
    public bool IsPresent => Offset >= 0;
}
