using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Sparsity.Activation;

/// <summary>Settings of <see cref="DejaVuTraining.Train"/>.</summary>
/// <param name="Label">"active": a neuron is positive when its activation is not zero (ReLU-style models);
/// "top:F": when it is among the F·H largest |activation| of its token (GELU models, which make no zeros).</param>
/// <param name="Target">"mlp" (neuron predictors on ln_2's output), "heads" (head predictors on ln_1's output) or "both".</param>
/// <param name="HeadRank">rank of the head predictors (C → r → NH).</param>
/// <param name="HeadLabel">which heads a token needs: "top:F" or "share:F" of the heads' output norms (<see cref="HeadContributions"/>).</param>
public sealed record DejaVuTrainOptions(int Rank = 64, int TrainBatches = 16, int ValBatches = 4, int Epochs = 4, int MiniBatch = 256,
    float LearningRate = 2e-3f, string Label = "active", ulong Seed = 1337, string Target = "mlp", int HeadRank = 32,
    string HeadLabel = DejaVuPredictor.DefaultHeadLabel)
{
    public bool TrainsMlp => Target is "mlp" or "both";
    public bool TrainsHeads => Target is "heads" or "both";

    public DejaVuTrainOptions Validate()
    {
        if (Target is not ("mlp" or "heads" or "both")) throw new ArgumentException($"target \"{Target}\" must be mlp, heads or both");
        if (HeadRank < 1) throw new ArgumentException($"head rank ({HeadRank}) must be at least 1");
        HeadContributions.ParseLabel(HeadLabel);
        if (Rank < 1) throw new ArgumentException($"rank ({Rank}) must be at least 1");
        if (TrainBatches < 1) throw new ArgumentException($"train batches ({TrainBatches}) must be at least 1");
        if (ValBatches < 1) throw new ArgumentException($"val batches ({ValBatches}) must be at least 1");
        if (Epochs < 1) throw new ArgumentException($"epochs ({Epochs}) must be at least 1");
        if (MiniBatch < 1) throw new ArgumentException($"mini-batch ({MiniBatch}) must be at least 1");
        if (!(LearningRate > 0) || float.IsInfinity(LearningRate)) throw new ArgumentException($"learning rate ({LearningRate}) must be a positive number");
        LabelTop(Label);
        return this;
    }

    /// <summary>0 for "active", F for "top:F" (0 &lt; F &lt; 1); anything else is a one-line error.</summary>
    public static double LabelTop(string label)
    {
        if (label == "active") return 0;
        if (label.StartsWith("top:", StringComparison.Ordinal)
            && double.TryParse(label.AsSpan(4), NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && f > 0 && f < 1) return f;
        throw new ArgumentException($"label \"{label}\" must be \"active\" or \"top:F\" with 0 < F < 1 (e.g. top:0.1)");
    }
}

/// <summary>One layer's result: BCE before and after training (train rows), and on validation rows the recall and
/// the selected share under the positive-logit rule, with the share of neurons that are truly active.</summary>
public sealed record DejaVuLayerReport(int Layer, double InitialLoss, double TrainLoss, double ValLoss, double Recall, double Selected, double Active);

/// <summary>Progress of <see cref="DejaVuTraining.Train"/>: a stage ("collect", "train"), the layer, and done/total of it.</summary>
public sealed record DejaVuProgress(string Stage, int Layer, int Layers, long Done, long Total, string Unit, double PerSecond, double OverallFraction);

/// <summary>
/// Trains Deja Vu predictors on a frozen model: runs it (eval mode) on training and validation windows, keeps each
/// block's MLP input ln_2(x) (rows, C) and which neurons were active (rows, H), then fits each layer's low-rank
/// predictor z = W1·x, s = W2·z + b2 with binary cross-entropy, L = mean over rows and neurons of
/// softplus(s) − y·s, by Adam on mini-batches.
/// </summary>
public static partial class DejaVuTraining
{
    /// <summary>What <see cref="Train"/> made: the predictor (MLP and/or heads, per the target) and the per-layer reports of each kind.</summary>
    public sealed record Result(DejaVuPredictor Predictor, IReadOnlyList<DejaVuLayerReport> Reports, IReadOnlyList<DejaVuHeadReport> HeadReports);

    public static Result Train(Gpt gpt, TokenFile train, TokenFile val, DejaVuTrainOptions options, Action<DejaVuProgress>? progress = null)
    {
        options = options.Validate();
        var (mlp, reports) = options.TrainsMlp ? TrainMlp(gpt, train, val, options, progress) : ([], []);
        var (heads, headReports) = options.TrainsHeads ? TrainHeads(gpt, train, val, options, progress) : ([], []);
        var notes = new Dictionary<string, string>();
        if (options.TrainsMlp)
        {
            notes["rank"] = options.Rank.ToString(CultureInfo.InvariantCulture);
            notes["recall"] = string.Join(",", reports.Select(r => r.Recall.ToString("F4", CultureInfo.InvariantCulture)));
            notes["selected"] = string.Join(",", reports.Select(r => r.Selected.ToString("F4", CultureInfo.InvariantCulture)));
        }
        if (options.TrainsHeads)
        {
            notes["head_rank"] = options.HeadRank.ToString(CultureInfo.InvariantCulture);
            notes["head_recall"] = string.Join(",", headReports.Select(r => r.Recall.ToString("F4", CultureInfo.InvariantCulture)));
        }
        notes["train_rows"] = ((long)options.TrainBatches * gpt.BatchSize * gpt.SeqLen).ToString(CultureInfo.InvariantCulture);
        return new Result(new DejaVuPredictor(mlp, options.Label, notes, heads, options.HeadLabel), reports, headReports);
    }

    static (DejaVuPredictor.Layer[] Layers, DejaVuLayerReport[] Reports) TrainMlp(Gpt gpt, TokenFile train, TokenFile val,
        DejaVuTrainOptions options, Action<DejaVuProgress>? progress)
    {
        var config = gpt.Config;
        int L = config.NLayer, C = config.NEmbd;
        double top = DejaVuTrainOptions.LabelTop(options.Label);
        var trainSet = Collect(gpt, train, options.TrainBatches, options.Seed, top, "collect train", progress);
        var valSet = Collect(gpt, val, options.ValBatches, options.Seed ^ 0x9E37_79B9_7F4A_7C15UL, top, "collect val", progress);
        var layers = new DejaVuPredictor.Layer[L];
        var reports = new DejaVuLayerReport[L];
        for (int l = 0; l < L; l++)
        {
            int H = config.MlpHidden(l);
            int layer = l;
            var (p, initial, final) = TrainLayer(trainSet.X[l], trainSet.Y[l], trainSet.Rows, C, H, options,
                (done, total, rate) => progress?.Invoke(new DejaVuProgress("train", layer, L, done, total, "steps", rate, (layer + (double)done / total) / L)));
            layers[l] = p;
            var (valLoss, recall, selected, active) = Measure(p, valSet.X[l], valSet.Y[l], valSet.Rows);
            reports[l] = new DejaVuLayerReport(l, initial, final, valLoss, recall, selected, active);
        }
        return (layers, reports);
    }

    sealed record Dataset(float[][] X, byte[][] Y, int Rows);

    // Runs the model on `batches` random windows of the split; keeps per layer the MLP inputs and the 0/1 labels.
    static Dataset Collect(Gpt gpt, TokenFile file, int batches, ulong seed, double top, string stage, Action<DejaVuProgress>? progress) =>
        CollectLayers(gpt, file, batches, seed, stage, progress, "mlp.c_fc", gpt.Config.MlpHidden,
            (l, labels, N) => Labels(gpt.LinearInput(l, "mlp.c_proj"), labels, N, gpt.Config.MlpHidden(l), top));

    // The shared collection loop: per batch one forward pass of the frozen model, then per layer the predictor's input
    // (the input of `inputName`, rows × C) and `width(l)` labels per row written by `label(l, labels, N)`.
    static Dataset CollectLayers(Gpt gpt, TokenFile file, int batches, ulong seed, string stage, Action<DejaVuProgress>? progress,
        string inputName, Func<int, int> width, Action<int, Span<byte>, int> label)
    {
        var config = gpt.Config;
        int L = config.NLayer, C = config.NEmbd, N = gpt.BatchSize * gpt.SeqLen, rows = checked(batches * N);
        var sampler = new BatchSampler(file, gpt.BatchSize, gpt.SeqLen, seed);
        var x = new int[N];
        var y = new int[N];
        var X = new float[L][];
        var Y = new byte[L][];
        for (int l = 0; l < L; l++)
        {
            X[l] = new float[checked((long)rows * C)];
            Y[l] = new byte[checked((long)rows * width(l))];
        }
        var watch = Stopwatch.StartNew();
        for (int b = 0; b < batches; b++)
        {
            sampler.Next(x, y);
            gpt.Forward(x, default, training: false);
            for (int l = 0; l < L; l++)
            {
                int H = width(l);
                gpt.LinearInput(l, inputName).CopyTo(X[l].AsSpan(checked(b * N * C)));
                label(l, Y[l].AsSpan(checked(b * N * H), N * H), N);
            }
            double rate = (b + 1) * (double)N / Math.Max(watch.Elapsed.TotalSeconds, 1e-9);
            progress?.Invoke(new DejaVuProgress(stage, 0, L, (long)(b + 1) * N, rows, "tokens", rate, 0));
        }
        return new Dataset(X, Y, rows);
    }

    /// <summary>labels (N, H) = 1 where activation (N, H) ≠ 0 (top = 0), or where |activation| is among the round(top·H) largest of its row.</summary>
    public static void Labels(ReadOnlySpan<float> activation, Span<byte> labels, int N, int H, double top)
    {
        labels.Slice(0, N * H).Clear();
        if (top <= 0)
        {
            for (int i = 0; i < N * H; i++) if (activation[i] != 0) labels[i] = 1;
            return;
        }
        int k = Math.Max(1, (int)Math.Round(top * H));
        var abs = new float[H];
        var scratch = new float[H];
        var chosen = new int[k];
        for (int n = 0; n < N; n++)
        {
            TensorPrimitives.Abs(activation.Slice(n * H, H), abs);
            TopK.Largest(abs, k, scratch, chosen);
            foreach (int j in chosen) labels[n * H + j] = 1;
        }
    }

    /// <summary>
    /// Fits one layer's predictor to (x (rows, C), y (rows, H) in {0, 1}) by Adam on shuffled mini-batches; returns it
    /// with the mean BCE over the training rows before and after. b2 starts at each neuron's log-odds of being active,
    /// W1 ~ N(0, 1/C), W2 ~ N(0, 1/r)·0.1.
    /// </summary>
    public static (DejaVuPredictor.Layer Layer, double InitialLoss, double FinalLoss) TrainLayer(float[] x, byte[] y, int rows, int C, int H,
        DejaVuTrainOptions options, Action<long, long, double>? progress = null)
    {
        options = options.Validate();
        if ((long)rows * C > x.Length || (long)rows * H > y.Length)
            throw new ArgumentException($"TrainLayer: {rows} rows need {(long)rows * C} inputs and {(long)rows * H} labels, got {x.Length} and {y.Length}");
        int r = options.Rank, M = Math.Min(options.MiniBatch, rows);
        var p = new DejaVuPredictor.Layer(C, H, r);
        var rng = new Rng(options.Seed ^ (ulong)(C * 31 + H));
        for (int i = 0; i < p.W1.Length; i++) p.W1[i] = (float)(rng.NextGaussian() / Math.Sqrt(C));
        for (int i = 0; i < p.W2.Length; i++) p.W2[i] = (float)(0.1 * rng.NextGaussian() / Math.Sqrt(r));
        var counts = new long[H];
        for (long i = 0; i < (long)rows * H; i++) counts[i % H] += y[i];
        for (int j = 0; j < H; j++)
        {
            double f = Math.Clamp((counts[j] + 0.5) / (rows + 1.0), 1e-4, 1 - 1e-4);
            p.B2[j] = (float)Math.Log(f / (1 - f));
        }
        double initial = MeanLoss(p, x, y, rows);

        var xb = new float[M * C];
        var yb = new byte[M * H];
        var z = new float[M * r];
        var s = new float[M * H];
        var dz = new float[M * r];
        var dW1 = new float[p.W1.Length];
        var dW2 = new float[p.W2.Length];
        var db2 = new float[H];
        var adam = new[] { new Adam(p.W1.Length), new Adam(p.W2.Length), new Adam(H) };
        var order = new int[rows];
        for (int i = 0; i < rows; i++) order[i] = i;
        long steps = (long)options.Epochs * (rows / M), step = 0;
        var watch = Stopwatch.StartNew();
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            for (int i = rows - 1; i > 0; i--)   // Fisher-Yates
            {
                int j = rng.NextInt(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
            for (int start = 0; start + M <= rows; start += M)
            {
                for (int m = 0; m < M; m++)
                {
                    int row = order[start + m];
                    x.AsSpan(checked(row * C), C).CopyTo(xb.AsSpan(m * C, C));
                    y.AsSpan(checked(row * H), H).CopyTo(yb.AsSpan(m * H, H));
                }
                p.Scores(s, z, xb, M);
                // d L / d s = (sigmoid(s) − y) / (M·H), written over s
                float scale = 1f / ((float)M * H);
                for (int i = 0; i < M * H; i++) s[i] = (Sigmoid(s[i]) - yb[i]) * scale;
                Array.Clear(dW1);
                Array.Clear(dW2);
                Array.Clear(db2);
                // in the forward pass this was: s = z · W2ᵀ + b2, z = x · W1ᵀ
                Linear.Backward(dz, dW2, db2, s, z, p.W2, M, r, H);
                Linear.Backward(default, dW1, default, dz, xb, p.W1, M, C, r);
                float lr = options.LearningRate;
                adam[0].Step(p.W1, dW1, lr);
                adam[1].Step(p.W2, dW2, lr);
                adam[2].Step(p.B2, db2, lr);
                step++;
                progress?.Invoke(step, steps, step / Math.Max(watch.Elapsed.TotalSeconds, 1e-9));
            }
        }
        p.WeightsChanged();
        return (p, initial, MeanLoss(p, x, y, rows));
    }

    /// <summary>Mean BCE of the predictor over the rows: mean of softplus(s) − y·s.</summary>
    public static double MeanLoss(DejaVuPredictor.Layer p, float[] x, byte[] y, int rows) => Measure(p, x, y, rows).Loss;

    /// <summary>
    /// On (x, y): the mean BCE, and under the positive-logit rule the recall (selected ∩ active / active), the selected
    /// share of neurons and the active share.
    /// </summary>
    public static (double Loss, double Recall, double Selected, double Active) Measure(DejaVuPredictor.Layer p, float[] x, byte[] y, int rows)
    {
        int C = p.Channels, H = p.Hidden, chunk = 256;
        var z = new float[chunk * p.Rank];
        var s = new float[chunk * H];
        double loss = 0;
        long selected = 0, active = 0, hits = 0;
        for (int start = 0; start < rows; start += chunk)
        {
            int n = Math.Min(chunk, rows - start);
            p.Scores(s, z, x.AsSpan(checked(start * C), n * C), n);
            for (int i = 0; i < n * H; i++)
            {
                float v = s[i];
                byte t = y[(long)start * H + i];
                loss += Softplus(v) - t * v;
                bool pick = v > 0;
                if (pick) selected++;
                if (t != 0) { active++; if (pick) hits++; }
            }
        }
        double cells = (double)rows * H;
        return (loss / cells, active == 0 ? double.NaN : (double)hits / active, selected / cells, active / cells);
    }

    static float Sigmoid(float v) => 1f / (1f + MathF.Exp(-v));
    static double Softplus(float v) => v > 0 ? v + Math.Log(1 + Math.Exp(-v)) : Math.Log(1 + Math.Exp(v));

    /// <summary>Adam (Kingma and Ba 2015) without weight decay, β = (0.9, 0.999), ε = 1e-8.</summary>
    sealed class Adam(int length)
    {
        readonly float[] _m = new float[length], _v = new float[length];
        int _t;

        public void Step(Span<float> w, ReadOnlySpan<float> g, float lr)
        {
            _t++;
            float c1 = 1f - MathF.Pow(0.9f, _t), c2 = 1f - MathF.Pow(0.999f, _t);
            for (int i = 0; i < w.Length; i++)
            {
                _m[i] = 0.9f * _m[i] + 0.1f * g[i];
                _v[i] = 0.999f * _v[i] + 0.001f * g[i] * g[i];
                w[i] -= lr * (_m[i] / c1) / (MathF.Sqrt(_v[i] / c2) + 1e-8f);
            }
        }
    }
}
