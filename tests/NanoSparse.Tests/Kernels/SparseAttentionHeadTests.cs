using NanoSparse.Kernels;
using NanoSparse.Tests.Nn;

namespace NanoSparse.Tests.Kernels;

/// <summary>
/// <see cref="SparseAttentionHead"/>'s two paths against masked attention written out in double precision: the range
/// path (Bits null: tiles of consecutive queries) and the gathered path (Bits set: each key block runs FlashAttention-2
/// on the rows that selected it). Random key sets (a range per row, random earlier blocks plus the row's own), blocks
/// of 16 to 160 keys (past 64 a block is several key tiles, 160 ends in a half tile), more than 64 rows per block
/// (several gathered groups), key counts that are not multiples of the block or of 16, head sizes 16 to 80 (48 and 80
/// end in a single-vector column tile), strided Q/K/V/Out/dOut, an empty row, and queries at the end of the keys (as in
/// decoding). Backward: dQ, dK and dV are added to what the buffers held, against the analytic gradients in double
/// (dS = P ∘ (dP − Σ P·dP)). Then the multi-head entry points (<see cref="SparseAttention"/>) at head size 64 and
/// T = 333: top-k and NSA forward against a double reference at 1 and 2 threads, 2 threads equal to 1 thread, and
/// cached decoding equal to the training pass.
/// </summary>
[Collection("KernelThreads")]   // sets KernelThreads.Max: must not run beside tests that need a fixed thread count
public unsafe class SparseAttentionHeadTests
{
    public static TheoryData<int, int, int, int, int, bool> Cases => new()
    {
        // hs, block, Tq, Tk, window (0: causal from key 0), gathered
        { 16, 16, 77, 77, 0, true },
        { 64, 64, 333, 333, 0, true },
        { 64, 64, 200, 200, 90, true },
        { 48, 48, 150, 150, 0, true },
        { 80, 96, 301, 301, 0, true },
        { 64, 128, 260, 260, 0, true },
        { 32, 160, 350, 350, 200, true },
        { 64, 64, 5, 333, 0, true },     // five queries at the end of 333 keys (decode)
        { 64, 0, 333, 333, 130, false },
        { 48, 0, 99, 99, 0, false },
        { 80, 0, 3, 150, 40, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void HeadKernelMatchesDoubleMaskedAttentionForwardAndBackward(int hs, int block, int Tq, int Tk, int window, bool gathered)
    {
        var rng = new Random(hs * 1000 + block * 7 + Tq + Tk);
        int ldq = hs + 16, ldkv = 3 * hs, ldOut = hs + 32, ldDo = hs;
        int pos0 = Tk - Tq;
        var q = GradCheck.RandomArray(rng, Tq * ldq, 1.5);
        var k = GradCheck.RandomArray(rng, Tk * ldkv, 1.5);
        var v = GradCheck.RandomArray(rng, Tk * ldkv, 1.0);
        var dOut = GradCheck.RandomArray(rng, Tq * ldDo, 1.0);
        var lo = new int[Tq];
        var hi = new int[Tq];
        int nb = gathered ? (Tk + block - 1) / block : 0, words = Math.Max(1, (nb + 63) / 64);
        var bits = new ulong[Tq * words];
        for (int i = 0; i < Tq; i++)
        {
            int t = pos0 + i;
            hi[i] = t + 1;
            lo[i] = window > 0 ? Math.Max(0, t - window + 1) : 0;
            if (gathered)
            {
                int own = t / block;
                bits[i * words + own / 64] |= 1UL << (own % 64);
                for (int b = 0; b < own; b++)
                    if (rng.NextDouble() < 0.4) bits[i * words + b / 64] |= 1UL << (b % 64);
            }
        }
        if (Tq > 10) lo[7] = hi[7];   // a row with no keys at all
        bool Sees(int i, int j) => j >= lo[i] && j < hi[i] && (!gathered || (bits[i * words + j / block / 64] >> (j / block % 64) & 1) != 0);

        // reference in double
        double scale = 1 / Math.Sqrt(hs);
        var y = new double[Tq * hs];
        var lse = new double[Tq];
        var dq = new double[Tq * hs];
        var dk = new double[Tk * hs];
        var dv = new double[Tk * hs];
        for (int i = 0; i < Tq; i++)
        {
            var s = new double[Tk];
            double max = double.NegativeInfinity;
            for (int j = 0; j < Tk; j++)
            {
                if (!Sees(i, j)) { s[j] = double.NegativeInfinity; continue; }
                double dot = 0;
                for (int d = 0; d < hs; d++) dot += (double)q[i * ldq + d] * k[j * ldkv + d];
                s[j] = dot * scale;
                max = Math.Max(max, s[j]);
            }
            if (max == double.NegativeInfinity) { lse[i] = double.NegativeInfinity; continue; }
            double sum = 0;
            for (int j = 0; j < Tk; j++) sum += s[j] == double.NegativeInfinity ? 0 : Math.Exp(s[j] - max);
            lse[i] = max + Math.Log(sum);
            var pr = new double[Tk];
            for (int j = 0; j < Tk; j++) pr[j] = s[j] == double.NegativeInfinity ? 0 : Math.Exp(s[j] - lse[i]);
            for (int j = 0; j < Tk; j++)
                for (int d = 0; d < hs; d++) y[i * hs + d] += pr[j] * v[j * ldkv + d];
            // dP_j = dO · v_j, D = Σ_j P_j dP_j, dS_j = P_j (dP_j − D) · scale
            var dp = new double[Tk];
            double D = 0;
            for (int j = 0; j < Tk; j++)
            {
                if (pr[j] == 0) continue;
                for (int d = 0; d < hs; d++) dp[j] += (double)dOut[i * ldDo + d] * v[j * ldkv + d];
                D += pr[j] * dp[j];
            }
            for (int j = 0; j < Tk; j++)
            {
                if (pr[j] == 0) continue;
                double dsj = pr[j] * (dp[j] - D) * scale;
                for (int d = 0; d < hs; d++)
                {
                    dq[i * hs + d] += dsj * k[j * ldkv + d];
                    dk[j * hs + d] += dsj * q[i * ldq + d];
                    dv[j * hs + d] += pr[j] * dOut[i * ldDo + d];
                }
            }
        }

        var outF = new float[Tq * ldOut];
        var lseF = new float[Tq * 2];
        var dqF = GradCheck.RandomArray(rng, Tq * ldq);   // backward adds: start from something
        var dkF = GradCheck.RandomArray(rng, Tk * ldkv);
        var dvF = GradCheck.RandomArray(rng, Tk * ldkv);
        var dq0 = (float[])dqF.Clone();
        var dk0 = (float[])dkF.Clone();
        var dv0 = (float[])dvF.Clone();
        fixed (float* pq = q, pk = k, pv = v, po = outF, pl = lseF, pdo = dOut, pdq = dqF, pdk = dkF, pdv = dvF)
        fixed (int* plo = lo, phi = hi)
        fixed (ulong* pb = bits)
        {
            var ks = new KeySet { Lo = plo, Hi = phi, Bits = gathered ? pb : null, Words = words, BlockSize = gathered ? block : 0 };
            var hp = new HeadProblem { Q = pq, K = pk, V = pv, Out = po, Lse = pl, Ldq = ldq, Ldkv = ldkv, Ldo = ldOut, LdLse = 2,
                Tq = Tq, Tk = Tk, Hs = hs, Scale = (float)scale };
            SparseAttentionHead.Forward(hp, ks);
            hp.DOut = pdo; hp.DQ = pdq; hp.DK = pdk; hp.DV = pdv;
            hp.Ldo = ldDo;
            hp.LdOut = ldOut;
            SparseAttentionHead.Backward(hp, ks);
        }
        string name = $"hs {hs} block {block} Tq {Tq} Tk {Tk} window {window} {(gathered ? "gathered" : "range")}";
        for (int i = 0; i < Tq; i++)
        {
            if (lse[i] == double.NegativeInfinity) Assert.Equal(float.NegativeInfinity, lseF[i * 2]);
            else Assert.True(Math.Abs(lseF[i * 2] - lse[i]) <= 2e-5 * Math.Max(1, Math.Abs(lse[i])), $"{name}: lse[{i}] {lseF[i * 2]} vs {lse[i]}");
            for (int d = 0; d < hs; d++)
                Assert.True(Math.Abs(outF[i * ldOut + d] - y[i * hs + d]) <= 2e-5, $"{name}: y[{i}, {d}] {outF[i * ldOut + d]} vs {y[i * hs + d]}");
            for (int d = hs; d < ldOut; d++) Assert.Equal(0f, outF[i * ldOut + d]);   // nothing written past the head
        }
        void Grad(float[] actual, float[] start, int ld, double[] expected, int rows, string what)
        {
            double maxAbs = 0;
            for (int r = 0; r < rows; r++)
                for (int d = 0; d < ld; d++)
                {
                    double e = start[r * ld + d] + (d < hs ? expected[r * hs + d] : 0);
                    maxAbs = Math.Max(maxAbs, d < hs ? Math.Abs(expected[r * hs + d]) : 0);
                    Assert.True(Math.Abs(actual[r * ld + d] - e) <= 1e-4 + 1e-4 * Math.Abs(e), $"{name}: {what}[{r}, {d}] {actual[r * ld + d]} vs {e}");
                }
            Assert.True(maxAbs > 1e-2, $"{name}: {what} too small to check ({maxAbs})");
        }
        Grad(dqF, dq0, ldq, dq, Tq, "dQ");
        Grad(dkF, dk0, ldkv, dk, Tk, "dK");
        Grad(dvF, dv0, ldkv, dv, Tk, "dV");
    }

    const int NH = 4, Hs = 64, C = NH * Hs;

    static SparsePattern Pattern(string name) => name switch
    {
        "topk" => new SparsePattern(AttentionKind.TopK, Block: 64, TopK: 2),
        "nsa" => new SparsePattern(AttentionKind.Nsa, Window: 100, Block: 64, Stride: 64, TopK: 2),
        "nsa32" => new SparsePattern(AttentionKind.Nsa, Window: 70, Block: 64, Stride: 32, TopK: 1),
        _ => throw new ArgumentException(name),
    };

    /// <summary>y (B·T, C) of top-k or NSA in double, with the selections read from kept.</summary>
    static double[] Reference(SparsePattern p, float[] qkv, float[] gates, float[] kept, int B, int T)
    {
        int W = p.KeptWidth(C, NH), selOffset = p.Kind == AttentionKind.Nsa ? 3 * NH : NH;
        var y = new double[B * T * C];
        double[] Row(int b, int j, int offset) { var r = new double[Hs]; for (int d = 0; d < Hs; d++) r[d] = qkv[(b * T + j) * 3 * C + offset + d]; return r; }
        double[] Mean(int b, int offset, int from)
        {
            var m = new double[Hs];
            for (int j = from; j < from + p.Block; j++) for (int d = 0; d < Hs; d++) m[d] += qkv[(b * T + j) * 3 * C + offset + d] / p.Block;
            return m;
        }
        double[] Attend(double[] q, Func<int, double[]> key, Func<int, double[]> value, int count, Func<int, bool> allowed)
        {
            var s = new double[count];
            double max = double.NegativeInfinity;
            for (int j = 0; j < count; j++)
            {
                if (!allowed(j)) { s[j] = double.NegativeInfinity; continue; }
                var kj = key(j);
                double dot = 0;
                for (int d = 0; d < Hs; d++) dot += q[d] * kj[d];
                max = Math.Max(max, s[j] = dot / Math.Sqrt(Hs));
            }
            var o = new double[Hs];
            if (max == double.NegativeInfinity) return o;
            double sum = 0;
            for (int j = 0; j < count; j++) sum += s[j] = s[j] == double.NegativeInfinity ? 0 : Math.Exp(s[j] - max);
            for (int j = 0; j < count; j++)
                if (s[j] != 0) { var vj = value(j); for (int d = 0; d < Hs; d++) o[d] += s[j] / sum * vj[d]; }
            return o;
        }
        for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++)
        {
            var sel = new HashSet<int>();
            for (int s = 0; s < p.TopK; s++)
            {
                int v = BitConverter.SingleToInt32Bits(kept[(b * T + t) * W + selOffset + h * p.TopK + s]);
                if (v >= 0) sel.Add(v);
            }
            Assert.Equal(Math.Min(p.TopK, t / p.Block), sel.Count);
            var q = Row(b, t, h * Hs);
            var os = Attend(q, j => Row(b, j, C + h * Hs), j => Row(b, j, 2 * C + h * Hs), T, j => j <= t && (j / p.Block == t / p.Block || sel.Contains(j / p.Block)));
            double[] o = os;
            if (p.Kind == AttentionKind.Nsa)
            {
                var oc = Attend(q, i => Mean(b, C + h * Hs, i * p.Stride), i => Mean(b, 2 * C + h * Hs, i * p.Stride), p.CompressedBlocks(T),
                    i => i * p.Stride + p.Block - 1 <= t);
                var ow = Attend(q, j => Row(b, j, C + h * Hs), j => Row(b, j, 2 * C + h * Hs), T, j => j <= t && j > t - p.Window);
                int g = (b * T + t) * 3 * NH + h;
                o = new double[Hs];
                for (int d = 0; d < Hs; d++) o[d] = gates[g] * oc[d] + gates[g + NH] * os[d] + gates[g + 2 * NH] * ow[d];
            }
            o.CopyTo(y, (b * T + t) * C + h * Hs);
        }
        return y;
    }

    [Theory]
    [InlineData("topk")]
    [InlineData("nsa")]
    [InlineData("nsa32")]
    public void PatternsAtHeadSize64MatchTheReferenceAndTwoThreadsEqualOne(string name)
    {
        var p = Pattern(name);
        int B = 2, T = 333;
        var rng = new Random(name.Length);
        var qkv = GradCheck.RandomArray(rng, B * T * 3 * C, 1.5);
        var dy = GradCheck.RandomArray(rng, B * T * C, 1.0);
        var gates = p.Kind == AttentionKind.Nsa ? GradCheck.RandomArray(rng, B * T * 3 * NH, 0.5).Select(g => 0.5f + g).ToArray() : [];
        int saved = KernelThreads.Max;
        var runs = new List<(float[] Y, float[] Kept, float[] Dqkv, float[] Dgates)>();
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                KernelThreads.Max = threads;
                var y = new float[B * T * C];
                var kept = new float[B * T * p.KeptWidth(C, NH)];
                var dqkv = new float[qkv.Length];
                var dgates = new float[gates.Length];
                dqkv.AsSpan().Fill(float.NaN);   // written, not accumulated
                SparseAttention.Forward(p, y, kept, qkv, gates, B, T, C, NH);
                SparseAttention.Backward(p, dqkv, dgates, dy, qkv, y, kept, gates, B, T, C, NH);
                GradCheck.AssertClose(y, Reference(p, qkv, gates, kept, B, T), 2e-5, $"{name} threads {threads} y");
                Assert.All(dqkv, g => Assert.True(float.IsFinite(g)));
                runs.Add((y, kept, dqkv, dgates));
            }
        }
        finally { KernelThreads.Max = saved; }
        Assert.Equal(runs[0].Y, runs[1].Y);
        Assert.Equal(runs[0].Kept, runs[1].Kept);
        Assert.Equal(runs[0].Dqkv, runs[1].Dqkv);
        Assert.Equal(runs[0].Dgates, runs[1].Dgates);
    }

    [Theory]
    [InlineData("topk")]
    [InlineData("nsa")]
    [InlineData("nsa32")]
    public void DecodingAtHeadSize64EqualsTheTrainingPass(string name)
    {
        var p = Pattern(name);
        int T = 333;
        var rng = new Random(7 + name.Length);
        var qkv = GradCheck.RandomArray(rng, T * 3 * C, 1.5);
        var gates = p.Kind == AttentionKind.Nsa ? GradCheck.RandomArray(rng, T * 3 * NH, 0.5).Select(g => 0.5f + g).ToArray() : [];
        var y = new float[T * C];
        SparseAttention.Forward(p, y, new float[T * p.KeptWidth(C, NH)], qkv, gates, 1, T, C, NH);
        var keys = new float[T * C];
        var values = new float[T * C];
        for (int t = 0; t < T; t++)
        {
            qkv.AsSpan(t * 3 * C + C, C).CopyTo(keys.AsSpan(t * C));
            qkv.AsSpan(t * 3 * C + 2 * C, C).CopyTo(values.AsSpan(t * C));
        }
        // a prompt of 200 positions, then one position at a time (its own block's last key, a block start, the end)
        foreach (var (pos0, n) in new[] { (0, 200), (255, 1), (256, 1), (320, 13) })
        {
            var yd = new float[n * C];
            var scratch = new float[SparseAttention.DecodeScratchFloats(p, n, C, NH)];
            int g = p.Gates(NH);
            SparseAttention.Decode(p, yd, qkv.AsSpan(pos0 * 3 * C, n * 3 * C), keys.AsSpan(0, (pos0 + n) * C), values.AsSpan(0, (pos0 + n) * C),
                gates.AsSpan(pos0 * g, n * g), pos0, n, C, NH, scratch);
            for (int i = 0; i < n * C; i++)
                Assert.True(Math.Abs(yd[i] - y[pos0 * C + i]) <= 1e-5, $"{name} pos0 {pos0} n {n}: y[{i}] {yd[i]} vs {y[pos0 * C + i]}");
        }
    }
}
