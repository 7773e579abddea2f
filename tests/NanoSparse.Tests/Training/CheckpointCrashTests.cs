using System.Collections.Concurrent;
using System.Diagnostics;
using NanoSparse.IO;
using NanoSparse.Kernels;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// A save interrupted anywhere — the process killed (SIGKILL) or a write failing as on a full disk — leaves a folder
/// that loads as exactly the previous save or exactly the new one, resumes bit-identically to an uninterrupted run
/// from that save, and whose leftovers the next save removes.
/// </summary>
[Collection("KernelThreads")]
public sealed class CheckpointCrashTests : IDisposable
{
    readonly TinyDataset _data = new();
    readonly int _savedThreads = KernelThreads.Max;

    public void Dispose()
    {
        RedoJournal.StepHook = null;
        KernelThreads.Max = _savedThreads;
        _data.Dispose();
    }

    /// <summary>
    /// Children (the built CLI, `train --set init_from=resume` from the step-4 save to step 6) are killed with SIGKILL
    /// at every step of the save (NANOSPARSE_SAVE_FAULT=kill:K), at log-uniform random times from 10 µs to 50 ms
    /// after it starts (kill-after-us:N), and once more during the recovery of every folder left with a committed
    /// journal. Each folder must load as the old or the new save, bit for bit, and resume exactly as it.
    /// </summary>
    [Fact]
    public void KilledSaveLeavesExactlyTheOldOrTheNewSave()
    {
        var fx = new SaveFixture(_data);
        string config = Path.Combine(_data.Root, "child.json");
        File.WriteAllText(config, fx.BaseConfig.ToJson());

        var trace = RunChild(config, fx.Copy("trace"), "trace");
        Assert.True(trace.Code == 0, trace.Err);
        var steps = trace.Err.Split('\n').Where(l => l.StartsWith("save-step ", StringComparison.Ordinal)).ToList();
        Assert.True(steps.Count >= 12, string.Join('\n', steps));   // staging, 4 writes, flush, journal, commit, 4 moves, journal and staging deleted

        var runs = new List<(string Dir, string Fault)>();
        for (int k = 1; k <= steps.Count; k++) runs.Add((fx.Copy($"kill{k}"), $"kill:{k}"));
        var rng = new Random(20261204);
        for (int i = 0; i < 36; i++)
        {
            long us = (long)(10 * Math.Exp(rng.NextDouble() * Math.Log(5000)));
            runs.Add((fx.Copy($"timed{i}"), $"kill-after-us:{us}"));
        }
        var results = RunChildren(config, runs);

        // A second kill, at the first step of the recovery, for every folder whose save was committed but not moved into place.
        var pending = runs.Where(r => RedoJournal.IsPending(r.Dir)).Select(r => (Dir: fx.Copy(r.Dir, "again"), Fault: "kill:1", First: r.Fault)).ToList();
        Assert.NotEmpty(pending);
        foreach (var (dir, code) in RunChildren(config, pending.Select(p => (p.Dir, p.Fault)).ToList())) results[dir] = code;
        var labels = runs.ToDictionary(r => r.Dir, r => r.Fault);
        foreach (var p in pending) labels[p.Dir] = $"{p.First}, then kill:1 during recovery";

        Assert.True(labels.Count >= 50, $"{labels.Count} kill points");
        var loaded = new Dictionary<string, int>();
        foreach (var (dir, label) in labels)
        {
            Assert.True(results[dir].Code == 137, $"{label}: the child exited with {results[dir].Code}, expected 137 (killed): {results[dir].Err}");
            loaded[dir] = fx.AssertOldOrNew(fx.LoadAndResume(dir), label);
            SaveFixture.AssertNoLeftovers(dir, label);   // the resumed run saved at steps 6 and 8
        }
        // Killed at step k (before it ran): the old save until the journal's rename has run, the new one after.
        for (int k = 1; k <= steps.Count; k++)
        {
            bool committed = steps.Take(k - 1).Any(s => s.Contains("commit", StringComparison.Ordinal));
            Assert.True(loaded[runs[k - 1].Dir] == (committed ? SaveFixture.NewStep : SaveFixture.OldStep), $"kill:{k} ({steps[k - 1]}) loads as step {loaded[runs[k - 1].Dir]}");
        }
        foreach (var p in pending) Assert.Equal(SaveFixture.NewStep, loaded[p.Dir]);
    }

    /// <summary>
    /// An IOException (as "no space left on device") thrown at each step of a save in turn: before the commit the old
    /// save stays, after it the new one is in place; the next save leaves no staging folder or temporary behind.
    /// </summary>
    [Fact]
    public void FailedWriteAtAnyStepLeavesTheOldOrTheNewSave()
    {
        var fx = new SaveFixture(_data);
        var steps = new List<string>();
        RedoJournal.StepHook = steps.Add;
        using (var t = new Trainer(fx.Resume(fx.Copy("count"), SaveFixture.NewStep))) t.Run();
        RedoJournal.StepHook = null;
        Assert.True(steps.Count >= 12, string.Join('\n', steps));
        int commit = steps.FindIndex(s => s.Contains("commit", StringComparison.Ordinal)) + 1;
        Assert.True(commit > 5);

        for (int k = 1; k <= steps.Count; k++)
        {
            string dir = fx.Copy($"io{k}");
            int n = 0;
            RedoJournal.StepHook = what => { if (++n == k) throw new IOException($"No space left on device (injected at {what})"); };
            try
            {
                using var t = new Trainer(fx.Resume(dir, SaveFixture.NewStep));
                var e = Assert.Throws<IOException>(() => t.Run());
                Assert.Contains("injected", e.Message);
            }
            finally
            {
                RedoJournal.StepHook = null;
            }
            string label = $"IOException at step {k} ({steps[k - 1]})";
            int loaded = fx.AssertOldOrNew(fx.LoadAndResume(dir), label);
            Assert.True(loaded == (k <= commit ? SaveFixture.OldStep : SaveFixture.NewStep), $"{label}: loads as step {loaded}");
            SaveFixture.AssertNoLeftovers(dir, label);
        }
    }

    /// <summary>What interrupted saves leave (a staging folder with a torn file, journal and file temporaries) is never read, and the next save deletes it — and nothing else.</summary>
    [Fact]
    public void StaleTemporariesAreIgnoredByReadersAndDeletedByTheNextSave()
    {
        var fx = new SaveFixture(_data);
        string dir = fx.Copy("stale");
        string staging = Path.Combine(dir, RedoJournal.StagingPrefix + "00000006-deadbeef");
        Directory.CreateDirectory(staging);
        File.WriteAllBytes(Path.Combine(staging, Checkpoint.ModelFile), new byte[100]);   // torn
        File.WriteAllText(Path.Combine(staging, Checkpoint.StateFile), "{");
        string[] temporaries =
        [
            RedoJournal.JournalFile + ".00000006-deadbeef.tmp",
            "." + Checkpoint.ModelFile + ".0123456789abcdef.tmp",
            Checkpoint.StateFile + ".tmp-4242",
        ];
        foreach (var t in temporaries) File.WriteAllText(Path.Combine(dir, t), "partial");
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "mine");

        fx.AssertOldOrNew(fx.LoadAndResume(dir), "stale leftovers");   // reads the old save, then saves at 6 and 8
        SaveFixture.AssertNoLeftovers(dir, "after the next save");
        Assert.False(Directory.Exists(staging));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(dir, "notes.txt")));
        Assert.True(File.Exists(Path.Combine(dir, TrainingLog.FileName)));
    }

    /// <summary>Every reader finishes a save that was committed but not moved into place, and then reads the new save.</summary>
    [Fact]
    public void ReadersFinishACommittedSave()
    {
        var fx = new SaveFixture(_data);
        string Pending()
        {
            string dir = fx.Copy("pending");
            RedoJournal.StepHook = what => { if (what.StartsWith("move ", StringComparison.Ordinal)) throw new IOException("injected"); };
            try
            {
                using var t = new Trainer(fx.Resume(dir, SaveFixture.NewStep));
                Assert.Throws<IOException>(() => t.Run());
            }
            finally
            {
                RedoJournal.StepHook = null;
            }
            Assert.True(RedoJournal.IsPending(dir));
            return dir;
        }
        int[] expected = fx.FromNew.Save.Parameters;

        string a = Pending();
        Assert.True(Checkpoint.Exists(a));
        Assert.False(RedoJournal.IsPending(a));
        Assert.Equal(SaveFixture.NewStep, Checkpoint.ReadState(a).IterNum);

        string b = Pending();
        Assert.Equal(expected, SaveFixture.Bits(Checkpoint.LoadAnyModel(b, 1, 16, out var state).ParameterData));
        Assert.Equal(SaveFixture.NewStep, state!.IterNum);

        string c = Pending();
        var (_, tensors) = ModelImporter.ReadCheckpoint(c);   // export's reader
        Assert.False(RedoJournal.IsPending(c));
        var gpt = Checkpoint.LoadModel(c, 1, 16, out _);
        Assert.Equal(gpt.Parameters.First(p => p.Name == Checkpoint.WteName).Value.ToArray(), tensors.First(t => t.Name == Checkpoint.WteName).Data.ToArray());
        Assert.Equal(expected, SaveFixture.Bits(gpt.ParameterData));
    }

    /// <summary>
    /// A reader (sample, eval) loading while training saves into the same folder gets one whole save every time:
    /// never an error, never the weights of one save with the state of another.
    /// </summary>
    [Fact]
    public void ReaderDuringSavesAlwaysSeesOneWholeSave()
    {
        var fx = new SaveFixture(_data);
        var a = Checkpoint.LoadModel(fx.OldDir, 1, 16, out var stateA);
        var b = Checkpoint.LoadModel(fx.NewDir, 1, 16, out var stateB);
        var bits = new Dictionary<int, int[]> { [stateA.IterNum] = SaveFixture.Bits(a.ParameterData), [stateB.IterNum] = SaveFixture.Bits(b.ParameterData) };
        string dir = fx.Copy("concurrent");

        int loads = 0;
        var done = new ManualResetEventSlim();
        var reader = Task.Run(() =>
        {
            while (!done.IsSet || loads == 0)
            {
                var gpt = Checkpoint.LoadModel(dir, 1, 16, out var state);
                Assert.True(bits.TryGetValue(state.IterNum, out var expected), $"loaded step {state.IterNum}");
                Assert.True(expected.AsSpan().SequenceEqual(SaveFixture.Bits(gpt.ParameterData)), $"step {state.IterNum}: the weights of another save");
                loads++;
            }
        });
        try
        {
            for (int i = 0; i < 20; i++)
            {
                if (i % 2 == 0) Checkpoint.Save(dir, b, null, stateB, null);
                else Checkpoint.Save(dir, a, null, stateA, null);
                Thread.Sleep(20);   // training between saves; the reader retries a read that a save overlapped
            }
        }
        finally
        {
            done.Set();
        }
        reader.GetAwaiter().GetResult();
        Assert.True(loads > 0);
        SaveFixture.AssertNoLeftovers(dir, "after concurrent saves and loads");
    }

    static ConcurrentDictionary<string, (int Code, string Err)> RunChildren(string config, List<(string Dir, string Fault)> runs)
    {
        var results = new ConcurrentDictionary<string, (int, string)>();
        Parallel.ForEach(runs, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(3, Environment.ProcessorCount) },
            r => results[r.Dir] = RunChild(config, r.Dir, r.Fault));
        return results;
    }

    /// <summary>Runs the built CLI: resume <paramref name="dir"/> to step 6 (one save), with NANOSPARSE_SAVE_FAULT=<paramref name="fault"/>.</summary>
    static (int Code, string Err) RunChild(string config, string dir, string fault)
    {
        string host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "NanoSparse.Cli.dll"));
        foreach (var a in new[] { "train", "--config", config, "--set", "out_dir=" + dir, "--set", "init_from=resume",
                                  "--set", $"max_iters={SaveFixture.NewStep}", "--set", "eval_interval=2" })
            psi.ArgumentList.Add(a);
        psi.Environment["NANOSPARSE_SAVE_FAULT"] = fault;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the CLI");
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(180_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"the CLI child ({fault}) ran for 3 minutes");
        }
        return (p.ExitCode, err.Result + output.Result);
    }
}
