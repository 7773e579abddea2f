namespace NanoSparse.Kernels;

/// <summary>Argument checks shared by the kernels: a wrong buffer size names the buffer and both sizes.</summary>
internal static class Check
{
    public static void Length(ReadOnlySpan<float> span, long expected, string name)
    {
        if (span.Length < expected)
            throw new ArgumentException($"{name} has {span.Length} elements but needs {expected}", name);
    }

    public static void Length(ReadOnlySpan<int> span, long expected, string name)
    {
        if (span.Length < expected)
            throw new ArgumentException($"{name} has {span.Length} elements but needs {expected}", name);
    }
}
