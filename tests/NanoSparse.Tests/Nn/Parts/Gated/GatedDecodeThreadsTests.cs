using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts.Gated;
using NanoSparse.Sparsity.Activation;

namespace NanoSparse.Tests.Nn.Parts.Gated;

/// <summary>
/// The controller's batch-1 decode at a size where its products and its per-head attention split over the kernel
/// threads (hs 64, 4 heads, H 1,024 in 64-neuron groups, up to 128 cached positions): cached decode with hard gates equals
/// the full forward pass (which zeroes the skipped units) at one and at two threads, and the two thread counts agree.
/// </summary>
[Collection("KernelThreads")]
public class GatedDecodeThreadsTests
{
    const int T = 128;

    static Gpt Model(string gate)
    {
        var config = new GptConfig
        {
            NLayer = 2, NHead = 4, NEmbd = 256, BlockSize = T, VocabSize = 23, Bias = true, Gate = gate, GateGroup = 64,
        };
        var gpt = new Gpt(config, 1, T);
        gpt.InitializeWeights(11);
        var r = new Random(11);
        foreach (var p in gpt.Parameters)
        {
            var v = p.Value.Span;
            // gate weights and biases large enough that about half the heads and groups run; the rest as initialised, larger
            bool gateWeight = p.Name.Contains(".gate.weight"), gateBias = p.Name.Contains(".gate.bias");
            for (int i = 0; i < v.Length; i++)
                v[i] = gateWeight ? (float)((r.NextDouble() * 2 - 1) * 0.3) : gateBias ? (float)((r.NextDouble() * 2 - 1) * 0.5)
                    : p.Name.Contains("ln_") ? v[i] : v[i] * 3f;
        }
        return gpt;
    }

    [Theory]
    [InlineData("heads")]
    [InlineData("mlp")]
    [InlineData("both")]
    public void CachedDecode_EqualsFullForward_AtOneAndTwoThreads(string gate)
    {
        int saved = KernelThreads.Max;
        try
        {
            var gpt = Model(gate);
            var r = new Random(4);
            var x = Enumerable.Range(0, T).Select(_ => r.Next(23)).ToArray();
            KernelThreads.Max = 1;
            gpt.Forward(x, default, training: false);
            var expected = gpt.Logits.ToArray();
            int V = gpt.Config.VocabSize;
            var decoded = new float[2][];
            for (int threads = 1; threads <= 2; threads++)
            {
                KernelThreads.Max = threads;
                foreach (var (_, _, g) in ControllerTraining.Gates(gpt)) g.ResetDecodeCounts();
                var cache = gpt.CreateKvCache();
                var all = new float[T * V];
                for (int t = 0; t < T; t++) gpt.ForwardCached(cache, x.AsSpan(t, 1)).CopyTo(all.AsSpan(t * V, V));
                for (int i = 0; i < all.Length; i++)
                    Assert.True(Math.Abs(all[i] - expected[i]) <= 2e-4 * (1 + Math.Abs(expected[i])),
                        $"{threads} thread(s), position {i / V}, logit {i % V}: decode {all[i]} vs full {expected[i]}");
                long kept = ControllerTraining.Gates(gpt).Sum(g => g.Gate.DecodeKept), seen = ControllerTraining.Gates(gpt).Sum(g => g.Gate.DecodeSeen);
                Assert.InRange((double)kept / seen, 0.1, 0.9);   // units were skipped and units ran
                decoded[threads - 1] = all;
            }
            for (int i = 0; i < decoded[0].Length; i++)
                Assert.True(Math.Abs(decoded[0][i] - decoded[1][i]) <= 1e-5 * (1 + Math.Abs(decoded[0][i])),
                    $"position {i / V}, logit {i % V}: 1 thread {decoded[0][i]} vs 2 threads {decoded[1][i]}");
        }
        finally { KernelThreads.Max = saved; }
    }

    [Fact]
    public void DecodeStep_AllocatesNothing_AfterWarmUp()
    {
        int saved = KernelThreads.Max;
        try
        {
            KernelThreads.Max = 2;
            var gpt = Model("both");
            var cache = gpt.CreateKvCache();
            var token = new int[1];
            for (int t = 0; t < 40; t++) { token[0] = t % 23; gpt.ForwardCached(cache, token); }   // warm-up (decode copies, JIT)
            long bytes = Allocations.SteadyState(() =>
            {
                for (int t = 0; t < 4; t++) { token[0] = (t * 7) % 23; gpt.ForwardCached(cache, token); }
            });
            Assert.Equal(0, bytes);
        }
        finally { KernelThreads.Max = saved; }
    }
}
