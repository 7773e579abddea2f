using NanoSparse.Bench;
using NanoSparse.IO;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Pruning;
using NanoSparse.Tests.Data;
using NanoSparse.Tests.Sparsity.Pruning;

namespace NanoSparse.Tests.Bench;

public class PruneLayersBenchTests
{
    [Theory]
    [InlineData("--sparsity 0.6")]
    [InlineData("--pattern 2:4 --dsnot")]
    public void PrunesEachLayerOfTheFileAsThePrunerDoesOnTheSameInputs(string options)
    {
        var targetArgs = options.Split(" ");
        using var dir = new TempDir();
        var (w1, x1) = PruningLayers.Make(12, 32, 80, 1);
        var (w2, x2) = PruningLayers.Make(20, 16, 80, 2);
        SafeTensors.Write(dir["layers.safetensors"],
        [
            new SafeTensor("a.weight", [12, 32], w1), new SafeTensor("a.x", [80, 32], x1),
            new SafeTensor("b.weight", [20, 16], w2), new SafeTensor("b.x", [80, 16], x2),
        ]);
        var cmd = PruneLayersBench.CreateCommand();
        var stdout = Console.Out;
        int rc;
        try
        {
            Console.SetOut(TextWriter.Null);
            rc = cmd.Parse(["--layers", dir["layers.safetensors"], "--out", dir["out.safetensors"], "--threads", "1", .. targetArgs]).Invoke();
        }
        finally { Console.SetOut(stdout); }
        Assert.Equal(0, rc);
        bool nm = targetArgs[0] == "--pattern";
        var target = nm ? new SparsityTarget(0.5, 2, 4) : new SparsityTarget(0.6);
        using var outFile = SafeTensorsFile.Open(dir["out.safetensors"]);
        foreach (var (name, w, x, rows, cols) in new[] { ("a", w1, x1, 12, 32), ("b", w2, x2, 20, 16) })
        {
            var req = new LayerPruneRequest(name, (float[])w.Clone(), rows, cols, target, PruningLayers.Stats(x, cols, true), new Rng(0));
            new SparseGptPruner().Prune(req);
            if (targetArgs.Contains("--dsnot")) new Dsnot().Refine(req, w);
            Assert.Equal(req.Weight, outFile.ReadFloat32Array(name + ".weight"));
            Assert.Equal(req.Mask, outFile.GetBytes(name + ".mask").ToArray());
        }
    }
}
