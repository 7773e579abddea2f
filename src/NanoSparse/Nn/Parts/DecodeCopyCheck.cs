using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NanoSparse.Nn.Parts;

/// <summary>
/// Whether a weight's decode copy (a second copy of its values made by PrepareForInference, read when rows = 1) still
/// follows the values a forward pass is given: the same memory as when the copy was made, and 64 values sampled across
/// it unchanged (bit for bit). A copy that fails the check is not used (the layout falls back to its own kernels on the
/// values passed in): values changed in place after the copy was made (an optimizer step changes all of them; pruning
/// zeroes many) are read from the model, not from the stale copy. A change that misses all 64 samples goes unseen: after
/// changing values by other means, call PrepareForInference again.
/// </summary>
internal sealed unsafe class DecodeCopyCheck
{
    /// <summary>Values sampled (all of them when there are fewer).</summary>
    const int SampleShift = 6, SampleCount = 1 << SampleShift;

    readonly nint _address;
    readonly float[] _sample;

    DecodeCopyCheck(nint address, float[] sample) { _address = address; _sample = sample; }

    /// <summary>The check for a copy made from <paramref name="values"/> now.</summary>
    public static DecodeCopyCheck Of(ReadOnlySpan<float> values)
    {
        int count = Math.Min(SampleCount, values.Length);
        var sample = new float[count];
        for (int i = 0; i < count; i++) sample[i] = values[Position(i, values.Length, count)];
        return new DecodeCopyCheck(Address(values), sample);
    }

    /// <summary>Bytes the check holds (its sample).</summary>
    public long Bytes => 4L * _sample.Length;

    /// <summary>True while <paramref name="values"/> is the memory the copy was made from and its sampled values are unchanged.</summary>
    public bool Matches(ReadOnlySpan<float> values)
    {
        if (Address(values) != _address) return false;
        var sample = _sample;
        for (int i = 0; i < sample.Length; i++)
            if (BitConverter.SingleToInt32Bits(values[Position(i, values.Length, sample.Length)]) != BitConverter.SingleToInt32Bits(sample[i]))
                return false;
        return true;
    }

    static nint Address(ReadOnlySpan<float> values) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(values));

    /// <summary>
    /// Sample i of <paramref name="count"/> spread over <paramref name="n"/> values, ⌊i·n / count⌋: a shift where count
    /// is 64, and i itself where count = n. The check ran a 64-bit division (idiv) per sample, 48 checks a token:
    /// with the shift, the methods the check runs in (CsrLinearWeight.Forward, its check, and CausalSelfAttention.Decode
    /// where it is inlined) went from 1.69% to 1.43% of the perf samples of a 90%-sparse decode at one thread
    /// (decode-only scratch harness, 8 passes, whole run); what remains is mostly waiting for the samples' lines, which
    /// a decode step never reads otherwise.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Position(int i, int n, int count) => count == SampleCount ? (int)(((long)i * n) >> SampleShift) : i;
}
