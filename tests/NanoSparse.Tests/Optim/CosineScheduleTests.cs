using NanoSparse.Optim;

namespace NanoSparse.Tests.Optim;

public sealed class CosineScheduleTests
{
    // nanoGPT get_lr with learning_rate 6e-4, min_lr 6e-5, warmup_iters 10, lr_decay_iters 110, values worked by hand:
    //   warm-up: 6e-4·(it+1)/11;  it = 60 is half-way through the decay: 6e-5 + 0.5·(5.4e-4) = 3.3e-4;
    //   it = 35 is a quarter: coeff = ½(1 + cos(π/4)) = 0.85355339; lr = 6e-5 + 0.85355339·5.4e-4 = 5.2091883e-4.
    [Theory]
    [InlineData(0, 5.4545454545e-5)]
    [InlineData(4, 2.7272727273e-4)]
    [InlineData(9, 5.4545454545e-4)]
    [InlineData(10, 6e-4)]
    [InlineData(35, 5.2091883092e-4)]
    [InlineData(60, 3.3e-4)]
    [InlineData(85, 1.3908116908e-4)]
    [InlineData(110, 6e-5)]
    [InlineData(111, 6e-5)]
    [InlineData(100000, 6e-5)]
    public void FollowsNanoGptGetLr(int iter, double expected)
    {
        var s = new CosineSchedule(6e-4, 6e-5, 10, 110);
        Assert.Equal(expected, s.At(iter), 12);
    }

    [Fact]
    public void ConstantWhenDecayIsOff()
    {
        var s = new CosineSchedule(1e-3, 1e-4, 100, 0, decay: false);
        Assert.Equal(1e-3, s.At(0));
        Assert.Equal(1e-3, s.At(5000));
    }

    [Fact]
    public void DecayMustEndAfterWarmUp()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new CosineSchedule(1e-3, 1e-4, 100, 100));
        Assert.Contains("lr_decay_iters (100)", e.Message);
    }
}
