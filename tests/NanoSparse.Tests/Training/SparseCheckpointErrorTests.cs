using NanoSparse.Cli;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>Bad sparse checkpoints: each is refused with one line naming the tensor (or metadata key) and what is wrong.</summary>
[Collection("KernelThreads")]
public sealed class SparseCheckpointErrorTests(SparseCheckpointFixture fx) : IClassFixture<SparseCheckpointFixture>
{
    const string CAttn = "transformer.h.0.attn.c_attn.weight", CFc = "transformer.h.0.mlp.c_fc.weight", MlpProj = "transformer.h.0.mlp.c_proj.weight";

    static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>auto gives c_attn nm:2:4, c_fc csr, mlp.c_proj bsr:4x4 (see the fixture).</summary>
    string SparseCopy()
    {
        string dir = fx.NewDir("bad");
        Sparsify.Run(fx.DenseDir, dir, "auto");
        return dir;
    }

    /// <summary>The first output row of c_fc with at least two stored entries: (its first entry, second entry).</summary>
    static (int First, int Second) TwoEntryRow(string dir)
    {
        var t = SparseCheckpointFixture.Raw(Path.Combine(dir, Checkpoint.ModelFile), out _);
        var ptr = t[CFc + ".row_ptr"].Bytes;
        for (int r = 0; ; r++)
        {
            int a = BitConverter.ToInt32(ptr, 4 * r), b = BitConverter.ToInt32(ptr, 4 * r + 4);
            if (b - a >= 2) return (a, a + 1);
        }
    }

    [Theory]
    [InlineData("csr index out of range", CFc + ".col_indices", "out of range")]
    [InlineData("csr indices unsorted", CFc + ".col_indices", "sorted")]
    [InlineData("csr index duplicated", CFc + ".col_indices", "duplicated")]
    [InlineData("csr row pointers decrease", CFc + ".row_ptr", "non-decreasing")]
    [InlineData("values of the wrong length", CFc + ".values", "wrong length")]
    [InlineData("values missing", CFc + ".values", "is missing")]
    [InlineData("unknown format", CFc + ".format", "unknown format")]
    [InlineData("density above 1", CFc + ".density", "(0, 1]")]
    [InlineData("density 0", CFc + ".density", "(0, 1]")]
    [InlineData("density not matching", CFc + ".density", "stores")]
    [InlineData("shape not the model's", CFc + ".shape", "expected [64, 16]")]
    [InlineData("n:m with N = M", CAttn + ".n", "N < M")]
    [InlineData("n:m whose M does not divide In", CAttn + ".m", "does not divide")]
    [InlineData("n:m index out of range", CAttn + ".indices", "out of range")]
    [InlineData("n:m indices unsorted", CAttn + ".indices", "sorted")]
    [InlineData("bsr block index out of range", MlpProj + ".block_col_indices", "out of range")]
    [InlineData("bsr block not dividing", MlpProj + ".block", "dividing the shape")]
    [InlineData("dense tensor beside sparse metadata", CFc, "stored dense")]
    [InlineData("density NaN", CFc + ".density", "(0, 1]")]
    [InlineData("density negative", CFc + ".density", "(0, 1]")]
    [InlineData("n:m with N = 0", CAttn + ".n", "N < M")]
    [InlineData("n:m index duplicated", CAttn + ".indices", "duplicated")]
    [InlineData("n:m values of the wrong length", CAttn + ".values", "wrong length")]
    [InlineData("bsr blocks unsorted", MlpProj + ".block_col_indices", "sorted")]
    [InlineData("bsr block duplicated", MlpProj + ".block_col_indices", "duplicated")]
    [InlineData("bsr values of the wrong length", MlpProj + ".values", "wrong length")]
    [InlineData("unknown format of an n:m weight", CAttn + ".format", "unknown format")]
    public void BadSparseCheckpointIsRefusedWithOneLineNamingTheTensor(string problem, string names, string what)
    {
        string dir = SparseCopy();
        string path = Path.Combine(dir, Checkpoint.ModelFile);
        var (first, second) = TwoEntryRow(dir);
        switch (problem)
        {
            case "csr index out of range": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CFc + ".col_indices" ? Set(v, 0, 16) : v); break;
            case "csr indices unsorted": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CFc + ".col_indices" ? Swap(v, first, second) : v); break;
            case "csr index duplicated": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CFc + ".col_indices" ? Set(v, second, v[first]) : v); break;
            case "csr row pointers decrease": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CFc + ".row_ptr" ? Set(v, 1, v[2] + 1) : v); break;
            case "values of the wrong length": SparseCheckpointFixture.Rewrite(path, floats: (n, v) => n == CFc + ".values" ? v[..^1] : v); break;
            case "values missing": SparseCheckpointFixture.Rewrite(path, floats: (n, v) => n == CFc + ".values" ? null : v); break;
            case "unknown format": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".format"] = "coo"); break;
            case "density above 1": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".density"] = "1.5"); break;
            case "density 0": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".density"] = "0"); break;
            case "density not matching": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".density"] = "0.9"); break;
            case "shape not the model's": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".shape"] = "[16, 64]"); break;
            case "n:m with N = M": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CAttn + ".n"] = "4"); break;
            case "n:m whose M does not divide In": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CAttn + ".m"] = "5"); break;
            case "n:m index out of range": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CAttn + ".indices" ? Set(v, 0, 4) : v); break;
            case "n:m indices unsorted": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CAttn + ".indices" ? Swap(v, 0, 1) : v); break;
            case "bsr block index out of range": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == MlpProj + ".block_col_indices" ? Set(v, 0, 16) : v); break;
            case "bsr block not dividing": SparseCheckpointFixture.Rewrite(path, metadata: m => m[MlpProj + ".block"] = "3x4"); break;
            case "density NaN": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".density"] = "NaN"); break;
            case "density negative": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CFc + ".density"] = "-0.5"); break;
            case "n:m with N = 0": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CAttn + ".n"] = "0"); break;
            case "n:m index duplicated": SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == CAttn + ".indices" ? Set(v, 1, v[0]) : v); break;
            case "n:m values of the wrong length": SparseCheckpointFixture.Rewrite(path, floats: (n, v) => n == CAttn + ".values" ? v[..^1] : v); break;
            case "bsr blocks unsorted":
            {
                var (a, b) = TwoBlockRow(dir);
                SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == MlpProj + ".block_col_indices" ? Swap(v, a, b) : v);
                break;
            }
            case "bsr block duplicated":
            {
                var (a, b) = TwoBlockRow(dir);
                SparseCheckpointFixture.Rewrite(path, indices: (n, v) => n == MlpProj + ".block_col_indices" ? Set(v, b, v[a]) : v);
                break;
            }
            case "bsr values of the wrong length": SparseCheckpointFixture.Rewrite(path, floats: (n, v) => n == MlpProj + ".values" ? v[..^16] : v); break;
            case "unknown format of an n:m weight": SparseCheckpointFixture.Rewrite(path, metadata: m => m[CAttn + ".format"] = "nm24"); break;
            case "dense tensor beside sparse metadata":
                SparseCheckpointFixture.Rewrite(path, metadata: m => { });
                var all = SparseCheckpointFixture.Raw(path, out var meta);
                var tensors = all.Select(kv => kv.Value.Dtype == NanoSparse.IO.SafeTensorsDtype.F32
                    ? new NanoSparse.IO.SafeTensor(kv.Key, kv.Value.Shape, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(kv.Value.Bytes).ToArray())
                    : NanoSparse.IO.SafeTensor.Integers(kv.Key, kv.Value.Dtype, Ints(kv.Value.Dtype, kv.Value.Bytes))).ToList();
                tensors.Add(new NanoSparse.IO.SafeTensor(CFc, [64, 16], new float[64 * 16]));
                NanoSparse.IO.SafeTensors.Write(path, tensors, meta);
                break;
        }
        // The save id is unchanged, so only the sparse check can refuse the file.
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadModel(dir, 1, 16, out _));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains($"'{names}", e.Message);
        Assert.Contains(what, e.Message);
        Assert.Contains(path, e.Message);

        var (code, _, err) = Cli("inspect", "--checkpoint", dir);
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(names, err);

        // sparsify and export refuse it too, and leave an existing output as it was.
        string existing = SparseCopy();
        var before = Directory.GetFiles(existing).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        Assert.Equal(1, Cli("sparsify", "--checkpoint", dir, "--out", existing).Code);
        Assert.Equal(1, Cli("export", dir, "--format", "nanogpt", "--out", existing).Code);
        Assert.Equal(before.Keys.Order(), Directory.GetFiles(existing).Select(Path.GetFileName).Order());
        foreach (var (name, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(existing, name)));
    }

    /// <summary>The first block row of mlp.c_proj with at least two stored blocks: (its first block, second block).</summary>
    static (int First, int Second) TwoBlockRow(string dir)
    {
        var t = SparseCheckpointFixture.Raw(Path.Combine(dir, Checkpoint.ModelFile), out _);
        var ptr = t[MlpProj + ".block_row_ptr"].Bytes;
        for (int r = 0; 4 * r + 4 < ptr.Length; r++)
        {
            int a = BitConverter.ToInt32(ptr, 4 * r), b = BitConverter.ToInt32(ptr, 4 * r + 4);
            if (b - a >= 2) return (a, a + 1);
        }
        throw new InvalidOperationException("the fixture's mlp.c_proj has no block row with two blocks");
    }

    static int[] Set(int[] v, int i, int value) { v[i] = value; return v; }
    static int[] Swap(int[] v, int i, int j) { (v[i], v[j]) = (v[j], v[i]); return v; }

    static int[] Ints(NanoSparse.IO.SafeTensorsDtype dtype, byte[] b) => dtype switch
    {
        NanoSparse.IO.SafeTensorsDtype.U8 => b.Select(x => (int)x).ToArray(),
        NanoSparse.IO.SafeTensorsDtype.U16 => Enumerable.Range(0, b.Length / 2).Select(i => (int)BitConverter.ToUInt16(b, 2 * i)).ToArray(),
        _ => Enumerable.Range(0, b.Length / 4).Select(i => BitConverter.ToInt32(b, 4 * i)).ToArray(),
    };

    [Fact]
    public void FormatThatCannotHoldThePatternIsRefusedAndTheOutputKept()
    {
        string existing = SparseCopy();
        var before = Directory.GetFiles(existing).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        // attn.c_proj has no zeros: not 2:4.
        var (code, _, err) = Cli("sparsify", "--checkpoint", fx.DenseDir, "--out", existing, "--format", "nm:2:4");
        Assert.Equal(1, code);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("'transformer.h.0.attn.c_proj.weight' is not 2:4", err);
        foreach (var (name, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(existing, name)));

        (code, _, err) = Cli("sparsify", "--checkpoint", fx.DenseDir, "--out", existing, "--format", "nm:4:4");
        Assert.Equal(2, code);
        Assert.Contains("N < M", err);
        (code, _, err) = Cli("sparsify", "--checkpoint", fx.DenseDir, "--out", existing, "--format", "nm:2:3", "--weights", "mlp.c_fc");
        Assert.Equal(1, code);
        Assert.Contains("does not divide the reduction dimension 16", err);
        (code, _, err) = Cli("sparsify", "--checkpoint", fx.DenseDir, "--out", existing, "--format", "coo");
        Assert.Equal(2, code);
        Assert.Contains("--format 'coo'", err);
        (code, _, err) = Cli("sparsify", "--checkpoint", fx.DenseDir, "--out", existing, "--weights", "mlp.c_xx");
        Assert.Equal(1, code);
        Assert.Contains("--weights entry 'mlp.c_xx'", err);
        foreach (var (name, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(existing, name)));
    }

    [Fact]
    public void CliSparsifyInspectExportRoundTrip()
    {
        string outDir = fx.NewDir("cli");
        var (code, stdout, err) = Cli("sparsify", "--checkpoint", fx.DenseDir, "--out", outDir);
        Assert.True(code == 0, err);
        Assert.Contains("nm", stdout);
        (code, stdout, err) = Cli("inspect", "--checkpoint", outDir);
        Assert.True(code == 0, err);
        foreach (var s in new[] { "bytes on disk", "bytes in memory", "csr", "bsr", "nm", "dense", "0.1", "total" }) Assert.Contains(s, stdout);
        string e1 = fx.NewDir("cli-export"), e2 = fx.NewDir("cli-export-dense");
        Assert.Equal(0, Cli("export", outDir, "--format", "nanogpt", "--out", e1).Code);
        Assert.Equal(0, Cli("export", fx.DenseDir, "--format", "nanogpt", "--out", e2).Code);
        var a = SparseCheckpointFixture.Raw(Path.Combine(e1, "model.safetensors"), out _);
        var b = SparseCheckpointFixture.Raw(Path.Combine(e2, "model.safetensors"), out _);
        Assert.Equal(b.Keys.Order(), a.Keys.Order());
        foreach (var (name, t) in b) Assert.True(t.Bytes.AsSpan().SequenceEqual(a[name].Bytes), name);
    }
}
