using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels.Sparse;

[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public sealed class NeuronSparseMlpTests
{
    static int[] Neurons(Random r, int H, int k) => Enumerable.Range(0, H).OrderBy(_ => r.Next()).Take(k).Order().ToArray();

    static T OnThreads<T>(int threads, Func<T> run)
    {
        int saved = KernelThreads.Max;
        try { KernelThreads.Max = threads; return run(); }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(1, 1, 1, true)]
    [InlineData(37, 50, 13, false)]       // C with a tail, k not a multiple of 4
    [InlineData(48, 64, 64, true)]        // every neuron
    [InlineData(256, 1024, 307, true)]    // medium's MLP at 70% sparsity: enough work for two threads
    [InlineData(768, 3072, 300, false)]   // GPT-2's at 90%
    public void UpProjectionEqualsTheDoubleProductOverTheListedRows(int C, int H, int k, bool bias)
    {
        var r = new Random(C * 7 + H + k);
        var x = GradCheck.RandomArray(r, C);
        var w = GradCheck.RandomArray(r, H * C);
        var b = bias ? GradCheck.RandomArray(r, H) : [];
        var neurons = Neurons(r, H, k);
        var expected = new double[k];
        for (int i = 0; i < k; i++)
        {
            double s = bias ? b[neurons[i]] : 0;
            for (int c = 0; c < C; c++) s += (double)w[neurons[i] * C + c] * x[c];
            expected[i] = s;
        }
        float[] Run() { var h = new float[k]; NeuronSparseMlp.UpProject(h, x, w, b, neurons, C, H); return h; }
        var one = OnThreads(1, Run);
        var two = OnThreads(2, Run);
        GradCheck.AssertClose(one, expected, 1e-6 * (C + 2), "up 1 thread");
        Assert.Equal(one, two);
    }

    [Theory]
    [InlineData(1, 1, 1, true)]
    [InlineData(200, 50, 13, false)]      // one full 128-column tile and a partial one
    [InlineData(128, 64, 0, true)]        // no neuron: the bias alone
    [InlineData(256, 1024, 512, true)]    // medium at 50%
    [InlineData(768, 3072, 300, true)]    // GPT-2 at 90%
    public void DownProjectionEqualsTheDoubleSumOverTheActiveNeurons(int C, int H, int k, bool bias)
    {
        var r = new Random(C * 5 + H + k);
        var wProj = GradCheck.RandomArray(r, C * H);   // c_proj (C, H) as PyTorch stores it
        var hk = GradCheck.RandomArray(r, k);
        var b = bias ? GradCheck.RandomArray(r, C) : [];
        var neurons = Neurons(r, H, k);
        var expected = new double[C];
        for (int c = 0; c < C; c++)
        {
            double s = bias ? b[c] : 0;
            for (int i = 0; i < k; i++) s += (double)hk[i] * wProj[c * H + neurons[i]];
            expected[c] = s;
        }
        var wT = new float[H * C];
        NeuronSparseMlp.NeuronMajor(wProj, wT, C, H);
        float[] Run() { var y = new float[C]; y.AsSpan().Fill(float.NaN); NeuronSparseMlp.DownProject(y, hk, wT, b, neurons, C, H); return y; }
        var one = OnThreads(1, Run);
        var two = OnThreads(2, Run);
        GradCheck.AssertClose(one, expected, 1e-6 * (k + 2), "down 1 thread");
        Assert.Equal(one, two);
    }

    [Fact]
    public void ANeuronOutsideTheHiddenWidthIsRefusedByIndex()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            NeuronSparseMlp.UpProject(new float[2], new float[4], new float[8 * 4], default, [3, 8], 4, 8));
        Assert.Contains("index 1", e.Message);
        Assert.Contains("[0, 8)", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            NeuronSparseMlp.DownProject(new float[4], new float[1], new float[8 * 4], default, [-1], 4, 8));
    }
}
