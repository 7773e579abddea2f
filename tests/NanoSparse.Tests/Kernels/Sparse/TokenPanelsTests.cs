using NanoSparse.Kernels.Sparse;
using NanoSparse.Tests.Sparse;

namespace NanoSparse.Tests.Kernels.Sparse;

/// <summary>
/// The token-major kernels' transposes on 16×16 AVX-512 blocks (TokenPanels): panels of 32 and 64 tokens, full and
/// short (zero columns past the last token), feature counts with and without a partial last block of 16; tiles out with
/// row counts and token counts that are and are not multiples of 16, each epilogue term present or absent, add being Y
/// itself; element by element against the definition (a transpose is exact, so equality is bitwise up to the
/// epilogue's float operations done in the same order).
/// </summary>
public class TokenPanelsTests
{
    [Theory]
    [InlineData(768, 32, 32)]
    [InlineData(37, 32, 32)]
    [InlineData(300, 64, 64)]
    [InlineData(300, 64, 45)]
    [InlineData(16, 32, 1)]
    public unsafe void InTransposesTokenRowsIntoThePanel(int k, int width, int w)
    {
        int ldx = k + 3;
        var x = SparseTestData.RandomDense(w, ldx, 1, (ulong)(k + w));
        var panel = new float[k * width];
        Array.Fill(panel, float.NaN);
        fixed (float* px = x, pp = panel) TokenPanels.In(px, ldx, k, w, pp, width);
        for (int f = 0; f < k; f++)
            for (int t = 0; t < width; t++)
            {
                float expected = t < w ? x[t * ldx + f] : 0;
                if (BitConverter.SingleToInt32Bits(panel[f * width + t]) != BitConverter.SingleToInt32Bits(expected))
                    Assert.Fail($"k={k} width={width} w={w}: panel[{f}, {t}] = {panel[f * width + t]}, expected {expected}");
            }
    }

    [Theory]
    [InlineData(3072, 32)]
    [InlineData(77, 32)]
    [InlineData(64, 20)]
    [InlineData(45, 13)]
    [InlineData(16, 16)]
    public unsafe void OutTransposesTheTileWithItsEpilogue(int count, int w)
    {
        int ldy = count + 5;
        var tile = SparseTestData.RandomDense(count, 32, 1, 31);
        var bias = SparseTestData.RandomDense(1, count, 1, 32);
        var add = SparseTestData.RandomDense(w, ldy, 1, 33);
        var scale = SparseTestData.RandomDense(w, ldy, 1, 34);
        foreach (int epilogue in new[] { 0, 1, 2 })   // none; bias + add (a separate array); add = Y itself and scale
        {
            var y = new float[w * ldy];
            if (epilogue == 2) add.CopyTo(y, 0); else Array.Fill(y, -7f);
            var before = (float[])y.Clone();
            fixed (float* pt = tile, py = y, pb = bias, pa = add, ps = scale)
                TokenPanels.Out(pt, count, w, py, ldy, epilogue == 1 ? pb : null, epilogue == 1 ? pa : epilogue == 2 ? py : null, epilogue == 2 ? ps : null);
            for (int t = 0; t < w; t++)
                for (int c = 0; c < ldy; c++)
                {
                    int e = t * ldy + c;
                    float expected = c >= count ? before[e] : epilogue switch
                    {
                        0 => tile[c * 32 + t],
                        1 => tile[c * 32 + t] + bias[c] + add[e],
                        _ => (tile[c * 32 + t] + add[e]) * scale[e],
                    };
                    if (BitConverter.SingleToInt32Bits(y[e]) != BitConverter.SingleToInt32Bits(expected))
                        Assert.Fail($"count={count} w={w} epilogue={epilogue}: y[{t}, {c}] = {y[e]}, expected {expected}");
                }
        }
    }
}
