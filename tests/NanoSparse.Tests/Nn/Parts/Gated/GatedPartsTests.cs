using NanoSparse.Nn;
using NanoSparse.Nn.Parts.Gated;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Tests.Nn.Parts.Gated;

/// <summary>
/// The per-input controller's parts (GatedSelfAttention, GatedMlp, UnitGate) against <see cref="GatedReference"/>, a
/// double-precision gated GPT: soft and hard forward, gradients (finite differences of the reference, the budget
/// penalty included), batch-1 decode that skips units against full recomputation, and the bad-input messages.
/// </summary>
public class GatedPartsTests
{
    static GptConfig Config(string gate, bool bias = false, int group = 8) => new()
    {
        NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 12, VocabSize = 11, Bias = bias, Gate = gate, GateGroup = group,
    };

    // Random weights whose gates split: gate weights N(0, 0.6) and biases N(0, 0.3), so about half the units run.
    static Gpt Model(GptConfig config, int B, int T, int seed = 3)
    {
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights((ulong)seed);
        var r = new Random(seed);
        foreach (var p in gpt.Parameters)
        {
            var v = p.Value.Span;
            double scale = p.Name.Contains(".gate.weight") ? 0.6 : p.Name.Contains(".gate.bias") ? 0.3 : p.Name.EndsWith(".bias") ? 0.05 : 0;
            if (p.Name.Contains("ln_")) scale = 0.1;
            for (int i = 0; i < v.Length; i++)
                if (scale > 0) v[i] = p.Name.Contains("ln_") && p.Name.EndsWith("weight") ? 1f + (float)((r.NextDouble() * 2 - 1) * scale) : (float)((r.NextDouble() * 2 - 1) * scale * 1.7);
                else v[i] *= 4f;   // larger than init so attention and gates see varied inputs
        }
        return gpt;
    }

    static (int[] X, int[] Y) Tokens(int n, int vocab, int seed)
    {
        var r = new Random(seed);
        return (Enumerable.Range(0, n).Select(_ => r.Next(vocab)).ToArray(), Enumerable.Range(0, n).Select(_ => r.Next(vocab)).ToArray());
    }

    [Theory]
    [InlineData("heads", false)]
    [InlineData("mlp", false)]
    [InlineData("both", false)]
    [InlineData("both", true)]
    public void SoftGatedForward_MatchesDoubleReference(string gate, bool bias)
    {
        const int B = 2, T = 6;
        var gpt = Model(Config(gate, bias), B, T);
        ControllerTraining.SetState(gpt, 0.7, hard: false, l1: 0, budget: 1);
        var (x, y) = Tokens(B * T, 11, 1);
        float loss = gpt.Forward(x, y, training: false);
        var logits = new double[B * T * 11];
        double expected = new GatedReference(gpt).Loss(x, y, B, T, 0.7, hard: false, logitsOut: logits);
        Assert.True(Math.Abs(loss - expected) < 1e-4 * Math.Max(1, expected), $"loss {loss} vs reference {expected}");
        var actual = gpt.Logits;
        for (int i = 0; i < logits.Length; i++) Assert.True(Math.Abs(actual[i] - logits[i]) < 2e-4, $"logit {i}: {actual[i]} vs {logits[i]}");
    }

    [Theory]
    [InlineData("heads")]
    [InlineData("mlp")]
    [InlineData("both")]
    public void HardGatedForward_EqualsReferenceWithSkippedUnitsZeroed(string gate)
    {
        const int B = 2, T = 6;
        var gpt = Model(Config(gate), B, T);
        ControllerTraining.SetState(gpt, 1, hard: true, l1: 0, budget: 1);
        var (x, y) = Tokens(B * T, 11, 2);
        float loss = gpt.Forward(x, y, training: false);
        var reference = new GatedReference(gpt);
        double expected = reference.Loss(x, y, B, T, 1, hard: true);
        Assert.True(reference.MinAbsLogit > 1e-4, $"a gate logit ({reference.MinAbsLogit}) is too close to 0 to compare hard decisions");
        Assert.InRange(reference.HardKept, 0.1, 0.9);   // some units run, some are skipped
        Assert.True(Math.Abs(loss - expected) < 1e-4 * Math.Max(1, expected), $"loss {loss} vs reference {expected}");
        // and the kept fraction the training code reads from the kept logits is the reference's
        Assert.Equal(reference.HardKept, ControllerTraining.Kept(gpt, true, 1).Overall, 1e-9 + (gate == "both" ? 0.2 : 1e-9));
    }

    [Fact]
    public void SoftGates_ApproachHardDecisionsAsTemperatureFalls()
    {
        const int B = 1, T = 8;
        var gpt = Model(Config("both"), B, T);
        var (x, y) = Tokens(B * T, 11, 3);
        ControllerTraining.SetState(gpt, 1, hard: true, l1: 0, budget: 1);
        float hard = gpt.Forward(x, y, training: false);
        double previous = double.PositiveInfinity;
        foreach (double tau in new[] { 1.0, 0.1, 0.01, 1e-4 })
        {
            ControllerTraining.SetState(gpt, tau, hard: false, l1: 0, budget: 1);
            double gap = Math.Abs(gpt.Forward(x, y, training: false) - hard);
            Assert.True(gap <= previous + 1e-6, $"τ {tau}: |soft − hard| {gap} grew from {previous}");
            previous = gap;
        }
        Assert.True(previous < 1e-4, $"at τ = 1e-4 soft and hard losses differ by {previous}");
    }

    [Theory]
    [InlineData("both", 0.0, 1.0)]
    [InlineData("both", 0.5, 0.05)]   // the budget penalty active: its gradient flows through the gates too
    [InlineData("heads", 0.5, 0.05)]
    public void SoftGatedGradients_MatchFiniteDifferencesOfReference(string gate, double l1, double budget)
    {
        const int B = 1, T = 6;   // one sequence: the penalty's mean is over the whole batch (one shard)
        var gpt = Model(Config(gate, bias: true), B, T);
        const double tau = 0.8;
        ControllerTraining.SetState(gpt, tau, hard: false, l1: l1, budget: budget);
        var (x, y) = Tokens(B * T, 11, 4);
        gpt.ZeroGrad();
        gpt.Forward(x, y, training: true);
        gpt.Backward();
        var reference = new GatedReference(gpt);
        foreach (var p in gpt.Parameters.Where(p => p.Name.Contains(".gate.") || p.Name.Contains("h.0.attn.c_attn.weight") || p.Name.Contains("h.1.mlp.c_fc.weight")))
        {
            var values = p.Value;
            var analytic = p.Grad.ToArray();
            var probe = values.ToArray();
            GradCheck.Assert(p.Name, probe, analytic, () =>
            {
                probe.CopyTo(values.Span);
                return new GatedReference(gpt).Loss(x, y, B, T, tau, hard: false, l1: l1, budget: budget);
            }, eps: 1e-3, atol: 2e-5, rtol: 2e-3, maxChecks: 24);
            probe.CopyTo(values.Span);
        }
        Assert.True(reference.Loss(x, y, B, T, tau, false, l1, budget) > 0);
    }

    [Theory]
    [InlineData("heads")]
    [InlineData("mlp")]
    [InlineData("both")]
    public void CachedDecode_EqualsFullRecomputation_WithHardGates(string gate)
    {
        const int T = 12;
        var config = Config(gate, bias: true);
        var full = Model(config, 1, T, seed: 5);
        var (x, _) = Tokens(T, 11, 5);
        full.Forward(x, default, training: false);
        var expected = full.Logits.ToArray();
        var reference = new GatedReference(full);
        reference.Loss(x, x, 1, T, 1, hard: true);
        Assert.True(reference.MinAbsLogit > 1e-4, $"a gate logit ({reference.MinAbsLogit}) is too close to 0");
        Assert.InRange(reference.HardKept, 0.1, 0.9);

        // a prompt of 4 (prefill path), then one token at a time (the skipping path)
        var cache = full.CreateKvCache();
        var logits = full.ForwardCached(cache, x.AsSpan(0, 4)).ToArray();
        AssertRow(expected, 3, logits);
        for (int t = 4; t < T; t++)
        {
            logits = full.ForwardCached(cache, x.AsSpan(t, 1)).ToArray();
            AssertRow(expected, t, logits);
        }
        // and all one at a time from the start
        cache.Reset();
        for (int t = 0; t < T; t++) AssertRow(expected, t, full.ForwardCached(cache, x.AsSpan(t, 1)).ToArray());
        var kept = ControllerTraining.Gates(full).Sum(g => g.Gate.DecodeKept);
        var seen = ControllerTraining.Gates(full).Sum(g => g.Gate.DecodeSeen);
        Assert.InRange((double)kept / seen, 0.05, 0.95);
    }

    static void AssertRow(float[] expected, int t, float[] actual)
    {
        for (int v = 0; v < actual.Length; v++)
            Assert.True(Math.Abs(expected[t * actual.Length + v] - actual[v]) < 1e-4, $"position {t}, logit {v}: decode {actual[v]} vs full {expected[t * actual.Length + v]}");
    }

    [Fact]
    public void SkippedHeadAndGroup_ReadNothing_AtBatchOneDecode()
    {
        // Head 0 and MLP group 0 of every layer always skipped (gate bias −100); their q rows of c_attn, their c_proj
        // columns and their c_fc rows set to NaN: the decode must neither read them nor differ from the reference
        // model whose units are zeroed. k and v rows stay real: the cache keeps every head's keys and values.
        const int T = 8, hs = 8, S = 8;
        var config = Config("both");
        var gpt = Model(config, 1, T, seed: 7);
        var (x, _) = Tokens(T, 11, 7);
        var byName = gpt.Parameters.ToDictionary(p => p.Name);
        for (int l = 0; l < 2; l++)
        {
            byName[$"transformer.h.{l}.attn.gate.bias"].Value.Span[0] = -100f;
            byName[$"transformer.h.{l}.mlp.gate.bias"].Value.Span[0] = -100f;
        }
        ControllerTraining.SetState(gpt, 1, true, 0, 1);
        gpt.Forward(x, default, training: false);
        var expected = gpt.Logits.ToArray();
        for (int l = 0; l < 2; l++)
        {
            var attn = byName[$"transformer.h.{l}.attn.c_attn.weight"].Value.Span;
            attn.Slice(0, hs * 16).Fill(float.NaN);   // head 0's q rows
            var proj = byName[$"transformer.h.{l}.attn.c_proj.weight"].Value.Span;
            for (int o = 0; o < 16; o++) proj.Slice(o * 16, hs).Fill(float.NaN);   // head 0's c_proj columns
            byName[$"transformer.h.{l}.mlp.c_fc.weight"].Value.Span.Slice(0, S * 16).Fill(float.NaN);   // group 0's c_fc rows
            var mproj = byName[$"transformer.h.{l}.mlp.c_proj.weight"].Value.Span;
            for (int o = 0; o < 16; o++) mproj.Slice(o * 64, S).Fill(float.NaN);   // group 0's c_proj columns
        }
        foreach (var (_, _, g) in ControllerTraining.Gates(gpt)) { }
        foreach (var b in gpt.Blocks)
        {
            ((GatedSelfAttention)b.Attention).InvalidateDecodeCopy();
            ((GatedMlp)b.FeedForward).InvalidateDecodeCopy();
        }
        var cache = gpt.CreateKvCache();
        for (int t = 0; t < T; t++)
        {
            var logits = gpt.ForwardCached(cache, x.AsSpan(t, 1)).ToArray();
            Assert.All(logits, v => Assert.True(float.IsFinite(v)));
            AssertRow(expected, t, logits);
        }
    }

    [Fact]
    public void GatedCheckpoint_RoundTrips_ConfigAndLogits()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-gate-" + Guid.NewGuid().ToString("N"));
        try
        {
            var gpt = Model(Config("both", group: 16), 1, 6);
            var (x, _) = Tokens(6, 11, 8);
            gpt.Forward(x, default, training: false);
            var expected = gpt.Logits.ToArray();
            NanoSparse.Training.Checkpoint.SaveModel(dir, gpt, null);
            var loaded = NanoSparse.Training.Checkpoint.LoadAnyModel(dir, 1, 6, out _);
            Assert.Equal("both", loaded.Config.Gate);
            Assert.Equal(16, loaded.Config.GateGroup);
            loaded.Forward(x, default, training: false);
            Assert.Equal(expected, loaded.Logits.ToArray());
            // the training checkpoint's model_args carry the keys too
            var args = NanoSparse.Training.ModelArgs.From(gpt.Config);
            Assert.Equal(gpt.Config, args.ToConfig());
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("gate_budget", "0", "gate_budget (0) must lie in (0, 1]")]
    [InlineData("gate_budget", "1.5", "gate_budget (1.5) must lie in (0, 1]")]
    [InlineData("gate_budget", "-0.2", "gate_budget (-0.2) must lie in (0, 1]")]
    [InlineData("gate", "attention", "gate (\"attention\") must be heads, mlp or both")]
    [InlineData("gate_temperature_min", "2", "gate_temperature_min (2) must lie in (0, gate_temperature = 1]")]
    public void BadControllerKey_IsOneLineError(string key, string value, string message)
    {
        var c = new ControllerConfig();
        c.Set(key, value);
        var e = Assert.Throws<ArgumentException>(c.Validate);
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void BadControllerKeyText_IsOneLineError()
    {
        var c = new ControllerConfig();
        Assert.Equal("gate_budget (\"half\") must be a number", Assert.Throws<ArgumentException>(() => c.Set("gate_budget", "half")).Message);
        Assert.StartsWith("unknown key \"gate_budgt\"; expected one of: gate, ", Assert.Throws<ArgumentException>(() => c.Set("gate_budgt", "0.5")).Message);
    }

    [Theory]
    [InlineData(48, "gate_group (48) must divide the MLP hidden width of layer 0 (64)")]
    [InlineData(-8, "gate_group (-8) must be positive (0 reads as 64)")]
    public void GateGroupThatDoesNotDivideHidden_IsOneLineError(int group, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => Config("both", group: group).Validate());
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void GateWithSparseAttentionOrSparseWeights_IsOneLineError()
    {
        var e = Assert.Throws<ArgumentException>(() => (Config("heads") with { NEmbd = 32, Attention = "window", AttnWindow = 4 }).Validate());
        Assert.Equal("gate (\"heads\") runs with the dense attention pattern only; attention is \"window\"", e.Message);
        Assert.Equal("gate (\"gates\") must be one of: none, heads, mlp, both", Assert.Throws<ArgumentException>(() => Config("gates").Validate()).Message);
        var sparse = Config("mlp") with { WeightLayouts = new Dictionary<string, string> { ["mlp.c_fc"] = "csr" }, WeightDensities = new Dictionary<string, double> { ["mlp.c_fc"] = 0.5 } };
        var ex = Assert.Throws<ArgumentException>(() => new Gpt(sparse, 1, 4));
        Assert.Contains("needs a dense weight, found layout \"csr\"", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Schedule_AnnealsGeometricallyThenTurnsHard()
    {
        var c = new ControllerConfig { MaxIters = 100, GateAnnealIters = 11, GateTemperature = 1, GateTemperatureMin = 0.01 };
        Assert.Equal((1.0, false), ControllerTraining.Schedule(c, 0));
        Assert.Equal(0.1, ControllerTraining.Schedule(c, 5).Temperature, 12);
        Assert.Equal(0.01, ControllerTraining.Schedule(c, 10).Temperature, 12);
        Assert.False(ControllerTraining.Schedule(c, 10).Hard);
        Assert.Equal((0.01, true), ControllerTraining.Schedule(c, 11));
    }

    [Fact]
    public void RowCombination_EqualsDoubleProductOverKeptRows()
    {
        var r = new Random(9);
        foreach (int C in new[] { 1, 7, 16, 37 })
            foreach (int count in new[] { 1, 3, 4, 9 })
            {
                var rows = GradCheck.RandomArray(r, count * C);
                var coef = GradCheck.RandomArray(r, count);
                var start = GradCheck.RandomArray(r, C);
                var output = start.ToArray();
                NanoSparse.Kernels.RowCombination.AddTo(output, coef, rows, count);
                var expected = new double[C];
                for (int c = 0; c < C; c++)
                {
                    expected[c] = start[c];
                    for (int j = 0; j < count; j++) expected[c] += (double)coef[j] * rows[j * C + c];
                }
                GradCheck.AssertClose(output, expected, 1e-5, $"C {C} count {count}");
            }
    }
}
