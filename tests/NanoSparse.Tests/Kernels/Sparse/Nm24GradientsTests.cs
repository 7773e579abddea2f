using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The 2:4 gradient kernels against double-precision references written here: the input gradient (with and without
/// dxScale) against the masked-dense product (the weight gradient's cases are on its test): rows around the 128-token panel (1, 13, 127, 128, 129, 260), In of 8, 12 and 20 (odd group counts among
/// them), 68 and 200, Out around the 64-output blocks (1, 5, 63, 64, 65, 130), one and two threads.
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class Nm24GradientsTests
{
    /// <summary>A random 2:4 W: dense (Out × In, zeros off the pattern), values (Out × In/2) and in-group indices.</summary>
    static (float[] Dense, float[] Values, int[] Index) Pattern(int outFeatures, int inFeatures, Rng rng)
    {
        int groups = inFeatures / 4;
        var dense = new float[outFeatures * inFeatures];
        var values = new float[outFeatures * groups * 2];
        var index = new int[values.Length];
        for (int o = 0; o < outFeatures; o++)
            for (int g = 0; g < groups; g++)
            {
                int i0 = rng.NextInt(4), i1 = rng.NextInt(3);
                if (i1 >= i0) i1++;
                if (i1 < i0) (i0, i1) = (i1, i0);
                int q = (o * groups + g) * 2;
                index[q] = i0; index[q + 1] = i1;
                values[q] = (float)(rng.NextDouble() * 2 - 1);
                values[q + 1] = (float)(rng.NextDouble() * 2 - 1);
                dense[o * inFeatures + 4 * g + i0] = values[q];
                dense[o * inFeatures + 4 * g + i1] = values[q + 1];
            }
        return (dense, values, index);
    }

    // The same random inputs and tolerance as NmLinearTests.
    static float[] RandomArray(Rng rng, int length) => NmLinearTests.RandomArray(rng, length);
    static void Close(ReadOnlySpan<float> actual, double[] expected, double[] abs, string what) => NmLinearTests.Close(actual, expected, abs, what);

    /// <summary>(dy · dense) ⊙ scale (or unscaled when scale is empty) in double, and each output's Σ|terms|·|scale|.</summary>
    static (double[] Expected, double[] Abs) InputGradientReference(float[] dy, float[] dense, float[] scale, int rows, int inFeatures, int outFeatures)
    {
        var expected = new double[rows * inFeatures];
        var abs = new double[expected.Length];
        for (int t = 0; t < rows; t++)
            for (int k = 0; k < inFeatures; k++)
            {
                double sum = 0, a = 0;
                for (int o = 0; o < outFeatures; o++)
                {
                    double term = (double)dy[t * outFeatures + o] * dense[o * inFeatures + k];
                    sum += term; a += Math.Abs(term);
                }
                double s = scale.Length > 0 ? scale[t * inFeatures + k] : 1;
                expected[t * inFeatures + k] = sum * s;
                abs[t * inFeatures + k] = a * Math.Abs(s);
            }
        return (expected, abs);
    }

    /// <summary>dValues + Σ_t dy[t, o] · x[t, input of the slot] for every stored slot, in double, and each one's Σ|terms|.</summary>
    static (double[] Expected, double[] Abs) WeightGradientReference(float[] dy, float[] x, float[] dValues, int[] index, int rows, int inFeatures, int outFeatures)
    {
        int groups = inFeatures / 4;
        var expected = new double[dValues.Length];
        var abs = new double[dValues.Length];
        for (int o = 0; o < outFeatures; o++)
            for (int q = 0; q < 2 * groups; q++)
            {
                int slot = o * 2 * groups + q, input = q / 2 * 4 + index[slot];
                double sum = dValues[slot], a = Math.Abs(dValues[slot]);
                for (int t = 0; t < rows; t++)
                {
                    double term = (double)dy[t * outFeatures + o] * x[t * inFeatures + input];
                    sum += term; a += Math.Abs(term);
                }
                expected[slot] = sum;
                abs[slot] = a;
            }
        return (expected, abs);
    }

    public static TheoryData<int, int> Shapes => new()
    {
        { 8, 1 }, { 8, 63 }, { 12, 5 }, { 12, 64 }, { 20, 65 }, { 68, 63 }, { 68, 130 }, { 200, 5 }, { 200, 65 },
        // 67,080 stored values: the class-order copy of the values runs one 64-output block per work item.
        { 1032, 130 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void InputGradientEqualsMaskedDenseDoubleReference(int inFeatures, int outFeatures)
    {
        if (!Nm24Gradients.Supported) return;
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int rows in new[] { 1, 13, 127, 128, 129, 260 })
            foreach (bool scaled in new[] { false, true })
            {
                KernelThreads.Max = threads;
                var rng = new Rng((ulong)(inFeatures * 1000 + outFeatures * 10 + rows + (scaled ? 7 : 0)));
                var (dense, values, index) = Pattern(outFeatures, inFeatures, rng);
                var kernel = new Nm24Gradients(outFeatures, inFeatures, q => index[q]);
                var dy = RandomArray(rng, rows * outFeatures);
                var scale = scaled ? RandomArray(rng, rows * inFeatures) : [];
                var (expected, abs) = InputGradientReference(dy, dense, scale, rows, inFeatures, outFeatures);
                var workspace = new float[kernel.InputGradientWorkspaceFloats(rows)];
                Array.Fill(workspace, float.NaN);
                var dx = RandomArray(rng, rows * inFeatures);   // overwritten, not accumulated
                kernel.InputGradient(dy, rows, values, scale, dx, workspace);
                Close(dx, expected, abs, $"dx (In {inFeatures}, Out {outFeatures}, rows {rows}, {threads} threads, scaled {scaled})");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// The weight gradient on the same class lists: dValues (random to start: the kernel adds) + Σ_t dy[t, o] ·
    /// x[t, input of the slot], against a double-precision sum over the tokens; rows around the 256-token panel (one,
    /// two and three panels, a short last one), every shape above (class lists of every length mod 4), one and two
    /// threads, with both panel widths a host may use (256 and 128 tokens: up to five panels). The workspace starts as
    /// NaN, so a first panel that added to it instead of storing would show.
    /// </summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void WeightGradientEqualsDoubleReference(int inFeatures, int outFeatures)
    {
        if (!Nm24Gradients.Supported) return;
        int saved = KernelThreads.Max;
        try
        {
            foreach (int panelRows in new[] { 256, 128 })
            foreach (int threads in new[] { 1, 2 })
            foreach (int rows in new[] { 1, 13, 255, 256, 257, 600 })
            {
                if (inFeatures * outFeatures > 100_000 && rows != 257) continue;   // the largest shape once (the reference is slow)
                KernelThreads.Max = threads;
                var rng = new Rng((ulong)(inFeatures * 1000 + outFeatures * 10 + rows + 3));
                var (_, values, index) = Pattern(outFeatures, inFeatures, rng);
                var kernel = new Nm24Gradients(outFeatures, inFeatures, q => index[q]) { GradientPanelRows = panelRows };
                var dy = RandomArray(rng, rows * outFeatures);
                var x = RandomArray(rng, rows * inFeatures);
                var dValues = RandomArray(rng, values.Length);
                var (expected, abs) = WeightGradientReference(dy, x, dValues, index, rows, inFeatures, outFeatures);
                var workspace = new float[kernel.WeightGradientWorkspaceFloats(rows)];
                Array.Fill(workspace, float.NaN);
                kernel.WeightGradient(dy, x, rows, dValues, workspace);
                Close(dValues, expected, abs, $"dValues (In {inFeatures}, Out {outFeatures}, rows {rows}, {threads} threads, {panelRows}-token panels)");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// The one-pass backward (both gradients per class row, one thread): against the double-precision references of
    /// both gradients, and bit for bit against WeightGradient (128-token panels) then InputGradient on the same
    /// inputs; every shape above, rows around the 128-token panel, with and without dxScale, dx a buffer of its own or
    /// x itself, dValues random to start (the kernel adds), the workspace NaN to start.
    /// </summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void OnePassBackwardEqualsDoubleReferencesAndTheTwoKernelsBitForBit(int inFeatures, int outFeatures)
    {
        if (!Nm24Gradients.Supported) return;
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = 1;
            foreach (int rows in new[] { 1, 13, 128, 129, 300 })
            foreach (bool scaled in new[] { false, true })
            foreach (bool alias in new[] { false, true })
            {
                if (inFeatures * outFeatures > 100_000 && rows != 129) continue;   // the largest shape once (the reference is slow)
                string at = $"In {inFeatures}, Out {outFeatures}, rows {rows}, scaled {scaled}, dx aliasing x {alias}";
                var rng = new Rng((ulong)(inFeatures * 1000 + outFeatures * 10 + rows + (scaled ? 5 : 0) + (alias ? 50 : 0)));
                var (dense, values, index) = Pattern(outFeatures, inFeatures, rng);
                var kernel = new Nm24Gradients(outFeatures, inFeatures, q => index[q]) { GradientPanelRows = 128 };
                Assert.True(kernel.FusedMatchesTwoKernels);
                var dy = RandomArray(rng, rows * outFeatures);
                var x = RandomArray(rng, rows * inFeatures);
                var scale = scaled ? RandomArray(rng, rows * inFeatures) : [];
                var dValues0 = RandomArray(rng, values.Length);

                var xs = (float[])x.Clone();
                var dx = alias ? xs : RandomArray(rng, rows * inFeatures);   // overwritten, not accumulated
                var dValues = (float[])dValues0.Clone();
                var workspace = new float[kernel.BackwardWorkspaceFloats(rows)];
                Array.Fill(workspace, float.NaN);
                kernel.Backward(dy, xs, rows, values, scale, dx, dValues, workspace);
                if (!alias) Assert.Equal(x, xs);

                var twoDx = new float[rows * inFeatures];
                var twoDValues = (float[])dValues0.Clone();
                var ws = new float[Math.Max(kernel.WeightGradientWorkspaceFloats(rows), kernel.InputGradientWorkspaceFloats(rows))];
                kernel.WeightGradient(dy, x, rows, twoDValues, ws);
                kernel.InputGradient(dy, rows, values, scale, twoDx, ws);
                for (int i = 0; i < twoDx.Length; i++)
                    if (BitConverter.SingleToInt32Bits(twoDx[i]) != BitConverter.SingleToInt32Bits(dx[i]))
                        Assert.Fail($"dx[{i}] ({at}): one pass {dx[i]:g9}, two kernels {twoDx[i]:g9}");
                for (int i = 0; i < twoDValues.Length; i++)
                    if (BitConverter.SingleToInt32Bits(twoDValues[i]) != BitConverter.SingleToInt32Bits(dValues[i]))
                        Assert.Fail($"dValues[{i}] ({at}): one pass {dValues[i]:g9}, two kernels {twoDValues[i]:g9}");

                var (expectedDx, absDx) = InputGradientReference(dy, dense, scale, rows, inFeatures, outFeatures);
                Close(dx, expectedDx, absDx, $"dx ({at})");
                var (expectedDv, absDv) = WeightGradientReference(dy, x, dValues0, index, rows, inFeatures, outFeatures);
                Close(dValues, expectedDv, absDv, $"dValues ({at})");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void IndicesThatAreNotTwoAscendingPerGroupAreRejected()
    {
        if (!Nm24Gradients.Supported) return;
        var index = new[] { 0, 1, 2, 2 };   // row 0, group 1 holds 2 twice
        var e = Assert.Throws<ArgumentException>(() => new Nm24Gradients(1, 8, q => index[q]));
        Assert.Contains("row 0, group 1 are 2, 2", e.Message);
    }
}
