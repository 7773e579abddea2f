using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The token-major N:M kernels (forward product and weight gradient at the stored positions) against a dense
/// double-precision reference written here: every supported group size, row counts around the 8-token tile and the
/// 128-token gradient block, output counts around the 16- and 48-output panels (odd ones included), one and two
/// threads. And the N:M layer on a group size the kernels do not take (its fallback path).
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class NmLinearTests
{
    /// <summary>A random N:M pattern: the dense W (Out × In, zeros off the pattern), its values (Out × S) and in-group indices.</summary>
    static (float[] Dense, float[] Values, int[] Index) Pattern(int outFeatures, int inFeatures, int n, int m, Rng rng)
    {
        int groups = inFeatures / m, slots = groups * n;
        var dense = new float[outFeatures * inFeatures];
        var values = new float[outFeatures * slots];
        var index = new int[outFeatures * slots];
        Span<bool> keep = stackalloc bool[m];
        for (int o = 0; o < outFeatures; o++)
            for (int g = 0; g < groups; g++)
            {
                keep.Clear();
                for (int kept = 0; kept < n;)
                {
                    int j = rng.NextInt(m);
                    if (!keep[j]) { keep[j] = true; kept++; }
                }
                int q = o * slots + g * n;
                for (int j = 0; j < m; j++)
                    if (keep[j])
                    {
                        float v = (float)(rng.NextDouble() * 2 - 1);
                        values[q] = v;
                        index[q++] = j;
                        dense[o * inFeatures + g * m + j] = v;
                    }
            }
        return (dense, values, index);
    }

    internal static float[] RandomArray(Rng rng, int length)
    {
        var a = new float[length];
        for (int i = 0; i < length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    internal static void Close(ReadOnlySpan<float> actual, double[] expected, double[] abs, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-5 * abs[i] + 1e-6;
            if (!(Math.Abs(actual[i] - expected[i]) <= tol))
                Assert.Fail($"{what}: element {i}: got {actual[i]:g9}, expected {expected[i]:g9} (tolerance {tol:g3})");
        }
    }

    public static TheoryData<int, int> Patterns => new() { { 2, 4 }, { 1, 4 }, { 3, 4 }, { 2, 8 }, { 4, 8 }, { 1, 2 }, { 4, 16 } };

    [Theory]
    [MemberData(nameof(Patterns))]
    public void ForwardEqualsDenseDoubleReference(int n, int m)
    {
        if (!NmLinear.Supports(m)) return;   // the layer's own tests cover the other path on such machines
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int inFeatures in new[] { 7 * m, 1040 })   // 1,040: two blocks of In in the 8-token tiles
            foreach (int outFeatures in new[] { 16, 37, 48, 53 })
            foreach (int rows in new[] { 1, 7, 9, 13, 40 })
            foreach (int extras in new[] { 0, 1, 2 })   // none; bias and residual; bias and the residual being y itself
            {
                if (inFeatures > 7 * m && (outFeatures == 16 || rows < 9)) continue;   // keep the wide case short
                KernelThreads.Max = threads;
                var rng = new Rng((ulong)(outFeatures * 131 + rows * 7 + threads + extras * 1000 + m * 17 + n + inFeatures * 3));
                var (dense, values, index) = Pattern(outFeatures, inFeatures, n, m, rng);
                int slots = inFeatures / m * n;
                var x = RandomArray(rng, rows * inFeatures);
                var bias = extras > 0 ? RandomArray(rng, outFeatures) : [];
                var residual = extras > 0 ? RandomArray(rng, rows * outFeatures) : [];
                var expected = new double[rows * outFeatures];
                var abs = new double[rows * outFeatures];
                for (int t = 0; t < rows; t++)
                    for (int o = 0; o < outFeatures; o++)
                    {
                        double sum = 0, a = 0;
                        for (int i = 0; i < inFeatures; i++)
                        {
                            double term = (double)dense[o * inFeatures + i] * x[t * inFeatures + i];
                            sum += term; a += Math.Abs(term);
                        }
                        if (extras > 0) { sum += bias[o] + residual[t * outFeatures + o]; a += Math.Abs(bias[o]) + Math.Abs(residual[t * outFeatures + o]); }
                        expected[t * outFeatures + o] = sum;
                        abs[t * outFeatures + o] = a;
                    }
                var packed = new float[NmLinear.PanelLength(outFeatures, slots)];
                var controls = new int[packed.Length];
                NmLinear.Pack(values, outFeatures, slots, packed);
                NmLinear.PackIndices(q => index[q], outFeatures, slots, controls);
                var y = extras == 2 ? residual : new float[rows * outFeatures];
                NmLinear.Forward(x, rows, inFeatures, outFeatures, n, m, packed, controls, bias, residual, y);
                Close(y, expected, abs, $"y of {n}:{m}, in {inFeatures}, out {outFeatures}, rows {rows}, {threads} threads, extras {extras}");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void WeightGradientEqualsDenseDoubleReferenceAtTheStoredPositions(int n, int m)
    {
        if (!NmLinear.Supports(m)) return;
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int outFeatures in new[] { 16, 37, 48, 101 })
            foreach (int rows in new[] { 1, 3, 40, 129, 257 })   // around the 128-token blocks
            {
                KernelThreads.Max = threads;
                int inFeatures = m * 5;   // 5 groups: slots per row not a multiple of 4 for odd N
                var rng = new Rng((ulong)(outFeatures * 31 + rows * 5 + threads + m * 7 + n * 3));
                var (_, _, index) = Pattern(outFeatures, inFeatures, n, m, rng);
                int slots = inFeatures / m * n;
                var x = RandomArray(rng, rows * inFeatures);
                var dy = RandomArray(rng, rows * outFeatures);
                var expected = new double[outFeatures * slots];
                var abs = new double[outFeatures * slots];
                var start = RandomArray(rng, outFeatures * slots);   // UnpackAdd accumulates onto these
                for (int o = 0; o < outFeatures; o++)
                    for (int q = 0; q < slots; q++)
                    {
                        int column = q / n * m + index[o * slots + q];
                        double sum = start[o * slots + q], a = Math.Abs(start[o * slots + q]);
                        for (int t = 0; t < rows; t++)
                        {
                            double term = (double)dy[t * outFeatures + o] * x[t * inFeatures + column];
                            sum += term; a += Math.Abs(term);
                        }
                        expected[o * slots + q] = sum;
                        abs[o * slots + q] = a;
                    }
                var controls = new int[NmLinear.PanelLength(outFeatures, slots)];
                NmLinear.PackIndices(q => index[q], outFeatures, slots, controls);
                var packedGradient = new float[controls.Length];
                Array.Fill(packedGradient, float.NaN);   // written, not accumulated
                var workspace = new float[NmLinear.GradientWorkspace(rows, inFeatures)];
                Array.Fill(workspace, float.NaN);
                NmLinear.WeightGradient(dy, x, rows, inFeatures, outFeatures, n, m, controls, packedGradient, workspace);
                var dValues = (float[])start.Clone();
                NmLinear.UnpackAdd(packedGradient, outFeatures, slots, dValues);
                Close(dValues, expected, abs, $"dW of {n}:{m}, out {outFeatures}, rows {rows}, {threads} threads");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// 2:4 dW with In = 516 (129 groups): a 128-token block of x is then 66,048 values, above the size where its
    /// group-major copy runs over the threads; rows 129 and 257 leave a one-row block that copies on one thread.
    /// </summary>
    [Fact]
    public void WeightGradientWithAThreadedCopyOfXEqualsDenseDoubleReference()
    {
        if (!NmLinear.Supports(4)) return;
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int rows in new[] { 129, 257 })
            {
                KernelThreads.Max = threads;
                const int inFeatures = 516, outFeatures = 37, slots = inFeatures / 2;
                var rng = new Rng((ulong)(rows * 3 + threads));
                var (_, _, index) = Pattern(outFeatures, inFeatures, 2, 4, rng);
                var x = RandomArray(rng, rows * inFeatures);
                var dy = RandomArray(rng, rows * outFeatures);
                var expected = new double[outFeatures * slots];
                var abs = new double[expected.Length];
                for (int o = 0; o < outFeatures; o++)
                    for (int q = 0; q < slots; q++)
                    {
                        int column = q / 2 * 4 + index[o * slots + q];
                        for (int t = 0; t < rows; t++)
                        {
                            double term = (double)dy[t * outFeatures + o] * x[t * inFeatures + column];
                            expected[o * slots + q] += term; abs[o * slots + q] += Math.Abs(term);
                        }
                    }
                var controls = new int[NmLinear.PanelLength(outFeatures, slots)];
                NmLinear.PackIndices(q => index[q], outFeatures, slots, controls);
                var packedGradient = new float[controls.Length];
                var workspace = new float[NmLinear.GradientWorkspace(rows, inFeatures)];
                Array.Fill(workspace, float.NaN);
                NmLinear.WeightGradient(dy, x, rows, inFeatures, outFeatures, 2, 4, controls, packedGradient, workspace);
                var dValues = new float[outFeatures * slots];
                NmLinear.UnpackAdd(packedGradient, outFeatures, slots, dValues);
                Close(dValues, expected, abs, $"dW of 2:4, In {inFeatures}, rows {rows}, {threads} threads");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void PackThenUnpackAddReturnsTheValuesAndPadsLanesWithZeros()
    {
        var rng = new Rng(3);
        int outFeatures = 21, slots = 6;
        var values = RandomArray(rng, outFeatures * slots);
        var packed = new float[NmLinear.PanelLength(outFeatures, slots)];
        Array.Fill(packed, float.NaN);
        NmLinear.Pack(values, outFeatures, slots, packed);
        Assert.Equal(32 * slots, packed.Length);
        for (int q = 0; q < slots; q++)
            for (int lane = 5; lane < 16; lane++) Assert.Equal(0f, packed[(slots + q) * 16 + lane]);   // outputs 21..31
        var sum = new float[values.Length];
        NmLinear.UnpackAdd(packed, outFeatures, slots, sum);
        Assert.Equal(values, sum);
    }

    /// <summary>
    /// Pack and UnpackAdd above the size where they spread blocks over the threads (65,536 values), with a partial
    /// last block (Out = 4,099: three lanes) and slots not a multiple of 8, against the panel layout written out
    /// element by element here; UnpackAdd adds onto the values it is given. One and two threads.
    /// </summary>
    [Theory]
    [InlineData(4099, 18)]
    [InlineData(1030, 66)]
    public void PackAndUnpackAddOverThreadsEqualTheElementwiseLayout(int outFeatures, int slots)
    {
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                var rng = new Rng((ulong)(outFeatures + slots + threads));
                var values = RandomArray(rng, outFeatures * slots);
                var expected = new float[NmLinear.PanelLength(outFeatures, slots)];
                for (int o = 0; o < outFeatures; o++)
                    for (int q = 0; q < slots; q++) expected[(o / 16 * slots + q) * 16 + o % 16] = values[o * slots + q];
                var packed = new float[expected.Length];
                Array.Fill(packed, float.NaN);
                NmLinear.Pack(values, outFeatures, slots, packed);
                for (int i = 0; i < expected.Length; i++)
                    if (packed[i] != expected[i]) Assert.Fail($"packed[{i}] is {packed[i]}, expected {expected[i]} ({threads} threads)");
                var start = RandomArray(rng, values.Length);
                var sum = (float[])start.Clone();
                NmLinear.UnpackAdd(packed, outFeatures, slots, sum);
                for (int i = 0; i < sum.Length; i++)
                    if (sum[i] != start[i] + values[i]) Assert.Fail($"values[{i}] is {sum[i]}, expected {start[i] + values[i]} ({threads} threads)");
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    /// <summary>
    /// The N:M layer on group sizes its token-major kernels do not take (M = 32, 6): forward, dx with dxScale,
    /// dValues and dBias against the dense double reference, 1 and 2 threads.
    /// </summary>
    [Theory]
    [InlineData(3, 32)]
    [InlineData(2, 6)]
    [InlineData(2, 4)]
    public void LayerEqualsDenseDoubleReferenceOnEveryPath(int n, int m)
    {
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            foreach (int rows in new[] { 1, 9, 40 })
            {
                KernelThreads.Max = threads;
                int outFeatures = 19, inFeatures = m * 3;
                var rng = new Rng((ulong)(rows * 13 + threads + m));
                var (dense, values, _) = Pattern(outFeatures, inFeatures, n, m, rng);
                var (w, stored) = NmLinearWeight.FromDense(outFeatures, inFeatures, n, m, dense);
                Assert.Equal(values, stored);
                var x = RandomArray(rng, rows * inFeatures);
                var dy = RandomArray(rng, rows * outFeatures);
                var bias = RandomArray(rng, outFeatures);
                var scale = RandomArray(rng, rows * inFeatures);
                var workspace = new float[w.WorkspaceFloats(rows)];
                Array.Fill(workspace, float.NaN);
                var y = new float[rows * outFeatures];
                w.Forward(y, x, stored, bias, [], rows, workspace);
                var dx = new float[rows * inFeatures];
                var dValues = new float[w.StoredCount];
                var dBias = new float[outFeatures];
                w.Backward(dx, dValues, dBias, dy, x, stored, scale, rows, workspace);

                var ey = new double[y.Length]; var ay = new double[y.Length];
                var edx = new double[dx.Length]; var adx = new double[dx.Length];
                var edw = new double[dense.Length]; var adw = new double[dense.Length];
                for (int t = 0; t < rows; t++)
                    for (int o = 0; o < outFeatures; o++)
                    {
                        ey[t * outFeatures + o] = bias[o]; ay[t * outFeatures + o] = Math.Abs(bias[o]);
                        for (int i = 0; i < inFeatures; i++)
                        {
                            double wv = dense[o * inFeatures + i];
                            ey[t * outFeatures + o] += wv * x[t * inFeatures + i]; ay[t * outFeatures + o] += Math.Abs(wv * x[t * inFeatures + i]);
                            edx[t * inFeatures + i] += dy[t * outFeatures + o] * wv; adx[t * inFeatures + i] += Math.Abs(dy[t * outFeatures + o] * wv);
                            edw[o * inFeatures + i] += (double)dy[t * outFeatures + o] * x[t * inFeatures + i];
                            adw[o * inFeatures + i] += Math.Abs((double)dy[t * outFeatures + o] * x[t * inFeatures + i]);
                        }
                    }
                for (int i = 0; i < edx.Length; i++) { edx[i] *= scale[i]; adx[i] *= Math.Abs(scale[i]); }
                string at = $"{n}:{m}, rows {rows}, {threads} threads";
                Close(y, ey, ay, $"y ({at})");
                Close(dx, edx, adx, $"dx ({at})");
                // dValues are dW at the stored positions: compare through the layout's own scatter.
                var dwDense = new float[dense.Length];
                w.ToDense(dValues, dwDense);
                var ones = new float[w.StoredCount];
                Array.Fill(ones, 1f);
                var mask = new float[dense.Length];
                w.ToDense(ones, mask);
                for (int i = 0; i < dense.Length; i++)
                    if (mask[i] == 0) { edw[i] = 0; adw[i] = 0; }
                Close(dwDense, edw, adw, $"dValues ({at})");
                var edb = new double[outFeatures]; var adb = new double[outFeatures];
                for (int t = 0; t < rows; t++)
                    for (int o = 0; o < outFeatures; o++) { edb[o] += dy[t * outFeatures + o]; adb[o] += Math.Abs(dy[t * outFeatures + o]); }
                Close(dBias, edb, adb, $"dBias ({at})");
            }
        }
        finally { KernelThreads.Max = saved; }
    }
}
