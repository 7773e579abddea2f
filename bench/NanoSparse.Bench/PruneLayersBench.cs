using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NanoSparse.IO;
using NanoSparse.Kernels;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;

namespace NanoSparse.Bench;

/// <summary>
/// `nanosparse bench prune-layers`: prunes Linear layers handed over in a file with their calibration inputs, with
/// NanoSparse's per-layer pruners, so a peer's driver (bench/peers/prune_torch.py --ours) can put our per-layer
/// results into its own block-by-block pass and compare them with its own on the same inputs.
/// Input (safetensors): for each layer NAME, NAME.weight (out × in, F32) and NAME.x (tokens × in, F32: the layer's
/// inputs over the calibration windows). Output (safetensors, written atomically): NAME.weight pruned and NAME.mask
/// (U8, 1 = kept). The last stdout line is JSON: per layer the time to accumulate the statistics and to prune
/// (wall and process CPU seconds), the pruned count, and SparseGPT's OBS loss.
/// </summary>
public static class PruneLayersBench
{
    public static Command CreateCommand()
    {
        var layers = new Option<string>("--layers") { Required = true, Description = "safetensors with NAME.weight and NAME.x per layer" };
        var output = new Option<string>("--out") { Required = true, Description = "safetensors to write: NAME.weight (pruned), NAME.mask" };
        var method = new Option<string>("--method") { DefaultValueFactory = _ => "sparsegpt", Description = "sparsegpt (the per-layer pruners of this branch)" };
        var sparsity = new Option<double>("--sparsity") { DefaultValueFactory = _ => 0.5, Description = "fraction of weights removed (unstructured)" };
        var pattern = new Option<string?>("--pattern") { Description = "N:M (e.g. 2:4) instead of unstructured" };
        var dsnot = new Option<bool>("--dsnot") { Description = "refine each mask with DSnoT" };
        var blockSize = new Option<int>("--block-size") { DefaultValueFactory = _ => 128, Description = "SparseGPT column block" };
        var dampening = new Option<double>("--dampening") { DefaultValueFactory = _ => 0.01, Description = "SparseGPT dampening (fraction of mean diag H)" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "kernel threads" };
        var cmd = new Command("prune-layers", "prune layers given with their calibration inputs (the peer comparison's per-layer step)");
        foreach (var o in new Option[] { layers, output, method, sparsity, pattern, dsnot, blockSize, dampening, threads }) cmd.Options.Add(o);
        cmd.SetAction(pr => Run(pr.GetValue(layers)!, pr.GetValue(output)!, pr.GetValue(method)!, pr.GetValue(sparsity),
            pr.GetValue(pattern), pr.GetValue(dsnot), pr.GetValue(blockSize), pr.GetValue(dampening), pr.GetValue(threads)));
        return cmd;
    }

    static int Run(string layersPath, string outPath, string method, double sparsity, string? pattern, bool dsnot,
        int blockSize, double dampening, int threads)
    {
        BenchUtil.CheckRange("--threads", threads, 1, 1024, "kernel threads");
        KernelThreads.Max = threads;
        var target = ParseTarget(sparsity, pattern);
        ILayerPruner pruner = method switch
        {
            "sparsegpt" => new SparseGptPruner(new SparseGptOptions { BlockSize = blockSize, Dampening = dampening }),
            _ => throw new ArgumentException($"--method {method}: unknown, expected sparsegpt"),
        };
        var refiner = dsnot ? new Dsnot() : null;
        using var file = SafeTensorsFile.Open(layersPath);
        var names = file.Tensors.Where(t => t.Name.EndsWith(".weight", StringComparison.Ordinal))
            .Select(t => t.Name[..^".weight".Length]).ToList();
        if (names.Count == 0) throw new ArgumentException($"{layersPath}: no NAME.weight tensor, expected one per layer");
        var outTensors = new List<SafeTensor>();
        var report = new List<Dictionary<string, object>>();
        foreach (var name in names)
        {
            var wInfo = file.Get(name + ".weight");
            if (!file.TryGet(name + ".x", out var xInfo))
                throw new ArgumentException($"{layersPath}: tensor {name}.x missing, expected the layer's inputs beside {name}.weight");
            if (wInfo.Shape.Length != 2 || xInfo.Shape.Length != 2 || xInfo.Shape[1] != wInfo.Shape[1])
                throw new ArgumentException($"{layersPath}: {name}.weight [{string.Join(", ", wInfo.Shape)}] and {name}.x [{string.Join(", ", xInfo.Shape)}] do not match, expected (out, in) and (tokens, in)");
            int rows = wInfo.Shape[0], cols = wInfo.Shape[1];
            var w = file.ReadFloat32Array(name + ".weight");
            var x = file.GetFloat32(name + ".x");
            bool gram = pruner.NeedsGram || (refiner?.NeedsGram ?? false);

            var (statsWall, statsCpu) = (Stopwatch.StartNew(), Process.GetCurrentProcess().TotalProcessorTime);
            var stats = new LayerInputStats(cols, gram);
            stats.Accumulate(x, xInfo.Shape[0]);
            double statsS = statsWall.Elapsed.TotalSeconds, statsCpuS = (Process.GetCurrentProcess().TotalProcessorTime - statsCpu).TotalSeconds;

            var dense = (float[])w.Clone();
            var req = new LayerPruneRequest(name, w, rows, cols, target, stats, new Rng(0));
            var (wall, cpu) = (Stopwatch.StartNew(), Process.GetCurrentProcess().TotalProcessorTime);
            pruner.Prune(req);
            double pruneS = wall.Elapsed.TotalSeconds, pruneCpuS = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
            long swaps = 0;
            if (refiner is not null)
            {
                refiner.Refine(req, dense);
                swaps = ((Dsnot)refiner).LastSwaps;
            }
            outTensors.Add(new SafeTensor(name + ".weight", [rows, cols], req.Weight));
            outTensors.Add(SafeTensor.Integers(name + ".mask", SafeTensorsDtype.U8, req.Mask.Select(b => (int)b).ToArray()) with { Shape = [rows, cols] });
            var entry = new Dictionary<string, object>
            {
                ["name"] = name, ["tokens"] = xInfo.Shape[0], ["stats_s"] = statsS, ["stats_cpu_s"] = statsCpuS,
                ["prune_s"] = pruneS, ["prune_cpu_s"] = pruneCpuS, ["pruned"] = req.Mask.LongCount(b => b == 0),
                ["loss"] = pruner is SparseGptPruner sg ? sg.LastLoss : 0.0, ["dsnot_swaps"] = swaps,
            };
            report.Add(entry);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name}: {rows}×{cols}, {xInfo.Shape[0]} tokens, stats {statsS * 1e3:F0} ms, prune {pruneS * 1e3:F0} ms"));
        }
        SafeTensors.Write(outPath, outTensors, new Dictionary<string, string> { ["target"] = target.ToString(), ["method"] = method });
        Console.WriteLine(JsonSerializer.Serialize(new { method, target = target.ToString(), threads, layers = report }));
        return 0;
    }

    static SparsityTarget ParseTarget(double sparsity, string? pattern)
    {
        if (pattern is null or "unstructured")
        {
            if (!(sparsity >= 0 && sparsity < 1)) throw new ArgumentException($"--sparsity {sparsity}: expected a value in [0, 1)");
            return new SparsityTarget(sparsity);
        }
        var parts = pattern.Split(':');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int n) || !int.TryParse(parts[1], out int m) || n < 1 || n >= m)
            throw new ArgumentException($"--pattern {pattern}: expected N:M with 1 <= N < M, e.g. 2:4");
        return new SparsityTarget(1.0 - (double)n / m, n, m);
    }
}
