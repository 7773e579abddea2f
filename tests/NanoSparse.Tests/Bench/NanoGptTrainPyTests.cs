using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Bench;
using NanoSparse.Cli;

namespace NanoSparse.Tests.Bench;

[Collection("KernelThreads")]
public sealed class NanoGptTrainPyTests : IDisposable
{
    readonly string _root = Path.Combine(Path.GetTempPath(), $"nanogpt-tests-{Guid.NewGuid():N}");
    readonly int _savedThreads = NanoSparse.Kernels.KernelThreads.Max;

    public NanoGptTrainPyTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        NanoSparse.Kernels.KernelThreads.Max = _savedThreads;
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    // Bytes printed by CPython 3.11: pickle.dumps({'vocab_size': v}, protocol=2) for v = 85, 50304, 70000.
    [Theory]
    [InlineData(85, "80027d7100580a000000766f6361625f73697a6571014b55732e")]
    [InlineData(50304, "80027d7100580a000000766f6361625f73697a6571014d80c4732e")]
    [InlineData(70000, "80027d7100580a000000766f6361625f73697a6571014a70110100732e")]
    public void MetaPickleIsWhatPythonPicklesForTheVocabSize(int vocab, string pythonHex) =>
        Assert.Equal(pythonHex, Convert.ToHexString(NanoGptTrainPy.MetaPickle(vocab)).ToLowerInvariant());

    // Lines as nanoGPT's train.py prints them (captured from a run with --log_interval=1), with its other output between.
    const string Log = """
        Overriding: max_iters = 3
        tokens per iteration will be: 16,384
        found vocab_size = 85 (inside /tmp/x/data/nanosparse_bench/meta.pkl)
        WARNING: using slow attention. Flash Attention requires PyTorch >= 2.0
        number of parameters: 10.65M
        using fused AdamW: False
        step 0: train loss 4.5210, val loss 4.5221
        iter 0: loss 4.5212, time 6737.51ms, mfu -100.00%
        iter 1: loss 4.5239, time 2641.09ms, mfu -100.00%
        iter 2: loss 4.5113, time 2272.86ms, mfu -100.00%
        iter 3: loss 4.5103, time 1959.70ms, mfu -100.00%
        """;

    [Fact]
    public void ParseIterationsReadsEveryIterLineInOrder()
    {
        var rows = NanoGptTrainPy.ParseIterations(Log);
        Assert.Equal([0, 1, 2, 3], rows.Select(r => r.Iter));
        Assert.Equal([6737.51, 2641.09, 2272.86, 1959.70], rows.Select(r => r.Ms));
    }

    [Fact]
    public void TimedIterationsDropTheWarmUpAndAlwaysIterationZero()
    {
        Assert.Equal([2272.86, 1959.70], NanoGptTrainPy.TimedIterations(Log, warmup: 2, iters: 2));
        Assert.Equal([2641.09, 2272.86, 1959.70], NanoGptTrainPy.TimedIterations(Log, warmup: 0, iters: 3));
    }

    [Fact]
    public void TimedIterationsRejectALogWithTooFewIterations()
    {
        var e = Assert.Throws<InvalidDataException>(() => NanoGptTrainPy.TimedIterations(Log, warmup: 2, iters: 5));
        Assert.Contains("found 4", e.Message);
        Assert.Contains("expected 7", e.Message);
    }

    static string RepoFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var path = Path.Combine(dir.FullName, relative);
            if (File.Exists(path)) return path;
        }
        throw new FileNotFoundException(relative);
    }

    /// <summary>The overrides carry the values of configs/PRESET.json, each as a Python literal of the type of
    /// train.py's default (configurator.py asserts the type: ints, floats with a point, True/False).</summary>
    [Theory]
    [InlineData("baby")]
    [InlineData("small")]
    public void NanoGptOverridesMatchThePresetConfigWithTrainPyTypes(string name)
    {
        var config = JsonNode.Parse(File.ReadAllText(RepoFile(Path.Combine("configs", name + ".json"))))!.AsObject();
        var overrides = ModelPreset.Get(name).NanoGptOverrides().ToDictionary(a => a[2..a.IndexOf('=')], a => a[(a.IndexOf('=') + 1)..]);
        foreach (var key in new[] { "batch_size", "block_size", "n_layer", "n_head", "n_embd", "gradient_accumulation_steps" })
        {
            Assert.Matches("^[0-9]+$", overrides[key]);
            Assert.Equal(config[key]!.GetValue<int>(), int.Parse(overrides[key]));
        }
        foreach (var key in new[] { "dropout", "learning_rate", "beta2" })
        {
            Assert.Matches(@"^[0-9]*\.[0-9]+(E-?[0-9]+)?$", overrides[key]);
            Assert.Equal(config[key]!.GetValue<double>(), double.Parse(overrides[key], System.Globalization.CultureInfo.InvariantCulture), 6);
        }
        foreach (var key in new[] { "beta1", "weight_decay", "grad_clip" }) Assert.Contains('.', overrides[key]);
        Assert.Equal((config["bias"]?.GetValue<bool>() ?? false) ? "True" : "False", overrides["bias"]);
    }

    [Fact]
    public void PrepareDatasetWritesNanoGptsLayoutWithTokensBelowTheVocab()
    {
        var dir = NanoGptTrainPy.PrepareDataset(_root, vocab: 300);
        Assert.Equal(Path.Combine(_root, "data", NanoGptTrainPy.DatasetName), dir);
        var train = File.ReadAllBytes(Path.Combine(dir, "train.bin"));
        Assert.Equal(2 * NanoGptTrainPy.TrainTokens, train.Length);
        Assert.Equal(2 * NanoGptTrainPy.ValTokens, new FileInfo(Path.Combine(dir, "val.bin")).Length);
        var tokens = Enumerable.Range(0, train.Length / 2).Select(i => train[2 * i] | train[2 * i + 1] << 8).ToArray();
        Assert.True(tokens.Max() < 300);
        Assert.True(tokens.Max() >= 256); // the high byte is written
        Assert.Equal(NanoGptTrainPy.MetaPickle(300), File.ReadAllBytes(Path.Combine(dir, "meta.pkl")));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
    }

    static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void BenchTrainRejectsAFolderWithoutTrainPyByName()
    {
        var r = Cli("bench", "train", "--no-peer", "--nanogpt", _root);
        Assert.NotEqual(0, r.Code);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.Contains("--nanogpt", line);
        Assert.Contains("train.py", line);
    }

    /// <summary>
    /// A stand-in train.py (a shell script, run with --python /bin/sh) checks what nanoGPT's would need (cwd holds
    /// configurator.py, the dataset folder holds train.bin, val.bin and meta.pkl) and logs iteration i at
    /// 1000·OMP_NUM_THREADS + 100·OPENBLAS_NUM_THREADS + i ms: the bench must report each thread pair's own times.
    /// </summary>
    [Fact]
    public void BenchTrainRunsTrainPyAtEveryThreadPairAndReportsItsTimedIterations()
    {
        if (!File.Exists("/bin/sh")) throw new InvalidOperationException("/bin/sh is needed by this test");
        var fake = Path.Combine(_root, "nanoGPT");
        Directory.CreateDirectory(fake);
        File.WriteAllText(Path.Combine(fake, "model.py"), "");
        File.WriteAllText(Path.Combine(fake, "configurator.py"), "");
        File.WriteAllText(Path.Combine(fake, "train.py"), """
            [ -f configurator.py ] || { echo "cwd is not the checkout" >&2; exit 3; }
            for a in "$@"; do
              case "$a" in
                --max_iters=*) n="${a#--max_iters=}" ;;
                --dataset=*) d="${a#--dataset=}" ;;
              esac
            done
            for f in train.bin val.bin meta.pkl; do [ -f "$d/$f" ] || { echo "missing $d/$f" >&2; exit 4; }; done
            i=0
            while [ "$i" -le "$n" ]; do
              echo "iter $i: loss 4.4000, time $((1000 * OMP_NUM_THREADS + 100 * OPENBLAS_NUM_THREADS + i)).00ms, mfu -100.00%"
              i=$((i + 1))
            done
            """);
        var json = Path.Combine(_root, "train.json");
        var r = Cli("bench", "train", "--preset", "baby", "--no-peer", "--nanogpt", fake, "--python", "/bin/sh", "--threads", "1", "2",
            "--iters", "3", "--warmup", "2", "--rounds", "1", "--gemm-size", "32", "--vocab", "85", "--json", json);
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var rows = doc.RootElement.GetProperty("results").EnumerateArray()
            .Where(x => x.GetProperty("contender").GetString() == TrainBench.NanoGptName).ToList();
        Assert.Equal(4, rows.Count);
        foreach (var row in rows)
        {
            int t = row.GetProperty("threads").GetInt32(), b = row.GetProperty("blas_threads").GetInt32();
            double[] expected = [1000 * t + 100 * b + 2, 1000 * t + 100 * b + 3, 1000 * t + 100 * b + 4]; // iterations 2..4
            Assert.Equal(expected, row.GetProperty("iters_ms").EnumerateArray().Select(e => e.GetDouble()));
        }
        Assert.Equal(
            doc.RootElement.GetProperty("results").EnumerateArray().Where(x => x.GetProperty("contender").GetString() == TrainBench.NanoSparseName)
                .Min(x => x.GetProperty("median_ms").GetDouble()) / 1103.0,
            doc.RootElement.GetProperty("ratio_best_vs_nanogpt_ms").GetDouble(), 9);
        Assert.Empty(Directory.GetDirectories(Path.GetTempPath(), $"nanosparse-nanogpt-{Environment.ProcessId}-*"));
    }
}
