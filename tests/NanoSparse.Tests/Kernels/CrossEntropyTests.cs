using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

public class CrossEntropyTests
{
    [Theory]
    [InlineData(11)]   // shorter than a vector: the scalar loop
    [InlineData(32)]   // whole vectors
    [InlineData(37)]   // vectors and a masked tail
    [InlineData(85)]   // the Brown character vocabulary
    public void ForwardMatchesDoubleAndBackwardMatchesFiniteDifferences(int V)
    {
        int N = 6;
        var r = new Random(5);
        var logits = GradCheck.RandomArray(r, N * V, 4);
        var targets = Enumerable.Range(0, N).Select(i => r.Next(V)).ToArray();
        var losses = new float[N];
        var lse = new float[N];
        float loss = CrossEntropy.Forward(losses, lse, logits, targets, N, V);
        double expected = 0;
        for (int n = 0; n < N; n++)
        {
            double sum = 0;
            for (int v = 0; v < V; v++) sum += Math.Exp(logits[n * V + v]);
            expected += Math.Log(sum) - logits[n * V + targets[n]];
        }
        expected /= N;
        Assert.Equal(expected, loss, 5);

        double Loss() => CrossEntropy.Forward(losses, lse, logits, targets, N, V);
        var grad = (float[])logits.Clone();
        CrossEntropy.Forward(losses, lse, grad, targets, N, V);
        CrossEntropy.BackwardInPlace(grad, lse, targets, N, V);
        GradCheck.Assert("dlogits", logits, grad, Loss, eps: 1e-3, atol: 2e-4);
    }

    [Fact]
    public void SlicesOfABatchGiveTheWholeBatchsSumAndGradient()
    {
        int N = 7, V = 5, split = 3;
        var r = new Random(9);
        var logits = GradCheck.RandomArray(r, N * V, 3);
        var targets = Enumerable.Range(0, N).Select(i => r.Next(V)).ToArray();
        var whole = (float[])logits.Clone();
        var lse = new float[N];
        float mean = CrossEntropy.Forward(new float[N], lse, whole, targets, N, V);
        CrossEntropy.BackwardInPlace(whole, lse, targets, N, V);

        var parts = (float[])logits.Clone();
        var lse2 = new float[N];
        double sum = 0;
        foreach (var (start, count) in new[] { (0, split), (split, N - split) })
        {
            var slice = parts.AsSpan(start * V, count * V);
            sum += CrossEntropy.ForwardSum(new float[count], lse2.AsSpan(start, count), slice, targets.AsSpan(start, count), count, V);
            CrossEntropy.BackwardInPlace(slice, lse2.AsSpan(start, count), targets.AsSpan(start, count), count, V, meanOver: N);
        }
        Assert.Equal(mean, (float)(sum / N), 6);
        for (int i = 0; i < whole.Length; i++) Assert.Equal(whole[i], parts[i], 7);
    }

    [Fact]
    public void TargetOutsideVocabularyIsRejectedWithItsIndex()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            CrossEntropy.Forward(new float[2], new float[2], new float[6], [0, 3], 2, 3));
        Assert.Contains("index 1", ex.Message);
    }
}
