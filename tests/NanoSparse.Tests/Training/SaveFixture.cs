using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.IO;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>Everything a resume reads from a checkpoint folder, as bits (so that equality is bit-for-bit).</summary>
public sealed record LoadedSave(int IterNum, string State, int[] Parameters, int[] M, int[] V, long OptimizerStep);

/// <summary>A folder loaded as resume loads it, then run on to step <see cref="SaveFixture.FinalStep"/>.</summary>
public sealed record ResumedRun(LoadedSave Save, float[] Losses, int[] Final);

/// <summary>
/// An old save at step 4 (the tiny model), the save a resume to step 6 writes over it, and what resuming from
/// each to step 8 gives: the references the crash tests compare every interrupted folder with.
/// </summary>
public sealed class SaveFixture
{
    public const int OldStep = 4, NewStep = 6, FinalStep = 8;

    readonly TinyDataset _data;
    public TrainConfig BaseConfig { get; }
    public string OldDir => BaseConfig.OutDir;
    /// <summary>The step-6 save (resumed from a copy of the old one).</summary>
    public string NewDir { get; }
    public ResumedRun FromOld { get; }
    public ResumedRun FromNew { get; }
    int _copies;

    public SaveFixture(TinyDataset data)
    {
        _data = data;
        BaseConfig = data.Config("old", maxIters: OldStep);
        using (var t = new Trainer(BaseConfig)) t.Run();
        NewDir = Copy("new");
        using (var t = new Trainer(Resume(NewDir, NewStep))) t.Run();
        FromOld = LoadAndResume(Copy("from-old"));
        FromNew = LoadAndResume(Copy(NewDir, "from-new"));
        Assert.Equal(OldStep, FromOld.Save.IterNum);
        Assert.Equal(NewStep, FromNew.Save.IterNum);
        Assert.Equal(FromOld.Final, FromNew.Final);   // bit-identical resume, the premise of the comparisons
    }

    /// <summary>The resume config for <paramref name="dir"/>: continue to <paramref name="maxIters"/>, evaluating (and saving) every 2 steps.</summary>
    public TrainConfig Resume(string dir, int maxIters)
    {
        var c = BaseConfig.Clone();
        c.OutDir = dir;
        c.InitFrom = "resume";
        c.MaxIters = maxIters;
        c.EvalInterval = 2;
        return c;
    }

    /// <summary>A fresh copy of the old save (or of <paramref name="source"/>) under a new name.</summary>
    public string Copy(string name) => Copy(OldDir, name);

    public string Copy(string source, string name)
    {
        string dir = _data.Run($"{name}-{Interlocked.Increment(ref _copies)}");
        CopyTree(source, dir);
        return dir;
    }

    static void CopyTree(string source, string dest)
    {
        Directory.CreateDirectory(dest);
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dest, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(source)) CopyTree(d, Path.Combine(dest, Path.GetFileName(d)));
    }

    /// <summary>Loads <paramref name="dir"/> as <c>init_from=resume</c> does, then trains on to step 8 (saving at 8).</summary>
    public ResumedRun LoadAndResume(string dir)
    {
        using var t = new Trainer(Resume(dir, FinalStep));
        var state = Checkpoint.ReadState(dir);
        var save = new LoadedSave(t.Step, Normalize(state), Bits(t.Model.ParameterData), Bits(t.Optimizer.M), Bits(t.Optimizer.V), t.Optimizer.StepCount);
        t.Run();
        return new ResumedRun(save, t.Losses.ToArray(), Bits(t.Model.ParameterData));
    }

    /// <summary>state.json without what differs between two copies of one save: its id, file hashes and out_dir.</summary>
    static string Normalize(CheckpointState state)
    {
        var node = JsonSerializer.SerializeToNode(state)!.AsObject();
        node.Remove("save_id");
        node.Remove("files");
        node["config"]!.AsObject().Remove("out_dir");
        return node.ToJsonString();
    }

    public static int[] Bits(ReadOnlySpan<float> values) => MemoryMarshal.Cast<float, int>(values).ToArray();

    /// <summary>Asserts that <paramref name="actual"/> is the old or the new save bit for bit and resumes exactly as it; returns which.</summary>
    public int AssertOldOrNew(ResumedRun actual, string what)
    {
        var expected = actual.Save.IterNum switch
        {
            OldStep => FromOld,
            NewStep => FromNew,
            _ => throw new Xunit.Sdk.XunitException($"{what}: the folder loads as step {actual.Save.IterNum}, expected {OldStep} (old save) or {NewStep} (new save)"),
        };
        Assert.True(expected.Save.State == actual.Save.State, $"{what}: state.json differs from the step-{actual.Save.IterNum} save's");
        Assert.True(expected.Save.Parameters.AsSpan().SequenceEqual(actual.Save.Parameters), $"{what}: parameters differ");
        Assert.True(expected.Save.M.AsSpan().SequenceEqual(actual.Save.M), $"{what}: exp_avg differs");
        Assert.True(expected.Save.V.AsSpan().SequenceEqual(actual.Save.V), $"{what}: exp_avg_sq differs");
        Assert.Equal(expected.Save.OptimizerStep, actual.Save.OptimizerStep);
        Assert.True(expected.Losses.AsSpan().SequenceEqual(actual.Losses), $"{what}: the resumed run's losses differ");
        Assert.True(expected.Final.AsSpan().SequenceEqual(actual.Final), $"{what}: the resumed run's final parameters differ");
        return actual.Save.IterNum;
    }

    /// <summary>No staging folder, journal or temporary of a checkpoint file is left in <paramref name="dir"/>.</summary>
    public static void AssertNoLeftovers(string dir, string what)
    {
        var left = Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Where(n =>
            n!.StartsWith(RedoJournal.StagingPrefix, StringComparison.Ordinal) ||
            n.StartsWith(RedoJournal.JournalFile, StringComparison.Ordinal) ||
            Checkpoint.FileNames.Any(f => n.Contains(f + ".", StringComparison.Ordinal) && n.Contains(".tmp", StringComparison.Ordinal))).ToList();
        Assert.True(left.Count == 0, $"{what}: left in {dir}: {string.Join(", ", left)}");
    }

    /// <summary>Reads a safetensors file back, lets the caller change tensors and metadata, and writes it again.</summary>
    public static void Rewrite(string path, Func<string, float[], float[]>? tensor = null, Action<Dictionary<string, string>>? metadata = null)
    {
        var tensors = new List<SafeTensor>();
        Dictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(path))
        {
            meta = new Dictionary<string, string>(f.Metadata);
            foreach (var info in f.Tensors)
            {
                var data = f.ReadFloat32Array(info.Name);
                tensors.Add(new SafeTensor(info.Name, info.Shape, tensor?.Invoke(info.Name, data) ?? data));
            }
        }
        metadata?.Invoke(meta);
        SafeTensors.Write(path, tensors, meta);
    }

    /// <summary>Edits state.json as JSON.</summary>
    public static void EditState(string dir, Action<JsonObject> edit)
    {
        string path = Path.Combine(dir, Checkpoint.StateFile);
        var obj = JsonNode.Parse(File.ReadAllBytes(path))!.AsObject();
        edit(obj);
        File.WriteAllText(path, obj.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
