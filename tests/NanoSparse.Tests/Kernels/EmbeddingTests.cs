using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

public class EmbeddingTests
{
    [Fact]
    public void ForwardAddsRowsAndBackwardMatchesFiniteDifferences()
    {
        int B = 2, T = 3, C = 5, V = 4;
        var r = new Random(6);
        var wte = GradCheck.RandomArray(r, V * C);
        var wpe = GradCheck.RandomArray(r, T * C);
        int[] tokens = [1, 3, 1, 0, 1, 2];   // repeated tokens: their gradients must add up
        var o = new float[B * T * C];
        Embedding.Forward(o, tokens, wte, wpe, B, T, C);
        for (int n = 0; n < B * T; n++)
        for (int c = 0; c < C; c++)
            Assert.Equal(wte[tokens[n] * C + c] + wpe[n % T * C + c], o[n * C + c]);

        var dout = GradCheck.RandomArray(r, B * T * C);
        double Loss()
        {
            Embedding.Forward(o, tokens, wte, wpe, B, T, C);
            return GradCheck.WeightedSum(o, dout);
        }
        var dwte = new float[V * C];
        var dwpe = new float[T * C];
        Embedding.Backward(dwte, dwpe, dout, tokens, B, T, C);
        GradCheck.Assert("dwte", wte, dwte, Loss);
        GradCheck.Assert("dwpe", wpe, dwpe, Loss);
    }
}
