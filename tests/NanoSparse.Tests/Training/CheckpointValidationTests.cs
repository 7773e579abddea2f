using System.Text;
using System.Text.Json.Nodes;
using NanoSparse.Kernels;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// Resume refuses a damaged or mixed checkpoint with one line that names the file and the field: nulls and wrong
/// kinds in state.json, invalid UTF-8, negative counters, non-finite or negative optimizer moments, an optimizer
/// step that disagrees with state.json, files from different saves. Folders written before saves had ids still load.
/// </summary>
[Collection("KernelThreads")]
public sealed class CheckpointValidationTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    TrainConfig Trained(string run)
    {
        var c = _data.Config(run, maxIters: 4);
        using (var t = new Trainer(c)) t.Run();
        return c;
    }

    static TrainConfig Resume(TrainConfig c)
    {
        var r = c.Clone();
        r.InitFrom = "resume";
        r.MaxIters = 8;
        return r;
    }

    /// <summary>Both the reader and resume refuse with the same one-line message holding every fragment.</summary>
    static void AssertRefused(TrainConfig c, params string[] fragments)
    {
        var read = Assert.ThrowsAny<Exception>(() => Checkpoint.ReadState(c.OutDir));
        var resume = Assert.ThrowsAny<Exception>(() => new Trainer(Resume(c)));
        foreach (var e in new[] { read, resume })
        {
            Assert.True(e is FormatException or InvalidDataException or FileNotFoundException, e.GetType().Name + ": " + e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.DoesNotContain("System.", e.Message);
            foreach (var f in fragments) Assert.Contains(f, e.Message);
        }
    }

    static void ResumeRefused(TrainConfig c, params string[] fragments)
    {
        var e = Assert.ThrowsAny<Exception>(() => new Trainer(Resume(c)));
        Assert.True(e is FormatException or InvalidDataException, e.GetType().Name + ": " + e.Message);
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Theory]
    [InlineData("model_args")]
    [InlineData("config")]
    [InlineData("dropout_rng")]
    [InlineData("train_sampler")]
    [InlineData("iter_num")]
    [InlineData("optimizer_step")]
    [InlineData("best_val_loss")]
    [InlineData("dataset")]
    [InlineData("format")]
    [InlineData("save_id")]
    [InlineData("files")]
    [InlineData("model_args.n_layer")]
    [InlineData("model_args.activation")]
    [InlineData("config.out_dir")]
    [InlineData("config.learning_rate")]
    [InlineData("dropout_rng.s")]
    [InlineData("train_sampler.spare_bits")]
    [InlineData("files.model.safetensors")]
    public void NullFieldIsNamed(string field)
    {
        var c = Trained("null");
        SaveFixture.EditState(c.OutDir, obj =>
        {
            // "files.model.safetensors": the first dot separates, the rest is one key.
            string[] path = field.StartsWith("files.", StringComparison.Ordinal) ? ["files", field[6..]] : field.Split('.');
            JsonObject parent = obj;
            foreach (var key in path[..^1]) parent = parent[key]!.AsObject();
            Assert.True(parent.ContainsKey(path[^1]), field);
            parent[path[^1]] = null;
        });
        AssertRefused(c, "state.json", $"field {field} is null, expected ");
    }

    [Fact]
    public void NullInsideAnArrayIsNamedWithItsIndex()
    {
        var c = Trained("nullitem");
        SaveFixture.EditState(c.OutDir, obj => obj["dropout_rng"]!["s"]![2] = null);
        AssertRefused(c, "state.json", "field dropout_rng.s[2] is null, expected a string");
    }

    [Theory]
    [InlineData("iter_num", "\"four\"", "field iter_num is the string \"four\", expected an integer")]
    [InlineData("iter_num", "4.5", "field iter_num is the number 4.5, expected an integer")]
    [InlineData("best_val_loss", "\"NaN\"", "field best_val_loss is the string \"NaN\", expected a finite number")]
    [InlineData("best_val_loss", "1e999", "field best_val_loss is the number 1e999, expected a finite number")]
    [InlineData("model_args", "[]", "field model_args is an array, expected an object")]
    [InlineData("bias", "1", null)]   // unknown top-level keys are ignored, as before
    public void WrongKindOfValueIsNamed(string field, string json, string? message)
    {
        var c = Trained("kind");
        SaveFixture.EditState(c.OutDir, obj => obj[field] = JsonNode.Parse(json));
        if (message is null)
            Assert.Equal(4, Checkpoint.ReadState(c.OutDir).IterNum);
        else
            AssertRefused(c, "state.json", message);
    }

    [Theory]
    [InlineData("iter_num", -1)]
    [InlineData("optimizer_step", -3)]
    public void NegativeCounterIsRefused(string field, int value)
    {
        var c = Trained("negative");
        SaveFixture.EditState(c.OutDir, obj => obj[field] = value);
        AssertRefused(c, "state.json", $"field {field} is {value}, expected an integer >= 0");
    }

    [Fact]
    public void InvalidUtf8InAValueNamesTheFieldAndOffset()
    {
        var c = Trained("utf8");
        string path = Path.Combine(c.OutDir, Checkpoint.StateFile);
        byte[] bytes = File.ReadAllBytes(path);
        string text = Encoding.UTF8.GetString(bytes);
        int at = text.IndexOf("\"tokenizer\": \"", StringComparison.Ordinal) + "\"tokenizer\": \"".Length;
        bytes[at] = 0xFF;   // ASCII text: character index = byte index
        File.WriteAllBytes(path, bytes);
        AssertRefused(c, "state.json", "field tokenizer is not valid UTF-8", "0xFF", $"offset {at}");
    }

    [Fact]
    public void InvalidUtf8InAKeyIsReported()
    {
        var c = Trained("utf8key");
        string path = Path.Combine(c.OutDir, Checkpoint.StateFile);
        byte[] bytes = File.ReadAllBytes(path);
        int at = Encoding.UTF8.GetString(bytes).IndexOf("\"n_embd\"", StringComparison.Ordinal) + 2;
        bytes[at] = 0xC3;   // a lead byte followed by 'e', not a continuation byte
        File.WriteAllBytes(path, bytes);
        AssertRefused(c, "state.json", "a field name inside model_args is not valid UTF-8", "0xC3");
    }

    [Fact]
    public void CliPrintsOneLineNamingFileAndField()
    {
        var c = Trained("cli");
        SaveFixture.EditState(c.OutDir, obj => obj["iter_num"] = null);
        foreach (var args in new[] { new[] { "inspect", "--checkpoint", c.OutDir }, ["sample", "--checkpoint", c.OutDir, "--tokens", "3"] })
        {
            var err = new StringWriter();
            int code = NanoSparse.Cli.Program.Run(args, new StringWriter(), err);
            Assert.NotEqual(0, code);
            var lines = err.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            Assert.StartsWith("error: ", lines[0]);
            Assert.Contains("state.json: field iter_num is null", lines[0]);
        }
    }

    [Theory]
    [InlineData(".exp_avg", float.NaN, "NaN")]
    [InlineData(".exp_avg", float.PositiveInfinity, "Infinity")]
    [InlineData(".exp_avg_sq", -1f, "-1")]
    [InlineData(".exp_avg_sq", float.NaN, "NaN")]
    public void NonFiniteOrNegativeOptimizerMomentIsRefused(string suffix, float bad, string shown)
    {
        var c = Trained("moment");
        string tensor = "transformer.h.0.attn.c_attn.weight" + suffix;
        SaveFixture.Rewrite(Path.Combine(c.OutDir, Checkpoint.OptimizerFile), (name, data) =>
        {
            if (name == tensor) data[5] = bad;
            return data;
        });
        ResumeRefused(c, "optimizer.safetensors", $"tensor '{tensor}' holds {shown} at index 5");
    }

    [Fact]
    public void OptimizerStepDisagreeingWithStateJsonIsRefused()
    {
        var c = Trained("step");
        SaveFixture.Rewrite(Path.Combine(c.OutDir, Checkpoint.OptimizerFile), metadata: m => m["step"] = "3");
        ResumeRefused(c, "optimizer.safetensors", "metadata step is '3'", "optimizer_step 4");

        var d = Trained("step2");
        SaveFixture.EditState(d.OutDir, obj => obj["optimizer_step"] = 5);
        ResumeRefused(d, "optimizer.safetensors", "metadata step is '4'", "optimizer_step 5");
    }

    [Fact]
    public void FilesFromDifferentSavesAreRefusedNamingTheFile()
    {
        var a = Trained("a");
        var b = _data.Config("b", maxIters: 4);
        b.Seed = 7;
        using (var t = new Trainer(b)) t.Run();

        File.Copy(Path.Combine(b.OutDir, Checkpoint.ModelFile), Path.Combine(a.OutDir, Checkpoint.ModelFile), overwrite: true);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadModel(a.OutDir, 1, 16, out _));
        Assert.Contains(Path.Combine(a.OutDir, Checkpoint.ModelFile), e.Message);
        Assert.Contains("mixes files of different saves", e.Message);
        ResumeRefused(a, "model.safetensors", "mixes files of different saves");

        var c = Trained("c");
        File.Copy(Path.Combine(b.OutDir, Checkpoint.OptimizerFile), Path.Combine(c.OutDir, Checkpoint.OptimizerFile), overwrite: true);
        ResumeRefused(c, "optimizer.safetensors", "mixes files of different saves");

        var d = Trained("d");
        string meta = Path.Combine(d.OutDir, Checkpoint.MetaFile);
        var metaBytes = File.ReadAllBytes(meta);
        metaBytes[^2] ^= 0x01;   // same size, other contents
        File.WriteAllBytes(meta, metaBytes);
        AssertRefused(d, "meta.json", "SHA-256", "field files.meta.json");

        var f = Trained("f");
        File.Delete(Path.Combine(f.OutDir, Checkpoint.OptimizerFile));
        AssertRefused(f, "optimizer.safetensors", "lists it");
    }

    /// <summary>A folder as saves wrote it before they had ids (no save_id anywhere) loads, resumes identically, and the next save converts it.</summary>
    [Fact]
    public void CheckpointWithoutSaveIdStillLoadsAndResumes()
    {
        var current = Trained("current");
        var legacy = _data.Config("legacy", maxIters: 4);
        using (var t = new Trainer(legacy)) t.Run();
        SaveFixture.EditState(legacy.OutDir, obj => { obj.Remove("save_id"); obj.Remove("files"); });
        foreach (var file in new[] { Checkpoint.ModelFile, Checkpoint.OptimizerFile })
            SaveFixture.Rewrite(Path.Combine(legacy.OutDir, file), metadata: m => m.Remove(Checkpoint.SaveIdKey));
        File.WriteAllText(Path.Combine(legacy.OutDir, Checkpoint.StateFile + ".tmp-4242"), "{");   // the old layout's temporary

        var gpt = Checkpoint.LoadModel(legacy.OutDir, 1, 16, out var state);
        Assert.Null(state.SaveId);
        Assert.Equal(4, state.IterNum);

        float[] Run(TrainConfig c)
        {
            using var t = new Trainer(Resume(c));
            t.Run();
            return t.Model.ParameterData.ToArray();
        }
        Assert.Equal(Run(current), Run(legacy));
        var after = Checkpoint.ReadState(legacy.OutDir);
        Assert.NotNull(after.SaveId);
        Assert.Equal(8, after.IterNum);
        SaveFixture.AssertNoLeftovers(legacy.OutDir, "legacy folder after a save");
    }
}
