using System.Reflection;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// The BSR layout held for inference (<see cref="Gpt.PrepareForInference"/>): it drops its element-wise CSR copy and
/// the permutation to it, keeps the block structure (block row pointers + block column indices), gives the same
/// logits, still converts to and from dense, and refuses Backward.
/// </summary>
[Collection(nameof(GemmCollection))]   // runs Gpt's kernels, which read KernelThreads.Max
public class BsrInferenceLayoutTests
{
    static Gpt Model(int B, int T)
    {
        var config = new GptConfig
        {
            NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 12, VocabSize = 13, Bias = true,
            WeightLayouts = new Dictionary<string, string> { ["attn.c_attn"] = "bsr:4x4", ["mlp.c_fc"] = "bsr:8x2", ["mlp.c_proj"] = "bsr:2x8" },
            WeightDensities = new Dictionary<string, double> { ["attn.c_attn"] = 0.4, ["mlp.c_fc"] = 0.5, ["mlp.c_proj"] = 0.3 },
        };
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(11);
        return gpt;
    }

    static (float[] Logits, float[][] Decoded) Run(Gpt gpt)
    {
        int n = gpt.BatchSize * gpt.SeqLen, V = gpt.Config.VocabSize;
        var tokens = Enumerable.Range(0, n).Select(i => (i * 7 + 3) % V).ToArray();
        gpt.Forward(tokens, tokens, training: false);
        var logits = gpt.Logits.ToArray();
        var cache = gpt.CreateKvCache();
        var decoded = new List<float[]> { gpt.ForwardCached(cache, tokens.AsSpan(0, 3)).ToArray() };
        for (int i = 3; i < gpt.Config.BlockSize; i++) decoded.Add(gpt.ForwardCached(cache, tokens.AsSpan(i, 1)).ToArray());
        return (logits, decoded.ToArray());
    }

    [Fact]
    public void TheReleasedBsrModelGivesTheSameLogitsBitForBit()
    {
        var gpt = Model(B: 2, T: 12);
        var before = Run(gpt);
        gpt.PrepareForInference();
        Assert.All(gpt.Parameters.Where(p => p.Layout is BsrLinearWeight), p => Assert.True(((BsrLinearWeight)p.Layout!).IsInferenceOnly, p.Name));
        var after = Run(gpt);
        // Forward runs BsrSpmm on the same block structure before and after: the same sums in the same order.
        Assert.Equal(before.Logits, after.Logits);
        Assert.Equal(before.Decoded.Length, after.Decoded.Length);
        for (int i = 0; i < before.Decoded.Length; i++) Assert.Equal(before.Decoded[i], after.Decoded[i]);
    }

    [Fact]
    public void ReleasedBsrLayoutsHoldOnlyTheirBlockStructure()
    {
        var gpt = Model(B: 1, T: 1);
        long trainingBytes = gpt.LinearWeightBytes;
        var layouts = gpt.Parameters.Where(p => p.Layout is BsrLinearWeight).Select(p => (BsrLinearWeight)p.Layout!).ToList();
        Assert.Equal(6, layouts.Count);
        var heldBefore = layouts.Select(l => l.HeldBytes).ToArray();
        gpt.PrepareForInference();
        long predictedTotal = 0;
        for (int i = 0; i < layouts.Count; i++)
        {
            var w = layouts[i];
            int blocks = w.StoredCount / (w.BlockRows * w.BlockCols);
            // block row pointers (Out/R + 1 ints) and one 16-bit block column index per stored block
            long predicted = 4L * (w.OutFeatures / w.BlockRows + 1) + 2L * blocks;
            Assert.Equal(predicted, w.HeldBytes);
            Assert.Equal(predicted, w.IndexBytesInMemory);
            // Before: the CSR copy (row pointers, 16-bit columns, a values copy, Wᵀ's pointers, 16-bit indices and
            // permutation: more than 12 bytes per stored value) and the 4-byte permutation to it.
            Assert.True(heldBefore[i] > predicted + 16L * w.StoredCount, $"{w.LayoutString}: {heldBefore[i]} bytes held before the release, {predicted} after");
            predictedTotal += predicted;
        }
        Assert.Equal("bsr 4x4 (16-bit block indices)", layouts[0].DecodeFormat);
        long values = gpt.Parameters.Where(p => p.Layout is not null).Sum(p => 4L * p.Length);
        Assert.Equal(values + predictedTotal, gpt.LinearWeightBytes);   // the dense layouts (attn.c_proj) hold no arrays
        Assert.True(gpt.LinearWeightBytes < trainingBytes);
    }

    [Fact]
    public void TheCsrCopyIsReallyReleased()
    {
        var w = BsrLinearWeight.Random(32, 48, 4, 4, 0.5, new Rng(4));
        var copy = WeakCsrCopy(w);
        Assert.True(copy.IsAlive);
        w.ReleaseTrainingStructures();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(copy.IsAlive, "the BSR layout's CSR copy is still reachable after the release");
    }

    // In its own frame, so no temporary of the test method keeps the object alive.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static WeakReference WeakCsrCopy(BsrLinearWeight w) =>
        new(typeof(BsrLinearWeight).GetField("_csr", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(w)
            ?? throw new InvalidOperationException("BsrLinearWeight has no _csr before the release"));

    [Fact]
    public void AReleasedBsrLayoutStillConvertsToAndFromDenseAsItsExportedBlocksSay()
    {
        var w = BsrLinearWeight.Random(24, 32, 4, 8, 0.4, new Rng(6));
        var values = Enumerable.Range(1, w.StoredCount).Select(i => (float)i).ToArray();
        var before = new float[24 * 32];
        w.ToDense(values, before);
        w.ReleaseTrainingStructures();

        // Reference: place block p's values (row-major R×C) at its exported block row and column.
        var indices = w.ExportIndices();
        var pointers = indices.Single(t => t.Suffix == "block_row_ptr").Values;
        var columns = indices.Single(t => t.Suffix == "block_col_indices").Values;
        var expected = new float[24 * 32];
        for (int b = 0; b + 1 < pointers.Length; b++)
            for (int p = pointers[b]; p < pointers[b + 1]; p++)
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < 8; c++)
                        expected[(b * 4 + r) * 32 + columns[p] * 8 + c] = values[p * 32 + r * 8 + c];
        Assert.Equal(expected, before);

        var dense = new float[24 * 32];
        Array.Fill(dense, float.NaN);   // ToDense writes every element
        w.ToDense(values, dense);
        Assert.Equal(expected, dense);
        var gathered = new float[w.StoredCount];
        w.Gather(dense, gathered);
        Assert.Equal(values, gathered);
    }

    [Fact]
    public void BackwardAfterTheReleaseIsRefusedByName()
    {
        var w = BsrLinearWeight.Random(16, 32, 4, 4, 0.5, new Rng(8));
        int rows = 3;
        w.ReleaseTrainingStructures();
        var e = Assert.Throws<InvalidOperationException>(() => w.Backward(default, new float[w.StoredCount], default,
            new float[rows * 16], new float[rows * 32], new float[w.StoredCount], default, rows, new float[w.WorkspaceFloats(rows)]));
        Assert.Contains("bsr weight (16x32)", e.Message);
        Assert.Contains("PrepareForInference", e.Message);
    }
}
