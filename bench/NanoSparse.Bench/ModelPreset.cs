using System.Text.Json;
using NanoSparse.Nn;

namespace NanoSparse.Bench;

/// <summary>
/// The model and batch shapes of the presets (configs/NAME.json), as the benchmarks and their PyTorch peers
/// (bench/peers/torch_gpt.py PRESETS) build them. The benchmarks' training step uses AdamW lr 1e-3, betas (0.9, 0.99),
/// weight decay 0.1 on 2-D parameters, gradient clipping at 1.0 for every preset (the speed does not depend on them).
/// medium: the 256-wide model that trains on the Brown corpus in about 30 minutes on 2 cores; wide: 768-wide
/// matrices for training speed with sparse weights; gpt2-124m: GPT-2 small's shape for decode speed.
/// </summary>
public sealed record ModelPreset(string Name, int NLayer, int NHead, int NEmbd, int BlockSize, int BatchSize, bool Bias, float Dropout)
{
    public const float LearningRate = 1e-3f, Beta1 = 0.9f, Beta2 = 0.99f, WeightDecay = 0.1f, GradClip = 1.0f;

    /// <summary>Character vocabulary of the Brown corpus, used when no prepared dataset says otherwise.</summary>
    public const int BrownCharVocab = 85;

    public static readonly ModelPreset Baby = new("baby", 4, 4, 128, 64, 12, false, 0f);
    public static readonly ModelPreset Small = new("small", 6, 6, 384, 256, 64, false, 0.2f);
    public static readonly ModelPreset Medium = new("medium", 6, 8, 256, 256, 16, false, 0f);
    public static readonly ModelPreset Wide = new("wide", 4, 12, 768, 256, 8, false, 0f);
    public static readonly ModelPreset Gpt2Small = new("gpt2-124m", 12, 12, 768, 1024, 1, false, 0f);
    public static readonly string[] Names = ["baby", "small", "medium", "wide", "gpt2-124m"];

    public static ModelPreset Get(string name) => name switch
    {
        "baby" => Baby,
        "small" => Small,
        "medium" => Medium,
        "wide" => Wide,
        "gpt2-124m" => Gpt2Small,
        _ => throw new ArgumentException($"preset '{name}' is unknown; expected one of: {string.Join(", ", Names)}"),
    };

    public GptConfig ToConfig(int vocabSize) => new()
    {
        NLayer = NLayer, NHead = NHead, NEmbd = NEmbd, BlockSize = BlockSize, VocabSize = vocabSize, Bias = Bias, Dropout = Dropout,
    };

    /// <summary>
    /// The preset as nanoGPT train.py's <c>--key=value</c> overrides: model shape, batch, dropout, bias and the optimizer
    /// (constant learning rate, as the benchmark's step uses). configurator.py literal_evals each value and asserts it has
    /// the default's type, so floats always carry a decimal point and booleans are Python's True/False.
    /// </summary>
    public List<string> NanoGptOverrides() =>
    [
        $"--batch_size={BatchSize}", $"--block_size={BlockSize}", $"--n_layer={NLayer}", $"--n_head={NHead}", $"--n_embd={NEmbd}",
        $"--dropout={PythonFloat(Dropout)}", $"--bias={(Bias ? "True" : "False")}", "--gradient_accumulation_steps=1",
        $"--learning_rate={PythonFloat(LearningRate)}", "--decay_lr=False", $"--beta1={PythonFloat(Beta1)}", $"--beta2={PythonFloat(Beta2)}",
        $"--weight_decay={PythonFloat(WeightDecay)}", $"--grad_clip={PythonFloat(GradClip)}",
    ];

    /// <summary>A float as a Python float literal: the shortest round-trip digits, with ".0" added to an integral value.</summary>
    public static string PythonFloat(float value)
    {
        var s = value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') || s.Contains('e') || s.Contains("Infinity") || s.Contains("NaN") ? s : s + ".0";
    }

    /// <summary>
    /// nanoGPT's estimate_mfu FLOPs per token of forward + backward: 6·N + 12·L·H·Q·T, with N the parameter count less
    /// the position embedding (nanoGPT's get_num_params(non_embedding=True)) and Q the head size.
    /// </summary>
    public static double FlopsPerToken(long parameterCount, GptConfig c, int seqLen)
    {
        long n = parameterCount - (long)c.BlockSize * c.NEmbd;
        return 6.0 * n + 12.0 * c.NLayer * c.NHead * (c.NEmbd / c.NHead) * seqLen;
    }

    /// <summary>vocab_size of data/brown/meta.json when that dataset is prepared, else <see cref="BrownCharVocab"/>.</summary>
    public static int DefaultVocab(string metaPath = "data/brown/meta.json")
    {
        if (!File.Exists(metaPath)) return BrownCharVocab;
        using var doc = JsonDocument.Parse(NanoSparse.IO.JsonText.ReadFile(metaPath));
        if (doc.RootElement.TryGetProperty("vocab_size", out var v) && v.TryGetInt32(out int vocab) && vocab >= 2) return vocab;
        throw new InvalidDataException($"{metaPath}: field vocab_size is missing or not an integer >= 2");
    }
}
