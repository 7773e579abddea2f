using NanoSparse.Sparsity;

namespace NanoSparse.Tests.Sparsity;

public class ErdosRenyiTests
{
    [Fact]
    public void DensitiesFollowOutPlusInOverOutTimesInScaledToTheGlobalTarget()
    {
        // n_embd 16, one layer: c_attn (48, 16), c_proj (16, 16), c_fc (64, 16), mlp.c_proj (16, 64); global density 0.2.
        // raw = (out + in) / (out·in): 64/768, 32/256, 80/1024, 80/1024; cells 768, 256, 1024, 1024 (total 3072).
        // Σ raw·cells = 64 + 32 + 80 + 80 = 256; ε = 0.2·3072 / 256 = 2.4; no density exceeds 1.
        WeightShape[] shapes = [new("a", 48, 16), new("b", 16, 16), new("c", 64, 16), new("d", 16, 64)];
        double[] expected = [2.4 * 64 / 768, 2.4 * 32 / 256, 2.4 * 80 / 1024, 2.4 * 80 / 1024];   // 0.2, 0.3, 0.1875, 0.1875
        var d = ErdosRenyi.Densities(shapes, 0.2);
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], d[i], 12);
        double stored = 0;
        for (int i = 0; i < 4; i++) stored += d[i] * shapes[i].Cells;
        Assert.Equal(0.2 * 3072, stored, 9);
    }

    [Fact]
    public void ALayerThatWouldExceedDensityOneIsDenseAndTheRestRescaled()
    {
        // (4, 4): raw 0.5, 16 cells; (100, 100): raw 0.02, 10000 cells; global density 0.5 → 5008 stored.
        // First ε = 5008 / (8 + 200) = 24.08: the small layer would be 12.04 → dense (16 cells).
        // Then ε = (5008 − 16) / 200 = 24.96: the big layer gets 0.4992.
        var d = ErdosRenyi.Densities([new("small", 4, 4), new("big", 100, 100)], 0.5);
        Assert.Equal(1.0, d[0]);
        Assert.Equal((5008.0 - 16) / 200 * 0.02, d[1], 12);
    }

    [Fact]
    public void CountsWeighTheAllocationLikeRepeatedLayers()
    {
        var repeated = ErdosRenyi.Densities([new("a", 48, 16, 3), new("b", 16, 64, 3)], 0.1);
        var spelled = ErdosRenyi.Densities([new("a", 48, 16), new("b", 16, 64), new("a", 48, 16), new("b", 16, 64), new("a", 48, 16), new("b", 16, 64)], 0.1);
        Assert.Equal(spelled[0], repeated[0], 12);
        Assert.Equal(spelled[1], repeated[1], 12);
    }
}
