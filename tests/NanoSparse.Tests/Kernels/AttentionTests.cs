using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

[Collection(nameof(GemmCollection))]   // switches Attention.UseTiles, which Gpt's attention calls also read
public class AttentionTests
{
    /// <summary>Naive causal attention in double: softmax(q kᵀ/√hs masked) v, head by head.</summary>
    static double[] Reference(float[] qkv, int B, int T, int C, int NH)
    {
        int hs = C / NH;
        var y = new double[B * T * C];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++)
        {
            var s = new double[t + 1];
            double max = double.NegativeInfinity;
            for (int t2 = 0; t2 <= t; t2++)
            {
                double dot = 0;
                for (int i = 0; i < hs; i++)
                    dot += (double)qkv[(b * T + t) * 3 * C + h * hs + i] * qkv[(b * T + t2) * 3 * C + C + h * hs + i];
                s[t2] = dot / Math.Sqrt(hs);
                max = Math.Max(max, s[t2]);
            }
            double sum = 0;
            for (int t2 = 0; t2 <= t; t2++) sum += s[t2] = Math.Exp(s[t2] - max);
            for (int i = 0; i < hs; i++)
            {
                double acc = 0;
                for (int t2 = 0; t2 <= t; t2++) acc += s[t2] / sum * qkv[(b * T + t2) * 3 * C + 2 * C + h * hs + i];
                y[(b * T + t) * C + h * hs + i] = acc;
            }
        }
        return y;
    }

    [Theory]
    [InlineData(2, 5, 8, 2)]
    [InlineData(1, 17, 12, 3)]
    [InlineData(2, 150, 8, 2)]   // several query blocks of 64, the last one short
    [InlineData(2, 5, 32, 2)]    // head size 16: the register-tiled path, T not a multiple of 4
    [InlineData(1, 1, 16, 1)]    // tiled, one token
    [InlineData(1, 70, 64, 2)]   // tiled, head size 32, T past a vector of keys
    [InlineData(1, 150, 64, 1)]  // tiled, head size 64 (4-vector tiles)
    public void ForwardMatchesDoubleReference(int B, int T, int C, int NH)
    {
        var r = new Random(T * C);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.5);
        var y = new float[B * T * C];
        var lse = new float[B * NH * T];
        Attention.Forward(y, lse, qkv, B, T, C, NH);
        GradCheck.AssertClose(y, Reference(qkv, B, T, C, NH), 1e-5, "attention out");
    }

    [Theory]
    [InlineData(2, 5, 8, 2, 0f)]
    [InlineData(1, 6, 6, 3, 0f)]
    [InlineData(2, 5, 8, 2, 0.3f)]
    [InlineData(1, 140, 4, 2, 0f)]
    [InlineData(1, 130, 4, 1, 0.2f)]
    [InlineData(1, 7, 32, 2, 0f)]     // register-tiled heads (head size 16)
    [InlineData(2, 6, 32, 1, 0.3f)]   // tiled, head size 32, with dropout
    [InlineData(1, 37, 16, 1, 0f)]    // tiled, several key vectors, T not a multiple of 4
    public void BackwardMatchesFiniteDifferences(int B, int T, int C, int NH, float dropout)
    {
        var r = new Random(B + T + C);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.0);
        var dout = GradCheck.RandomArray(r, B * T * C);
        var y = new float[B * T * C];
        var lse = new float[B * NH * T];
        const ulong seed = 12345;   // the dropout mask is a function of the seed, so the loss is deterministic
        double Loss()
        {
            Attention.Forward(y, lse, qkv, B, T, C, NH, dropout, seed);
            return GradCheck.WeightedSum(y, dout);
        }
        Loss();
        var dqkv = new float[qkv.Length];
        dqkv.AsSpan().Fill(float.NaN);   // every element must be written
        Attention.Backward(dqkv, dout, qkv, lse, B, T, C, NH, dropout, seed);
        GradCheck.Assert("dqkv", qkv, dqkv, Loss, eps: 1e-3);
    }

    [Fact]
    public void DropoutZeroesSomeWeightsAndKeepsTheRestScaled()
    {
        int B = 1, T = 8, C = 4, NH = 1;
        var qkv = new float[B * T * 3 * C];
        // q = k = 0 gives uniform attention; v = 1 everywhere makes y[t] = (kept count) / (t + 1) / (1 - p).
        for (int t = 0; t < T; t++) for (int i = 0; i < C; i++) qkv[t * 3 * C + 2 * C + i] = 1f;
        var y = new float[B * T * C];
        var lse = new float[T];
        Attention.Forward(y, lse, qkv, B, T, C, NH, 0.5f, 7);
        bool anyDropped = false;
        for (int t = 0; t < T; t++)
        {
            double kept = y[t * C] * (t + 1) * 0.5;
            Assert.Equal(Math.Round(kept), kept, 4);
            if (kept < t + 1 - 0.5) anyDropped = true;
        }
        Assert.True(anyDropped);
    }

    [Theory]
    [InlineData(3, 67, 64, 2, 0f)]
    [InlineData(2, 64, 128, 4, 0f)]    // the baby preset's head shape
    [InlineData(1, 45, 192, 3, 0.2f)]  // head size 64 with dropout
    public void TiledHeadsMatchTheGeneralPath(int B, int T, int C, int NH, float dropout)
    {
        var r = new Random(T + C);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.5);
        var dout = GradCheck.RandomArray(r, B * T * C);
        (float[] Y, float[] Lse, float[] Dqkv) Run(bool tiles)
        {
            bool saved = Attention.UseTiles;
            Attention.UseTiles = tiles;
            try
            {
                var y = new float[B * T * C];
                var lse = new float[B * NH * T];
                var dqkv = new float[qkv.Length];
                dqkv.AsSpan().Fill(float.NaN);
                Attention.Forward(y, lse, qkv, B, T, C, NH, dropout, 99);
                Attention.Backward(dqkv, dout, qkv, lse, B, T, C, NH, dropout, 99);
                return (y, lse, dqkv);
            }
            finally { Attention.UseTiles = saved; }
        }
        var tiled = Run(true);
        var general = Run(false);
        GradCheck.AssertClose(tiled.Y, general.Y.Select(v => (double)v).ToArray(), 2e-5, "y");
        GradCheck.AssertClose(tiled.Lse, general.Lse.Select(v => (double)v).ToArray(), 2e-5, "lse");
        GradCheck.AssertClose(tiled.Dqkv, general.Dqkv.Select(v => (double)v).ToArray(), 2e-5, "dqkv");
    }

    [Theory]
    [InlineData(2, 6, 32, 1, 0f)]
    [InlineData(2, 6, 32, 1, 0.3f)]
    [InlineData(1, 37, 32, 2, 0f)]     // head size 16, T not a multiple of 8
    [InlineData(1, 21, 64, 1, 0.2f)]   // head size 64, dropout
    public void BackwardWithKeptProbabilitiesMatchesFiniteDifferences(int B, int T, int C, int NH, float dropout)
    {
        Assert.True(Attention.KeepsProbabilities(T, C, NH));
        var r = new Random(B * T + C);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.0);
        var dout = GradCheck.RandomArray(r, B * T * C);
        var y = new float[B * T * C];
        var lse = new float[B * NH * T];
        var probs = new float[Attention.ProbabilitiesLength(B, T, NH)];
        const ulong seed = 777;
        double Loss()
        {
            Attention.Forward(y, lse, qkv, B, T, C, NH, dropout, seed, 0, probs);
            return GradCheck.WeightedSum(y, dout);
        }
        Loss();
        var dqkv = new float[qkv.Length];
        dqkv.AsSpan().Fill(float.NaN);
        Attention.Backward(dqkv, dout, qkv, lse, B, T, C, NH, dropout, seed, 0, probs);
        GradCheck.Assert("dqkv", qkv, dqkv, Loss, eps: 1e-3);

        // and the same as recomputing the probabilities
        var recomputed = new float[qkv.Length];
        Attention.Backward(recomputed, dout, qkv, lse, B, T, C, NH, dropout, seed);
        GradCheck.AssertClose(dqkv, recomputed.Select(v => (double)v).ToArray(), 1e-5, "dqkv kept vs recomputed");
    }

    [Fact]
    public void ProbabilitiesAreKeptOnlyWhileNoLargerThanQkv()
    {
        Assert.True(Attention.KeepsProbabilities(64, 128, 4));    // baby: T 64 ≤ 3·32
        Assert.False(Attention.KeepsProbabilities(256, 384, 6));  // small: T 256 > 3·64
        Assert.False(Attention.KeepsProbabilities(8, 12, 3));     // head size 4: not tiled
        Assert.Equal(2L * 4 * 20 * 32, Attention.ProbabilitiesLength(2, 20, 4));
        var ex = Assert.Throws<ArgumentException>(() =>
            Attention.Forward(new float[40], new float[10], new float[120], 1, 10, 4, 1, probs: new float[5]));
        Assert.Contains("probs", ex.Message);
    }
}
