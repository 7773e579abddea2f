using NanoSparse.Kernels;
using NanoSparse.Optim;

namespace NanoSparse.Tests.Optim;

[Collection("KernelThreads")]
public sealed class AdamWTests
{
    /// <summary>torch.optim.AdamW's update, written out in double precision (torch/optim/adamw.py, single-tensor path).</summary>
    static void ReferenceStep(double[] p, double[] m, double[] v, ReadOnlySpan<float> g, bool[] decay, int t,
        double lr, double b1, double b2, double eps, double wd)
    {
        double bc1 = 1 - Math.Pow(b1, t), bc2 = 1 - Math.Pow(b2, t);
        for (int i = 0; i < p.Length; i++)
        {
            if (decay[i]) p[i] *= 1 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            double denom = Math.Sqrt(v[i]) / Math.Sqrt(bc2) + eps;
            p[i] -= lr / bc1 * m[i] / denom;
        }
    }

    static float[] Randn(Random r, int n, double scale)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((r.NextDouble() * 2 - 1) * scale);
        return a;
    }

    [Theory]
    [InlineData(37, 1)]          // scalar tail only
    [InlineData(1000, 1)]        // vector body + tail
    [InlineData(200_003, 2)]     // threaded path
    public void MatchesDoublePrecisionTorchFormulaOverSeveralSteps(int n, int threads)
    {
        int saved = KernelThreads.Max;
        KernelThreads.Max = threads;
        try
        {
            var r = new Random(n);
            // Three segments: decayed "matrix", non-decayed "bias", decayed remainder; the gap in between is not updated.
            int a = n / 3, b = n / 5;
            var segments = new[] { new AdamW.Segment(0, a, true), new AdamW.Segment(a, b, false), new AdamW.Segment(a + b, n - a - b - 3, true) };
            var decay = new bool[n];
            foreach (var s in segments) for (int i = s.Offset; i < s.Offset + s.Length; i++) decay[i] = s.Decay;
            var covered = new bool[n];
            foreach (var s in segments) for (int i = s.Offset; i < s.Offset + s.Length; i++) covered[i] = true;

            var p = Randn(r, n, 0.5);
            var pd = p.Select(x => (double)x).ToArray();
            var m = new double[n];
            var v = new double[n];
            var opt = new AdamW(n, segments, beta1: 0.9f, beta2: 0.95f, eps: 1e-8f, weightDecay: 0.1f);
            double[] lrs = [1e-3, 6e-4, 3e-3, 1e-4, 5e-4, 2e-3];
            for (int step = 1; step <= lrs.Length; step++)
            {
                var g = Randn(r, n, step == 3 ? 1e-4 : 1.0);   // one step with tiny gradients exercises eps
                opt.Step(p, g, (float)lrs[step - 1]);
                var gc = (float[])g.Clone();
                for (int i = 0; i < n; i++) if (!covered[i]) gc[i] = 0;
                var pBefore = (double[])pd.Clone();
                ReferenceStep(pd, m, v, gc, decay, step, (float)lrs[step - 1], 0.9f, 0.95f, 1e-8f, 0.1f);
                for (int i = 0; i < n; i++) if (!covered[i]) { pd[i] = pBefore[i]; m[i] = 0; v[i] = 0; }
            }
            Assert.Equal(lrs.Length, opt.StepCount);
            for (int i = 0; i < n; i++)
            {
                Assert.True(Math.Abs(p[i] - pd[i]) <= 1e-6 + 1e-5 * Math.Abs(pd[i]), $"p[{i}] = {p[i]}, reference {pd[i]}");
                Assert.True(Math.Abs(opt.M[i] - m[i]) <= 1e-6 + 1e-5 * Math.Abs(m[i]), $"m[{i}] = {opt.M[i]}, reference {m[i]}");
                Assert.True(Math.Abs(opt.V[i] - v[i]) <= 1e-7 + 1e-5 * Math.Abs(v[i]), $"v[{i}] = {opt.V[i]}, reference {v[i]}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void MatchesTorchAdamWTrajectoryFixture()
    {
        // tools/make_adamw_fixture.py: torch.optim.AdamW with nanoGPT's grouping, five steps, varying lr.
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "optim", "adamw.json")));
        var root = doc.RootElement;
        static float[] Floats(System.Text.Json.JsonElement e) => e.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();
        float[] Flat(string key) => root.GetProperty(key).EnumerateArray().SelectMany(Floats).ToArray();
        var decay = root.GetProperty("decay").EnumerateArray().Select(x => x.GetBoolean()).ToArray();
        var sizes = root.GetProperty("init").EnumerateArray().Select(x => x.GetArrayLength()).ToArray();
        var segments = new List<AdamW.Segment>();
        for (int i = 0, off = 0; i < sizes.Length; off += sizes[i], i++) segments.Add(new AdamW.Segment(off, sizes[i], decay[i]));
        var betas = Floats(root.GetProperty("betas"));
        var opt = new AdamW(sizes.Sum(), segments, betas[0], betas[1], (float)root.GetProperty("eps").GetDouble(), (float)root.GetProperty("weight_decay").GetDouble());
        var p = Flat("init");
        var lrs = root.GetProperty("lrs").EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();
        var grads = root.GetProperty("grads").EnumerateArray().ToArray();
        for (int step = 0; step < lrs.Length; step++)
            opt.Step(p, grads[step].EnumerateArray().SelectMany(Floats).ToArray(), lrs[step]);
        var final = Flat("final");
        var m = Flat("exp_avg");
        var v = Flat("exp_avg_sq");
        for (int i = 0; i < p.Length; i++)
        {
            Assert.True(Math.Abs(p[i] - final[i]) <= 1e-6f + 1e-5f * Math.Abs(final[i]), $"p[{i}] = {p[i]}, torch {final[i]}");
            Assert.True(Math.Abs(opt.M[i] - m[i]) <= 1e-7f + 1e-5f * Math.Abs(m[i]), $"m[{i}] = {opt.M[i]}, torch {m[i]}");
            Assert.True(Math.Abs(opt.V[i] - v[i]) <= 1e-9f + 1e-5f * Math.Abs(v[i]), $"v[{i}] = {opt.V[i]}, torch {v[i]}");
        }
    }

    [Fact]
    public void ResultIsBitIdenticalForOneAndTwoThreads()
    {
        int n = 300_001;
        float[] Run(int threads)
        {
            int saved = KernelThreads.Max;
            KernelThreads.Max = threads;
            try
            {
                var r = new Random(5);
                var p = Randn(r, n, 1);
                var opt = new AdamW(n, [new AdamW.Segment(0, 100_000, true), new AdamW.Segment(100_000, n - 100_000, false)], 0.9f, 0.99f, 1e-8f, 0.1f);
                for (int s = 0; s < 3; s++) opt.Step(p, Randn(r, n, 1), 1e-3f);
                return p;
            }
            finally { KernelThreads.Max = saved; }
        }
        Assert.Equal(Run(1), Run(2));
    }

    [Fact]
    public void WeightDecayAppliesOnlyToDecaySegments()
    {
        // Zero gradient: m = v = 0, so the Adam term is 0 and only decay moves p: p ← p·(1 − lr·wd).
        var p = new float[] { 1, 1, 1, 1 };
        var opt = new AdamW(4, [new AdamW.Segment(0, 2, true), new AdamW.Segment(2, 2, false)], weightDecay: 0.5f);
        opt.Step(p, new float[4], 0.1f);
        Assert.Equal(0.95f, p[0]);
        Assert.Equal(0.95f, p[1]);
        Assert.Equal(1f, p[2]);
        Assert.Equal(1f, p[3]);
    }

    [Fact]
    public void StepAllocatesNothingAfterWarmUp()
    {
        int n = 100_000;
        var p = new float[n];
        var g = new float[n];
        new Random(1).NextBytes(new byte[1]);
        for (int i = 0; i < n; i++) g[i] = i % 7 - 3;
        var opt = new AdamW(n, [new AdamW.Segment(0, n / 2, true), new AdamW.Segment(n / 2, n / 2, false)]);
        opt.Step(p, g, 1e-3f);
        Assert.Equal(0, Allocations.SteadyState(() => { for (int s = 0; s < 5; s++) opt.Step(p, g, 1e-3f); }));
    }

    [Fact]
    public void RejectsSegmentsOutsideTheBufferAndMismatchedLengths()
    {
        var e = Assert.Throws<ArgumentException>(() => new AdamW(10, [new AdamW.Segment(5, 6, true)]));
        Assert.Contains("[5, 11)", e.Message);
        var opt = new AdamW(10, [new AdamW.Segment(0, 10, true)]);
        Assert.Throws<ArgumentException>(() => opt.Step(new float[9], new float[10], 1e-3f));
    }
}
