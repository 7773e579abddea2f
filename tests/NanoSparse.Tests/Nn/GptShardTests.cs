using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn;

/// <summary>
/// With several threads, Gpt runs each slice of the batch's sequences as a whole pass on its own thread (data-parallel
/// shards). These tests check the sharded passes against the one-thread pass over the whole batch, which is the
/// plain layer-by-layer reference (itself checked against finite differences and PyTorch elsewhere).
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class GptShardTests
{
    static GptConfig Config(float dropout) =>
        new() { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 9, VocabSize = 13, Bias = true, Dropout = dropout };

    sealed record Pass(float Loss, float[] Logits, float[] Grads);

    static Pass Run(int threads, int B, int T, float dropout, int steps = 1)
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = threads;
            var gpt = new Gpt(Config(dropout), B, T);
            gpt.InitializeWeights(11);
            var r = new Random(12);
            var tokens = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
            var targets = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
            float loss = 0;
            float[] logits = [];
            gpt.ZeroGrad();
            for (int s = 0; s < steps; s++)   // several micro-batches accumulate into the same gradients
            {
                loss = gpt.Forward(tokens, targets, training: true);
                logits = gpt.Logits.ToArray();
                gpt.Backward();
            }
            return new Pass(loss, logits, gpt.GradientData.ToArray());
        }
        finally { KernelThreads.Max = saved; }
    }

    static void Close(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5f * scale + 1e-5f * Math.Abs(expected[i]),
                $"{what}[{i}]: one thread {expected[i]}, sharded {actual[i]}");
    }

    [Theory]
    [InlineData(2, 4, 0f)]
    [InlineData(2, 4, 0.2f)]   // dropout masks are indexed over the whole batch: the same with and without shards
    [InlineData(3, 5, 0.2f)]   // uneven slices (2, 1, 2 sequences)
    [InlineData(2, 3, 0f)]
    public void ShardedPassMatchesTheWholeBatchPass(int threads, int B, float dropout)
    {
        int T = 7;
        var whole = Run(1, B, T, dropout, steps: 2);
        var sharded = Run(threads, B, T, dropout, steps: 2);
        Assert.Equal(whole.Loss, sharded.Loss, 5);
        Close(whole.Logits, sharded.Logits, "logits");
        Close(whole.Grads, sharded.Grads, "gradient");
    }

    [Fact]
    public void ShardedPassIsBitIdenticalFromRunToRun()
    {
        var first = Run(2, 4, 7, 0.2f, steps: 2);
        var second = Run(2, 4, 7, 0.2f, steps: 2);
        Assert.Equal(first.Loss, second.Loss);
        Assert.Equal(first.Grads, second.Grads);
    }

    [Fact]
    public void BadTokenIsReportedWithItsPositionInTheWholeBatch()
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = 2;
            var gpt = new Gpt(Config(0f), 2, 3);
            gpt.InitializeWeights(1);
            var ex = Assert.Throws<ArgumentOutOfRangeException>(() => gpt.Forward([1, 2, 3, 4, 13, 5], [], false));
            Assert.Contains("index 4", ex.Message);
            // -1 is CrossEntropy.IgnoreTarget (no loss at that position); -2 is out of range
            var targets = Assert.Throws<ArgumentOutOfRangeException>(() => gpt.Forward([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, -2], true));
            Assert.Contains("target at index 5", targets.Message);
            // the model still works after the rejected calls
            Assert.True(float.IsFinite(gpt.Forward([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1], true)));
        }
        finally { KernelThreads.Max = saved; }
    }
}
