using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn.Parts.Gated;

/// <summary>
/// A gated GPT written out in double precision from the model's parameters (read by name): nanoGPT's forward with
/// each head's attention output multiplied by its gate and each group of MLP neurons' GELU output by its gate, the
/// gates g = sigmoid(z/τ) (soft) or 1[z &gt; 0] (hard), z = u · Wgᵀ + bg on the half's LayerNorm output u. Loss is the
/// mean cross-entropy plus, per gated half, l1 · max(0, mean(sigmoid(z/τ)) − budget).
/// </summary>
internal sealed class GatedReference(Gpt gpt)
{
    readonly GptConfig _c = gpt.Config;

    double[] P(string name)
    {
        var p = gpt.Parameters.FirstOrDefault(q => q.Name == name);
        return p is null ? [] : p.Value.ToArray().Select(v => (double)v).ToArray();
    }

    /// <summary>Smallest |z| over every gate decision of the last call (hard decisions are compared only away from 0).</summary>
    public double MinAbsLogit { get; private set; } = double.PositiveInfinity;
    /// <summary>Fraction of gate decisions z &gt; 0 in the last call.</summary>
    public double HardKept { get; private set; }

    public double Loss(int[] tokens, int[] targets, int B, int T, double temperature, bool hard, double l1 = 0, double budget = 1,
        double[]? logitsOut = null)
    {
        int C = _c.NEmbd, V = _c.VocabSize, hs = _c.HeadSize;
        var wte = P("transformer.wte.weight");
        var wpe = P("transformer.wpe.weight");
        double loss = 0, penalty = 0;
        MinAbsLogit = double.PositiveInfinity;
        long kept = 0, decisions = 0;
        for (int b = 0; b < B; b++)
        {
            var x = new double[T][];
            for (int t = 0; t < T; t++)
            {
                x[t] = new double[C];
                int tok = tokens[b * T + t];
                for (int i = 0; i < C; i++) x[t][i] = wte[tok * C + i] + wpe[t * C + i];
            }
            for (int l = 0; l < _c.NLayer; l++)
            {
                string p = $"transformer.h.{l}.";
                int NH = _c.Heads(l), A = NH * hs, H = _c.MlpHidden(l);
                // attention half
                var u = x.Select(r => LayerNorm(r, P(p + "ln_1.weight"), P(p + "ln_1.bias"))).ToArray();
                var qkv = u.Select(r => Linear(r, P(p + "attn.c_attn.weight"), P(p + "attn.c_attn.bias"), 3 * A)).ToArray();
                var gh = Gates(u, p + "attn.gate", NH, temperature, hard, ref penalty, l1, budget, ref kept, ref decisions);
                for (int t = 0; t < T; t++)
                {
                    var y = new double[A];
                    for (int h = 0; h < NH; h++)
                    {
                        var s = new double[t + 1];
                        double max = double.NegativeInfinity;
                        for (int j = 0; j <= t; j++)
                        {
                            double dot = 0;
                            for (int d = 0; d < hs; d++) dot += qkv[t][h * hs + d] * qkv[j][A + h * hs + d];
                            s[j] = dot / Math.Sqrt(hs);
                            max = Math.Max(max, s[j]);
                        }
                        double sum = 0;
                        for (int j = 0; j <= t; j++) sum += s[j] = Math.Exp(s[j] - max);
                        double g = gh is null ? 1 : gh[t][h];
                        for (int j = 0; j <= t; j++)
                            for (int d = 0; d < hs; d++) y[h * hs + d] += g * s[j] / sum * qkv[j][2 * A + h * hs + d];
                    }
                    var o = Linear(y, P(p + "attn.c_proj.weight"), P(p + "attn.c_proj.bias"), C);
                    for (int i = 0; i < C; i++) x[t][i] += o[i];
                }
                // MLP half
                var u2 = x.Select(r => LayerNorm(r, P(p + "ln_2.weight"), P(p + "ln_2.bias"))).ToArray();
                int G = H / (_c.GateGroup == 0 ? 64 : _c.GateGroup);
                var gm = Gates(u2, p + "mlp.gate", G, temperature, hard, ref penalty, l1, budget, ref kept, ref decisions);
                for (int t = 0; t < T; t++)
                {
                    var a = Linear(u2[t], P(p + "mlp.c_fc.weight"), P(p + "mlp.c_fc.bias"), H).Select(Gelu).ToArray();
                    if (gm is not null)
                        for (int j = 0; j < H; j++) a[j] *= gm[t][j / (H / G)];
                    var o = Linear(a, P(p + "mlp.c_proj.weight"), P(p + "mlp.c_proj.bias"), C);
                    for (int i = 0; i < C; i++) x[t][i] += o[i];
                }
            }
            for (int t = 0; t < T; t++)
            {
                var f = LayerNorm(x[t], P("transformer.ln_f.weight"), P("transformer.ln_f.bias"));
                var logits = new double[V];
                for (int v = 0; v < V; v++)
                    for (int i = 0; i < C; i++) logits[v] += f[i] * wte[v * C + i];
                if (logitsOut is not null) Array.Copy(logits, 0, logitsOut, (b * T + t) * V, V);
                double max = logits.Max(), sum = logits.Sum(z => Math.Exp(z - max));
                loss += -(logits[targets[b * T + t]] - max - Math.Log(sum));
            }
        }
        HardKept = decisions == 0 ? 1 : (double)kept / decisions;
        return loss / (B * T) + penalty / B;   // penalty per sequence batch: B = 1 in the tests that use it
    }

    double[][]? Gates(double[][] u, string name, int units, double temperature, bool hard, ref double penalty, double l1, double budget,
        ref long kept, ref long decisions)
    {
        var w = P(name + ".weight");
        if (w.Length == 0) return null;
        var bias = P(name + ".bias");
        var g = new double[u.Length][];
        double softSum = 0;
        for (int t = 0; t < u.Length; t++)
        {
            var z = Linear(u[t], w, bias, units);
            g[t] = new double[units];
            for (int k = 0; k < units; k++)
            {
                MinAbsLogit = Math.Min(MinAbsLogit, Math.Abs(z[k]));
                double s = 1 / (1 + Math.Exp(-z[k] / temperature));
                softSum += s;
                g[t][k] = hard ? (z[k] > 0 ? 1 : 0) : s;
                kept += z[k] > 0 ? 1 : 0;
                decisions++;
            }
        }
        penalty += l1 * Math.Max(0, softSum / (u.Length * units) - budget);
        return g;
    }

    static double[] Linear(double[] x, double[] w, double[] b, int outFeatures)
    {
        int inFeatures = x.Length;
        var y = new double[outFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            double s = b.Length == 0 ? 0 : b[o];
            for (int i = 0; i < inFeatures; i++) s += w[o * inFeatures + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    static double[] LayerNorm(double[] x, double[] w, double[] b)
    {
        double mean = x.Average(), var = x.Sum(v => (v - mean) * (v - mean)) / x.Length, rstd = 1 / Math.Sqrt(var + 1e-5);
        return x.Select((v, i) => (v - mean) * rstd * w[i] + (b.Length == 0 ? 0 : b[i])).ToArray();
    }

    // exact GELU, x · Φ(x), with erf from its Maclaurin series (|x| small) or continued fraction tail
    static double Gelu(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 3)
        {
            // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
            double sum = 0, term = ax;
            for (int n = 0; n < 80; n++)
            {
                sum += term / (2 * n + 1);
                term *= -ax * ax / (n + 1);
            }
            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }
        // erfc(x) = exp(−x²)/(x√π) · 1/(1 + 1/(2x²)/(1 + 2/(2x²)/(1 + ...))) as a continued fraction, evaluated backwards
        double f = 0;
        for (int n = 60; n >= 1; n--) f = n / 2.0 / (ax + f);
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + f);
        return Math.Sign(x) * (1 - erfc);
    }
}
