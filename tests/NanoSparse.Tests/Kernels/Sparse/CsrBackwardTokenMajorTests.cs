using NanoSparse.Kernels;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The one-pass backward of a CSR Linear (CsrBackwardTokenMajor: dW, dBias and dx per 64 tokens in one walk over W's
/// nonzeros) against a double-precision reference, and bit for bit against the two kernels it replaces (the SDDMM and
/// the dx product, CsrLinearWeight.FuseBackward off). W's columns get 0–45% of their entries, so Wᵀ's rows hold 0 to
/// ~115 nonzeros in each 256-row K block: empty blocks, whole steps of four, and every remainder 1–3 after them; tokens
/// 33 (one partial panel), 64 and 150 (full panels and a partial one); with and without bias, dxScale, dx aliasing x and
/// infinite activations (an infinite x column reaches the weight gradients of that column only).
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class CsrBackwardTokenMajorTests
{
    [Theory]
    [InlineData(600, 150)]    // Wᵀ 150 × 600: three K blocks, the last 88 rows
    [InlineData(1100, 70)]    // five K blocks, the last 76 rows; In not a multiple of 16
    [InlineData(520, 300)]    // two K blocks, the second 8 rows; more than one RowBlock of Wᵀ's rows
    public void MatchesDoubleReferenceAndTheTwoKernelPathBitForBit(int outFeatures, int inFeatures)
    {
        if (!CsrBackwardTokenMajor.Supported) return;   // no AVX-512: the two-kernel path only (tested elsewhere)
        var rng = new Rng((ulong)(outFeatures * 31 + inFeatures));
        var rowPointers = new int[outFeatures + 1];
        var columns = new List<int>();
        for (int o = 0; o < outFeatures; o++)
        {
            for (int j = 0; j < inFeatures; j++)
                if (rng.NextDouble() < (j % 10) * 0.05) columns.Add(j);
            rowPointers[o + 1] = columns.Count;
        }
        var w = new CsrLinearWeight(outFeatures, inFeatures, rowPointers, columns.ToArray());
        var values = new float[w.StoredCount];
        for (int p = 0; p < values.Length; p++) values[p] = (float)rng.NextGaussian();
        var dense = new float[outFeatures * inFeatures];
        w.ToDense(values, dense);
        Assert.True(CsrBackwardTokenMajor.Takes(w.StoredCount, inFeatures, outFeatures), "the case must take the one-pass kernel");
        int infColumn = inFeatures / 3;
        int saved = KernelThreads.Max;
        bool savedFuse = CsrLinearWeight.FuseBackward;
        try
        {
            KernelThreads.Max = 1;
            foreach (int rows in new[] { 33, 64, 150 })
            foreach (bool extras in new[] { false, true })
            foreach (bool alias in new[] { false, true })
            foreach (bool infinite in new[] { false, true })
            {
                string at = $"{outFeatures}x{inFeatures}, rows {rows}, bias/dxScale {extras}, dx aliasing x {alias}, infinite x column {infinite}";
                var x = RandomArray(rng, rows * inFeatures);
                if (infinite) for (int t = 0; t < rows; t++) x[t * inFeatures + infColumn] = float.PositiveInfinity;
                var dy = RandomArray(rng, rows * outFeatures);
                var dxScale = extras ? RandomArray(rng, rows * inFeatures) : [];
                var dValues0 = RandomArray(rng, w.StoredCount);
                var dBias0 = extras ? RandomArray(rng, outFeatures) : [];

                (float[] Dx, float[] DValues, float[] DBias) Backward(bool fuse)
                {
                    CsrLinearWeight.FuseBackward = fuse;
                    var xs = (float[])x.Clone();
                    var dx = alias ? xs : new float[rows * inFeatures];
                    var dValues = (float[])dValues0.Clone();
                    var dBias = (float[])dBias0.Clone();
                    var workspace = new float[w.WorkspaceFloats(rows)];
                    Array.Fill(workspace, float.NaN);   // the layout must not read scratch it did not write
                    w.Backward(dx, dValues, dBias, dy, xs, values, dxScale, rows, workspace);
                    if (!alias) Assert.Equal(x, xs);
                    return (dx, dValues, dBias);
                }
                var fused = Backward(true);
                var two = Backward(false);
                AssertBits(two.Dx, fused.Dx, $"dx ({at})");
                AssertBits(two.DValues, fused.DValues, $"dValues ({at})");
                AssertBits(two.DBias, fused.DBias, $"dBias ({at})");

                // Double-precision reference.
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
                        Close(fused.Dx[t * inFeatures + j], sum * s, abs * Math.Abs(s), $"dx[{t}, {j}] ({at})");
                    }
                for (int o = 0; o < outFeatures; o++)
                    for (int p = rowPointers[o]; p < rowPointers[o + 1]; p++)
                    {
                        int j = columns[p];
                        if (infinite && j == infColumn)
                        {
                            Assert.True(float.IsInfinity(fused.DValues[p]) || float.IsNaN(fused.DValues[p]), $"dValues[{p}] of the infinite column: {fused.DValues[p]} ({at})");
                            continue;
                        }
                        double sum = dValues0[p], abs = Math.Abs(dValues0[p]);
                        for (int t = 0; t < rows; t++)
                        {
                            double term = (double)dy[t * outFeatures + o] * x[t * inFeatures + j];
                            sum += term; abs += Math.Abs(term);
                        }
                        Close(fused.DValues[p], sum, abs, $"dValues[{p}] = ({o}, {j}) ({at})");
                    }
                if (extras)
                    for (int o = 0; o < outFeatures; o++)
                    {
                        double sum = dBias0[o], abs = Math.Abs(dBias0[o]);
                        for (int t = 0; t < rows; t++) { sum += dy[t * outFeatures + o]; abs += Math.Abs(dy[t * outFeatures + o]); }
                        Close(fused.DBias[o], sum, abs, $"dBias[{o}] ({at})");
                    }
            }
        }
        finally { KernelThreads.Max = saved; CsrLinearWeight.FuseBackward = savedFuse; }
    }

    [Fact]
    public void NotTakenWhereDyIsNotCutIntoKBlocks()
    {
        // Out below 512 (CsrSpmmTokenMajor.KBlockRows keeps K whole): dx's product would run RowsWide, whose order the
        // kernel does not keep.
        Assert.False(CsrBackwardTokenMajor.Takes(48 * 64 / 2, 64, 48));
        Assert.Equal(CsrBackwardTokenMajor.Supported, CsrBackwardTokenMajor.Takes(768 * 3072 / 5, 768, 3072));
    }

    static float[] RandomArray(Rng rng, int length)
    {
        var a = new float[length];
        for (int i = 0; i < length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    static void AssertBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}[{i}]: one pass {actual[i]:g9}, two kernels {expected[i]:g9}");
    }

    static void Close(float actual, double expected, double scale, string what) =>
        Assert.True(Math.Abs(actual - expected) <= 1e-5 * scale + 1e-6, $"{what}: {actual:g9}, reference {expected:g9} (Σ|terms| {scale:g4})");
}
