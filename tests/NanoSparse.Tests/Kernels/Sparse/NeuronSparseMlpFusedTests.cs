using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The fused neuron-sparse MLP (up rows, activation, down rows in one region, partial sums per part) against a
/// double-precision MLP over the listed neurons only, with every other neuron's weights NaN (a skipped neuron must
/// contribute exactly nothing), at 1 and 2 threads (bit-identical: the parts depend on k alone).
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public sealed class NeuronSparseMlpFusedTests
{
    static int[] Neurons(Random r, int H, int k) => Enumerable.Range(0, H).OrderBy(_ => r.Next()).Take(k).Order().ToArray();

    static T OnThreads<T>(int threads, Func<T> run)
    {
        int saved = KernelThreads.Max;
        try { KernelThreads.Max = threads; return run(); }
        finally { KernelThreads.Max = saved; }
    }

    static double Activate(double v, NeuronActivation activation) => activation switch
    {
        NeuronActivation.Gelu => 0.5 * v * (1 + GeluTests.ErfReference(v / Math.Sqrt(2))),
        NeuronActivation.GeluTanh => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
        _ => Math.Max(v, 0),
    };

    [Theory]
    [InlineData(1, 1, 1, true, NeuronActivation.Gelu)]
    [InlineData(37, 50, 13, false, NeuronActivation.Relu)]     // C with a tail, one part with a 1-neuron tail
    [InlineData(48, 64, 64, true, NeuronActivation.GeluTanh)]  // every neuron, two parts
    [InlineData(64, 96, 0, true, NeuronActivation.Gelu)]       // no neuron: the bias alone
    [InlineData(256, 1024, 307, true, NeuronActivation.Gelu)]  // ten parts of 28 or 32, the last block of 3
    [InlineData(200, 1024, 600, false, NeuronActivation.Relu)] // fifteen parts of 40
    [InlineData(768, 3072, 307, true, NeuronActivation.Gelu)]  // GPT-2's MLP at 90%
    public void FusedMlpEqualsTheDoubleMlpOverTheListedNeurons(int C, int H, int k, bool bias, NeuronActivation activation)
    {
        var r = new Random(C * 11 + H + k);
        var x = GradCheck.RandomArray(r, C);
        var wFc = GradCheck.RandomArray(r, H * C, 1 / Math.Sqrt(C));
        var wProj = GradCheck.RandomArray(r, C * H, 1 / Math.Sqrt(H));   // c_proj (C, H) as PyTorch stores it
        var bFc = bias ? GradCheck.RandomArray(r, H) : [];
        var bProj = bias ? GradCheck.RandomArray(r, C) : [];
        var neurons = Neurons(r, H, k);
        var expected = new double[C];
        var expectedH = new double[k];
        for (int c = 0; c < C; c++) expected[c] = bias ? bProj[c] : 0;
        for (int i = 0; i < k; i++)
        {
            int j = neurons[i];
            double s = bias ? bFc[j] : 0;
            for (int c = 0; c < C; c++) s += (double)wFc[j * C + c] * x[c];
            expectedH[i] = Activate(s, activation);
            for (int c = 0; c < C; c++) expected[c] += expectedH[i] * wProj[c * H + j];
        }
        // every neuron not listed gets NaN weights in both products: any read of them would show
        var listed = new HashSet<int>(neurons);
        for (int j = 0; j < H; j++)
            if (!listed.Contains(j))
            {
                for (int c = 0; c < C; c++) { wFc[j * C + c] = float.NaN; wProj[c * H + j] = float.NaN; }
                if (bias) bFc[j] = float.NaN;
            }
        var down = new float[H * C];
        NeuronSparseMlp.NeuronMajor(wProj, down, C, H);
        (float[] Y, float[] H) Run()
        {
            var y = new float[C];
            var h = new float[k];
            var partials = new float[Math.Max(1, NeuronSparseMlp.Parts(k)) * C];
            y.AsSpan().Fill(float.NaN);
            partials.AsSpan().Fill(float.NaN);
            NeuronSparseMlp.Forward(y, h, partials, x, wFc, down, bFc, bProj, neurons, activation, C, H);
            return (y, h);
        }
        var one = OnThreads(1, Run);
        var two = OnThreads(2, Run);
        GradCheck.AssertClose(one.H, expectedH, 1e-6 * (1 + Math.Sqrt(C)), "h, 1 thread");
        GradCheck.AssertClose(one.Y, expected, 1e-6 * (1 + Math.Sqrt(k)), "y, 1 thread");
        Assert.Equal(one.Y, two.Y);
        Assert.Equal(one.H, two.H);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 1)]
    [InlineData(32, 1)]
    [InlineData(33, 2)]          // parts of 32 neurons or more
    [InlineData(307, 10)]
    [InlineData(600, 15)]        // 40 per part: at most 16 parts
    [InlineData(3072, 16)]
    [InlineData(50_000, 16)]
    public void PartsAreThirtyTwoNeuronsOrMoreAndAtMostSixteen(int k, int expected) =>
        Assert.Equal(expected, NeuronSparseMlp.Parts(k));

    [Fact]
    public void BadArgumentsAreRefusedByName()
    {
        int C = 4, H = 8;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => NeuronSparseMlp.Forward(new float[C], new float[2], new float[C], new float[C],
            new float[H * C], new float[H * C], default, default, [3, 8], NeuronActivation.Relu, C, H));
        Assert.Contains("index 1", e.Message);
        var p = Assert.Throws<ArgumentException>(() => NeuronSparseMlp.Forward(new float[C], new float[2], new float[C - 1], new float[C],
            new float[H * C], new float[H * C], default, default, [3, 5], NeuronActivation.Relu, C, H));
        Assert.Contains("partials", p.Message);
        var w = Assert.Throws<ArgumentException>(() => NeuronSparseMlp.Forward(new float[C], new float[2], new float[C], new float[C],
            new float[H * C - 1], new float[H * C], default, default, [3, 5], NeuronActivation.Relu, C, H));
        Assert.Contains("up", w.Message);
    }
}
