using NanoSparse.Bench;

namespace NanoSparse.Tests.Bench;

/// <summary>`bench activation --models DIR[@SPEC]`: bad entries are one-line errors before anything is loaded or timed.</summary>
public sealed class ActivationBenchModelsTests
{
    static ActivationBench.Options With(string? checkpoint, params string[] models) =>
        new(["decode"], [0.5], ["teal"], [1], 1, 1, 85, 1, 4, 4, 1, 8, checkpoint, [], "unused", 1, Models: models);

    static void OneLine(Exception e, params string[] parts)
    {
        Assert.DoesNotContain('\n', e.Message);
        foreach (var p in parts) Assert.Contains(p, e.Message);
    }

    [Fact]
    public void BadModelEntriesGiveOneLineErrors()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-actbench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            OneLine(Assert.Throws<ArgumentException>(() => With(null, dir).Validate()), "--models needs --checkpoint");
            string missing = Path.Combine(dir, "missing");
            OneLine(Assert.Throws<ArgumentException>(() => With(dir, missing).Validate()), "--models", missing, "does not exist");
            OneLine(Assert.Throws<ArgumentException>(() => With(dir, dir + "@oracle:x").Validate()), "oracle:x", "predictor:FILE[:S[:HEADS]]");
            OneLine(Assert.Throws<ArgumentException>(() => With(dir, dir + "@predictor:p.st:1.5").Validate()), "sparsity 1.5", "[0, 1)");
            OneLine(Assert.Throws<ArgumentException>(() => With(dir, dir, dir).Validate()), "given twice");
            With(dir, dir, dir + "@predictor:p.st::6", dir + "@predictor:p.st:-:4").Validate();   // distinct rows: fine
        }
        finally { Directory.Delete(dir, true); }
    }
}
