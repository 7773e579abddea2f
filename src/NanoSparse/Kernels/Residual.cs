using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>Elementwise sums on the residual stream, split over threads in coarse chunks.</summary>
public static unsafe class Residual
{
    const int Block = 4096;

    struct Args { public float* Out, A, B; public int N; }

    /// <summary>out (N) = a (N) + b (N); out may alias a or b.</summary>
    public static void Add(Span<float> output, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Check.Length(a, output.Length, nameof(a));
        Check.Length(b, output.Length, nameof(b));
        fixed (float* o = output, x = a, y = b)
        {
            var args = new Args { Out = o, A = x, B = y, N = output.Length };
            RowParallel.For((output.Length + Block - 1) / Block, Block, ref args, &AddBlocks);
        }
    }

    static void AddBlocks(ref Args a, int startBlock, int endBlock)
    {
        int start = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        TensorPrimitives.Add(new ReadOnlySpan<float>(a.A + start, end - start), new ReadOnlySpan<float>(a.B + start, end - start),
            new Span<float>(a.Out + start, end - start));
    }
}
