using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Optim;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Nn;

[Collection("KernelThreads")]
public sealed class SuparTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    static bool IsHidden(Parameter p) => p.Name.StartsWith("transformer.h.") && p.Name.EndsWith("weight") && p.Shape.Length == 2;

    [Fact]
    public void InitStdAndLearningRateOfHiddenWeightsScaleByOneOverWidthTimesDensityMultiplier()
    {
        // n_embd 16 against a base of 8: m_d = 2. Sparsity 0.75 (CSR), base density 0.5: m_ρ = stored fraction / 0.5.
        var plain = _data.Config("plain");
        plain.Sparsity = 0.75f;
        var scaled = _data.Config("supar");
        scaled.Sparsity = 0.75f;
        scaled.Supar = true;
        scaled.SuparBaseWidth = 8;
        scaled.SuparBaseDensity = 0.5f;
        using var a = new Trainer(plain);
        using var b = new Trainer(scaled);
        Assert.Equal(1f, a.Model.Config.LogitScale);
        Assert.Equal(0.5f, b.Model.Config.LogitScale);
        var segments = b.Optimizer.Segments;
        int hidden = 0;
        for (int k = 0; k < b.Model.Parameters.Count; k++)
        {
            var p = b.Model.Parameters[k];
            var q = a.Model.Parameters[k];
            Assert.Equal(q.Name, p.Name);
            Assert.Equal(p.Offset, segments[k].Offset);
            double factor = 1.0;
            if (IsHidden(p))
            {
                hidden++;
                double density = (double)p.Length / (p.Shape[0] * p.Shape[1]);   // stored count over Out·In
                Assert.InRange(density, 0.2, 0.3);
                factor = 1.0 / (2.0 * (density / 0.5));
            }
            Assert.Equal((float)factor, segments[k].LrScale, 6);
            float std = (float)Math.Sqrt(factor);
            var pv = p.Value.ToArray();
            var qv = q.Value.ToArray();
            for (int i = 0; i < pv.Length; i++)
                Assert.True(Math.Abs(pv[i] - (double)qv[i] * std) <= 1e-7 * Math.Abs(qv[i]) + 1e-12, $"{p.Name}[{i}]: {pv[i]} vs {qv[i]}·{std}");
        }
        Assert.Equal(4, hidden);   // one layer, four Linear weights
    }

    [Fact]
    public void SegmentLearningRateScaleActsAsAParameterGroupWithThatRate()
    {
        // torch.optim.AdamW per group, by hand in double: p ← p(1 − lr·s·wd); p ← p − lr·s/bc1 · m / (√v/√bc2 + eps)
        const float lr = 1e-2f, wd = 0.1f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
        var random = new Random(4);
        float[] p = GradCheck.RandomArray(random, 40), g0 = GradCheck.RandomArray(random, 40), g1 = GradCheck.RandomArray(random, 40);
        float[] scales = [1f, 3f, 0.25f, 1f];
        var adam = new AdamW(40, Enumerable.Range(0, 4).Select(s => new AdamW.Segment(s * 10, 10, s != 3, scales[s])), b1, b2, eps, wd);
        var expected = p.Select(v => (double)v).ToArray();
        var m = new double[40];
        var v = new double[40];
        var grads = new[] { g0, g1 };
        for (int t = 1; t <= 2; t++)
        {
            adam.Step(p, grads[t - 1], lr);
            for (int i = 0; i < 40; i++)
            {
                int s = i / 10;
                double rate = (double)lr * scales[s];
                if (s != 3) expected[i] *= 1 - rate * wd;
                double g = grads[t - 1][i];
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                expected[i] -= rate / (1 - Math.Pow(b1, t)) * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(b2, t)) + eps);
            }
            for (int i = 0; i < 40; i++) Assert.True(Math.Abs(p[i] - expected[i]) <= 2e-6, $"step {t}, [{i}]: {p[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void SuparAtUnitMultipliersTrainsBitIdenticallyToSuparOff()
    {
        var off = _data.Config("off", 6);
        var on = _data.Config("on", 6);
        on.Supar = true;   // base width 0 (= n_embd) and base density 1 on a dense model: every factor is 1
        using var a = new Trainer(off);
        using var b = new Trainer(on);
        a.Run();
        b.Run();
        Assert.Equal(a.Losses, b.Losses);
        Assert.Equal(a.Model.ParameterData.ToArray(), b.Model.ParameterData.ToArray());
        Assert.Equal(a.Optimizer.M.ToArray(), b.Optimizer.M.ToArray());
        Assert.All(b.Optimizer.Segments, s => Assert.Equal(1f, s.LrScale));
        Assert.Equal(a.Model.Config, b.Model.Config);
    }

    static GptConfig Tiny(float logitScale) => new() { NLayer = 1, NHead = 2, NEmbd = 8, BlockSize = 6, VocabSize = 9, Bias = true, LogitScale = logitScale };

    [Fact]
    public void LogitScaleMultipliesTheLogitsInTrainingAndDecodingAndItsGradientMatchesFiniteDifferences()
    {
        KernelThreads.Max = 1;
        var one = new Gpt(Tiny(1f), 1, 6);
        var half = new Gpt(Tiny(0.5f), 1, 6);
        one.InitializeWeights(2);
        one.ParameterData.CopyTo(half.ParameterData);
        // larger weights than the init's, so the logits are far from zero
        var random = new Random(8);
        var values = GradCheck.RandomArray(random, half.ParameterData.Length, 0.5);
        values.CopyTo(half.ParameterData);
        values.CopyTo(one.ParameterData);
        int[] tokens = [1, 4, 2, 8, 0, 3], targets = [4, 2, 8, 0, 3, 5];
        one.Forward(tokens, targets, training: false);
        half.Forward(tokens, targets, training: false);
        var l1 = one.Logits.ToArray();
        var l2 = half.Logits.ToArray();
        for (int i = 0; i < l1.Length; i++) Assert.True(Math.Abs(l2[i] - 0.5 * l1[i]) <= 1e-6 * Math.Max(1, Math.Abs(l1[i])), $"logit {i}");

        var cache = half.CreateKvCache();
        var decoded = half.ForwardCached(cache, tokens).ToArray();
        for (int i = 0; i < decoded.Length; i++) Assert.True(Math.Abs(decoded[i] - l2[5 * 9 + i]) <= 1e-5 * Math.Max(1, Math.Abs(l2[5 * 9 + i])), $"decoded logit {i}");

        half.ZeroGrad();
        half.Forward(tokens, targets, training: true);
        half.Backward();
        var analytic = half.GradientData.ToArray();
        var x = half.ParameterData.ToArray();
        var probe = new Gpt(Tiny(0.5f), 1, 6);
        GradCheck.Assert("loss with logit_scale 0.5", x, analytic, () =>
        {
            x.CopyTo(probe.ParameterData);
            return probe.Forward(tokens, targets, training: false);
        }, eps: 1e-2, maxChecks: 120);
    }

    [Fact]
    public void ConfigRefusesABaseDensityOutsideTheUnitIntervalAndANegativeBaseWidth()
    {
        var c = _data.Config("bad");
        c.SuparBaseDensity = 0;
        Assert.Contains("supar_base_density (0)", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
        c.SuparBaseDensity = 1;
        c.SuparBaseWidth = -4;
        Assert.Contains("supar_base_width (-4)", Assert.Throws<ArgumentException>(() => c.Validate()).Message);
    }

    [Fact]
    public void LogitScaleIsRecordedInTheCheckpointAndReloaded()
    {
        var c = _data.Config("ckpt", 4);
        c.Supar = true;
        c.SuparBaseWidth = 4;
        c.AlwaysSaveCheckpoint = true;
        using (var t = new Trainer(c)) t.Run();
        var model = Checkpoint.LoadModel(c.OutDir, 1, 8, out var state);
        Assert.Equal(0.25f, model.Config.LogitScale);
        Assert.Equal(0.25f, state.Model.LogitScale);
    }
}
