namespace NanoSparse.Kernels;

/// <summary>
/// Inverted dropout with a counter-based mask: element i of a call with seed s is kept when
/// uniform(hash(s, i)) ≥ p, and kept values are scaled by 1 / (1 − p). The mask is a pure function of
/// (seed, index), so the backward pass regenerates it instead of storing it, and threads need no shared state.
/// The seed comes from the model's dropout Rng, once per site per forward pass.
/// </summary>
public static unsafe class Dropout
{
    const int Block = 4096;

    struct Args { public float* X; public long Offset; public ulong Seed; public float P, Scale; public int N; }

    /// <summary>True when element <paramref name="index"/> survives for this seed and drop probability.</summary>
    public static bool Keep(ulong seed, long index, float p)
    {
        // SplitMix64 finaliser of (seed + index·golden ratio): a well-mixed 64-bit value per element.
        ulong z = seed + (ulong)index * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        float u = (z >> 40) * (1.0f / (1 << 24));
        return u >= p;
    }

    /// <summary>
    /// x (N) *= mask · 1/(1−p) in place, element i using mask index offset + i. Used by both passes: the
    /// gradient of dropout is the same mask and scale applied to dout.
    /// </summary>
    public static void Apply(Span<float> x, float p, ulong seed, long offset = 0)
    {
        if (p <= 0f) return;
        fixed (float* px = x)
        {
            var a = new Args { X = px, Offset = offset, Seed = seed, P = p, Scale = 1f / (1f - p), N = x.Length };
            RowParallel.For((x.Length + Block - 1) / Block, Block * 4L, ref a, &ApplyBlocks);
        }
    }

    static void ApplyBlocks(ref Args a, int startBlock, int endBlock)
    {
        int start = startBlock * Block, end = Math.Min(a.N, endBlock * Block);
        for (int i = start; i < end; i++)
            a.X[i] = Keep(a.Seed, a.Offset + i, a.P) ? a.X[i] * a.Scale : 0f;
    }
}
