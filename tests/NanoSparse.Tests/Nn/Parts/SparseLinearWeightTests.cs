using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// Every sparse Linear weight layout against a masked-dense reference written here in double precision: forward
/// (with and without bias and residual), dx (with and without dxScale, and aliasing x), dValues and dBias (both
/// accumulated), for rows 1, 3, 13, 40 and 64 (13: transposes with partial 8×8 tiles; 40 in panels of 16: a padded
/// last panel) on one and two threads; central finite differences on a tiny case; ToDense
/// round trips. A layout is one line in <see cref="Layouts"/> plus its case in <see cref="Make"/>.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class SparseLinearWeightTests
{
    public static TheoryData<string> Layouts => ["csr", "nm2:4", "nm1:4", "nm2:8", "nm4:8", "bsr4x8", "bsr1x16", "bsr16x4"];

    /// <summary>
    /// The layout named <paramref name="layout"/> built from a random dense (Out × In) matrix whose zeros follow that
    /// layout's pattern rules, the dense matrix itself (the reference), and the values in the layout's order.
    /// </summary>
    internal static (ILinearWeight Weight, float[] Values, float[] Dense) Make(string layout, int outFeatures, int inFeatures, ulong seed)
    {
        var rng = new Rng(seed);
        var dense = new float[outFeatures * inFeatures];
        switch (layout)
        {
            case "csr":
            {
                for (int i = 0; i < dense.Length; i++)
                    if (rng.NextDouble() < 0.3) dense[i] = Nonzero(rng);
                var (w, values) = CsrLinearWeight.FromDense(outFeatures, inFeatures, dense);
                return (w, values, dense);
            }
            case "nm2:4" or "nm1:4" or "nm2:8" or "nm4:8":
            {
                int n = layout[2] - '0', m = layout[4] - '0';
                // Exactly N nonzeros per group of M, at random positions.
                for (int g0 = 0; g0 < dense.Length; g0 += m)
                    for (int kept = 0; kept < n;)
                    {
                        int j = rng.NextInt(m);
                        if (dense[g0 + j] == 0) { dense[g0 + j] = Nonzero(rng); kept++; }
                    }
                var (w, values) = NmLinearWeight.FromDense(outFeatures, inFeatures, n, m, dense);
                return (w, values, dense);
            }
            case "bsr4x8" or "bsr1x16" or "bsr16x4":
            {
                var shape = layout[3..].Split('x');
                int r = int.Parse(shape[0]), c = int.Parse(shape[1]);
                // A random third of the blocks, every element of a stored block nonzero.
                for (int b = 0; b < outFeatures / r; b++)
                    for (int k = 0; k < inFeatures / c; k++)
                        if (rng.NextDouble() < 0.35 || (b == 0 && k == 0))
                            for (int i = 0; i < r; i++)
                                for (int j = 0; j < c; j++)
                                    dense[(b * r + i) * inFeatures + k * c + j] = Nonzero(rng);
                var (w, values) = BsrLinearWeight.FromDense(outFeatures, inFeatures, r, c, dense);
                return (w, values, dense);
            }
            default: throw new ArgumentException($"unknown layout {layout}");
        }
    }

    static float Nonzero(Rng rng)
    {
        float v = (float)rng.NextGaussian();
        return v == 0 ? 0.5f : v;
    }

    static float[] RandomArray(Rng rng, int length)
    {
        var a = new float[length];
        for (int i = 0; i < length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>Position (o·In + j) of each stored value, found through ToDense of the values 1..StoredCount.</summary>
    static int[] Positions(ILinearWeight w)
    {
        var marks = new float[w.StoredCount];
        for (int p = 0; p < marks.Length; p++) marks[p] = p + 1;
        var dense = new float[w.OutFeatures * w.InFeatures];
        w.ToDense(marks, dense);
        var positions = new int[w.StoredCount];
        Array.Fill(positions, -1);
        for (int i = 0; i < dense.Length; i++)
            if (dense[i] != 0) positions[(int)dense[i] - 1] = i;
        Assert.DoesNotContain(-1, positions);
        return positions;
    }

    static void Close(ReadOnlySpan<float> actual, double[] expected, double[] scale, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-5 * scale[i] + 1e-6,
                $"{what}[{i}]: {actual[i]:g9}, reference {expected[i]:g9} (Σ|terms| {scale[i]:g4})");
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ForwardAndBackwardMatchMaskedDenseReference(string layout)
    {
        const int outFeatures = 48, inFeatures = 64;
        var (w, values, dense) = Make(layout, outFeatures, inFeatures, 11);
        var positions = Positions(w);
        int saved = KernelThreads.Max, savedPanel = FeatureMajor.PanelRows;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int panel in new[] { 256, 16 })
            foreach (int rows in new[] { 1, 3, 13, 40, 64 })
            foreach (bool extras in new[] { false, true })
            foreach (bool alias in new[] { false, true })
            {
                KernelThreads.Max = threads;
                FeatureMajor.PanelRows = panel;
                string at = $"{layout}, {threads} threads, panels of {panel} rows, rows {rows}, bias/residual/dxScale {extras}, dx aliasing x {alias}";
                var rng = new Rng((ulong)(rows * 7 + threads + (extras ? 100 : 0) + (alias ? 1000 : 0)));
                var x = RandomArray(rng, rows * inFeatures);
                var bias = extras ? RandomArray(rng, outFeatures) : [];
                var residual = extras ? RandomArray(rng, rows * outFeatures) : [];
                var dy = RandomArray(rng, rows * outFeatures);
                var dxScale = extras ? RandomArray(rng, rows * inFeatures) : [];
                var dValues = RandomArray(rng, w.StoredCount);
                var dBias = extras ? RandomArray(rng, outFeatures) : [];
                var workspace = new float[w.WorkspaceFloats(rows)];
                Array.Fill(workspace, float.NaN);   // a layout must not read scratch it did not write

                var expectedY = new double[rows * outFeatures];
                var scaleY = new double[rows * outFeatures];
                var expectedDx = new double[rows * inFeatures];
                var scaleDx = new double[rows * inFeatures];
                for (int t = 0; t < rows; t++)
                    for (int o = 0; o < outFeatures; o++)
                    {
                        double sum = 0, abs = 0;
                        for (int j = 0; j < inFeatures; j++)
                        {
                            double term = (double)dense[o * inFeatures + j] * x[t * inFeatures + j];
                            sum += term; abs += Math.Abs(term);
                        }
                        if (extras) { sum += bias[o] + residual[t * outFeatures + o]; abs += Math.Abs(bias[o]) + Math.Abs(residual[t * outFeatures + o]); }
                        expectedY[t * outFeatures + o] = sum;
                        scaleY[t * outFeatures + o] = abs;
                    }
                for (int t = 0; t < rows; t++)
                    for (int j = 0; j < inFeatures; j++)
                    {
                        double sum = 0, abs = 0;
                        for (int o = 0; o < outFeatures; o++)
                        {
                            double term = (double)dy[t * outFeatures + o] * dense[o * inFeatures + j];
                            sum += term; abs += Math.Abs(term);
                        }
                        double s = extras ? dxScale[t * inFeatures + j] : 1;
                        expectedDx[t * inFeatures + j] = sum * s;
                        scaleDx[t * inFeatures + j] = abs * Math.Abs(s);
                    }
                var expectedDv = new double[w.StoredCount];
                var scaleDv = new double[w.StoredCount];
                for (int p = 0; p < w.StoredCount; p++)
                {
                    int o = positions[p] / inFeatures, j = positions[p] % inFeatures;
                    double sum = dValues[p], abs = Math.Abs(dValues[p]);
                    for (int t = 0; t < rows; t++)
                    {
                        double term = (double)dy[t * outFeatures + o] * x[t * inFeatures + j];
                        sum += term; abs += Math.Abs(term);
                    }
                    expectedDv[p] = sum;
                    scaleDv[p] = abs;
                }
                var expectedDb = new double[extras ? outFeatures : 0];
                var scaleDb = new double[expectedDb.Length];
                for (int o = 0; o < expectedDb.Length; o++)
                {
                    double sum = dBias[o], abs = Math.Abs(dBias[o]);
                    for (int t = 0; t < rows; t++) { sum += dy[t * outFeatures + o]; abs += Math.Abs(dy[t * outFeatures + o]); }
                    expectedDb[o] = sum;
                    scaleDb[o] = abs;
                }

                var y = new float[rows * outFeatures];
                w.Forward(y, x, values, bias, residual, rows, workspace);
                Close(y, expectedY, scaleY, $"y ({at})");

                var xCopy = (float[])x.Clone();
                var dx = alias ? x : new float[rows * inFeatures];
                w.Backward(dx, dValues, dBias, dy, x, values, dxScale, rows, workspace);
                Close(dx, expectedDx, scaleDx, $"dx ({at})");
                Close(dValues, expectedDv, scaleDv, $"dValues ({at})");
                if (extras) Close(dBias, expectedDb, scaleDb, $"dBias ({at})");
                if (!alias) Assert.Equal(xCopy, x);
            }
        }
        finally { KernelThreads.Max = saved; FeatureMajor.PanelRows = savedPanel; }
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ForwardAndBackwardAllocateNothingAfterWarmUp(string layout)
    {
        var (w, values, _) = Make(layout, 48, 64, 31);
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int rows in new[] { 1, 40 })
            {
                KernelThreads.Max = threads;
                var rng = new Rng(3);
                var x = RandomArray(rng, rows * 64);
                var dy = RandomArray(rng, rows * 48);
                var y = new float[rows * 48];
                var dx = new float[rows * 64];
                var dValues = new float[w.StoredCount];
                var dBias = new float[48];
                var bias = RandomArray(rng, 48);
                var workspace = new float[w.WorkspaceFloats(rows)];
                void Step()
                {
                    w.Forward(y, x, values, bias, y, rows, workspace);
                    w.Backward(dx, dValues, dBias, dy, x, values, x, rows, workspace);
                }
                Step();
                Assert.Equal(0, Allocations.SteadyState(Step));
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ResidualMayBeTheOutputItself(string layout)
    {
        const int outFeatures = 48, inFeatures = 64;
        var (w, values, _) = Make(layout, outFeatures, inFeatures, 5);
        foreach (int rows in new[] { 1, 3, 64 })
        {
            var rng = new Rng((ulong)rows);
            var x = RandomArray(rng, rows * inFeatures);
            var residual = RandomArray(rng, rows * outFeatures);
            var workspace = new float[w.WorkspaceFloats(rows)];
            var expected = new float[rows * outFeatures];
            w.Forward(expected, x, values, [], residual, rows, workspace);
            var y = (float[])residual.Clone();
            w.Forward(y, x, values, [], y, rows, workspace);
            Assert.Equal(expected, y);
        }
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void GradientsMatchFiniteDifferences(string layout)
    {
        const int outFeatures = 16, inFeatures = 16, rows = 3;
        var (w, values, _) = Make(layout, outFeatures, inFeatures, 3);
        var rng = new Rng(17);
        var x = RandomArray(rng, rows * inFeatures);
        var bias = RandomArray(rng, outFeatures);
        var lossWeights = RandomArray(rng, rows * outFeatures);
        var workspace = new float[w.WorkspaceFloats(rows)];
        var y = new float[rows * outFeatures];
        double Loss()
        {
            w.Forward(y, x, values, bias, [], rows, workspace);
            return GradCheck.WeightedSum(y, lossWeights);
        }
        var dx = new float[rows * inFeatures];
        var dValues = new float[w.StoredCount];
        var dBias = new float[outFeatures];
        w.Backward(dx, dValues, dBias, lossWeights, x, values, [], rows, workspace);
        GradCheck.Assert($"{layout} dValues", values, dValues, Loss);
        GradCheck.Assert($"{layout} dx", x, dx, Loss);
        GradCheck.Assert($"{layout} dBias", bias, dBias, Loss);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ToDenseReturnsTheDenseMatrixItWasBuiltFrom(string layout)
    {
        var (w, values, dense) = Make(layout, 48, 64, 23);
        var back = new float[dense.Length];
        w.ToDense(values, back);
        Assert.Equal(dense, back);
        Assert.Equal(layout[..Math.Min(3, layout.Length)].TrimEnd('2', '1', '4'), w.Layout);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void WrongBufferSizesAreRejectedNamingTheBuffer(string layout)
    {
        var (w, values, _) = Make(layout, 48, 64, 29);
        const int rows = 3;
        var x = new float[rows * 64];
        var y = new float[rows * 48];
        var workspace = new float[w.WorkspaceFloats(rows)];
        var e = Assert.ThrowsAny<ArgumentException>(() => w.Forward(y, x, values.AsSpan(1), [], [], rows, workspace));
        Assert.Contains("values", e.Message);
        Assert.Contains(w.StoredCount.ToString(), e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => w.Forward(y, x.AsSpan(1), values, [], [], rows, workspace));
        Assert.Contains("x has", e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => w.Forward(y, x, values, new float[47], [], rows, workspace));
        Assert.Contains("bias", e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => w.Backward(x, new float[w.StoredCount + 1], [], y, x, values, [], rows, workspace));
        Assert.Contains("dValues", e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => w.Backward(x, new float[w.StoredCount], [], y, x, values, [], rows, workspace.AsSpan(1)));
        Assert.Contains("workspace", e.Message);
        var d = new float[48 * 64];
        e = Assert.ThrowsAny<ArgumentException>(() => w.ToDense(values.AsSpan(0, values.Length - 1), d));
        Assert.Contains("values", e.Message);
        Assert.StartsWith($"{w.Layout} weight", e.Message);
    }
}
