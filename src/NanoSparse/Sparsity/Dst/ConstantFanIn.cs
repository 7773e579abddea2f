using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity.Dst;

/// <summary>
/// SRigL's starting layout: every output row holds the same number of inputs, k = round(density · In) (at least 1),
/// drawn uniformly without replacement per row. The stored count is Out · k, so the layer's density is k / In (within
/// half an input of the asked density). Constant fan-in makes decode rows regular (SELL slices without padding).
/// </summary>
public static class ConstantFanIn
{
    public static int FanIn(int inFeatures, double density) => Math.Clamp((int)Math.Round(density * inFeatures), 1, inFeatures);

    public static CsrLinearWeight Random(int outFeatures, int inFeatures, double density, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (outFeatures < 1 || inFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), $"shape ({outFeatures}, {inFeatures}) must be positive");
        if (!(density > 0 && density <= 1)) throw new ArgumentOutOfRangeException(nameof(density), density, "density must be in (0, 1]");
        int k = FanIn(inFeatures, density);
        var pointers = new int[outFeatures + 1];
        var columns = new int[(long)outFeatures * k];
        var pool = new int[inFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            for (int j = 0; j < inFeatures; j++) pool[j] = j;
            for (int i = 0; i < k; i++)
            {
                int j = i + rng.NextInt(inFeatures - i);
                (pool[i], pool[j]) = (pool[j], pool[i]);
            }
            Array.Sort(pool, 0, k);
            Array.Copy(pool, 0, columns, (long)o * k, k);
            pointers[o + 1] = pointers[o] + k;
        }
        return new CsrLinearWeight(outFeatures, inFeatures, pointers, columns);
    }

    /// <summary>Whether every row of <paramref name="layer"/> that holds weights holds the same number, and that number.</summary>
    public static (bool Constant, int FanIn, int ActiveRows) Check(CsrLinearWeight layer)
    {
        var rp = layer.Structure.RowPointers;
        int fanIn = -1, active = 0;
        bool constant = true;
        for (int o = 0; o < layer.OutFeatures; o++)
        {
            int c = rp[o + 1] - rp[o];
            if (c == 0) continue;
            active++;
            if (fanIn < 0) fanIn = c;
            else if (c != fanIn) constant = false;
        }
        return (constant, Math.Max(fanIn, 0), active);
    }
}
