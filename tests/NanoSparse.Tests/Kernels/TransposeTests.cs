using NanoSparse.Kernels;

namespace NanoSparse.Tests.Kernels;

[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class TransposeTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(8, 8)]
    [InlineData(13, 21)]      // partial tiles in both directions
    [InlineData(64, 48)]
    [InlineData(300, 257)]    // large enough to go parallel
    public void TransposeWithEpilogueMatchesElementwiseDefinition(int rows, int cols)
    {
        var r = new Random(rows * 1000 + cols);
        float[] Rand(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1); return a; }
        var src = Rand(rows * cols);     // (cols, rows)
        var bias = Rand(cols);
        var add = Rand(rows * cols);
        var scale = Rand(rows * cols);
        int saved = KernelThreads.Max;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                var plain = new float[rows * cols];
                Transpose.Run(src, rows, cols, plain);
                var full = new float[rows * cols];
                Transpose.Run(src, rows, cols, full, bias, add, scale);
                var inPlace = (float[])add.Clone();
                Transpose.Run(src, rows, cols, inPlace, add: inPlace);
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < cols; j++)
                    {
                        float s = src[j * rows + i];
                        Assert.Equal(s, plain[i * cols + j]);
                        Assert.Equal((s + bias[j] + add[i * cols + j]) * scale[i * cols + j], full[i * cols + j], 1e-6f);
                        Assert.Equal(s + add[i * cols + j], inPlace[i * cols + j], 1e-6f);
                    }
            }
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void ShortBuffersAreRejectedNamingTheBuffer()
    {
        var e = Assert.Throws<ArgumentException>(() => Transpose.Run(new float[11], 3, 4, new float[12]));
        Assert.Contains("src", e.Message);
        e = Assert.Throws<ArgumentException>(() => Transpose.Run(new float[12], 3, 4, new float[12], bias: new float[3]));
        Assert.Contains("bias", e.Message);
    }
}
