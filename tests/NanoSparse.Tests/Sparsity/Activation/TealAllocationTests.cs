using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Tests.Sparsity.Activation;

/// <summary>TEAL's block-wise greedy allocation, and the one-block forward pass it runs.</summary>
[Collection("KernelThreads")]
public sealed class TealAllocationTests : IDisposable
{
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose() => KernelThreads.Max = _savedThreads;

    static readonly GptConfig Tiny = new() { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 16, VocabSize = 11, Bias = true };

    static Gpt TinyModel(int batch = 2, int seqLen = 16)
    {
        var gpt = new Gpt(Tiny, batch, seqLen);
        gpt.InitializeWeights(3);
        var rng = new Rng(8);
        foreach (var p in gpt.Parameters)
            if (p.Name.EndsWith(".bias") || p.Name.Contains(".ln_"))
            {
                var v = p.Value.Span;
                for (int i = 0; i < v.Length; i++) v[i] += (float)(rng.NextGaussian() * 0.1);
            }
        return gpt;
    }

    static int[] RandomTokens(ulong seed, int n)
    {
        var rng = new Rng(seed);
        return Enumerable.Range(0, n).Select(_ => (int)(rng.NextUInt64() % (ulong)Tiny.VocabSize)).ToArray();
    }

    static double WeightedAverage(IReadOnlyList<long> read, double[] s) => s.Select((v, j) => v * read[j]).Sum() / read.Sum(p => (double)p);

    [Theory]
    [InlineData(0.25, 0.05)]
    [InlineData(0.4, 0.05)]
    [InlineData(0.5, 0.1)]
    [InlineData(0.37, 0.05)]
    public void GreedyReachesTheTargetAverageByWeightsRead(double target, double step)
    {
        long[] read = [3 * 256 * 256, 256 * 256, 4 * 256 * 256, 4 * 256 * 256];   // c_attn, attn.c_proj, c_fc, mlp.c_proj
        double[] cost = [1, 0.3, 0.7, 2];
        var s = TealAllocation.Allocate(read, target, step, x => x.Select((v, j) => cost[j] * v * v).Sum());
        Assert.Equal(target, WeightedAverage(read, s), 9);
        Assert.All(s, v => Assert.InRange(v, 0, TealAllocation.MaxSparsity));
        // every input's sparsity is whole steps, except for the single last cut move
        Assert.True(s.Count(v => Math.Abs(v / step - Math.Round(v / step)) > 1e-9) <= 1);
    }

    [Fact]
    public void OneSearchForSeveralTargetsEqualsASearchPerTarget()
    {
        long[] read = [3, 1, 4, 4];
        double[] cost = [1, 0.3, 0.7, 2];
        double Error(double[] x) => x.Select((v, j) => cost[j] * v * v + 0.1 * v * x[(j + 1) % 4]).Sum();
        double[] targets = [0.5, 0.25, 0.4, 0.33];
        var together = TealAllocation.Allocate(read, targets, 0.05, Error);
        for (int i = 0; i < targets.Length; i++)
        {
            var alone = TealAllocation.Allocate(read, targets[i], 0.05, Error);
            Assert.Equal(alone, together[i]);
            Assert.Equal(targets[i], WeightedAverage(read, together[i]), 9);
        }
    }

    [Fact]
    public void AMuchMoreSensitiveInputGetsTheLowerSparsity()
    {
        long[] read = [100, 100, 100, 100];
        double[] cost = [1, 1, 100, 1];
        var s = TealAllocation.Allocate(read, 0.4, 0.05, x => x.Select((v, j) => cost[j] * v * v).Sum());
        Assert.Equal(s.Min(), s[2]);
        Assert.True(s[2] < s[0] && s[2] < s[1] && s[2] < s[3], string.Join(" ", s));
    }

    [Fact]
    public void OnASeparableConvexErrorGreedyFindsTheBruteForceOptimumOnTheGrid()
    {
        // Equal weights read and a convex separable error: marginal-gain greedy is optimal over the step grid;
        // the reference enumerates every grid point with Σ s_j = 4 · target.
        long[] read = [1, 1, 1, 1];
        double[] cost = [1, 3, 0.5, 2];
        double[] power = [2, 1.5, 3, 2];
        double Error(double[] x) => x.Select((v, j) => cost[j] * Math.Pow(v, power[j])).Sum();
        var s = TealAllocation.Allocate(read, 0.4, 0.05, Error);
        double best = double.PositiveInfinity;
        for (int a = 0; a <= 19; a++)
            for (int b = 0; b <= 19; b++)
                for (int c = 0; c <= 19; c++)
                {
                    int d = 32 - a - b - c;   // 4 · 0.4 / 0.05 = 32 steps in all
                    if (d < 0 || d > 19) continue;
                    best = Math.Min(best, Error([a * 0.05, b * 0.05, c * 0.05, d * 0.05]));
                }
        Assert.Equal(best, Error(s), 9);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.6)]
    [InlineData(-0.1)]
    public void AStepOutsideItsRangeIsRefused(double step)
    {
        var e = Assert.Throws<ArgumentException>(() => TealAllocation.Allocate([1, 1], 0.4, step, _ => 0));
        Assert.Contains("allocation step", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void ForwardBlockRepeatsTheFullForwardPassBlockByBlock()
    {
        KernelThreads.Max = 1;
        var gpt = TinyModel();
        var tokens = RandomTokens(4, gpt.BatchSize * gpt.SeqLen);
        gpt.ForwardBlocks(tokens, Tiny.NLayer);
        int C = Tiny.NEmbd, T = gpt.SeqLen;
        // Block 0's input: wte[token] + wpe[position], in double.
        var wte = gpt.Parameters.Single(p => p.Name == "transformer.wte.weight").Value.Span;
        var wpe = gpt.Parameters.Single(p => p.Name == "transformer.wpe.weight").Value.Span;
        var x0 = gpt.BlockInput(0);
        for (int r = 0; r < tokens.Length; r++)
            for (int c = 0; c < C; c++)
                Assert.Equal((double)wte[tokens[r] * C + c] + wpe[(r % T) * C + c], x0[r * C + c], 5);
        var inputs = Enumerable.Range(0, Tiny.NLayer).Select(l => gpt.BlockInput(l).ToArray()).ToArray();
        var outputs = Enumerable.Range(0, Tiny.NLayer).Select(l => gpt.BlockOutput(l).ToArray()).ToArray();
        Assert.Equal(outputs[0], inputs[1]);
        for (int l = Tiny.NLayer - 1; l >= 0; l--)
        {
            var y = gpt.ForwardBlock(l, inputs[l]).ToArray();
            Assert.Equal(outputs[l], y);
        }
        Assert.Throws<ArgumentException>(() => gpt.ForwardBlock(0, new float[5]));
        Assert.Throws<ArgumentOutOfRangeException>(() => gpt.BlockInput(Tiny.NLayer));
    }

    [Theory]
    [InlineData("teal", 0.4)]
    [InlineData("wina", 0.5)]
    public void GreedyCalibrationPutsEveryBlockAtTheTargetAverage(string method, double target)
    {
        KernelThreads.Max = 1;
        var gpt = TinyModel();
        var tokens = RandomTokens(6, 2 * gpt.BatchSize * gpt.SeqLen);
        var t = TealAllocation.Calibrate(gpt, tokens, method, target, step: 0.05);
        Assert.Equal(TealAllocation.Greedy, t.Allocation);
        t.CheckMatches(gpt, "test");
        // calibration_sparsity is the fraction of each input's scores below its threshold: 1/n from the allocated share
        // (n = 2·2·16 rows × In scores), so each block's average lands on the target within that.
        foreach (var a in TealAllocation.BlockAverages(gpt, t)) Assert.InRange(a, target - 0.01, target + 0.01);
        // and the thresholds differ between inputs (a uniform allocation would give every input the target)
        Assert.True(t.Weights.Select(w => Math.Round(w.CalibrationSparsity, 2)).Distinct().Count() > 1);

        // The zeros the thresholded model makes on the calibration tokens, weighted by each weight's size, match too.
        var applied = ActivationSparsity.Apply(gpt, t, decodeCopies: false);
        applied.ForwardBlocks(tokens.AsSpan(0, gpt.BatchSize * gpt.SeqLen), Tiny.NLayer);
        applied.ForwardBlocks(tokens.AsSpan(gpt.BatchSize * gpt.SeqLen), Tiny.NLayer);
        double mass = 0, total = 0;
        foreach (var (_, w) in ActivationSparsity.Weights(applied))
        {
            var (kept, seen) = w.Counts;
            long size = (long)w.OutFeatures * w.InFeatures;
            mass += (1 - (double)kept / seen) * size;
            total += size;
        }
        Assert.Equal(mass / total, ActivationSparsity.MeasuredWeightSparsity(applied), 9);
        // downstream inputs see activations shifted by the upstream zeros, so this is close, not exact
        Assert.InRange(mass / total, target - 0.08, target + 0.08);
    }

    [Fact]
    public void AnAmplifiedAttentionBranchGetsLessSparsityThanTheMlp()
    {
        KernelThreads.Max = 1;
        var gpt = TinyModel();
        // Block 0's attention output ×30: an error in either attention input costs 900× more at the block's output,
        // while the MLP reads ln_2 of the stream (scale-free) and writes at its own scale.
        foreach (var p in gpt.Parameters.Where(p => p.Name.StartsWith("transformer.h.0.attn.c_proj.")))
        {
            var v = p.Value.Span;
            for (int i = 0; i < v.Length; i++) v[i] *= 30;
        }
        var tokens = RandomTokens(7, 2 * gpt.BatchSize * gpt.SeqLen);
        var t = TealAllocation.Calibrate(gpt, tokens, "teal", 0.4);
        double S(string key) => t.Weights.Single(w => w.Name == $"transformer.h.0.{key}.weight").CalibrationSparsity;
        double attn = Math.Max(S("attn.c_attn"), S("attn.c_proj")), mlp = Math.Min(S("mlp.c_fc"), S("mlp.c_proj"));
        Assert.True(attn < mlp, $"attention inputs {S("attn.c_attn"):F3}/{S("attn.c_proj"):F3}, MLP inputs {S("mlp.c_fc"):F3}/{S("mlp.c_proj"):F3}");
    }

    [Fact]
    public void ZeroTargetKeepsEveryInputAndTheModelIsUntouched()
    {
        KernelThreads.Max = 1;
        var gpt = TinyModel();
        var before = gpt.ParameterData.ToArray();
        var tokens = RandomTokens(9, gpt.BatchSize * gpt.SeqLen);
        var t = TealAllocation.Calibrate(gpt, tokens, "teal", 0);
        Assert.All(t.Weights, w => Assert.Equal(0f, w.Threshold));
        Assert.Equal(before, gpt.ParameterData.ToArray());
    }

    [Fact]
    public void AllocationRoundTripsThroughTheThresholdsFile()
    {
        var gpt = TinyModel();
        var t = TealCalibration.Calibrate(gpt, RandomTokens(2, gpt.BatchSize * gpt.SeqLen), "teal", 0.3) with { Allocation = TealAllocation.Greedy };
        string path = Path.Combine(Path.GetTempPath(), $"nanosparse-alloc-{Guid.NewGuid():N}.json");
        try
        {
            t.Save(path);
            Assert.Equal(TealAllocation.Greedy, ActivationThresholds.Load(path).Allocation);
            // files written before the field existed read as uniform
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"allocation\": \"greedy\",", ""));
            Assert.Equal(TealAllocation.Uniform, ActivationThresholds.Load(path).Allocation);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void BudgetWarmupFallsLinearlyFromOneToTheBudget()
    {
        var c = new ControllerConfig { GateBudget = 0.3, GateBudgetWarmup = 10 };
        Assert.Equal(1 - 0.7 * 0.1, c.BudgetAt(0), 12);
        Assert.Equal(1 - 0.7 * 0.5, c.BudgetAt(4), 12);
        Assert.Equal(0.3, c.BudgetAt(9), 12);
        Assert.Equal(0.3, c.BudgetAt(500), 12);
        Assert.Equal(0.3, new ControllerConfig { GateBudget = 0.3 }.BudgetAt(0), 12);
        c.Set("gate_budget_warmup", "-1");
        var e = Assert.Throws<ArgumentException>(c.Validate);
        Assert.Contains("gate_budget_warmup (-1)", e.Message);
    }
}
