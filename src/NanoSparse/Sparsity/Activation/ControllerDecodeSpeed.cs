using System.Diagnostics;
using NanoSparse.Data;
using NanoSparse.Nn;

namespace NanoSparse.Sparsity.Activation;

/// <summary>One model's batch-1 decode speed: tokens/s by CPU time and by wall time (medians over rounds), and for a
/// gated model the fraction of units its gates kept while decoding.</summary>
public sealed record DecodeSpeed(double CpuTokensPerSecond, double WallTokensPerSecond, KeptFraction Kept);

/// <summary>
/// Decode speed of models side by side on real text: a prompt of <c>prompt</c> val tokens, then <c>tokens</c> more fed
/// one at a time (teacher-forced from the same text, so every model sees the same inputs and the gates decide on
/// text, not on their own samples). Rounds are interleaved (model 0, model 1, ..., again) so a loaded machine slows
/// every model alike; CPU time (the process's, all threads) is steadier than wall time there. The gates' own cost
/// is inside every step.
/// </summary>
public static class ControllerDecodeSpeed
{
    public static DecodeSpeed[] Measure(IReadOnlyList<Gpt> models, TokenFile text, int prompt, int tokens, int rounds, ulong seed,
        Action<int, int>? progress = null)
    {
        if (text.Length < prompt + tokens + 1) throw new ArgumentException($"{text.Path} holds {text.Length} tokens, fewer than the {prompt + tokens + 1} a decode run reads");
        var rng = new Numerics.Rng(seed);
        return Measure(models, window => text.Read((long)(rng.NextUInt64() % (ulong)(text.Length - window.Length)), window), prompt, tokens, rounds, progress);
    }

    /// <summary>The same with each round's tokens drawn by <paramref name="nextWindow"/> (it fills prompt + tokens ids).</summary>
    public static DecodeSpeed[] Measure(IReadOnlyList<Gpt> models, Action<int[]> nextWindow, int prompt, int tokens, int rounds,
        Action<int, int>? progress = null)
    {
        if (rounds <= 0) throw new ArgumentException($"rounds ({rounds}) must be positive");
        int blockSize = models.Min(m => m.Config.BlockSize);
        if (prompt <= 0 || tokens <= 0 || prompt + tokens > blockSize)
            throw new ArgumentException($"a prompt of {prompt} and {tokens} decode tokens must both be positive and fit block_size ({blockSize})");
        var caches = models.Select(m => m.CreateKvCache()).ToArray();
        var cpu = models.Select(_ => new double[rounds]).ToArray();
        var wall = models.Select(_ => new double[rounds]).ToArray();
        var kept = new (double Heads, double Mlp, double All)[models.Count];
        var window = new int[prompt + tokens];
        var process = Process.GetCurrentProcess();

        void Run(int i, bool record, int round)
        {
            var model = models[i];
            var cache = caches[i];
            cache.Reset();
            model.ForwardCached(cache, window.AsSpan(0, prompt));
            foreach (var (_, _, g) in ControllerTraining.Gates(model)) g.ResetDecodeCounts();
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            long t0 = Stopwatch.GetTimestamp();
            for (int s = 0; s < tokens; s++) model.ForwardCached(cache, window.AsSpan(prompt + s, 1));
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            process.Refresh();
            double cpuSeconds = (process.TotalProcessorTime - cpu0).TotalSeconds;
            if (!record) return;
            cpu[i][round] = tokens / Math.Max(cpuSeconds, 1e-9);
            wall[i][round] = tokens / seconds;
            double h = 0, m = 0, a = 0;
            int nh = 0, nm = 0;
            foreach (var (_, isHeads, g) in ControllerTraining.Gates(model))
            {
                double f = (double)g.DecodeKept / Math.Max(1, g.DecodeSeen);
                if (isHeads) { h += f; nh++; } else { m += f; nm++; }
                a += f;
            }
            kept[i].Heads += nh == 0 ? 1 : h / nh;
            kept[i].Mlp += nm == 0 ? 1 : m / nm;
            kept[i].All += nh + nm == 0 ? 1 : a / (nh + nm);
        }

        nextWindow(window);
        for (int i = 0; i < models.Count; i++) Run(i, false, 0);   // JIT, decode copies, caches
        for (int r = 0; r < rounds; r++)
        {
            nextWindow(window);
            for (int i = 0; i < models.Count; i++) Run(i, true, r);
            progress?.Invoke(r + 1, rounds);
        }
        return Enumerable.Range(0, models.Count).Select(i => new DecodeSpeed(Median(cpu[i]), Median(wall[i]),
            new KeptFraction(kept[i].Heads / rounds, kept[i].Mlp / rounds, kept[i].All / rounds))).ToArray();
    }

    static double Median(double[] x)
    {
        var s = x.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
