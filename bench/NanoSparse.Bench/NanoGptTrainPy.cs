using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace NanoSparse.Bench;

/// <summary>
/// nanoGPT's own train.py, run from a checkout the user names (<c>bench train --nanogpt DIR</c>) as a subprocess:
/// a random-token dataset in nanoGPT's layout (data/NAME/train.bin, val.bin as uint16, meta.pkl with vocab_size) in
/// a temporary folder, the preset passed as <c>--key=value</c> overrides (compile=False, device=cpu, float32, one
/// evaluation batch at iteration 0 and none after, no checkpoint), and the per-iteration times parsed from its log
/// lines <c>iter N: loss X, time Y ms, mfu Z%</c>. train.py's time of an iteration is the wall time from the end of
/// the previous one: it includes get_batch (microseconds here) and, at iteration 0, the evaluation and start-up, so
/// iteration 0 is never timed.
/// </summary>
public static class NanoGptTrainPy
{
    /// <summary>Dataset name under data/ (a NanoSparse-made folder, never one of nanoGPT's own).</summary>
    public const string DatasetName = "nanosparse_bench";

    /// <summary>Tokens of the generated train.bin and val.bin.</summary>
    public const int TrainTokens = 1 << 20, ValTokens = 1 << 16;

    /// <summary>The full path of a nanoGPT checkout; throws unless it holds train.py, model.py and configurator.py.</summary>
    public static string CheckDirectory(string dir)
    {
        var full = Path.GetFullPath(dir);
        if (!Directory.Exists(full))
            throw new ArgumentException($"--nanogpt '{dir}': no such directory; expected a checkout of karpathy/nanoGPT");
        foreach (var file in new[] { "train.py", "model.py", "configurator.py" })
        {
            if (!File.Exists(Path.Combine(full, file)))
                throw new ArgumentException($"--nanogpt '{dir}': {file} not found; expected a checkout of karpathy/nanoGPT (train.py, model.py, configurator.py)");
        }
        return full;
    }

    /// <summary>
    /// Writes ROOT/data/NAME/{train.bin, val.bin, meta.pkl}: uniformly random tokens in [0, vocab) as little-endian
    /// uint16 (nanoGPT's np.memmap dtype) and meta.pkl = pickle of {'vocab_size': vocab}. Returns the dataset folder.
    /// </summary>
    public static string PrepareDataset(string root, int vocab, ulong seed = 1337)
    {
        if (vocab < 2 || vocab > 65536)
            throw new ArgumentException($"--vocab ({vocab}) must be in [2, 65536] for nanoGPT's uint16 token files");
        var dir = Path.Combine(root, "data", DatasetName);
        Directory.CreateDirectory(dir);
        var rng = new Numerics.Rng(seed);
        foreach (var (name, count) in new[] { ("train.bin", TrainTokens), ("val.bin", ValTokens) })
        {
            var bytes = new byte[2 * count];
            for (int i = 0; i < count; i++)
            {
                int token = rng.NextInt(vocab);
                bytes[2 * i] = (byte)token;
                bytes[2 * i + 1] = (byte)(token >> 8);
            }
            WriteAtomic(Path.Combine(dir, name), bytes);
        }
        WriteAtomic(Path.Combine(dir, "meta.pkl"), MetaPickle(vocab));
        return dir;
    }

    /// <summary>
    /// <c>pickle.dumps({'vocab_size': vocab}, protocol=2)</c>, byte for byte: PROTO 2, EMPTY_DICT, BINPUT 0,
    /// BINUNICODE "vocab_size", BINPUT 1, the int (BININT1 below 256, BININT2 below 65536, else BININT), SETITEM, STOP.
    /// </summary>
    public static byte[] MetaPickle(int vocab)
    {
        if (vocab < 0) throw new ArgumentOutOfRangeException(nameof(vocab), vocab, "vocab_size must be >= 0");
        var key = Encoding.UTF8.GetBytes("vocab_size");
        var b = new List<byte> { 0x80, 2, (byte)'}', (byte)'q', 0, (byte)'X' };
        b.AddRange(LittleEndian(key.Length));
        b.AddRange(key);
        b.AddRange([(byte)'q', 1]);
        if (vocab < 256) b.AddRange([(byte)'K', (byte)vocab]);
        else if (vocab < 65536) b.AddRange([(byte)'M', (byte)vocab, (byte)(vocab >> 8)]);
        else { b.Add((byte)'J'); b.AddRange(LittleEndian(vocab)); }
        b.AddRange([(byte)'s', (byte)'.']);
        return b.ToArray();
    }

    /// <summary>
    /// train.py's command line after the script: the preset's model and optimizer (<see cref="ModelPreset.NanoGptOverrides"/>),
    /// then the run: cpu, float32, no compile, the dataset and output folders, iterations 0..maxIters, one evaluation
    /// batch at iteration 0 only, no checkpoint, a log line every iteration.
    /// </summary>
    public static List<string> Arguments(ModelPreset preset, string datasetDir, string outDir, int maxIters)
    {
        // configurator.py splits each argument at '=' and literal_evals the value: a path must have no '=' and must not
        // parse as a Python literal (an absolute path never does); data_dir = os.path.join('data', dataset) keeps it whole.
        foreach (var path in new[] { datasetDir, outDir })
        {
            if (path.Contains('=') || !Path.IsPathRooted(path))
                throw new ArgumentException($"nanoGPT folder '{path}' must be an absolute path without '='");
        }
        var args = preset.NanoGptOverrides();
        args.AddRange(
        [
            "--device=cpu", "--dtype=float32", "--compile=False", "--init_from=scratch", "--wandb_log=False",
            $"--dataset={datasetDir}", $"--out_dir={outDir}",
            $"--max_iters={maxIters}", $"--eval_interval={maxIters + 1000}", "--eval_iters=1", "--eval_only=False",
            "--always_save_checkpoint=False", "--log_interval=1",
        ]);
        return args;
    }

    static readonly Regex IterLine = new(@"^iter (\d+): loss ([^,]+), time ([0-9.eE+-]+)ms", RegexOptions.Multiline | RegexOptions.CultureInvariant);

    /// <summary>(iteration, ms) of every <c>iter N: loss X, time Y ms</c> line of train.py's stdout, in order.</summary>
    public static List<(int Iter, double Ms)> ParseIterations(string stdout) =>
        IterLine.Matches(stdout.Replace("\r", ""))
            .Select(m => (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)))
            .ToList();

    /// <summary>
    /// The timed iterations (ms) of one train.py run: iterations 0..warmup+iters-1 are run, the first
    /// max(1, warmup) are dropped. Throws when the log does not hold exactly those iterations in order.
    /// </summary>
    public static double[] TimedIterations(string stdout, int warmup, int iters)
    {
        int skip = Math.Max(1, warmup);
        var rows = ParseIterations(stdout);
        int expected = skip + iters;
        if (rows.Count != expected || rows.Select((r, i) => r.Iter != i).Any(bad => bad))
        {
            var found = rows.Count == 0 ? "none" : $"{rows.Count} (iterations {rows[0].Iter}..{rows[^1].Iter})";
            throw new InvalidDataException(
                $"train.py log: found {found} 'iter N: loss X, time Y ms' lines, expected {expected} (iterations 0..{expected - 1}); " +
                $"last stdout lines: {string.Join(" | ", stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(3))}");
        }
        return rows.Skip(skip).Select(r => r.Ms).ToArray();
    }

    /// <summary>
    /// Runs DIR/train.py once (cwd DIR, where it reads configurator.py) with torch's intra-op threads and OpenBLAS's
    /// threads set through the environment, and returns the timed iterations' ms.
    /// </summary>
    public static double[] Run(string python, string nanoGptDir, ModelPreset preset, string datasetDir, string outDir, int warmup, int iters,
        int torchThreads, int blasThreads)
    {
        int maxIters = Math.Max(1, warmup) + iters - 1;
        var stdout = TorchPeer.RunScript(python, Path.Combine(nanoGptDir, "train.py"), Arguments(preset, datasetDir, outDir, maxIters),
            TorchPeer.ThreadEnvironment(torchThreads, blasThreads), nanoGptDir);
        return TimedIterations(stdout, warmup, iters);
    }

    static byte[] LittleEndian(int value)
    {
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        return bytes;
    }

    static void WriteAtomic(string path, byte[] bytes)
    {
        var tmp = path + $".{Environment.ProcessId}.tmp";
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
