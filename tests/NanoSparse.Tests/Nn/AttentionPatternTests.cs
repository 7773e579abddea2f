using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn;

/// <summary>
/// The sparse attention patterns against a dense masked-attention reference written here in double precision: the
/// reference evaluates softmax(q·kᵀ/√hs) · v over exactly the keys the pattern allows (NSA: its three branches over
/// mean-compressed, selected and window keys, mixed by the gates). Selections (top-k, NSA) are read from what the
/// kernel kept and checked to be the top scores by the reference's own double-precision scores; gradients are
/// central finite differences of the double reference.
/// </summary>
[Collection(nameof(GemmCollection))]
public class AttentionPatternTests
{
    const int C = 32, NH = 2, Hs = C / NH;

    public static TheoryData<string> Patterns => new() { "dense", "window", "block", "blockstrided", "topk", "nsa", "nsa8" };

    internal static SparsePattern Make(string name) => name switch
    {
        "dense" => new SparsePattern(AttentionKind.Dense),
        "window" => new SparsePattern(AttentionKind.Window, Window: 21),
        "block" => new SparsePattern(AttentionKind.Block, Block: 16, Local: 2, Global: 1),
        "blockstrided" => new SparsePattern(AttentionKind.Block, Block: 16, Local: 1, Global: 0, Stride: 2),
        "topk" => new SparsePattern(AttentionKind.TopK, Block: 16, TopK: 2),
        "nsa" => new SparsePattern(AttentionKind.Nsa, Window: 20, Block: 16, Stride: 16, TopK: 2),
        "nsa8" => new SparsePattern(AttentionKind.Nsa, Window: 9, Block: 32, Stride: 8, TopK: 1),
        _ => throw new ArgumentException(name),
    };

    /// <summary>Keys query t sees for a single-branch pattern (kind) given its selected blocks.</summary>
    static bool Allowed(SparsePattern p, AttentionKind kind, int t, int j, IReadOnlyCollection<int> selected)
    {
        if (j > t) return false;
        int qb = p.Block > 0 ? t / p.Block : 0, kb = p.Block > 0 ? j / p.Block : 0;
        return kind switch
        {
            AttentionKind.Dense => true,
            AttentionKind.Window => j > t - p.Window,
            AttentionKind.Block => qb - kb < p.Local || kb < p.Global || (p.Stride > 0 && kb % p.Stride == p.Stride - 1),
            _ => kb == qb || selected.Contains(kb),
        };
    }

    /// <summary>softmax(q · keys[allowed]ᵀ / √hs) · values[allowed] in double (zero when nothing is allowed).</summary>
    static double[] Attend(double[] q, Func<int, double[]> key, Func<int, double[]> value, int count, Func<int, bool> allowed)
    {
        var s = new double[count];
        double max = double.NegativeInfinity;
        for (int j = 0; j < count; j++)
        {
            if (!allowed(j)) { s[j] = double.NegativeInfinity; continue; }
            var k = key(j);
            double dot = 0;
            for (int d = 0; d < Hs; d++) dot += q[d] * k[d];
            s[j] = dot / Math.Sqrt(Hs);
            max = Math.Max(max, s[j]);
        }
        var y = new double[Hs];
        if (max == double.NegativeInfinity) return y;
        double sum = 0;
        for (int j = 0; j < count; j++) sum += s[j] = s[j] == double.NegativeInfinity ? 0 : Math.Exp(s[j] - max);
        for (int j = 0; j < count; j++)
        {
            if (s[j] == 0) continue;
            var v = value(j);
            for (int d = 0; d < Hs; d++) y[d] += s[j] / sum * v[d];
        }
        return y;
    }

    static double[] Row(double[] x, int row, int offset, int stride) => x.AsSpan(row * stride + offset, Hs).ToArray();

    /// <summary>Mean of rows [from, from + count) of one head's keys or values (offset picks k or v and the head).</summary>
    static double[] Mean(double[] qkv, int b, int T, int offset, int from, int count)
    {
        var m = new double[Hs];
        for (int j = from; j < from + count; j++)
            for (int d = 0; d < Hs; d++) m[d] += qkv[(b * T + j) * 3 * C + offset + d] / count;
        return m;
    }

    /// <summary>y (B·T, C) of the pattern in double, with the selections given per (b, t, h).</summary>
    static double[] Reference(SparsePattern p, double[] qkv, double[] gates, int B, int T, Func<int, int, int, int[]> selected)
    {
        var y = new double[B * T * C];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++)
        {
            var q = Row(qkv, b * T + t, h * Hs, 3 * C);
            double[] K(int j) => Row(qkv, b * T + j, C + h * Hs, 3 * C);
            double[] V(int j) => Row(qkv, b * T + j, 2 * C + h * Hs, 3 * C);
            var sel = selected(b, t, h);
            double[] o;
            if (p.Kind != AttentionKind.Nsa) o = Attend(q, K, V, T, j => Allowed(p, p.Kind, t, j, sel));
            else
            {
                int Tc = p.CompressedBlocks(T);
                var oc = Attend(q, i => Mean(qkv, b, T, C + h * Hs, i * p.Stride, p.Block), i => Mean(qkv, b, T, 2 * C + h * Hs, i * p.Stride, p.Block),
                    Tc, i => i * p.Stride + p.Block - 1 <= t);
                var os = Attend(q, K, V, T, j => Allowed(p, AttentionKind.TopK, t, j, sel));
                var ow = Attend(q, K, V, T, j => Allowed(p, AttentionKind.Window, t, j, sel));
                o = new double[Hs];
                int g = (b * T + t) * 3 * NH + h;
                for (int d = 0; d < Hs; d++) o[d] = gates[g] * oc[d] + gates[g + NH] * os[d] + gates[g + 2 * NH] * ow[d];
            }
            o.CopyTo(y, (b * T + t) * C + h * Hs);
        }
        return y;
    }

    /// <summary>The blocks the kernel selected for (b, t, h), read from kept.</summary>
    static Func<int, int, int, int[]> Selections(SparsePattern p, float[] kept, int T)
    {
        int W = p.KeptWidth(C, NH), offset = p.Kind == AttentionKind.Nsa ? 3 * NH : NH;
        return (b, t, h) =>
        {
            if (p.Kind is not (AttentionKind.TopK or AttentionKind.Nsa)) return [];
            var list = new List<int>();
            for (int s = 0; s < p.TopK; s++)
            {
                int v = BitConverter.SingleToInt32Bits(kept[(b * T + t) * W + offset + h * p.TopK + s]);
                if (v >= 0) list.Add(v);
            }
            return list.ToArray();
        };
    }

    /// <summary>Checks the kernel's selections: min(TopK, own block) distinct earlier blocks whose reference scores are the largest.</summary>
    static void AssertSelectionsAreTop(SparsePattern p, double[] qkv, int B, int T, Func<int, int, int, int[]> selected)
    {
        if (p.Kind is not (AttentionKind.TopK or AttentionKind.Nsa)) return;
        for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++)
        {
            int qb = t / p.Block;
            var score = new double[qb];
            var q = Row(qkv, b * T + t, h * Hs, 3 * C);
            if (p.Kind == AttentionKind.TopK)
                for (int kb = 0; kb < qb; kb++)
                {
                    var m = Mean(qkv, b, T, C + h * Hs, kb * p.Block, p.Block);
                    for (int d = 0; d < Hs; d++) score[kb] += q[d] * m[d];
                }
            else
            {
                int nc = p.CompressedBlocks(t + 1);
                var s = new double[nc];
                for (int i = 0; i < nc; i++)
                {
                    var m = Mean(qkv, b, T, C + h * Hs, i * p.Stride, p.Block);
                    for (int d = 0; d < Hs; d++) s[i] += q[d] * m[d] / Math.Sqrt(Hs);
                }
                double max = nc > 0 ? s.Max() : 0, sum = s.Sum(v => Math.Exp(v - max));
                for (int i = 0; i < nc; i++)
                    for (int kb = i * p.Stride / p.Block; kb <= (i * p.Stride + p.Block - 1) / p.Block && kb < qb; kb++)
                        score[kb] += Math.Exp(s[i] - max) / sum;
            }
            var sel = selected(b, t, h);
            Assert.Equal(Math.Min(p.TopK, qb), sel.Length);
            Assert.Equal(sel.Length, sel.Distinct().Count());
            Assert.All(sel, kb => Assert.InRange(kb, 0, qb - 1));
            if (sel.Length == 0 || sel.Length == qb) continue;
            double worstChosen = sel.Min(kb => score[kb]);
            double bestLeft = Enumerable.Range(0, qb).Where(kb => !sel.Contains(kb)).Max(kb => score[kb]);
            Assert.True(worstChosen >= bestLeft - 1e-5, $"b {b} t {t} h {h}: chose a block scoring {worstChosen} over one scoring {bestLeft}");
        }
    }

    static (float[] qkv, float[] gates) Inputs(int B, int T, int seed)
    {
        var r = new Random(seed);
        var qkv = GradCheck.RandomArray(r, B * T * 3 * C, 1.5);
        var gates = GradCheck.RandomArray(r, B * T * 3 * NH, 0.5).Select(g => 0.5f + g).ToArray();
        return (qkv, gates);
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void ForwardMatchesDoubleMaskedReference(string name)
    {
        var p = Make(name);
        foreach (int T in new[] { 77, 100 })
        {
            int B = 2;
            var (qkv, gates) = Inputs(B, T, T + name.Length);
            if (p.Kind != AttentionKind.Nsa) gates = [];
            var y = new float[B * T * C];
            var kept = new float[B * T * p.KeptWidth(C, NH)];
            SparseAttention.Forward(p, y, kept, qkv, gates, B, T, C, NH);
            var qd = qkv.Select(v => (double)v).ToArray();
            var sel = Selections(p, kept, T);
            AssertSelectionsAreTop(p, qd, B, T, sel);
            var reference = Reference(p, qd, gates.Select(v => (double)v).ToArray(), B, T, sel);
            GradCheck.AssertClose(y, reference, 2e-5, $"{name} T {T} y");
        }
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void BackwardMatchesFiniteDifferencesOfTheReference(string name)
    {
        var p = Make(name);
        int B = 1, T = 50;
        var (qkv, gates) = Inputs(B, T, 5 + name.Length);
        bool nsa = p.Kind == AttentionKind.Nsa;
        if (!nsa) gates = [];
        var y = new float[B * T * C];
        var kept = new float[B * T * p.KeptWidth(C, NH)];
        SparseAttention.Forward(p, y, kept, qkv, gates, B, T, C, NH);
        var w = GradCheck.RandomArray(new Random(9), B * T * C);
        var dqkv = new float[qkv.Length];
        var dgates = new float[gates.Length];
        dqkv.AsSpan().Fill(float.NaN);   // written, not accumulated
        SparseAttention.Backward(p, dqkv, dgates, w, qkv, y, kept, gates, B, T, C, NH);
        var sel = Selections(p, kept, T);   // the selection is not differentiated: held fixed
        var qd = qkv.Select(v => (double)v).ToArray();
        var gd = gates.Select(v => (double)v).ToArray();
        double Loss()
        {
            var r = Reference(p, qd, gd, B, T, sel);
            double s = 0;
            for (int i = 0; i < r.Length; i++) s += r[i] * w[i];
            return s;
        }
        void Check(double[] x, float[] analytic, string what)
        {
            const double eps = 1e-5;
            double maxErr = 0, maxNum = 0;
            for (int i = 0; i < x.Length; i++)
            {
                double saved = x[i];
                x[i] = saved + eps; double plus = Loss();
                x[i] = saved - eps; double minus = Loss();
                x[i] = saved;
                double numeric = (plus - minus) / (2 * eps);
                maxNum = Math.Max(maxNum, Math.Abs(numeric));
                maxErr = Math.Max(maxErr, Math.Abs(numeric - analytic[i]));
                Assert.True(Math.Abs(numeric - analytic[i]) <= 1e-4 + 1e-3 * Math.Abs(numeric), $"{name} {what}[{i}]: analytic {analytic[i]} vs numeric {numeric}");
            }
            Assert.True(maxNum > 1e-2, $"{name} {what}: gradient too small to check ({maxNum})");
        }
        // q, k and v of every position and head
        Check(qd, dqkv, "dqkv");
        if (nsa) Check(gd, dgates, "dgates");
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void CachedDecodingEqualsFullRecomputation(string name)
    {
        var p = Make(name);
        var config = Config(p);
        int T = config.BlockSize, V = config.VocabSize;
        var gpt = new Gpt(config, 1, T);
        LayerWidthTests.RandomWeights(gpt, 21);
        var tokens = Enumerable.Range(0, T).Select(i => (i * 7 + 3 + i * i) % V).ToArray();
        gpt.Forward(tokens, [], false);
        var reference = gpt.Logits.ToArray();
        foreach (int prefill in new[] { 1, 37 })
        {
            var cache = gpt.CreateKvCache();
            var logits = gpt.ForwardCached(cache, tokens.AsSpan(0, prefill)).ToArray();
            AssertRow(reference, prefill - 1, logits, V, name);
            for (int t = prefill; t < T; t++)
            {
                logits = gpt.ForwardCached(cache, tokens.AsSpan(t, 1)).ToArray();
                AssertRow(reference, t, logits, V, name);
            }
        }
    }

    [Theory]
    [InlineData("pruned")]
    [InlineData("h2o")]
    [InlineData("quest")]
    public void SparseKvCachesAreRefusedForSparsePatterns(string kind)
    {
        var gpt = new Gpt(Config(Make("topk")), 1, 80);
        var e = Assert.Throws<ArgumentException>(() => gpt.CreateKvCache(new KvCacheSpec { Kind = kind, Budget = 32 }));
        Assert.Contains($"KV cache '{kind}'", e.Message);
        Assert.Contains("'topk'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        gpt.CreateKvCache(new KvCacheSpec { Kind = KvCacheSpec.Dense });   // the dense cache works
    }

    static void AssertRow(float[] reference, int t, float[] logits, int V, string name)
    {
        for (int v = 0; v < V; v++)
            Assert.True(Math.Abs(reference[t * V + v] - logits[v]) <= 2e-5f, $"{name} position {t}, token {v}: cached {logits[v]} vs full {reference[t * V + v]}");
    }

    internal static GptConfig Config(SparsePattern p) => new()
    {
        NLayer = 2, NHead = NH, NEmbd = C, BlockSize = 80, VocabSize = 13, Bias = true,
        Attention = p.Name, AttnWindow = p.Window, AttnBlock = p.Block, AttnLocal = p.Local, AttnGlobal = p.Global,
        AttnStride = p.Stride, AttnTopK = p.TopK,
    };

    [Fact]
    public void NsaGateParametersMatchFiniteDifferences()
    {
        var p = Make("nsa");
        int B = 2, T = 40;
        var gpt = new Gpt(Config(p), B, T);
        LayerWidthTests.RandomWeights(gpt, 3);
        var r = new Random(4);
        var tokens = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
        var targets = Enumerable.Range(0, B * T).Select(_ => r.Next(13)).ToArray();
        double Loss() => gpt.Forward(tokens, targets, training: true);
        Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        var gateParameters = gpt.Parameters.Where(q => q.Name.Contains(".attn.gate.")).ToArray();
        Assert.Equal(4, gateParameters.Length);   // weight and bias in each of 2 layers
        foreach (var q in gateParameters)
        {
            var x = q.Value.ToArray();
            var analytic = grads.AsSpan(q.Offset, q.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(q.Value);
                return Loss();
            }
            GradCheck.Assert(q.Name, x, analytic, LossOf, eps: 2e-3, atol: 3e-4, rtol: 1e-2, maxChecks: 16);
        }

    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void ModelArgsCarryThePatternAndATrainingStepAllocatesNothing(string name)
    {
        var config = Config(Make(name));
        var back = NanoSparse.Training.ModelArgs.From(config).ToConfig();
        Assert.Equal(config, back);
        Assert.Equal(Make(name), NanoSparse.Nn.Parts.AttentionPatterns.AttentionPatternRegistry.Pattern(back));
        var gpt = new Gpt(config, 2, 48);
        LayerWidthTests.RandomWeights(gpt, 5);
        var tokens = Enumerable.Range(0, 96).Select(i => i * 5 % 13).ToArray();
        void Step()
        {
            gpt.Forward(tokens, tokens, training: true);
            gpt.ZeroGrad();
            gpt.Backward();
        }
        Step();
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 2; i++) Step(); }));
    }

    [Theory]
    [InlineData("window", 0, 0, 0, "attn_window (0) must lie in [1, 80]")]
    [InlineData("window", 81, 0, 0, "attn_window (81) must lie in [1, 80]")]
    [InlineData("block", 0, 0, 0, "attn_block (0) must lie in [1, 80]")]
    [InlineData("topk", 0, 96, 1, "attn_block (96) must lie in [1, 80]")]
    [InlineData("topk", 0, 24, 1, "attn_block (24) must be a multiple of 16")]
    [InlineData("topk", 0, 16, 6, "attn_topk (6) must lie in [1, 5]")]
    [InlineData("nsa", 8, 16, 0, "attn_topk (0) must lie in [1, 5]")]
    [InlineData("sparse", 0, 0, 0, "attention (\"sparse\") must be one of: dense, window, block, topk, nsa")]
    public void BadPatternConfigsGiveOneLineErrors(string name, int window, int block, int topk, string expected)
    {
        var config = new GptConfig { NLayer = 1, NHead = NH, NEmbd = C, BlockSize = 80, Attention = name, AttnWindow = window, AttnBlock = block, AttnTopK = topk };
        var e = Assert.Throws<ArgumentException>(config.Validate);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TheSparseKernelsDensePatternMatchesDenseAttention()
    {
        int B = 1, T = 130, C2 = 64, NH2 = 2;
        var qkv = GradCheck.RandomArray(new Random(3), B * T * 3 * C2, 1.5);
        var y1 = new float[B * T * C2];
        var y2 = new float[B * T * C2];
        var lse1 = new float[B * NH2 * T];
        var lse2 = new float[B * NH2 * T];
        var dy = GradCheck.RandomArray(new Random(4), B * T * C2);
        var d1 = new float[qkv.Length];
        var d2 = new float[qkv.Length];
        Attention.Forward(y1, lse1, qkv, B, T, C2, NH2);
        Attention.Backward(d1, dy, qkv, lse1, B, T, C2, NH2);
        SparseAttention.DenseForward(y2, lse2, qkv, B, T, C2, NH2);
        SparseAttention.DenseBackward(d2, dy, qkv, y2, lse2, B, T, C2, NH2);
        GradCheck.AssertClose(y2, y1.Select(v => (double)v).ToArray(), 1e-5, "flash y");
        GradCheck.AssertClose(lse2, lse1.Select(v => (double)v).ToArray(), 1e-5, "flash lse");
        GradCheck.AssertClose(d2, d1.Select(v => (double)v).ToArray(), 1e-4, "flash dqkv");
    }
}
