using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Sparse;
using NanoSparse.Tests.Kernels;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// A model held for inference (<see cref="Gpt.PrepareForInference"/>) against the same model held for training: the
/// same logits from the full forward pass and from cached decoding, Backward refused, and the layouts holding exactly
/// the bytes their decode formats need (CSR: row pointers + 16-bit columns; N:M: the packed in-group indices).
/// </summary>
[Collection(nameof(GemmCollection))]   // sets KernelThreads.Max
public class InferenceLayoutTests
{
    static Gpt Model(int B, int T)
    {
        var dense = new GptConfig { NLayer = 2, NHead = 2, NEmbd = 16, BlockSize = 12, VocabSize = 13, Bias = true };
        var config = dense with
        {
            WeightLayouts = new Dictionary<string, string>
            {
                ["attn.c_attn"] = "csr", ["attn.c_proj"] = "nm:2:4", ["mlp.c_fc"] = "csr", ["mlp.c_proj"] = "nm:1:4",
                ["h.1.attn.c_proj"] = "dense",
            },
            WeightDensities = new Dictionary<string, double> { ["attn.c_attn"] = 0.3, ["mlp.c_fc"] = 0.55 },
        };
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(7);
        // LayerNorm gains and biases away from 1 and 0 so every parameter matters.
        var r = new Random(3);
        foreach (var p in gpt.Parameters.Where(p => p.Layout is null && p.Shape.Length == 1))
            foreach (ref float v in p.Value.Span) v += (float)(r.NextDouble() - 0.5) * 0.2f;
        return gpt;
    }

    static (float[] Logits, float Loss, float[][] Decoded) Run(Gpt gpt)
    {
        int n = gpt.BatchSize * gpt.SeqLen, V = gpt.Config.VocabSize;
        var tokens = Enumerable.Range(0, n).Select(i => (i * 5 + 2) % V).ToArray();
        var targets = Enumerable.Range(0, n).Select(i => (i * 3 + 1) % V).ToArray();
        float loss = gpt.Forward(tokens, targets, training: false);
        var logits = gpt.Logits.ToArray();
        var cache = gpt.CreateKvCache();
        var decoded = new List<float[]> { gpt.ForwardCached(cache, tokens.AsSpan(0, 4)).ToArray() };   // a prefill of 4
        for (int i = 4; i < gpt.Config.BlockSize; i++)                                              // then one at a time
            decoded.Add(gpt.ForwardCached(cache, tokens.AsSpan(i, 1)).ToArray());
        return (logits, loss, decoded.ToArray());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void TheInferenceHeldModelGivesTheTrainingHeldModelsLogits(int threads)
    {
        int saved = NanoSparse.Kernels.KernelThreads.Max;
        try
        {
            NanoSparse.Kernels.KernelThreads.Max = threads;
            var gpt = Model(B: 3, T: 12);
            var before = Run(gpt);
            gpt.PrepareForInference();
            Assert.True(gpt.IsInferenceOnly);
            Assert.Equal(0, gpt.GradientData.Length);   // the gradient buffer is gone too
            Assert.All(gpt.Parameters, p => Assert.True(p.Grad.IsEmpty, p.Name));
            var after = Run(gpt);
            // The full forward (B·T rows) of the N:M layers runs the token-major training kernels before the release and
            // NmSpmm after (their index bytes and permute controls are released): another summation order, so the
            // logits agree to float rounding there; decoding (a few rows) runs the same kernels and changes no bit.
            Assert.Equal(before.Logits.Length, after.Logits.Length);
            for (int i = 0; i < before.Logits.Length; i++)
                Assert.True(Math.Abs(before.Logits[i] - after.Logits[i]) <= 1e-5f * Math.Max(1f, Math.Abs(before.Logits[i])),
                    $"logit {i}: {before.Logits[i]} before, {after.Logits[i]} after");
            Assert.Equal(before.Loss, after.Loss, 1e-5f);
            Assert.Equal(before.Decoded.Length, after.Decoded.Length);
            for (int i = 0; i < before.Decoded.Length; i++) Assert.Equal(before.Decoded[i], after.Decoded[i]);
        }
        finally { NanoSparse.Kernels.KernelThreads.Max = saved; }
    }

    [Theory]
    [InlineData(DecodeCopyFormat.Sell)]
    [InlineData(DecodeCopyFormat.Sell128)]
    [InlineData(DecodeCopyFormat.Sell256)]
    [InlineData(DecodeCopyFormat.Bitmap)]
    [InlineData(DecodeCopyFormat.Sell128Packed)]
    [InlineData(DecodeCopyFormat.Sell64Packed)]
    [InlineData(DecodeCopyFormat.Auto)]
    public void KeepingADecodeCopyGivesTheSameDecodeLogitsAndHoldsTheCopyBytes(DecodeCopyFormat format)
    {
        var plain = Model(B: 1, T: 12);
        plain.PrepareForInference();
        var withSell = Model(B: 1, T: 12);
        // A small model's parameter buffer is an ordinary array (a GC may move it): pinned while the N:M copies are
        // made and checked, so the copy's need and the check below see the same address.
        unsafe
        {
        fixed (float* pinned = withSell.ParameterData)
        {
            withSell.PrepareForInference(keepSellCopy: true, format);
            long sell = 0;
            foreach (var p in withSell.Parameters.Where(p => p.Layout is CsrLinearWeight))
            {
                var w = (CsrLinearWeight)p.Layout!;
                var columns = Enumerable.Range(0, p.Length).Select(i => w.Structure.ColumnIndex(i)).ToArray();
                var chosen = format == DecodeCopyFormat.Auto ? DecodeCopy.Choose(p.Shape[0], p.Shape[1], w.Structure.RowPointers, i => columns[i]) : format;
                string name = chosen switch { DecodeCopyFormat.Sell => "sell", DecodeCopyFormat.Sell128 => "sell128", DecodeCopyFormat.Sell256 => "sell256", DecodeCopyFormat.Sell128Packed => "sell128packed", DecodeCopyFormat.Sell64Packed => "sell64packed", _ => "bitmap" };
                Assert.Equal("csr16 + " + name, w.DecodeFormat);
                // The copy's own arrays, built independently from the weight's CSR, plus the 64-float fingerprint.
                var c = CsrMatrix.Create(p.Shape[0], p.Shape[1], w.Structure.RowPointers, columns, p.Value.ToArray());
                sell += chosen switch
                {
                    DecodeCopyFormat.Sell => SellMatrix.FromCsr(c).FootprintBytes,
                    DecodeCopyFormat.Sell128 => SellWideMatrix.FromCsr(c, 128, SellRowOrder.DefaultWindow).FootprintBytes,
                    DecodeCopyFormat.Sell256 => SellWideMatrix.FromCsr(c, 256, SellRowOrder.DefaultWindow).FootprintBytes,
                    DecodeCopyFormat.Sell128Packed => SellPackedMatrix.FromCsr(c, SellRowOrder.DefaultWindow).FootprintBytes,
                    DecodeCopyFormat.Sell64Packed => SellPackedMatrix.FromCsr(c, DecodeCopy.Sell64PackedWindow(c.NonZeroCount, c.Rows, c.Cols), SellPackedMatrix.NarrowBlock).FootprintBytes,
                    _ => BitmapMatrix.FromCsr(c).FootprintBytes,
                } + 4 * 64;
            }
            // The N:M weights copy their values onto a 64-byte boundary where the model's buffer has them off one: the copy
            // (with PinnedAligned's 128 bytes of lead-in and spare) and its 64-value check.
            long aligned = 0;
            foreach (var p in withSell.Parameters.Where(p => p.Layout is NmLinearWeight))
            {
                bool copied = ((NmLinearWeight)p.Layout!).DecodeFormat.EndsWith(" + aligned values");
                Assert.Equal(!NmDecodeCopyTests.IsOnLine(p.Value.Span), copied);
                if (copied) aligned += 4L * p.Length + 128 + 4L * Math.Min(64, p.Length);
            }
            Assert.Equal(plain.LinearWeightBytes + sell + aligned, withSell.LinearWeightBytes);
        }
        }
        // The copies sum in another order than CSR: the same logits within float rounding.
        var a = Run(plain).Decoded;
        var b = Run(withSell).Decoded;
        for (int i = 0; i < a.Length; i++)
            for (int j = 0; j < a[i].Length; j++)
                Assert.True(Math.Abs(a[i][j] - b[i][j]) <= 1e-4f * (1 + Math.Abs(a[i][j])), $"step {i}, logit {j}: {a[i][j]} vs {b[i][j]}");
    }

    [Fact]
    public void ReleasedLayoutsHoldWhatTheirDecodeFormatsPredict()
    {
        var gpt = Model(B: 1, T: 1);
        long trainingBytes = gpt.LinearWeightBytes;
        var layouts = gpt.Parameters.Where(p => p.Layout is IInferenceLayout).Select(p => (IInferenceLayout)p.Layout!).ToList();
        Assert.Equal(7, layouts.Count);   // c_attn, c_fc and mlp.c_proj (1:4) of both layers, attn.c_proj (2:4) of layer 0
        var heldBefore = layouts.Select(l => l.HeldBytes).ToArray();
        gpt.PrepareForInference();
        long predictedTotal = 0;
        for (int i = 0; i < layouts.Count; i++)
        {
            var l = layouts[i];
            Assert.True(l.IsInferenceOnly);
            long predicted = l switch
            {
                // row pointers (Out + 1 ints) and one 16-bit column index per stored value
                CsrLinearWeight c => 4L * (c.OutFeatures + 1) + 2L * c.StoredCount,
                // ⌈log2 M⌉ bits per stored value, packed (NmSparseMatrix's byte count: one spare byte)
                NmLinearWeight m => NmSparseMatrix.IndexBytes(m.StoredCount, m.M),
                _ => throw new InvalidOperationException(l.Layout),
            };
            Assert.Equal(predicted, l.HeldBytes);
            Assert.True(l.HeldBytes < heldBefore[i], $"{l.DecodeFormat}: {l.HeldBytes} bytes after the release, {heldBefore[i]} before");
            predictedTotal += predicted;
        }
        Assert.Equal("csr16", layouts.OfType<CsrLinearWeight>().First().DecodeFormat);
        Assert.Equal("nm 2:4 (2-bit indices)", layouts.OfType<NmLinearWeight>().First(w => w.N == 2).DecodeFormat);
        long values = gpt.Parameters.Where(p => p.Layout is not null).Sum(p => 4L * p.Length);
        Assert.Equal(values + predictedTotal, gpt.LinearWeightBytes);
        Assert.True(gpt.LinearWeightBytes < trainingBytes);
    }

    [Fact]
    public void TheCsrValuesCopyAndTransposeAreReallyReleased()
    {
        var w = CsrLinearWeight.Random(64, 48, 0.4, new Rng(5));
        var values = new float[w.StoredCount];
        w.PrepareForInference(values);   // the training-compatible SELL copy, dropped too
        var copy = WeakValuesCopy(w);
        long before = w.HeldBytes;
        w.ReleaseTrainingStructures();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(copy.IsAlive, "the CSR values copy is still reachable after the release");
        Assert.Empty(w.Structure.Values);
        Assert.True(w.Structure.IsStructureOnly);
        w.Structure.Validate();
        Assert.Equal(4L * 65 + 2L * w.StoredCount, w.HeldBytes);
        Assert.True(before > 3 * w.HeldBytes, $"{before} bytes held before, {w.HeldBytes} after");
    }

    // In its own frame, so no temporary of the test method keeps the array alive.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static WeakReference WeakValuesCopy(CsrLinearWeight w) => new(w.Structure.Values);

    [Fact]
    public void BackwardAfterTheReleaseIsRefusedByName()
    {
        var gpt = Model(B: 1, T: 4);
        gpt.PrepareForInference();
        var tokens = new[] { 1, 2, 3, 4 };
        gpt.Forward(tokens, tokens, training: true);
        var e = Assert.Throws<InvalidOperationException>(gpt.Backward);
        Assert.Contains("PrepareForInference", e.Message);

        var csr = gpt.Parameters.First(p => p.Layout is CsrLinearWeight);
        var layout = csr.Layout!;
        int rows = 2;
        var x = new float[rows * layout.InFeatures];
        var dy = new float[rows * layout.OutFeatures];
        var dValues = new float[layout.StoredCount];
        var workspace = new float[layout.WorkspaceFloats(rows)];
        var e2 = Assert.Throws<InvalidOperationException>(() => layout.Backward(default, dValues, default, dy, x, csr.Value.Span, default, rows, workspace));
        Assert.Contains("csr weight (48x16)", e2.Message);

        var nm = gpt.Parameters.First(p => p.Layout is NmLinearWeight).Layout!;
        var e3 = Assert.Throws<InvalidOperationException>(() => nm.Backward(default, new float[nm.StoredCount], default,
            new float[rows * nm.OutFeatures], new float[rows * nm.InFeatures], new float[nm.StoredCount], default, rows, new float[nm.WorkspaceFloats(rows)]));
        Assert.Contains("nm weight", e3.Message);
    }

    [Fact]
    public void AReleasedNmLayoutStillConvertsToAndFromDense()
    {
        var rng = new Rng(9);
        var dense = new float[12 * 16];
        var w = NmLinearWeight.Random(12, 16, 2, 4, rng);
        var values = new float[w.StoredCount];
        for (int i = 0; i < values.Length; i++) values[i] = i + 1;
        var expected = new float[dense.Length];
        w.ToDense(values, expected);
        var gathered = new float[values.Length];
        w.ReleaseTrainingStructures();
        w.ToDense(values, dense);
        Assert.Equal(expected, dense);
        w.Gather(dense, gathered);
        Assert.Equal(values, gathered);
    }
}
