using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Training;

namespace NanoSparse.Tests.IO;

/// <summary>
/// nanoGPT and GPT-2 run dense attention with learned positions only: exporting a model trained with RoPE or a sparse
/// attention pattern would load there and compute something else, so it is refused in one line and nothing is written.
/// </summary>
public class ExportRefusalTests
{
    static readonly GptConfig Base = new() { NLayer = 1, NHead = 2, NEmbd = 32, BlockSize = 16, VocabSize = 11 };

    public static TheoryData<string, string> Variants => new()
    {
        { "rope", "rope is true" },
        { "window", "attention is 'window'" },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void ExportOfAVariantIsRefusedAndWritesNothing(string variant, string expected)
    {
        var config = variant == "rope" ? Base with { Rope = true } : Base with { Attention = "window", AttnWindow = 4 };
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-export-refusal-" + Guid.NewGuid().ToString("N"));
        try
        {
            var gpt = new Gpt(config, 1, 8);
            Checkpoint.SaveModel(dir, gpt, null);
            foreach (var format in new[] { ModelFormat.NanoGpt, ModelFormat.Gpt2 })
            {
                var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Export(format, dir, dir + "-export"));
                Assert.Contains(expected, e.Message);
                Assert.DoesNotContain('\n', e.Message);
                Assert.False(Directory.Exists(dir + "-export"));
            }
        }
        finally
        {
            foreach (var d in new[] { dir, dir + "-export" }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [Fact]
    public void ExportOfTheSameModelWithoutTheVariantWorks()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nanosparse-export-refusal-" + Guid.NewGuid().ToString("N"));
        try
        {
            Checkpoint.SaveModel(dir, new Gpt(Base, 1, 8), null);
            var dims = ModelImporter.Export(ModelFormat.NanoGpt, dir, dir + "-export");
            Assert.Equal(2, dims.NHead);
            Assert.True(File.Exists(Path.Combine(dir + "-export", "config.json")));
        }
        finally
        {
            foreach (var d in new[] { dir, dir + "-export" }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }
}
