using System.Globalization;
using NanoSparse.IO;
using NanoSparse.Kernels;
using NanoSparse.Nn;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// Deja Vu's contextual-sparsity predictors (Liu et al. 2023, "Deja Vu: Contextual Sparsity for Efficient LLMs at
/// Inference Time"), one per block: from the MLP's input x = ln_2(residual) (C) a low-rank map scores every neuron,
///   z = W1 · x            W1 (r, C)
///   s = W2 · z + b2       W2 (H, r), b2 (H): one logit per neuron, "this neuron is active for this token"
/// and the decode path computes only the neurons with the highest scores (or a positive logit). Its cost per token is
/// r·(C + H) multiply-adds against the MLP's 2·C·H: r = 64 at GPT-2's C = 768 is 5.2%.
/// Stored as safetensors (h.{l}.w1, h.{l}.w2, h.{l}.b2) with the shape and the training labels in the metadata.
/// A file may also (or only) hold attention-head predictors (Deja Vu §4), the same low-rank map from the attention
/// input x = ln_1(residual) (C) to one logit per head (h.{l}.attn.w1, .w2, .b2; metadata "kinds" = mlp, heads or
/// mlp,heads and "head_label"); see <see cref="PredictedHeadsAttention"/>.
/// </summary>
public sealed class DejaVuPredictor
{
    public const string Format = "nanosparse-dejavu-predictor";

    /// <summary>One block's predictor: W1 (Rank, Channels), W2 (Hidden, Rank), B2 (Hidden).</summary>
    public sealed class Layer
    {
        public Layer(int channels, int hidden, int rank)
        {
            if (channels < 1 || hidden < 1) throw new ArgumentException($"a predictor needs positive channels and hidden width, got C = {channels}, H = {hidden}");
            if (rank < 1) throw new ArgumentException($"rank ({rank}) must be at least 1");
            Channels = channels;
            Hidden = hidden;
            Rank = rank;
            W1 = new float[rank * channels];
            W2 = new float[hidden * rank];
            B2 = new float[hidden];
        }

        public int Channels { get; }
        public int Hidden { get; }
        public int Rank { get; }
        public float[] W1 { get; }
        public float[] W2 { get; }
        public float[] B2 { get; }

        /// <summary>Multiply-adds per token: r·(C + H).</summary>
        public long MacsPerToken => (long)Rank * (Channels + Hidden);

        /// <summary>Call after changing W2 (training): drops the transposed copy the one-position product keeps.</summary>
        public void WeightsChanged() => _w2T = null;

        float[]? _w2T;      // (r, H): W2's columns as rows, for the one-position product below
        int[]? _allRanks;   // 0..r-1

        /// <summary>
        /// scores (N, H) = (x (N, C) · W1ᵀ) · W2ᵀ + b2; z (N, r) is scratch. At one position (decode) the second product
        /// is b2 + Σ_i z_i · W2ᵀ[i, :]: r contiguous rows of H streamed as axpys (a GEMV over rows of only r = 64 floats
        /// spends its time reducing). Set W1, W2, B2 before the first call: the transposed copy is made then.
        /// </summary>
        public void Scores(Span<float> scores, Span<float> z, ReadOnlySpan<float> x, int rows)
        {
            if (rows == 1)
            {
                if (_w2T is null)
                {
                    var t = new float[Hidden * Rank];
                    Kernels.Sparse.NeuronSparseMlp.NeuronMajor(W2, t, Hidden, Rank);
                    _allRanks = Enumerable.Range(0, Rank).ToArray();
                    _w2T = t;
                }
                Gemv.Forward(z.Slice(0, Rank), x.Slice(0, Channels), W1, default, 1, Channels, Rank);
                Kernels.Sparse.NeuronSparseMlp.DownProject(scores.Slice(0, Hidden), z.Slice(0, Rank), _w2T, B2, _allRanks, Hidden, Rank);
            }
            else if (rows >= 1 && rows <= Gemv.MaxRows)
            {
                Gemv.Forward(z.Slice(0, rows * Rank), x.Slice(0, rows * Channels), W1, default, rows, Channels, Rank);
                Gemv.Forward(scores.Slice(0, rows * Hidden), z.Slice(0, rows * Rank), W2, B2, rows, Rank, Hidden);
            }
            else
            {
                Linear.Forward(z.Slice(0, rows * Rank), x.Slice(0, rows * Channels), W1, default, rows, Channels, Rank);
                Linear.Forward(scores.Slice(0, rows * Hidden), z.Slice(0, rows * Rank), W2, B2, rows, Rank, Hidden);
            }
        }
    }

    /// <summary>
    /// layers: the MLP-neuron predictors, one per block (empty: the file predicts heads only), trained for label;
    /// heads: the attention-head predictors, one per block (null or empty: none), trained for headLabel.
    /// </summary>
    public DejaVuPredictor(IReadOnlyList<Layer> layers, string label, IReadOnlyDictionary<string, string>? notes = null,
        IReadOnlyList<Layer>? heads = null, string headLabel = DefaultHeadLabel)
    {
        heads ??= [];
        if (layers.Count == 0 && heads.Count == 0) throw new ArgumentException("a predictor needs at least one layer");
        if (layers.Count > 0 && heads.Count > 0 && layers.Count != heads.Count)
            throw new ArgumentException($"a predictor holds {layers.Count} MLP layers and {heads.Count} head layers; expected the same count");
        Layers = layers;
        Label = label;
        HeadLayers = heads;
        HeadLabel = headLabel;
        Notes = notes ?? new Dictionary<string, string>();
    }

    /// <summary>The head label a predictor is trained for unless told otherwise: the half of the heads with the largest output.</summary>
    public const string DefaultHeadLabel = "top:0.5";

    /// <summary>The MLP-neuron predictors, one per block; empty when the file predicts heads only.</summary>
    public IReadOnlyList<Layer> Layers { get; }
    /// <summary>The attention-head predictors (Channels = n_embd, Hidden = the layer's heads), one per block; empty when none.</summary>
    public IReadOnlyList<Layer> HeadLayers { get; }
    /// <summary>What the head predictors were trained to find (<see cref="HeadContributions.ParseLabel"/>): "top:F" or "share:F".</summary>
    public string HeadLabel { get; }
    public bool HasMlp => Layers.Count > 0;
    public bool HasHeads => HeadLayers.Count > 0;
    /// <summary>"mlp", "heads" or "mlp,heads": what the file predicts.</summary>
    public string Kinds => HasMlp && HasHeads ? "mlp,heads" : HasMlp ? "mlp" : "heads";
    /// <summary>What the predictor was trained to find: "active" (activation ≠ 0) or "top:F" (the F·H largest |activation|).</summary>
    public string Label { get; }
    /// <summary>Free-form metadata kept in the file (source checkpoint, recall measured at training, ...).</summary>
    public IReadOnlyDictionary<string, string> Notes { get; }

    /// <summary>Throws a one-line error naming the file and field when this predictor does not fit the model's shape.</summary>
    public void CheckMatches(GptConfig config, string source)
    {
        if (HasHeads) CheckHeadsMatch(config, source);
        if (!HasMlp) return;
        if (Layers.Count != config.NLayer)
            throw new InvalidDataException($"predictor {source}: n_layer is {Layers.Count}, the model has {config.NLayer}");
        for (int l = 0; l < Layers.Count; l++)
        {
            var p = Layers[l];
            if (p.Channels != config.NEmbd)
                throw new InvalidDataException($"predictor {source}: h.{l}.w1 takes {p.Channels} channels, the model's n_embd is {config.NEmbd}");
            if (p.Hidden != config.MlpHidden(l))
                throw new InvalidDataException($"predictor {source}: h.{l}.w2 scores {p.Hidden} neurons, the model's layer {l} MLP has {config.MlpHidden(l)}");
        }
    }

    /// <summary>The head predictors' part of <see cref="CheckMatches"/>: layer count, n_embd and every layer's head count.</summary>
    public void CheckHeadsMatch(GptConfig config, string source)
    {
        if (!HasHeads) throw new InvalidDataException($"predictor {source}: holds no attention-head predictors (kinds \"{Kinds}\"); train them with `nanosparse dejavu train --target heads` or both");
        if (HeadLayers.Count != config.NLayer)
            throw new InvalidDataException($"predictor {source}: n_layer is {HeadLayers.Count}, the model has {config.NLayer}");
        for (int l = 0; l < HeadLayers.Count; l++)
        {
            var p = HeadLayers[l];
            int heads = config.Heads(l);
            if (p.Channels != config.NEmbd)
                throw new InvalidDataException($"predictor {source}: h.{l}.attn.w1 takes {p.Channels} channels, the model's n_embd is {config.NEmbd}");
            if (p.Hidden != heads)
                throw new InvalidDataException($"predictor {source}: h.{l}.attn.w2 scores {p.Hidden} heads, the model's layer {l} has {heads}");
        }
    }

    /// <summary>Writes the predictor atomically (temporary file, flush, rename).</summary>
    public void Save(string path)
    {
        var tensors = new List<SafeTensor>();
        for (int l = 0; l < Layers.Count; l++)
        {
            var p = Layers[l];
            tensors.Add(new SafeTensor($"h.{l}.w1", [p.Rank, p.Channels], p.W1));
            tensors.Add(new SafeTensor($"h.{l}.w2", [p.Hidden, p.Rank], p.W2));
            tensors.Add(new SafeTensor($"h.{l}.b2", [p.Hidden], p.B2));
        }
        for (int l = 0; l < HeadLayers.Count; l++)
        {
            var p = HeadLayers[l];
            tensors.Add(new SafeTensor($"h.{l}.attn.w1", [p.Rank, p.Channels], p.W1));
            tensors.Add(new SafeTensor($"h.{l}.attn.w2", [p.Hidden, p.Rank], p.W2));
            tensors.Add(new SafeTensor($"h.{l}.attn.b2", [p.Hidden], p.B2));
        }
        var meta = new Dictionary<string, string>(Notes)
        {
            ["format"] = Format,
            ["n_layer"] = Math.Max(Layers.Count, HeadLayers.Count).ToString(CultureInfo.InvariantCulture),
            ["label"] = Label,
            ["kinds"] = Kinds,
        };
        if (HasHeads) meta["head_label"] = HeadLabel;
        SafeTensors.Write(path, tensors, meta);
    }

    /// <summary>Reads a predictor written by <see cref="Save"/>; a missing or malformed file is a one-line error naming it.</summary>
    public static DejaVuPredictor Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"predictor file {path} does not exist (make one with `nanosparse dejavu train`)", path);
        using var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != Format)
            throw new InvalidDataException($"predictor {path}: metadata 'format' is {(format is null ? "missing" : $"\"{format}\"")}, expected \"{Format}\"");
        if (!file.Metadata.TryGetValue("n_layer", out var nText) || !int.TryParse(nText, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1)
            throw new InvalidDataException($"predictor {path}: metadata 'n_layer' is {(nText is null ? "missing" : $"\"{nText}\"")}, expected a positive integer");
        string kinds = file.Metadata.TryGetValue("kinds", out var k0) ? k0 : "mlp";   // files from before head prediction hold MLPs only
        if (kinds is not ("mlp" or "heads" or "mlp,heads"))
            throw new InvalidDataException($"predictor {path}: metadata 'kinds' is \"{kinds}\", expected \"mlp\", \"heads\" or \"mlp,heads\"");
        var layers = kinds.Contains("mlp") ? ReadLayers(file, path, n, "h.{0}.") : [];
        var heads = kinds.Contains("heads") ? ReadLayers(file, path, n, "h.{0}.attn.") : [];
        string headLabel = file.Metadata.TryGetValue("head_label", out var hl) ? hl : DefaultHeadLabel;
        if (heads.Count > 0)
        {
            try { HeadContributions.ParseLabel(headLabel); }
            catch (ArgumentException e) { throw new InvalidDataException($"predictor {path}: metadata 'head_label': {e.Message}"); }
        }
        var notes = new Dictionary<string, string>();
        foreach (var (k, v) in file.Metadata)
            if (k is not ("format" or "n_layer" or "label" or "kinds" or "head_label")) notes[k] = v;
        return new DejaVuPredictor(layers, file.Metadata.TryGetValue("label", out var label) ? label : "active", notes, heads, headLabel);
    }

    // n layers of w1 (r, C), w2 (H, r), b2 (H) under names made from prefix ("h.{0}." or "h.{0}.attn.")
    static List<Layer> ReadLayers(SafeTensorsFile file, string path, int n, string prefix)
    {
        var layers = new List<Layer>();
        for (int l = 0; l < n; l++)
        {
            string p = string.Format(CultureInfo.InvariantCulture, prefix, l);
            var w1 = Info(file, path, p + "w1", 2);
            var w2 = Info(file, path, p + "w2", 2);
            var b2 = Info(file, path, p + "b2", 1);
            int r = w1.Shape[0], C = w1.Shape[1], H = w2.Shape[0];
            if (w2.Shape[1] != r) throw new InvalidDataException($"predictor {path}: {p}w2 is [{H}, {w2.Shape[1]}], expected [{H}, {r}] (the rank of {p}w1)");
            if (b2.Shape[0] != H) throw new InvalidDataException($"predictor {path}: {p}b2 is [{b2.Shape[0]}], expected [{H}]");
            var layer = new Layer(C, H, r);
            file.ReadInto(p + "w1", layer.W1);
            file.ReadInto(p + "w2", layer.W2);
            file.ReadInto(p + "b2", layer.B2);
            layers.Add(layer);
        }
        return layers;
    }

    static IO.SafeTensorInfo Info(SafeTensorsFile file, string path, string name, int rank)
    {
        if (!file.TryGet(name, out var info)) throw new InvalidDataException($"predictor {path}: tensor '{name}' is missing");
        if (info.Dtype != SafeTensorsDtype.F32) throw new InvalidDataException($"predictor {path}: tensor '{name}' is {info.Dtype}, expected F32");
        if (info.Shape.Length != rank || info.Shape.Any(d => d < 1))
            throw new InvalidDataException($"predictor {path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected {rank} positive dimensions");
        return info;
    }
}
