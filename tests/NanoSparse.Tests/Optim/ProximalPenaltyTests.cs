using NanoSparse.Optim;

namespace NanoSparse.Tests.Optim;

public sealed class ProximalPenaltyTests
{
    [Fact]
    public void L1SoftThresholdsByLearningRateTimesLambda()
    {
        // lr·λ1 = 0.1·0.5 = 0.05: |w| ≤ 0.05 → 0, else shrunk by 0.05 toward 0 (hand computation).
        var w = new float[] { 0.3f, -0.3f, 0.05f, -0.04f, 0f, 1f, -0.0500001f };
        new ProximalPenalty(0.5f, 0).Apply(w, 0.1f);
        Assert.Equal(0.25f, w[0], 6);
        Assert.Equal(-0.25f, w[1], 6);
        Assert.Equal(0f, w[2]);
        Assert.Equal(0f, w[3]);
        Assert.Equal(0f, w[4]);
        Assert.Equal(0.95f, w[5], 6);
        Assert.True(w[6] <= 0 && w[6] > -1e-6f);
        Assert.Equal(0, BitConverter.SingleToInt32Bits(w[3]));   // exactly +0, not −0
    }

    [Fact]
    public void ElasticNetAlsoDividesByOnePlusLearningRateTimesLambda2()
    {
        // prox of λ1|w| + λ2/2·w² with step lr: sign(w)·max(|w| − lr·λ1, 0)/(1 + lr·λ2); lr = 0.2, λ1 = 1, λ2 = 2.
        var w = new float[] { 1.0f, -0.5f, 0.1f };
        new ProximalPenalty(1f, 2f).Apply(w, 0.2f);
        Assert.Equal((1.0 - 0.2) / 1.4, w[0], 6);
        Assert.Equal(-(0.5 - 0.2) / 1.4, w[1], 6);
        Assert.Equal(0f, w[2]);
    }

    [Fact]
    public void IsTheMinimiserOfTheProximalObjective()
    {
        // argmin_u ½(u − w)² + lr·(λ1|u| + λ2/2·u²), checked on a fine grid (brute force).
        float lr = 0.3f, l1 = 0.7f, l2 = 1.5f;
        foreach (float w0 in new[] { -1.3f, -0.2f, 0.15f, 0.9f, 2.5f })
        {
            var w = new[] { w0 };
            new ProximalPenalty(l1, l2).Apply(w, lr);
            double best = double.MaxValue, argmin = 0;
            for (double u = -3; u <= 3; u += 1e-4)
            {
                double f = 0.5 * (u - w0) * (u - w0) + lr * (l1 * Math.Abs(u) + l2 / 2 * u * u);
                if (f < best) { best = f; argmin = u; }
            }
            Assert.Equal(argmin, w[0], 3);
        }
    }
}
