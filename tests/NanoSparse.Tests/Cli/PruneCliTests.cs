using System.Security.Cryptography;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Tests.Training;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>A small trained two-block checkpoint to prune, shared by the prune command's tests (never modified by them).</summary>
public sealed class PruneCliFixture : IDisposable
{
    public TinyDataset Data { get; } = new();
    public string Checkpoint { get; }

    public PruneCliFixture()
    {
        var c = Data.Config("trained", maxIters: 4);
        c.NLayer = 2;
        c.Dropout = 0;
        using (var t = new Trainer(c)) t.Run();
        Checkpoint = c.OutDir;
    }

    public void Dispose() => Data.Dispose();
}

[Collection("KernelThreads")]
public sealed class PruneCliTests(PruneCliFixture fixture) : IClassFixture<PruneCliFixture>
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    string NewDir(string name) => fixture.Data.Run($"{name}-{Guid.NewGuid():N}");

    /// <summary>SHA-256 over every file of a folder (names and contents).</summary>
    static string HashFolder(string dir)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(dir, f)));
            sha.AppendData(File.ReadAllBytes(f));
        }
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    static void AssertOneLineError(string err, params string[] fragments)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    static string[] Quick => ["--eval-windows", "2", "--decode-tokens", "4", "--calibration-windows", "8"];

    [Fact]
    public void SparseGptWithDsnotRunsThroughTheCommandAndRecordsBoth()
    {
        string before = HashFolder(fixture.Checkpoint);
        string outDir = NewDir("sparsegpt-dsnot");
        var (code, stdout, err) = Run(["prune", "--checkpoint", fixture.Checkpoint, "--method", "sparsegpt", "--sparsity", "0.5",
            "--dsnot", "--out", outDir, .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("val perplexity", stdout);
        var recipe = PruneRunOptions.Load(Path.Combine(outDir, PruneRunOptions.RecipeFile));
        Assert.Equal("sparsegpt", recipe.Prune.Method);
        Assert.Equal("dsnot", recipe.Prune.Refiner);
        Assert.True(File.Exists(Path.Combine(outDir, NanoSparse.Training.Checkpoint.ModelFile)));
        Assert.Equal(before, HashFolder(fixture.Checkpoint));
    }

    [Fact]
    public void APrunedCheckpointHasNoBestValLossYetSoFineTuningSavesFromItsFirstEvaluation()
    {
        string outDir = NewDir("best");
        var (code, _, err) = Run(["prune", "--checkpoint", fixture.Checkpoint, "--method", "magnitude", "--sparsity", "0.5", "--out", outDir, .. Quick]);
        Assert.True(code == 0, err);
        NanoSparse.Training.Checkpoint.LoadModel(fixture.Checkpoint, 1, 1, out var dense);
        NanoSparse.Training.Checkpoint.LoadModel(outDir, 1, 1, out var pruned);
        Assert.True(dense.BestValLoss < 100, $"the fixture's best val loss {dense.BestValLoss}");
        Assert.Equal(1e9f, pruned.BestValLoss);   // "none yet", as a fresh run starts
        Assert.Equal(dense.IterNum, pruned.IterNum);
    }

    [Fact]
    public void PruneWritesASparseCheckpointRecipeAndPlotAndTheRecipeReRunsBitIdentically()
    {
        string before = HashFolder(fixture.Checkpoint);
        string out1 = NewDir("wanda-owl"), out2 = NewDir("again");
        var (code, stdout, err) = Run(["prune", "--checkpoint", fixture.Checkpoint, "--method", "wanda", "--sparsity", "0.6",
            "--profile", "owl", "--owl-threshold", "2", "--ignore", "h.1.attn.c_proj", "--out", out1, .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("val perplexity", stdout);
        Assert.Contains("h.0.mlp.c_fc", stdout);
        Assert.DoesNotContain("h.1.attn.c_proj ", stdout);
        Assert.True(File.Exists(Path.Combine(out1, PruneRunOptions.RecipeFile)));
        Assert.True(new FileInfo(Path.Combine(out1, NanoSparse.Cli.Commands.PruneCommand.PlotFile)).Length > 1000);
        var recipe = PruneRunOptions.Load(Path.Combine(out1, PruneRunOptions.RecipeFile));
        Assert.Equal("wanda", recipe.Prune.Method);
        Assert.Equal(["h.1.attn.c_proj"], recipe.Prune.Ignore);

        (code, _, err) = Run("prune", "--recipe", Path.Combine(out1, PruneRunOptions.RecipeFile), "--out", out2);
        Assert.True(code == 0, err);
        Assert.Equal(before, HashFolder(fixture.Checkpoint));

        // Bit-identical: every tensor and every layout of the two outputs (the save ids in the metadata differ).
        var a = NanoSparse.Training.Checkpoint.LoadAnyModel(out1, 1, 1, out _);
        var b = NanoSparse.Training.Checkpoint.LoadAnyModel(out2, 1, 1, out _);
        Assert.Equal(a.Config.WeightLayouts!.OrderBy(kv => kv.Key), b.Config.WeightLayouts!.OrderBy(kv => kv.Key));
        Assert.Equal(a.ParameterData.ToArray(), b.ParameterData.ToArray());
        Assert.Contains(a.Parameters, p => p.IsSparse);
        var dense = NanoSparse.Training.Checkpoint.LoadAnyModel(fixture.Checkpoint, 1, 1, out _);
        var untouched = a.Parameters.Single(p => p.Name == "transformer.h.1.attn.c_proj.weight");
        Assert.False(untouched.IsSparse);
        Assert.Equal(dense.Parameters.Single(p => p.Name == untouched.Name).Value.ToArray(), untouched.Value.ToArray());
        Assert.Equal(File.ReadAllBytes(Path.Combine(out1, PruneRunOptions.RecipeFile)), File.ReadAllBytes(Path.Combine(out2, PruneRunOptions.RecipeFile)));
    }

    [Fact]
    public void AnImportedModelIsPrunedIntoAModelWithConfigAndRecipe()
    {
        // An imported checkpoint (model.safetensors + config.json, no training state), as `nanosparse import` writes it.
        string imported = NewDir("imported"), outDir = NewDir("imported-pruned");
        var model = NanoSparse.Training.Checkpoint.LoadAnyModel(fixture.Checkpoint, 1, 1, out _);
        NanoSparse.Training.Checkpoint.SaveModel(imported, model, Path.Combine(fixture.Checkpoint, NanoSparse.Training.Checkpoint.MetaFile));
        var (code, stdout, err) = Run(["prune", "--checkpoint", imported, "--method", "random", "--sparsity", "0.5", "--seed", "3",
            "--scope", "global", "--calibration", fixture.Data.DataDir, "--format", "csr", "--out", outDir, .. Quick]);
        Assert.True(code == 0, err);
        Assert.True(File.Exists(Path.Combine(outDir, NanoSparse.Training.Checkpoint.ConfigFile)));
        Assert.False(File.Exists(Path.Combine(outDir, NanoSparse.Training.Checkpoint.StateFile)));
        Assert.Equal("random", PruneRunOptions.Load(Path.Combine(outDir, PruneRunOptions.RecipeFile)).Prune.Method);
        var pruned = NanoSparse.Training.Checkpoint.LoadAnyModel(outDir, 1, 1, out _);
        var weights = pruned.Parameters.Where(p => p.Layout is not null).ToList();
        Assert.All(weights, p => Assert.Equal("csr", p.Layout!.Layout));
        long stored = weights.Sum(p => (long)p.Length), total = weights.Sum(p => p.LogicalLength);
        Assert.Equal(total - (long)(total * 0.5), stored);   // global: exactly half of all the block weights, stored as CSR
        Assert.Contains("val perplexity", stdout);
    }

    [Fact]
    public void NmPatternStoresEveryWeightAsNmWithNOfEveryM()
    {
        string outDir = NewDir("nm");
        var (code, _, err) = Run(["prune", "--checkpoint", fixture.Checkpoint, "--method", "magnitude", "--pattern", "2:4", "--out", outDir, .. Quick]);
        Assert.True(code == 0, err);
        var m = NanoSparse.Training.Checkpoint.LoadAnyModel(outDir, 1, 1, out _);
        foreach (var p in m.Parameters.Where(p => p.Layout is not null))
        {
            Assert.Equal("nm", p.Layout!.Layout);
            var dense = new float[p.LogicalLength];
            p.Layout.ToDense(p.Value.Span, dense);
            for (int g = 0; g < dense.Length; g += 4) Assert.True(dense.AsSpan(g, 4).ToArray().Count(v => v != 0) <= 2);
        }
    }

    [Fact]
    public void BadInputIsOneLineNamingTheProblemAndTheCheckpointIsUntouched()
    {
        string before = HashFolder(fixture.Checkpoint);
        string other = Path.Combine(fixture.Data.Root, "digits-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "input.txt"), string.Concat(Enumerable.Range(0, 3000).Select(i => (i * 7 % 10).ToString())));
        DatasetPreparer.Prepare(new PrepareOptions { Input = Path.Combine(other, "input.txt"), OutDir = Path.Combine(other, "data") });
        string ck = fixture.Checkpoint;
        void Refused(string[] args, params string[] fragments)
        {
            string outDir = NewDir("bad");
            var (code, _, err) = Run(["prune", "--checkpoint", ck, "--out", outDir, .. args]);
            Assert.NotEqual(0, code);
            AssertOneLineError(err, fragments);
            Assert.False(File.Exists(Path.Combine(outDir, NanoSparse.Training.Checkpoint.ModelFile)));
        }
        Refused(["--method", "magnitude", "--sparsity", "1"], "--sparsity (1) must lie in [0, 1)");
        Refused(["--method", "magnitude", "--sparsity", "-0.2"], "--sparsity (-0.2) must lie in [0, 1)");
        Refused(["--method", "magnitude", "--pattern", "3:7"], "--pattern 3:7", "M = 7 does not divide the 16 inputs of h.0.attn.c_attn");
        Refused(["--method", "obs", "--sparsity", "0.5"], "unknown method 'obs'", "magnitude, random, sparsegpt, wanda");
        Refused(["--method", "magnitude", "--sparsity", "0.5", "--targets", "h.2.mlp.c_fc"], "--targets entry 'h.2.mlp.c_fc'", "layer in [0, 2)");
        Refused(["--method", "magnitude", "--sparsity", "0.5", "--ignore", "mlp.c_fx"], "--ignore entry 'mlp.c_fx'");
        Refused(["--method", "magnitude", "--sparsity", "0.5", "--targets", ","], "--targets ','", "lists no weight");
        Refused(["--method", "magnitude", "--sparsity", "0.5", "--targets", "h.1.attn.c_attn", "--ignore", "h.1"], "--ignore (h.1) leaves none", "(h.1.attn.c_attn)", "nothing to prune");
        Refused(["--method", "magnitude", "--sparsity", "0.5", "--format", "nm:2:4"], "--format nm:2:4", "--pattern is unstructured", "--pattern 2:4");
        Refused(["--method", "wanda", "--sparsity", "0.5", "--calibration", Path.Combine(other, "data")], "--calibration", "vocab_size");
        Refused(["--method", "wanda", "--sparsity", "0.5", "--calibration-windows", "100000"], "too few", "--calibration-windows 100000");
        Refused(["--method", "wanda", "--sparsity", "0.5", "--scope", "global"], "--scope global", "within each output row");
        Refused(["--method", "magnitude", "--sparsity", "0.5", "--recipe", "x.json"], "--recipe", "--method");
        Refused(["--method", "magnitude"], "--sparsity");
        Assert.Equal(before, HashFolder(fixture.Checkpoint));
    }
}
