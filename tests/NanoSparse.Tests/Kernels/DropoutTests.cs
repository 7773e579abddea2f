using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

public class DropoutTests
{
    [Fact]
    public void KeepsAboutOneMinusPAndScalesByItsInverse()
    {
        var x = new float[100_000];
        x.AsSpan().Fill(1f);
        Dropout.Apply(x, 0.2f, 99);
        int kept = x.Count(v => v != 0);
        Assert.InRange(kept / (double)x.Length, 0.79, 0.81);
        Assert.All(x.Where(v => v != 0), v => Assert.Equal(1.25f, v, 6));
        // Same seed, same mask (what the backward pass relies on); another seed, another mask.
        var again = new float[x.Length];
        again.AsSpan().Fill(1f);
        Dropout.Apply(again, 0.2f, 99);
        Assert.Equal(x, again);
        var other = new float[x.Length];
        other.AsSpan().Fill(1f);
        Dropout.Apply(other, 0.2f, 100);
        Assert.NotEqual(x, other);
    }
}
