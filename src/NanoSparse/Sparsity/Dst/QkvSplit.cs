using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity.Dst;

/// <summary>
/// dst_split_qkv: nanoGPT fuses the query, key and value projections into one c_attn weight (3a × C, rows
/// [0, a) = Q, [a, 2a) = K, [2a, 3a) = V), so a sparse c_attn gives Q, K and V one shared budget, and RigL, ranking
/// regrowth by |dL/dW|, moves it into V, whose gradients are an order of magnitude larger. Transformers with separate
/// q/k/v projections give each its own ERK density and drop/regrow each on its own. With the switch on, c_attn's three
/// row slices are three (a × C) layers: for the ERK distribution (<see cref="SparseModelConfig.Apply"/>), for the
/// starting layout (each slice holds exactly round(d · a · C) positions, <see cref="RandomSlices"/>) and for every
/// topology update (<see cref="TopologyUpdate.Apply"/> with <see cref="RowGroups"/>), so each slice's stored count is
/// fixed for the whole run.
/// </summary>
public static class QkvSplit
{
    public const string FusedWeight = "attn.c_attn";
    public const int Slices = 3;

    /// <summary>Whether <paramref name="parameterName"/> (transformer.h.{l}.attn.c_attn.weight) is a fused Q/K/V weight.</summary>
    public static bool IsFused(string parameterName) => parameterName.EndsWith("." + FusedWeight + ".weight", StringComparison.Ordinal);

    /// <summary>
    /// The row groups a topology update treats as separate layers: for a fused c_attn of <paramref name="outFeatures"/>
    /// = 3a rows with <paramref name="split"/> on, 0, a, 2a, 3a; otherwise the whole layer, 0, Out.
    /// </summary>
    public static int[] RowGroups(string parameterName, int outFeatures, bool split)
    {
        if (!split || !IsFused(parameterName)) return [0, outFeatures];
        if (outFeatures % Slices != 0)
            throw new ArgumentException($"dst_split_qkv: weight '{parameterName}' has {outFeatures} rows, expected a multiple of 3 (Q, K and V slices)");
        int a = outFeatures / Slices;
        return [0, a, 2 * a, 3 * a];
    }

    /// <summary>
    /// A fused c_attn layout (3a × In) whose Q, K and V slices each hold exactly round(density · a · In) positions (at
    /// least 1), each drawn uniformly as <see cref="CsrLinearWeight.Random"/> draws a layer, one after the other from
    /// <paramref name="rng"/>.
    /// </summary>
    public static CsrLinearWeight RandomSlices(int outFeatures, int inFeatures, double density, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (outFeatures < Slices || outFeatures % Slices != 0)
            throw new ArgumentException($"dst_split_qkv: a fused Q/K/V weight needs a positive multiple of 3 rows, got {outFeatures}", nameof(outFeatures));
        int a = outFeatures / Slices;
        var slices = new CsrLinearWeight[Slices];
        for (int s = 0; s < Slices; s++) slices[s] = CsrLinearWeight.Random(a, inFeatures, density, rng);
        var pointers = new int[outFeatures + 1];
        var columns = new List<int>();
        for (int s = 0; s < Slices; s++)
        {
            var st = slices[s].Structure;
            for (int o = 0; o < a; o++)
            {
                for (int p = st.RowPointers[o]; p < st.RowPointers[o + 1]; p++) columns.Add(st.ColumnIndex(p));
                pointers[s * a + o + 1] = columns.Count;
            }
        }
        return new CsrLinearWeight(outFeatures, inFeatures, pointers, columns.ToArray());
    }

    /// <summary>Stored positions in each row group of <paramref name="layer"/> (<see cref="RowGroups"/>).</summary>
    public static int[] StoredPerGroup(CsrLinearWeight layer, ReadOnlySpan<int> rowGroups)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var rp = layer.Structure.RowPointers;
        var counts = new int[rowGroups.Length - 1];
        for (int g = 0; g + 1 < rowGroups.Length; g++) counts[g] = rp[rowGroups[g + 1]] - rp[rowGroups[g]];
        return counts;
    }
}
