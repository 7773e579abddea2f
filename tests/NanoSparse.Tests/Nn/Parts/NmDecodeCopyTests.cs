using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// N:M decode (rows = 1) after PrepareForInference: values off a 64-byte boundary are copied onto one; the product is
/// the same bits as from the model's values, the copy is dropped by Backward and not used once the values change.
/// </summary>
public class NmDecodeCopyTests
{
    /// <summary>The values copied into a pinned buffer at <paramref name="bytesPastLine"/> bytes past a 64-byte boundary.</summary>
    static unsafe (float[] Buffer, int Start) Placed(float[] values, int bytesPastLine)
    {
        var buffer = GC.AllocateArray<float>(values.Length + 32, pinned: true);
        int start;
        fixed (float* p = buffer) start = (int)(((bytesPastLine - ((nint)p & 63)) & 63) / 4);
        values.CopyTo(buffer.AsSpan(start));
        return (buffer, start);
    }

    internal static unsafe bool IsOnLine(ReadOnlySpan<float> values)
    {
        fixed (float* p = values) return ((nint)p & 63) == 0;
    }

    [Theory]
    [InlineData("nm2:4", 24)]
    [InlineData("nm2:4", 4)]
    [InlineData("nm1:4", 40)]
    [InlineData("nm2:8", 12)]
    public void OffALineTheCopyGivesTheSameBitsAndFollowsTheValues(string layout, int bytesPastLine)
    {
        int outF = 48, inF = 128;
        var (w, values, dense) = SparseLinearWeightTests.Make(layout, outF, inF, 17);
        var nm = (NmLinearWeight)w;
        var (buffer, start) = Placed(values, bytesPastLine);
        var held = buffer.AsSpan(start, values.Length);
        Assert.False(IsOnLine(held));
        var rng = new Rng(4);
        var x = new float[inF];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextGaussian();
        var workspace = new float[w.WorkspaceFloats(1)];
        var expected = new float[outF];
        w.Forward(expected, x, held, [], [], 1, workspace);
        for (int o = 0; o < outF; o++)
        {
            double r = 0;
            for (int i = 0; i < inF; i++) r += (double)dense[o * inF + i] * x[i];
            Assert.True(Math.Abs(expected[o] - r) <= 1e-4 * (1 + Math.Abs(r)), $"row {o}: {expected[o]} vs {r}");
        }
        long before = nm.HeldBytes;
        nm.PrepareForInference(held);
        Assert.EndsWith(" + aligned values", nm.DecodeFormat);
        Assert.Equal(before + 4L * values.Length + 128 + 4L * Math.Min(64, values.Length), nm.HeldBytes);
        var y = new float[outF];
        w.Forward(y, x, held, [], [], 1, workspace);
        for (int o = 0; o < outF; o++) Assert.Equal(BitConverter.SingleToInt32Bits(expected[o]), BitConverter.SingleToInt32Bits(y[o]));
        // Every value doubled in place (an optimizer step would change all of them): the result doubles, not the copy's.
        for (int p = 0; p < held.Length; p++) held[p] *= 2;
        w.Forward(y, x, held, [], [], 1, workspace);
        for (int o = 0; o < outF; o++) Assert.Equal(2 * expected[o], y[o], 1e-4f * (1 + Math.Abs(2 * expected[o])));
        // Other memory with the same values is not the copy's source either.
        var other = held.ToArray();
        w.Forward(y, x, other, [], [], 1, workspace);
        for (int o = 0; o < outF; o++) Assert.Equal(2 * expected[o], y[o], 1e-4f * (1 + Math.Abs(2 * expected[o])));
    }

    [Fact]
    public void OnALineNothingIsCopied()
    {
        var (w, values, _) = SparseLinearWeightTests.Make("nm2:4", 32, 64, 5);
        var nm = (NmLinearWeight)w;
        var (buffer, start) = Placed(values, 0);
        long before = nm.HeldBytes;
        nm.PrepareForInference(buffer.AsSpan(start, values.Length));
        Assert.Equal(before, nm.HeldBytes);
        Assert.DoesNotContain("aligned", nm.DecodeFormat);
    }

    [Fact]
    public void BackwardDropsTheCopyAndAWrongLengthIsRefused()
    {
        int outF = 32, inF = 64;
        var (w, values, _) = SparseLinearWeightTests.Make("nm2:4", outF, inF, 9);
        var nm = (NmLinearWeight)w;
        var (buffer, start) = Placed(values, 24);
        var held = buffer.AsSpan(start, values.Length);
        var ex = Assert.Throws<ArgumentException>(() => nm.PrepareForInference(buffer.AsSpan(start + 1, values.Length - 1)));
        Assert.Contains("expected the", ex.Message);
        nm.PrepareForInference(held);
        Assert.EndsWith(" + aligned values", nm.DecodeFormat);
        var x = new float[inF];
        var dy = new float[outF];
        x[3] = 1; dy[5] = 1;
        var workspace = new float[w.WorkspaceFloats(1)];
        w.Backward(new float[inF], new float[values.Length], [], dy, x, held, [], 1, workspace);
        Assert.DoesNotContain("aligned", nm.DecodeFormat);
    }
}
