using NanoSparse.Bench;

namespace NanoSparse.Tests.Bench;

/// <summary>bench sparse-model's per-round speed-ups: each round's median against our dense's median in the same round.</summary>
public class SparseModelRoundRatioTests
{
    static SparseModelBench.Row Row(string part, string variant, string kind, int threads, int round, params double[] samples) =>
        new(part, "m", variant, kind, kind == "dense" ? 1 : 0.1, "NanoSparse", threads, samples, samples.Average(), part == "train" ? "ms/iter" : "tokens/s", Round: round);

    [Fact]
    public void DecodeRatiosPairTheRoundsAndTrainingInvertsTime()
    {
        var rows = new List<SparseModelBench.Row>
        {
            Row("decode", "dense", "dense", 1, 0, 100, 120, 80),   // median 100
            Row("decode", "u 0.1", "uniform", 1, 0, 500),
            Row("decode", "dense", "dense", 2, 0, 400),            // another thread count: not paired with 1-thread rows
            Row("decode", "dense", "dense", 1, 1, 50),
            Row("decode", "u 0.1", "uniform", 1, 1, 200, 300, 250),   // median 250
            Row("train", "dense", "dense", 1, 0, 900),
            Row("train", "u 0.1", "uniform", 1, 0, 300),
        };
        Assert.Equal([5.0, 5.0], SparseModelBench.RoundSpeedups(rows, ("decode", "m", "u 0.1", "NanoSparse", 1))!);
        Assert.Equal([3.0], SparseModelBench.RoundSpeedups(rows, ("train", "m", "u 0.1", "NanoSparse", 1))!);
        Assert.Null(SparseModelBench.RoundSpeedups(rows, ("decode", "m", "dense", "NanoSparse", 1)));   // dense against itself
        Assert.Null(SparseModelBench.RoundSpeedups(rows, ("decode", "m", "u 0.1", "ONNX Runtime", 1)));
        // A round without our dense at those threads: no paired ratio at all.
        rows.Add(Row("decode", "u 0.1", "uniform", 2, 1, 800));
        Assert.Null(SparseModelBench.RoundSpeedups(rows, ("decode", "m", "u 0.1", "NanoSparse", 2)));
    }
}
