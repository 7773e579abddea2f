using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

[Collection("KernelThreads")]
public sealed class SparseCheckpointTests(SparseCheckpointFixture fx) : IClassFixture<SparseCheckpointFixture>
{
    const string CAttn = "transformer.h.0.attn.c_attn.weight", AttnProj = "transformer.h.0.attn.c_proj.weight";
    const string CFc = "transformer.h.0.mlp.c_fc.weight", MlpProj = "transformer.h.0.mlp.c_proj.weight";

    static Dictionary<string, float[]> DenseWeights(Gpt gpt) =>
        gpt.Parameters.Where(p => p.Layout is not null).ToDictionary(p => p.Name, p =>
        {
            var d = new float[p.LogicalLength];
            p.Layout!.ToDense(p.Value.Span, d);
            return d;
        });

    static int[] Bits(ReadOnlySpan<float> v)
    {
        var b = new int[v.Length];
        for (int i = 0; i < v.Length; i++) b[i] = BitConverter.SingleToInt32Bits(v[i]);
        return b;
    }

    [Theory]
    [InlineData("csr", "attn.c_attn,mlp.c_fc,mlp.c_proj", 3)]
    [InlineData("nm:2:4", "attn.c_attn", 1)]
    [InlineData("bsr:4x4", "attn.c_attn,mlp.c_fc,mlp.c_proj", 3)]
    public void SparsifiedWeightsHoldTheDenseWeightsExactlyAndReloadBitExact(string format, string weights, int sparseCount)
    {
        string outDir = fx.NewDir("sparse");
        Sparsify.Run(fx.DenseDir, outDir, format, weights.Split(','));
        var dense = Checkpoint.LoadModel(fx.DenseDir, 1, 16, out _);
        var sparse = Checkpoint.LoadModel(outDir, 1, 16, out var state);
        Assert.Equal(sparseCount, sparse.Parameters.Count(p => p.Layout is ISparseLinearStructure));
        string layout = format.Split(':')[0];
        Assert.All(sparse.Parameters.Where(p => p.Layout is ISparseLinearStructure), p => Assert.Equal(layout, p.Layout!.Layout));
        // Densified, every weight equals the dense checkpoint's bit for bit; the others are copied unchanged.
        var expected = DenseWeights(dense);
        foreach (var (name, d) in DenseWeights(sparse)) Assert.Equal(Bits(expected[name]), Bits(d));
        foreach (var p in sparse.Parameters.Where(p => p.Layout is null))
            Assert.Equal(Bits(dense.Parameters.Single(q => q.Name == p.Name).Value.Span), Bits(p.Value.Span));
        // Only the stored values take space: CSR stores exactly the nonzeros.
        if (layout == "csr")
            foreach (var p in sparse.Parameters.Where(p => p.Layout is ISparseLinearStructure))
                Assert.Equal(expected[p.Name].Count(v => v != 0), p.Length);
        Assert.NotNull(state.Model.WeightLayouts);
        Assert.Equal(format, state.Model.WeightLayouts!["h.0.attn.c_attn"]);

        // Save the loaded model again: every tensor (values and structure) is byte-identical.
        string again = fx.NewDir("again");
        state.SaveId = null;
        state.Files = null;
        Checkpoint.Save(again, sparse, null, state, null);
        var a = SparseCheckpointFixture.Raw(Path.Combine(outDir, Checkpoint.ModelFile), out var metaA);
        var b = SparseCheckpointFixture.Raw(Path.Combine(again, Checkpoint.ModelFile), out var metaB);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a)
        {
            Assert.Equal(t.Dtype, b[name].Dtype);
            Assert.Equal(t.Shape, b[name].Shape);
            Assert.True(t.Bytes.AsSpan().SequenceEqual(b[name].Bytes), $"tensor {name} differs after save-load-save");
        }
        metaA.Remove(Checkpoint.SaveIdKey);
        metaB.Remove(Checkpoint.SaveIdKey);
        Assert.Equal(metaA.OrderBy(kv => kv.Key), metaB.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void SparseFileHoldsValuesIndicesAndMetadataInsteadOfTheDenseMatrix()
    {
        string outDir = fx.NewDir("auto");
        Sparsify.Run(fx.DenseDir, outDir, "auto");
        var t = SparseCheckpointFixture.Raw(Path.Combine(outDir, Checkpoint.ModelFile), out var meta);
        // auto: 2:4 weight → nm:2:4, no zeros → dense, density 1/8 → csr, quarter of 4x4 blocks → bsr 4x4.
        Assert.Equal("nm", meta[CAttn + ".format"]);
        Assert.Equal("2", meta[CAttn + ".n"]);
        Assert.Equal("4", meta[CAttn + ".m"]);
        Assert.Equal("[48, 16]", meta[CAttn + ".shape"]);
        Assert.Equal(SafeTensorsDtype.U8, t[CAttn + ".indices"].Dtype);
        Assert.Equal([48 * 16 / 2], t[CAttn + ".values"].Shape);
        Assert.False(t.ContainsKey(CAttn));
        Assert.True(t.ContainsKey(AttnProj));
        Assert.False(meta.ContainsKey(AttnProj + ".format"));
        Assert.Equal("csr", meta[CFc + ".format"]);
        Assert.Equal(SafeTensorsDtype.I32, t[CFc + ".row_ptr"].Dtype);
        Assert.Equal([65], t[CFc + ".row_ptr"].Shape);
        Assert.Equal(SafeTensorsDtype.U16, t[CFc + ".col_indices"].Dtype);
        Assert.Equal("bsr", meta[MlpProj + ".format"]);
        Assert.Equal("4x4", meta[MlpProj + ".block"]);
        Assert.Equal(SafeTensorsDtype.F32, t[MlpProj + ".values"].Dtype);
        double density = double.Parse(meta[CFc + ".density"], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(t[CFc + ".values"].Shape[0] / (64.0 * 16), density);
    }

    [Fact]
    public void SparsifiedModelsLogitsEqualTheDenseModels()
    {
        string outDir = fx.NewDir("logits");
        Sparsify.Run(fx.DenseDir, outDir, "auto");
        var dense = Checkpoint.LoadModel(fx.DenseDir, 2, 16, out _);
        var sparse = Checkpoint.LoadModel(outDir, 2, 16, out _);
        Assert.Contains(sparse.Parameters, p => p.Layout is ISparseLinearStructure);
        var tokens = Enumerable.Range(0, 32).Select(i => (i * 7 + 3) % dense.Config.VocabSize).ToArray();
        dense.Forward(tokens, default, training: false);
        sparse.Forward(tokens, default, training: false);
        var a = dense.Logits.ToArray();
        var b = sparse.Logits.ToArray();
        for (int i = 0; i < a.Length; i++)
            Assert.True(Math.Abs(a[i] - b[i]) <= 1e-5f * Math.Max(1f, Math.Abs(a[i])), $"logit {i}: dense {a[i]}, sparse {b[i]}");
    }

    [Fact]
    public void OptimizerFileHoldsTheMomentsOfStoredValuesOnly()
    {
        string outDir = fx.NewDir("moments");
        Sparsify.Run(fx.DenseDir, outDir, "auto");
        var dense = Checkpoint.LoadModel(fx.DenseDir, 1, 16, out var denseState);
        var denseOpt = SparseCheckpointFixture.NewOptimizer(dense, denseState.Config);
        Checkpoint.LoadOptimizer(fx.DenseDir, dense, denseOpt, denseState);
        var sparse = Checkpoint.LoadModel(outDir, 1, 16, out var state);
        var opt = SparseCheckpointFixture.NewOptimizer(sparse, state.Config);
        Checkpoint.LoadOptimizer(outDir, sparse, opt, state);
        Assert.Equal(denseOpt.StepCount, opt.StepCount);
        using var f = SafeTensorsFile.Open(Path.Combine(outDir, Checkpoint.OptimizerFile));
        foreach (var p in sparse.Parameters.Where(p => p.Layout is ISparseLinearStructure))
        {
            Assert.Equal([p.Length], f.Get(p.Name + ".exp_avg").Shape);
            var q = dense.Parameters.Single(x => x.Name == p.Name);
            var seg = NanoSparse.Optim.AdamW.SegmentOf(sparse.ParameterData, p.Value.Span, p.Decay);
            var denseSeg = NanoSparse.Optim.AdamW.SegmentOf(dense.ParameterData, q.Value.Span, q.Decay);
            var stored = new float[p.LogicalLength];
            p.Layout!.ToDense(Enumerable.Repeat(1f, p.Length).ToArray(), stored);   // 1 where a value is stored
            var m = new float[p.LogicalLength];
            p.Layout.ToDense(opt.M.Slice(seg.Offset, seg.Length), m);
            var denseM = denseOpt.M.Slice(denseSeg.Offset, denseSeg.Length);
            for (int i = 0; i < m.Length; i++)
                Assert.Equal(stored[i] != 0 ? denseM[i] : 0f, m[i]);
        }
    }

    [Fact]
    public void DenseWithZerosSparsifyExportRoundTripsToTheSameTensors()
    {
        string outDir = fx.NewDir("rt");
        Sparsify.Run(fx.DenseDir, outDir, "auto");
        string e1 = fx.NewDir("export-dense"), e2 = fx.NewDir("export-sparse");
        ModelImporter.Export(ModelFormat.NanoGpt, fx.DenseDir, e1);
        ModelImporter.Export(ModelFormat.NanoGpt, outDir, e2);
        var a = SparseCheckpointFixture.Raw(Path.Combine(e1, "model.safetensors"), out _);
        var b = SparseCheckpointFixture.Raw(Path.Combine(e2, "model.safetensors"), out _);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.Contains(CFc, b.Keys);
        foreach (var (name, t) in a)
        {
            Assert.Equal(t.Shape, b[name].Shape);
            Assert.True(t.Bytes.AsSpan().SequenceEqual(b[name].Bytes), $"tensor {name} differs");
        }
        // Exporting as GPT-2 works too (dense tensors, Conv1D layout).
        string e3 = fx.NewDir("export-gpt2");
        ModelImporter.Export(ModelFormat.Gpt2, outDir, e3);
        Assert.True(File.Exists(Path.Combine(e3, "model.safetensors")));
    }

    [Fact]
    public void ImportedCheckpointSparsifiesToModelAndConfigOnly()
    {
        string imported = fx.NewDir("imported");
        ModelImporter.WriteCheckpoint(imported, GptInterop.ToDims(Checkpoint.LoadModel(fx.DenseDir, 1, 16, out _).Config),
            ModelImporter.ReadCheckpoint(fx.DenseDir).Tensors);
        string outDir = fx.NewDir("imported-sparse");
        Sparsify.Run(imported, outDir, "csr", ["mlp.c_fc"]);
        Assert.True(File.Exists(Path.Combine(outDir, Checkpoint.ConfigFile)));
        Assert.False(File.Exists(Path.Combine(outDir, Checkpoint.StateFile)));
        var gpt = Checkpoint.LoadAnyModel(outDir, 1, 16, out var state);
        Assert.Null(state);
        Assert.Equal("csr", gpt.Parameters.Single(p => p.Name == CFc).Layout!.Layout);
        Assert.Equal(Bits(DenseWeights(Checkpoint.LoadModel(fx.DenseDir, 1, 16, out _))[CFc]), Bits(DenseWeights(gpt)[CFc]));
    }

    [Fact]
    public void ResumingASparseCheckpointKeepsItsStructure()
    {
        string outDir = fx.NewDir("resume");
        Sparsify.Run(fx.DenseDir, outDir, "auto");
        var before = Checkpoint.LoadModel(outDir, 1, 16, out _);
        var c = fx.Data.Config("unused", maxIters: 4);
        c.OutDir = outDir;
        c.InitFrom = "resume";
        c.EvalInterval = 2;
        using (var t = new Trainer(c))
        {
            t.Run();
            Assert.Equal(4, t.Step);
        }
        var after = Checkpoint.LoadModel(outDir, 1, 16, out var state);
        Assert.Equal(4, state.IterNum);
        foreach (var p in after.Parameters.Where(p => p.Layout is ISparseLinearStructure))
        {
            var q = before.Parameters.Single(x => x.Name == p.Name);
            var s1 = ((ISparseLinearStructure)p.Layout!).ExportIndices();
            var s0 = ((ISparseLinearStructure)q.Layout!).ExportIndices();
            Assert.Equal(s0.Select(i => i.Values), s1.Select(i => i.Values));
            Assert.NotEqual(Bits(q.Value.Span), Bits(p.Value.Span));   // trained: values moved, positions did not
        }
    }
}
