using System.Diagnostics;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// One layer's head predictor on validation rows: BCE before and after training (train rows) and on validation rows,
/// the recall and selected share of heads under the positive-logit rule, the share of heads the label marks, and the
/// recall when the decode keeps the top half and the top three quarters of the heads by score.
/// </summary>
public sealed record DejaVuHeadReport(int Layer, double InitialLoss, double TrainLoss, double ValLoss, double Recall, double Selected, double Needed,
    int HalfHeads, double RecallHalf, int ThreeQuarterHeads, double RecallThreeQuarters);

// Deja Vu's attention-head predictors (§4): from ln_1's output, which heads' outputs are large for this token.
public static partial class DejaVuTraining
{
    static (DejaVuPredictor.Layer[] Layers, DejaVuHeadReport[] Reports) TrainHeads(Gpt gpt, TokenFile train, TokenFile val,
        DejaVuTrainOptions options, Action<DejaVuProgress>? progress)
    {
        var config = gpt.Config;
        int L = config.NLayer, C = config.NEmbd;
        var trainSet = CollectHeads(gpt, train, options.TrainBatches, options.Seed, options.HeadLabel, "collect train (heads)", progress);
        var valSet = CollectHeads(gpt, val, options.ValBatches, options.Seed ^ 0x9E37_79B9_7F4A_7C15UL, options.HeadLabel, "collect val (heads)", progress);
        var headOptions = options with { Rank = options.HeadRank };
        var layers = new DejaVuPredictor.Layer[L];
        var reports = new DejaVuHeadReport[L];
        for (int l = 0; l < L; l++)
        {
            int NH = config.Heads(l), layer = l;
            var (p, initial, final) = TrainLayer(trainSet.X[l], trainSet.Y[l], trainSet.Rows, C, NH, headOptions,
                (done, total, rate) => progress?.Invoke(new DejaVuProgress("train heads", layer, L, done, total, "steps", rate, (layer + (double)done / total) / L)));
            layers[l] = p;
            var (valLoss, recall, selected, needed) = Measure(p, valSet.X[l], valSet.Y[l], valSet.Rows);
            int half = Math.Max(1, NH / 2), threeQuarters = Math.Max(1, (3 * NH + 2) / 4);
            reports[l] = new DejaVuHeadReport(l, initial, final, valLoss, recall, selected, needed,
                half, RecallAtTop(p, valSet.X[l], valSet.Y[l], valSet.Rows, half), threeQuarters, RecallAtTop(p, valSet.X[l], valSet.Y[l], valSet.Rows, threeQuarters));
        }
        return (layers, reports);
    }

    // Runs the model on `batches` random windows; keeps per layer the attention inputs ln_1(x) (rows, C) and the head
    // labels (rows, NH) from the norms of each head's share of c_proj's output.
    static Dataset CollectHeads(Gpt gpt, TokenFile file, int batches, ulong seed, string label, string stage, Action<DejaVuProgress>? progress)
    {
        var config = gpt.Config;
        int L = config.NLayer, C = config.NEmbd, hs = config.HeadSize, N = gpt.BatchSize * gpt.SeqLen;
        var byName = gpt.Parameters.ToDictionary(p => p.Name);
        var blocks = new float[L][];
        for (int l = 0; l < L; l++)
        {
            var w = byName[$"transformer.h.{l}.attn.c_proj.weight"];
            if (w.IsSparse) throw new ArgumentException($"{w.Name} is stored as '{w.Layout!.Layout}'; head labels need a dense c_proj");
            blocks[l] = HeadContributions.HeadBlocks(w.Value.Span, C, config.AttentionWidth(l), hs);
        }
        var norms = new float[N * config.Heads(0)];
        return CollectLayers(gpt, file, batches, seed, stage, progress, "attn.c_attn", config.Heads, (l, labels, n) =>
        {
            int NH = config.Heads(l);
            if (norms.Length < n * NH) norms = new float[n * NH];
            var nl = norms.AsSpan(0, n * NH);
            HeadContributions.Norms(nl, gpt.LinearInput(l, "attn.c_proj"), blocks[l], n, C, NH * hs, hs);
            HeadContributions.Labels(nl, labels, n, NH, label);
        });
    }

    /// <summary>Recall of the labels (rows, H) when each row keeps the <paramref name="keep"/> highest-scoring outputs.</summary>
    public static double RecallAtTop(DejaVuPredictor.Layer p, float[] x, byte[] y, int rows, int keep)
    {
        int C = p.Channels, H = p.Hidden, chunk = 256;
        var z = new float[chunk * p.Rank];
        var s = new float[chunk * H];
        var scratch = new float[H];
        var chosen = new int[H];
        long truth = 0, hits = 0;
        for (int start = 0; start < rows; start += chunk)
        {
            int n = Math.Min(chunk, rows - start);
            p.Scores(s, z, x.AsSpan(checked(start * C), n * C), n);
            for (int i = 0; i < n; i++)
            {
                long row = (long)(start + i) * H;
                for (int j = 0; j < H; j++) truth += y[row + j];
                TopK.Largest(s.AsSpan(i * H, H), keep, scratch, chosen);
                for (int j = 0; j < keep; j++) hits += y[row + chosen[j]];
            }
        }
        return truth == 0 ? double.NaN : (double)hits / truth;
    }
}
