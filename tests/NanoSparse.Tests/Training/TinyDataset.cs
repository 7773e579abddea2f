using System.Text;
using NanoSparse.Data;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>A temporary folder holding a small char-level dataset (train.bin, val.bin, meta.json) and room for runs.</summary>
public sealed class TinyDataset : IDisposable
{
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "nanosparse-trainer-" + Guid.NewGuid().ToString("N"));
    public string DataDir => Path.Combine(Root, "data");

    public TinyDataset()
    {
        Directory.CreateDirectory(Root);
        string input = Path.Combine(Root, "input.txt");
        File.WriteAllText(input, Text(20_000));
        DatasetPreparer.Prepare(new PrepareOptions { Input = input, OutDir = DataDir });
    }

    /// <summary>Deterministic pseudo-English text over a small alphabet.</summary>
    static string Text(int chars)
    {
        string[] words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "from", "big", "red", "house", "we", "saw", "it"];
        var rng = new Random(7);
        var sb = new StringBuilder();
        while (sb.Length < chars)
        {
            int n = 4 + rng.Next(8);
            for (int i = 0; i < n; i++) sb.Append(i == 0 ? "" : " ").Append(words[rng.Next(words.Length)]);
            sb.Append(rng.Next(4) == 0 ? ".\n" : ". ");
        }
        return sb.ToString();
    }

    /// <summary>A very small model and run that still exercises dropout, accumulation, clipping, warm-up and decay.</summary>
    public TrainConfig Config(string run, int maxIters = 8) => new()
    {
        OutDir = Path.Combine(Root, run),
        Dataset = DataDir,
        NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 16, BatchSize = 4,
        Dropout = 0.1f, Bias = true,
        GradientAccumulationSteps = 2,
        MaxIters = maxIters, EvalInterval = 4, EvalIters = 2, LogInterval = 1,
        LearningRate = 1e-2f, MinLr = 1e-3f, WarmupIters = 2, LrDecayIters = 12,
        GradClip = 0.5f,
        Seed = 42,
        Threads = 1,
    };

    public string Run(string run) => Path.Combine(Root, run);

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
