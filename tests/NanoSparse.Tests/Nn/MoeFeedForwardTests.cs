using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Nn.Parts.FeedForwards;

namespace NanoSparse.Tests.Nn;

/// <summary>
/// The MoE feed-forward part against a dense reference written here in double precision: it runs every expert on every
/// token and weights each by its gate (0 where the routing rule, re-implemented here, does not send the token), and its
/// gradients are central finite differences of that reference.
/// </summary>
public class MoeFeedForwardTests
{
    // One part with its own buffers, as Gpt lays them out.
    sealed class Harness
    {
        public readonly GptConfig Config;
        public readonly MoeFeedForward Part;
        public readonly int B, T, C, H, E, K;
        public readonly float[] Params, Grads, Acts, Scratch;
        readonly int _scratchWidth;
        readonly BufferLayout _layout;

        public Harness(GptConfig config, int b, int t, int seed = 1)
        {
            Config = config;
            B = b; T = t; C = config.NEmbd; H = MoeSettings.Hidden(config); E = MoeSettings.Experts(config); K = MoeSettings.K(config);
            _layout = new BufferLayout(b, t);
            Part = new MoeFeedForward(config, "mlp", _layout);
            Params = new float[_layout.ParameterFloats];
            Grads = new float[Params.Length];
            Acts = new float[_layout.ActivationFloats];
            _scratchWidth = _layout.ScratchWidth;
            Scratch = new float[_layout.Rows * _scratchWidth];
            var random = new Random(seed);
            for (int i = 0; i < Params.Length; i++) Params[i] = (float)((random.NextDouble() * 2 - 1) * 0.5);
            // a sharper router so that routing decisions sit far from ties
            var router = Part.RouterWeight;
            for (int i = 0; i < router.Length; i++) Params[router.Offset + i] *= 3f;
        }

        public Pass PassOf(int firstSequence, int sequences) =>
            new(Params, Grads, Acts, Scratch, _scratchWidth, [], [], 0f, firstSequence, sequences, T);

        // Forward over the batch in `shards` slices of whole sequences.
        public float[] Forward(float[] x, float[] residual, int shards = 1)
        {
            var output = new float[B * T * C];
            foreach (var (s0, n) in Slices(shards))
            {
                var pass = PassOf(s0, n);
                int r0 = s0 * T * C, len = n * T * C;
                Part.Forward(output.AsSpan(r0, len), x.AsSpan(r0, len), residual.AsSpan(r0, len), pass);
            }
            return output;
        }

        public float[] Backward(float[] x, float[] dout, int shards = 1)
        {
            var dx = new float[x.Length];
            foreach (var (s0, n) in Slices(shards))
            {
                int r0 = s0 * T * C, len = n * T * C;
                Part.Backward(dx.AsSpan(r0, len), dout.AsSpan(r0, len), x.AsSpan(r0, len), PassOf(s0, n));
            }
            return dx;
        }

        IEnumerable<(int, int)> Slices(int shards)
        {
            int per = (B + shards - 1) / shards;
            for (int s = 0; s < B; s += per) yield return (s, Math.Min(per, B - s));
        }

        public double[] P(ParameterSlot slot) => Params.AsSpan(slot.Offset, slot.Length).ToArray().Select(v => (double)v).ToArray();
        public ParameterSlot Slot(string name)
        {
            int offset = 0;
            foreach (var p in _layout.Parameters) if (p.Name == name) offset = p.Offset;
            var shape = _layout.Parameters.First(p => p.Name == name).Shape;
            return new ParameterSlot(offset, shape.Aggregate(1, (a, d) => a * d));
        }
    }

    // ---- the dense reference ------------------------------------------------------------------------------------

    // Gates (B·T, E) of the documented rules, computed in double from the router probabilities.
    static double[] ReferenceGates(GptConfig config, double[] p, int B, int T, out int dropped)
    {
        int E = MoeSettings.Experts(config), K = MoeSettings.K(config);
        int cap = MoeSettings.ExpertCapacity(config, T);
        var gates = new double[B * T * E];
        dropped = 0;
        for (int b = 0; b < B; b++)
        {
            if (MoeSettings.Routing(config) == MoeSettings.ExpertChoice)
            {
                for (int e = 0; e < E; e++)
                {
                    var picked = Enumerable.Range(0, T).OrderByDescending(t => p[((b * T) + t) * E + e]).ThenBy(t => t).Take(cap);
                    foreach (int t in picked) gates[((b * T) + t) * E + e] = p[((b * T) + t) * E + e];
                }
                for (int t = 0; t < T; t++)
                    if (Enumerable.Range(0, E).All(e => gates[((b * T) + t) * E + e] == 0)) dropped++;
                continue;
            }
            var top = new int[T][];
            for (int t = 0; t < T; t++)
                top[t] = Enumerable.Range(0, E).OrderByDescending(e => p[((b * T) + t) * E + e]).ThenBy(e => e).Take(K).ToArray();
            var used = new int[E];
            for (int j = 0; j < K; j++)
                for (int t = 0; t < T; t++)
                {
                    int e = top[t][j], row = b * T + t;
                    if (used[e] >= cap) { dropped++; continue; }
                    used[e]++;
                    double sum = K == 1 ? 1 : top[t].Sum(i => p[row * E + i]);
                    gates[row * E + e] = p[row * E + e] / sum;
                }
        }
        return gates;
    }

    static double GeluD(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    // Abramowitz–Stegun 7.1.26 is too coarse for finite differences; use the series/continued fraction via Math functions.
    static double Erf(double x)
    {
        // erf by its Taylor series for |x| < 3, asymptotic 1 beyond (the reference's inputs are small)
        double ax = Math.Abs(x);
        if (ax > 5) return Math.Sign(x);
        double sum = x, term = x, x2 = x * x;
        for (int n = 1; n < 200; n++)
        {
            term *= -x2 / n;
            double add = term / (2 * n + 1);
            sum += add;
            if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    // Reference forward in double: returns Σ w·out + moe_aux_loss·aux + moe_z_loss·z, with the parts named.
    static double ReferenceLoss(Harness h, double[] pars, double[] x, double[] residual, double[] w, out double[] output,
        out double aux, out double z, out double[] gatesOut)
    {
        int B = h.B, T = h.T, C = h.C, H = h.H, E = h.E, N = B * T;
        var cfg = h.Config;
        var router = h.Part.RouterWeight;
        var p = new double[N * E];
        var lse = new double[N];
        for (int r = 0; r < N; r++)
        {
            double max = double.NegativeInfinity;
            var logits = new double[E];
            for (int e = 0; e < E; e++)
            {
                double s = 0;
                for (int c = 0; c < C; c++) s += x[r * C + c] * pars[router.Offset + e * C + c];
                logits[e] = s;
                max = Math.Max(max, s);
            }
            double sum = logits.Sum(l => Math.Exp(l - max));
            for (int e = 0; e < E; e++) p[r * E + e] = Math.Exp(logits[e] - max) / sum;
            lse[r] = max + Math.Log(sum);
        }
        var gates = ReferenceGates(cfg, p, B, T, out _);
        gatesOut = gates;
        output = (double[])residual.Clone();
        for (int e = 0; e < E; e++)
        {
            var fcW = h.Part.ExpertFcWeight(e);
            var projW = h.Part.ExpertProjWeight(e);
            ParameterSlot fcB = cfg.Bias ? h.Slot($"mlp.experts.{e}.c_fc.bias") : ParameterSlot.Absent;
            ParameterSlot projB = cfg.Bias ? h.Slot($"mlp.experts.{e}.c_proj.bias") : ParameterSlot.Absent;
            for (int r = 0; r < N; r++)   // every expert on every token, weighted by the gate (0 when not routed)
            {
                var g = new double[H];
                for (int j = 0; j < H; j++)
                {
                    double s = fcB.IsPresent ? pars[fcB.Offset + j] : 0;
                    for (int c = 0; c < C; c++) s += x[r * C + c] * pars[fcW.Offset + j * C + c];
                    g[j] = GeluD(s);
                }
                for (int c = 0; c < C; c++)
                {
                    double s = projB.IsPresent ? pars[projB.Offset + c] : 0;
                    for (int j = 0; j < H; j++) s += g[j] * pars[projW.Offset + c * H + j];
                    output[r * C + c] += gates[r * E + e] * s;
                }
            }
        }
        // losses: per sequence E·Σ f_e·P_e (f from the router's choices before capacity), mean over sequences
        aux = 0;
        z = 0;
        int K = MoeSettings.K(cfg);
        bool ec = MoeSettings.Routing(cfg) == MoeSettings.ExpertChoice;
        for (int b = 0; b < B; b++)
        {
            var f = new double[E];
            if (ec) for (int e = 0; e < E; e++) f[e] = 1.0 / E;
            else
                for (int t = 0; t < T; t++)
                    foreach (int e in Enumerable.Range(0, E).OrderByDescending(e => p[(b * T + t) * E + e]).ThenBy(e => e).Take(K)) f[e] += 1.0 / (T * K);
            double s = 0;
            for (int e = 0; e < E; e++) s += f[e] * Enumerable.Range(0, T).Average(t => p[(b * T + t) * E + e]);
            aux += E * s / B;
            for (int t = 0; t < T; t++) z += lse[b * T + t] * lse[b * T + t] / (B * T);
        }
        double loss = 0;
        for (int i = 0; i < w.Length; i++) loss += w[i] * output[i];
        return loss + MoeSettings.AuxWeight(cfg) * aux + MoeSettings.ZWeight(cfg) * z;
    }

    static GptConfig Moe(int experts, int? topK, string routing = "topk", double? capacity = null, bool bias = true, int C = 8, int H = 6) => new()
    {
        NLayer = 1, NHead = 2, NEmbd = C, BlockSize = 16, VocabSize = 11, Bias = bias,
        NExperts = experts, TopK = topK, ExpertHidden = H, MoeRouting = routing, CapacityFactor = capacity,
        MoeAuxLoss = 0.3, MoeZLoss = 0.05,   // large weights so that their gradients are visible in the checks
    };

    static double[] D(float[] a) => a.Select(v => (double)v).ToArray();

    public static TheoryData<int, int?, string, double?, bool> Routings => new()
    {
        { 4, 1, "topk", null, true },             // Switch, dropless
        { 4, 2, "topk", null, false },            // Mixtral-style, dropless
        { 4, 2, "topk", 0.5, true },              // top-2 with capacity: tokens drop
        { 3, 1, "topk", 0.75, false },            // top-1 with capacity
        { 4, 2, "expert_choice", null, true },    // expert choice, bucket T·k/E
        { 4, 1, "expert_choice", 0.5, false },    // expert choice, small buckets: tokens unpicked
    };

    [Theory]
    [MemberData(nameof(Routings))]
    public void ForwardMatchesTheDenseReferenceAndGradientsMatchItsFiniteDifferences(int experts, int? topK, string routing, double? capacity, bool bias)
    {
        var h = new Harness(Moe(experts, topK, routing, capacity, bias), 2, 6);
        var random = new Random(7);
        int n = h.B * h.T * h.C;
        var x = GradCheck.RandomArray(random, n);
        var residual = GradCheck.RandomArray(random, n);
        var w = GradCheck.RandomArray(random, n);

        var output = h.Forward(x, residual, shards: 2);
        double refLoss = ReferenceLoss(h, D(h.Params), D(x), D(residual), D(w), out var refOut, out double aux, out double z, out _);
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(output[i] - refOut[i]) < 1e-4, $"output[{i}] {output[i]} vs reference {refOut[i]}");
        Assert.Equal(aux, h.Part.AuxLoss, 5);
        Assert.Equal(z, h.Part.ZLoss, 4);

        Array.Clear(h.Grads);
        var dx = h.Backward(x, w, shards: 2);

        // central differences of the double reference, over every parameter and every input
        var pars = D(h.Params);
        var xd = D(x);
        double eps = 1e-5;
        double Loss(double[] pp, double[] xx) => ReferenceLoss(h, pp, xx, D(residual), D(w), out _, out _, out _, out _);
        void Check(string what, double analytic, double numeric, double scale) =>
            Assert.True(Math.Abs(analytic - numeric) <= 2e-4 + 2e-3 * scale, $"{what}: analytic {analytic} vs numeric {numeric}");
        var numericP = new double[pars.Length];
        for (int i = 0; i < pars.Length; i++)
        {
            double s = pars[i];
            pars[i] = s + eps; double plus = Loss(pars, xd);
            pars[i] = s - eps; double minus = Loss(pars, xd);
            pars[i] = s;
            numericP[i] = (plus - minus) / (2 * eps);
        }
        double scaleP = numericP.Max(Math.Abs);
        for (int i = 0; i < pars.Length; i++) Check($"parameter {i}", h.Grads[i], numericP[i], scaleP);
        var router = h.Part.RouterWeight;
        Assert.True(Enumerable.Range(router.Offset, router.Length).Max(i => Math.Abs(numericP[i])) > 1e-3, "router gradient is too small to check");
        var numericX = new double[xd.Length];
        for (int i = 0; i < xd.Length; i++)
        {
            double s = xd[i];
            xd[i] = s + eps; double plus = Loss(pars, xd);
            xd[i] = s - eps; double minus = Loss(pars, xd);
            xd[i] = s;
            numericX[i] = (plus - minus) / (2 * eps);
        }
        double scaleX = numericX.Max(Math.Abs);
        for (int i = 0; i < xd.Length; i++) Check($"input {i}", dx[i], numericX[i], scaleX);
        _ = refLoss;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void DroplessModeDropsNothingAndEveryExpertTakesItsChoices(int topK)
    {
        var h = new Harness(Moe(5, topK), 3, 8, seed: 3);
        var random = new Random(2);
        var x = GradCheck.RandomArray(random, h.B * h.T * h.C);
        h.Forward(x, new float[x.Length]);
        var processed = new long[h.E];
        var assigned = new long[h.E];
        long dropped = h.Part.AddLoad(processed, assigned, out long outOf);
        Assert.Equal(0, dropped);
        Assert.Equal(h.B * h.T * topK, outOf);
        Assert.Equal(assigned, processed);
        Assert.Equal(h.B * h.T * topK, processed.Sum());
    }

    [Theory]
    [InlineData(1, 0.5)]
    [InlineData(2, 0.5)]
    [InlineData(2, 1.0)]
    [InlineData(3, 0.25)]
    public void CapacityLimitsHoldExactlyAndTheDocumentedAssignmentsDrop(int topK, double capacity)
    {
        var config = Moe(4, topK, capacity: capacity);
        var h = new Harness(config, 3, 8, seed: 5);
        var random = new Random(4);
        var x = GradCheck.RandomArray(random, h.B * h.T * h.C);
        var output = h.Forward(x, new float[x.Length]);
        int cap = (int)Math.Ceiling(capacity * h.T * topK / h.E);
        Assert.Equal(cap, h.Part.Capacity);
        // the same rule in the reference: which (token, expert) pairs have a gate
        var p = new double[h.B * h.T * h.E];
        var probs = h.Acts.AsSpan(0, p.Length).ToArray();   // p is the part's first kept activation
        for (int i = 0; i < p.Length; i++) p[i] = probs[i];
        var gates = ReferenceGates(config, p, h.B, h.T, out int refDropped);
        for (int b = 0; b < h.B; b++)
            for (int e = 0; e < h.E; e++)
                Assert.True(Enumerable.Range(0, h.T).Count(t => gates[((b * h.T) + t) * h.E + e] != 0) <= cap, $"expert {e} of sequence {b} over capacity {cap}");
        var processed = new long[h.E];
        long dropped = h.Part.AddLoad(processed, new long[h.E], out _);
        Assert.Equal(refDropped, dropped);
        Assert.True(dropped > 0, "the case should drop assignments");
        Assert.Equal(h.B * h.T * topK - dropped, processed.Sum());
        // a token whose every assignment dropped passes through as the residual (0 here)
        for (int r = 0; r < h.B * h.T; r++)
            if (Enumerable.Range(0, h.E).All(e => gates[r * h.E + e] == 0))
                Assert.All(output.AsSpan(r * h.C, h.C).ToArray(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(1, null)]
    [InlineData(2, 1.5)]
    [InlineData(1, 0.3)]
    public void ExpertChoiceFillsEachBucketExactly(int topK, double? capacity)
    {
        var config = Moe(4, topK, "expert_choice", capacity);
        var h = new Harness(config, 2, 8, seed: 9);
        var x = GradCheck.RandomArray(new Random(3), h.B * h.T * h.C);
        h.Forward(x, new float[x.Length]);
        int bucket = Math.Min(h.T, (int)Math.Ceiling((capacity ?? 1.0) * h.T * topK / h.E));
        var processed = new long[h.E];
        h.Part.AddLoad(processed, new long[h.E], out _);
        Assert.All(processed, c => Assert.Equal(h.B * bucket, c));
    }

    [Fact]
    public void AuxiliaryLossesMatchHandComputedValues()
    {
        // C = 2, E = 2, top-1, one sequence of two tokens x0 = (1, 0), x1 = (0, 1); router rows (ln 3, 0) and (0, −ln 3):
        // logits (ln 3, 0) and (0, −ln 3) → p = (3/4, 1/4) for both tokens, both choose expert 0.
        // balance: f = (1, 0), P = (3/4, 1/4) → E·Σ f·P = 2 · 3/4 = 1.5
        // z: lse = ln 4 and ln(4/3) → mean of squares = (ln²4 + ln²(4/3)) / 2
        var config = new GptConfig { NLayer = 1, NHead = 1, NEmbd = 2, BlockSize = 2, VocabSize = 3, NExperts = 2, TopK = 1, ExpertHidden = 3 };
        var h = new Harness(config, 1, 2);
        var router = h.Part.RouterWeight;
        float l3 = MathF.Log(3f);
        h.Params[router.Offset + 0] = l3; h.Params[router.Offset + 1] = 0;    // expert 0's row
        h.Params[router.Offset + 2] = 0; h.Params[router.Offset + 3] = -l3;   // expert 1's row
        h.Forward([1, 0, 0, 1], new float[4]);
        Assert.Equal(1.5, h.Part.AuxLoss, 6);
        double z = (Math.Pow(Math.Log(4), 2) + Math.Pow(Math.Log(4.0 / 3), 2)) / 2;
        Assert.Equal(z, h.Part.ZLoss, 5);
        Assert.Equal(0.01 * 1.5 + 0.001 * z, h.Part.WeightedLoss, 6);
        var processed = new long[2];
        h.Part.AddLoad(processed, new long[2], out _);
        Assert.Equal([2L, 0L], processed);
    }

    [Fact]
    public void ShardsRouteAsOnePassAndGiveItsOutputsAndGradients()
    {
        var h = new Harness(Moe(4, 2, capacity: 0.75), 4, 8, seed: 11);
        var random = new Random(5);
        var x = GradCheck.RandomArray(random, h.B * h.T * h.C);
        var res = GradCheck.RandomArray(random, x.Length);
        var w = GradCheck.RandomArray(random, x.Length);
        var one = h.Forward(x, res, 1);
        Array.Clear(h.Grads);
        var dxOne = h.Backward(x, w, 1);
        var gOne = (float[])h.Grads.Clone();
        var processedOne = new long[h.E];
        long droppedOne = h.Part.AddLoad(processedOne, new long[h.E], out _);
        var two = h.Forward(x, res, 4);
        var processedTwo = new long[h.E];
        Assert.Equal(droppedOne, h.Part.AddLoad(processedTwo, new long[h.E], out _));
        Assert.Equal(processedOne, processedTwo);
        Array.Clear(h.Grads);
        var dxTwo = h.Backward(x, w, 4);
        // the routing is per sequence, so only the products' rounding differs (panels of other heights)
        for (int i = 0; i < one.Length; i++) Assert.True(Math.Abs(one[i] - two[i]) <= 1e-5f, $"output {i}");
        for (int i = 0; i < one.Length; i++) Assert.True(Math.Abs(dxOne[i] - dxTwo[i]) <= 1e-5f, $"dx {i}");
        for (int i = 0; i < gOne.Length; i++) Assert.True(Math.Abs(gOne[i] - h.Grads[i]) <= 1e-5f * (1 + Math.Abs(gOne[i])), $"gradient {i}");
    }
}
