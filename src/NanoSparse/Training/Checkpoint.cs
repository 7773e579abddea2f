using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Optim;

namespace NanoSparse.Training;

/// <summary>
/// A checkpoint directory:
///   model.safetensors      the parameters under nanoGPT's state_dict names, plus lm_head.weight (a copy of the tied wte)
///   optimizer.safetensors  AdamW state: {name}.exp_avg (m) and {name}.exp_avg_sq (v), torch's names
///   meta.json              the dataset's metadata (tokenizer vocabulary), so sample/eval work without the data folder
///                          (+ encoder.json and vocab.bpe for a gpt2 dataset)
///   state.json             configs, step, best val loss, RNG and sampler states, the save's id and every other
///                          file's size and SHA-256
/// A save replaces all of them at once (<see cref="RedoJournal"/>: staged in .staging-{id}/, committed by one rename
/// of .commit.json, then moved into place): after a crash, a kill or a full disk the folder loads as exactly the
/// previous save or exactly the new one. The save id in state.json is also in both safetensors files' metadata, so a
/// folder whose files come from different saves (copied by hand, say) is refused, naming the file.
/// Folders written before saves had ids (no save_id) load as before.
/// </summary>
public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "state.json";
    public const string MetaFile = "meta.json";
    public const string LmHeadName = "lm_head.weight";
    public const string WteName = "transformer.wte.weight";
    /// <summary>The safetensors metadata key that holds the save id.</summary>
    public const string SaveIdKey = "save_id";

    /// <summary>Every file name a save may write.</summary>
    public static IReadOnlyList<string> FileNames { get; } =
        [ModelFile, OptimizerFile, MetaFile, Data.Gpt2Vocabulary.EncoderFile, Data.Gpt2Vocabulary.MergesFile, StateFile];

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Whether <paramref name="dir"/> holds a training checkpoint (finishing a committed save first, see <see cref="RedoJournal.Recover"/>).</summary>
    public static bool Exists(string dir)
    {
        if (!Directory.Exists(dir)) return false;
        RedoJournal.Recover(dir);
        return File.Exists(Path.Combine(dir, StateFile));
    }

    /// <summary>
    /// Writes the checkpoint. Refuses (throws, writes nothing) when a parameter or optimizer value is NaN or infinite.
    /// <paramref name="optimizerExtras"/> are written into optimizer.safetensors too (gradual pruning's masks).
    /// <paramref name="extraFiles"/> (name → contents, e.g. prune's recipe) join the same commit (state.json lists only the
    /// checkpoint's own files).
    /// </summary>
    public static void Save(string dir, Gpt gpt, AdamW? optimizer, CheckpointState state, string? metaPath,
        IReadOnlyList<SafeTensor>? optimizerExtras = null, IReadOnlyDictionary<string, byte[]>? extraFiles = null)
    {
        EnsureFinite(gpt.ParameterData, "model parameters", state.IterNum);
        if (optimizer is not null)
        {
            EnsureFinite(optimizer.M, "optimizer state exp_avg", state.IterNum);
            EnsureFinite(optimizer.V, "optimizer state exp_avg_sq", state.IterNum);
        }
        string id = $"{state.IterNum:D8}-{Guid.NewGuid():N}"[..25];
        using var save = RedoJournal.Begin(dir, id, FileNames.Concat(ExtraNames(extraFiles)));
        var previous = PreviousFiles(dir);
        var written = new List<string>();

        RedoJournal.Step("write " + ModelFile);
        WriteModel(save.StagedPath(ModelFile), gpt, id);
        written.Add(ModelFile);

        if (optimizer is not null)
        {
            var m = optimizer.MMemory;
            var v = optimizer.VMemory;
            var state2 = new List<SafeTensor>();
            foreach (var p in gpt.Parameters)
            {
                var seg = AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay);
                state2.Add(new SafeTensor(p.Name + ".exp_avg", StoredShape(p), m.Slice(seg.Offset, seg.Length)));
                state2.Add(new SafeTensor(p.Name + ".exp_avg_sq", StoredShape(p), v.Slice(seg.Offset, seg.Length)));
            }
            if (optimizerExtras is not null) state2.AddRange(optimizerExtras);
            RedoJournal.Step("write " + OptimizerFile);
            SafeTensors.Write(save.StagedPath(OptimizerFile), state2,
                new Dictionary<string, string> { ["step"] = optimizer.StepCount.ToString(CultureInfo.InvariantCulture), [SaveIdKey] = id });
            written.Add(OptimizerFile);
            state.OptimizerStep = optimizer.StepCount;
        }

        if (metaPath is not null && File.Exists(metaPath) &&
            Path.GetFullPath(metaPath) != Path.GetFullPath(Path.Combine(dir, MetaFile)))
        {
            RedoJournal.Step("write " + MetaFile);
            WriteAtomic(save.StagedPath(MetaFile), File.ReadAllBytes(metaPath));
            written.Add(MetaFile);
            // A gpt2 dataset's vocabulary files travel with its meta.json, so sample decodes offline.
            string dataDir = Path.GetDirectoryName(Path.GetFullPath(metaPath))!;
            if (Data.Gpt2Vocabulary.IsPresent(dataDir))
            {
                RedoJournal.Step("write GPT-2 vocabulary");
                Data.DatasetPreparer.CopyGpt2Files(dataDir, save.StagingDir);
                written.Add(Data.Gpt2Vocabulary.EncoderFile);
                written.Add(Data.Gpt2Vocabulary.MergesFile);
            }
        }

        state.SaveId = id;
        state.Files = written.ToDictionary(name => name, name => Describe(save.StagedPath(name)));
        WriteExtras(save, extraFiles, written);   // not in state.json's list, which names the checkpoint's own files only
        RedoJournal.Step("write " + StateFile);
        WriteAtomic(save.StagedPath(StateFile), JsonSerializer.SerializeToUtf8Bytes(state, Json));
        written.Add(StateFile);

        // A meta.json that is the dataset's own (out_dir = dataset folder) is never deleted.
        bool metaIsSource = metaPath is not null && Path.GetFullPath(metaPath) == Path.GetFullPath(Path.Combine(dir, MetaFile));
        save.Commit(written, previous.Except(written).Where(n => !(n == MetaFile && metaIsSource)).ToArray());
    }

    /// <summary>
    /// model.safetensors: every parameter under its nanoGPT name, lm_head.weight (the tied wte) too; a sparse Linear
    /// weight as its layout's tensors and metadata instead (see <see cref="SparseWeightFiles"/>).
    /// </summary>
    static void WriteModel(string path, Gpt gpt, string? saveId)
    {
        var tensors = new List<SafeTensor>();
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        if (saveId is not null) metadata[SaveIdKey] = saveId;
        foreach (var p in gpt.Parameters)
        {
            if (p.Layout is ISparseLinearStructure sparse)
            {
                tensors.AddRange(SparseWeightFiles.Tensors(p.Name, sparse, p.Value));
                SparseWeightFiles.AddMetadata(metadata, p.Name, sparse);
                continue;
            }
            tensors.Add(new SafeTensor(p.Name, (int[])p.Shape.Clone(), p.Value));
            if (p.Name == WteName) tensors.Add(new SafeTensor(LmHeadName, (int[])p.Shape.Clone(), p.Value));
        }
        SafeTensors.Write(path, tensors, metadata);
    }

    /// <summary>The shape a parameter's optimizer moments are stored with: the stored values' count for a sparse layout.</summary>
    static int[] StoredShape(Parameter p) => p.Layout is ISparseLinearStructure ? [p.Length] : (int[])p.Shape.Clone();

    /// <summary>
    /// The layouts of the Linear weights that the checkpoint in <paramref name="dir"/> stores sparse, rebuilt from the
    /// stored structure (give them to <see cref="Gpt(GptConfig, int, int, IReadOnlyDictionary{string, ILinearWeight})"/>);
    /// empty when the config's weight_layouts are all dense.
    /// </summary>
    public static Dictionary<string, ILinearWeight> ReadLinearWeights(string dir, GptConfig config)
    {
        // A config whose weights are all dense reads nothing more (a file that stores some sparse anyway is refused
        // by LoadWeights, naming the weight).
        if (config.AllWeightsDense) return [];
        string path = Path.Combine(dir, ModelFile);
        if (Directory.Exists(dir)) RedoJournal.Recover(dir);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {ModelFile}", path);
        using var file = SafeTensorsFile.Open(path);
        return SparseWeightFiles.ReadLayouts(file, path, config);
    }

    /// <summary>
    /// Writes a model without training state (as `nanosparse import` does: model.safetensors + config.json holding the
    /// model config), replacing a checkpoint in <paramref name="dir"/> through the same staged, journaled commit as
    /// <see cref="Save"/> (a training checkpoint's other files there are removed in the same commit).
    /// </summary>
    public static void SaveModel(string dir, Gpt gpt, string? metaPath, IReadOnlyDictionary<string, byte[]>? extraFiles = null)
    {
        EnsureFinite(gpt.ParameterData, "model parameters", null);
        string[] names = [.. FileNames, ConfigFile, .. ExtraNames(extraFiles)];
        string id = $"model-{Guid.NewGuid():N}"[..25];
        using var save = RedoJournal.Begin(dir, id, names);
        var previous = PreviousFiles(dir).Append(StateFile).Append(OptimizerFile).Where(n => File.Exists(Path.Combine(dir, n))).ToList();
        var written = new List<string>();
        RedoJournal.Step("write " + ModelFile);
        WriteModel(save.StagedPath(ModelFile), gpt, null);
        written.Add(ModelFile);
        RedoJournal.Step("write " + ConfigFile);
        WriteAtomic(save.StagedPath(ConfigFile), JsonSerializer.SerializeToUtf8Bytes(gpt.Config with { Dropout = 0f }, Json));
        written.Add(ConfigFile);
        if (metaPath is not null && File.Exists(metaPath) && Path.GetFullPath(metaPath) != Path.GetFullPath(Path.Combine(dir, MetaFile)))
        {
            WriteAtomic(save.StagedPath(MetaFile), File.ReadAllBytes(metaPath));
            written.Add(MetaFile);
            string dataDir = Path.GetDirectoryName(Path.GetFullPath(metaPath))!;
            if (Data.Gpt2Vocabulary.IsPresent(dataDir))
            {
                Data.DatasetPreparer.CopyGpt2Files(dataDir, save.StagingDir);
                written.Add(Data.Gpt2Vocabulary.EncoderFile);
                written.Add(Data.Gpt2Vocabulary.MergesFile);
            }
        }
        WriteExtras(save, extraFiles, written);
        save.Commit(written, previous.Except(written).Distinct().ToArray());
    }

    static IEnumerable<string> ExtraNames(IReadOnlyDictionary<string, byte[]>? extraFiles)
    {
        if (extraFiles is null) return [];
        foreach (var name in extraFiles.Keys)
            if (name.Length == 0 || name != Path.GetFileName(name) || name.StartsWith('.') || FileNames.Contains(name) || name == ConfigFile)
                throw new ArgumentException($"extra checkpoint file name '{name}' must be a plain file name other than the checkpoint's own");
        return extraFiles.Keys;
    }

    static void WriteExtras(RedoJournal save, IReadOnlyDictionary<string, byte[]>? extraFiles, List<string> written)
    {
        if (extraFiles is null) return;
        foreach (var (name, bytes) in extraFiles)
        {
            RedoJournal.Step("write " + name);
            WriteAtomic(save.StagedPath(name), bytes);
            written.Add(name);
        }
    }

    static CheckpointFile Describe(string path)
    {
        using var fs = File.OpenRead(path);
        return new CheckpointFile { Bytes = fs.Length, Sha256 = Convert.ToHexStringLower(SHA256.HashData(fs)) };
    }

    /// <summary>
    /// The files of the save in <paramref name="dir"/> that the next one must delete when it does not write them:
    /// those its state.json lists; for a folder written before saves had ids, optimizer.safetensors (otherwise a
    /// stale one would sit beside a save that wrote none).
    /// </summary>
    static IEnumerable<string> PreviousFiles(string dir)
    {
        try
        {
            string path = Path.Combine(dir, StateFile);
            if (!File.Exists(path)) return [];
            if (JsonNode.Parse(File.ReadAllBytes(path)) is JsonObject obj && obj["files"] is JsonObject files)
                return files.Select(f => f.Key).Where(FileNames.Contains).ToArray();
            return [OptimizerFile];
        }
        catch (Exception e) when (e is JsonException or IOException or InvalidOperationException)
        {
            return [];
        }
    }

    /// <summary>
    /// Reads and validates state.json: its JSON shape (no nulls, no wrong kinds, valid UTF-8), format and version,
    /// counters, configs, RNG states, and — for a save with an id — that every file it lists exists, and has the
    /// recorded size and SHA-256 unless it is a safetensors file (those carry the id, checked when they are read).
    /// </summary>
    public static CheckpointState ReadState(string dir)
    {
        string path = Path.Combine(dir, StateFile);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        RedoJournal.Recover(dir);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {StateFile}", path);
        var obj = JsonShape.Parse<CheckpointState>(File.ReadAllBytes(path), path);
        CheckpointState? state;
        try
        {
            state = obj.Deserialize<CheckpointState>(Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: invalid value{(e.Path is null ? "" : " at " + e.Path)}", e);
        }
        if (state is null) throw new FormatException($"{path}: expected a JSON object");
        if (state.Format != CheckpointState.FormatName)
            throw new FormatException($"{path}: format is '{state.Format}', expected '{CheckpointState.FormatName}'");
        if (state.Version != 1) throw new FormatException($"{path}: version {state.Version} is not supported (expected 1)");
        if (state.IterNum < 0) throw new FormatException($"{path}: field iter_num is {state.IterNum}, expected an integer >= 0");
        if (state.OptimizerStep < 0) throw new FormatException($"{path}: field optimizer_step is {state.OptimizerStep}, expected an integer >= 0");
        if (!float.IsFinite(state.BestValLoss))
            throw new FormatException($"{path}: field best_val_loss is {state.BestValLoss.ToString(CultureInfo.InvariantCulture)}, expected a finite number");
        try
        {
            state.Model.ToConfig().Validate();
            state.Config.Validate(path + " config");
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"{path}: {e.Message}", e);
        }
        try
        {
            state.DropoutRng.ToState("dropout_rng");
            state.TrainSampler.ToState("train_sampler");
        }
        catch (FormatException e)
        {
            throw new FormatException($"{path}: field {e.Message}", e);
        }
        VerifyFiles(dir, path, state);
        return state;
    }

    static void VerifyFiles(string dir, string statePath, CheckpointState state)
    {
        if (state.SaveId is null)
        {
            if (state.Files is not null) throw new FormatException($"{statePath}: field files is present but save_id is missing; expected both or neither");
            return;
        }
        if (state.SaveId.Length == 0 || state.SaveId.Length > 64 || !state.SaveId.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
            throw new FormatException($"{statePath}: field save_id is '{state.SaveId}', expected 1 to 64 letters, digits or '-'");
        if (state.Files is null) throw new FormatException($"{statePath}: field files is missing; expected it beside save_id");
        foreach (var (name, info) in state.Files)
        {
            if (!FileNames.Contains(name) || name == StateFile)
                throw new FormatException($"{statePath}: field files names '{name}', expected only {string.Join(", ", FileNames.Where(f => f != StateFile))}");
            if (info.Bytes < 0 || info.Sha256.Length != 64 || !info.Sha256.All(char.IsAsciiHexDigit))
                throw new FormatException($"{statePath}: field files.{name} holds bytes {info.Bytes} and sha256 '{info.Sha256}', expected a size >= 0 and 64 hex digits");
            string file = Path.Combine(dir, name);
            if (!File.Exists(file))
                throw new FileNotFoundException($"checkpoint {dir} has no {name}, but {statePath} (save {state.SaveId}) lists it", file);
            // The safetensors files carry the save id, checked when they are read (after their tensors' names and
            // shapes, whose errors say more); hashing them here would read every weight twice.
            if (name.EndsWith(".safetensors", StringComparison.Ordinal)) continue;
            long length = new FileInfo(file).Length;
            if (length != info.Bytes)
                throw new InvalidDataException($"{file} has {length} bytes, but {statePath} (save {state.SaveId}) records {info.Bytes} in field files.{name}: the folder mixes files of different saves");
            if (!Describe(file).Sha256.Equals(info.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"{file} does not match the SHA-256 that {statePath} (save {state.SaveId}) records in field files.{name}: the folder mixes files of different saves");
        }
    }

    /// <summary>A safetensors file of a save with an id must carry the same id (see the class comment).</summary>
    static void CheckSaveId(SafeTensorsFile file, string path, CheckpointState? state)
    {
        if (state?.SaveId is not string expected) return;
        file.Metadata.TryGetValue(SaveIdKey, out string? found);
        if (found != expected)
            throw new InvalidDataException($"{path}: metadata {SaveIdKey} is {(found is null ? "missing" : $"'{found}'")}, but {StateFile} is of save '{expected}': the folder mixes files of different saves");
    }

    /// <summary>Builds a model from the checkpoint's model_args and loads its weights.</summary>
    /// <remarks>
    /// A save that commits while this reads (sample during a training run) can replace a file between two reads of
    /// it, or between reading state.json and the weights. Every such commit shows afterwards (a journal is pending,
    /// or state.json has another save id), so the read is checked after it is done and made again, up to
    /// <see cref="ReadAttempts"/> times.
    /// </remarks>
    public static Gpt LoadModel(string dir, int batchSize, int seqLen, out CheckpointState state)
    {
        for (int attempt = 1; ; attempt++)
        {
            string? before = CurrentSaveId(dir);
            Gpt? gpt = null;
            Exception? failure = null;
            state = null!;
            try
            {
                state = ReadState(dir);
                var config = state.Model.ToConfig();
                gpt = new Gpt(config, batchSize, Math.Min(seqLen, state.Model.BlockSize), ReadLinearWeights(dir, config));
                LoadWeights(dir, gpt, state);
            }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException or FormatException)
            {
                failure = e;
            }
            bool changed = RedoJournal.IsPending(dir) || CurrentSaveId(dir) != (failure is null ? state.SaveId : before);
            if (!changed)
            {
                if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
                return gpt!;
            }
            if (attempt == ReadAttempts)
                throw new IOException($"checkpoint {dir} changed while it was read ({ReadAttempts} times: a training run is saving into it); try again");
            Thread.Sleep(10 * attempt);
        }
    }

    const int ReadAttempts = 8;

    /// <summary>state.json's save_id as it is now, or null (no file, no id, unreadable).</summary>
    static string? CurrentSaveId(string dir)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllBytes(Path.Combine(dir, StateFile)))?["save_id"]?.GetValue<string>();
        }
        catch (Exception e) when (e is JsonException or IOException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>
    /// Loads the model of a training checkpoint (state.json) or of an imported one (`nanosparse import` writes
    /// model.safetensors + config.json, no training state). <paramref name="state"/> is null for the latter.
    /// </summary>
    public static Gpt LoadAnyModel(string dir, int batchSize, int seqLen, out CheckpointState? state)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        RedoJournal.Recover(dir);
        if (File.Exists(Path.Combine(dir, StateFile)))
        {
            var gpt = LoadModel(dir, batchSize, seqLen, out var s);
            state = s;
            return gpt;
        }
        state = null;
        var config = ReadModelConfig(Path.Combine(dir, ConfigFile), dir);
        var model = new Gpt(config, batchSize, Math.Min(seqLen, config.BlockSize), ReadLinearWeights(dir, config));
        LoadWeights(dir, model);
        return model;
    }

    public const string ConfigFile = "config.json";

    /// <summary>The model config of a training checkpoint (state.json) or an imported one (config.json); loads no weights.</summary>
    public static GptConfig ReadAnyConfig(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} does not exist");
        return File.Exists(Path.Combine(dir, StateFile)) ? ReadState(dir).Model.ToConfig() : ReadModelConfig(Path.Combine(dir, ConfigFile), dir);
    }

    static GptConfig ReadModelConfig(string path, string dir)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has neither {StateFile} nor {ConfigFile}", path);
        System.Text.Json.Nodes.JsonObject? obj;
        try
        {
            obj = System.Text.Json.Nodes.JsonNode.Parse(JsonText.ReadFile(path)) as System.Text.Json.Nodes.JsonObject;
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: invalid JSON: {e.Message.Split(". Path:")[0]}", e);
        }
        if (obj is null) throw new FormatException($"{path}: expected a JSON object of model settings");
        // Hugging Face names of GPT-2's tanh GELU ("gelu_new", ...) are accepted as "gelu_tanh".
        if (obj["activation"] is System.Text.Json.Nodes.JsonValue act && act.TryGetValue(out string? actName))
        {
            try { obj["activation"] = GptDims.ParseActivation(actName, path); }
            catch (InvalidDataException e) { throw new FormatException(e.Message, e); }
        }
        GptConfig? config;
        try
        {
            config = obj.Deserialize<GptConfig>();
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: invalid value{(e.Path is null ? "" : " at " + e.Path)}", e);
        }
        if (config is null) throw new FormatException($"{path}: expected a JSON object of model settings");
        try { config.Validate(); }
        catch (ArgumentException e) { throw new FormatException($"{path}: {e.Message}", e); }
        return config;
    }

    /// <summary>
    /// Reads model.safetensors into <paramref name="gpt"/>, checking every name, shape and dtype first, and, given the
    /// checkpoint's <paramref name="state"/>, that the file belongs to the same save.
    /// </summary>
    public static void LoadWeights(string dir, Gpt gpt, CheckpointState? state = null)
    {
        string path = Path.Combine(dir, ModelFile);
        if (Directory.Exists(dir)) RedoJournal.Recover(dir);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {ModelFile}", path);
        using var file = SafeTensorsFile.Open(path);
        foreach (var p in gpt.Parameters)
        {
            if (p.Layout is ISparseLinearStructure sparse)
            {
                if (!SparseWeightFiles.IsSparse(file, p.Name))
                    throw new FormatException($"{path}: weight '{p.Name}' is stored dense, but the model holds it as {sparse.Layout}; load the model with Checkpoint.LoadModel, which rebuilds it from the file");
                CheckSameStructure(SparseWeightFiles.Read(file, path, p.Name, sparse.OutFeatures, sparse.InFeatures), sparse, path, p.Name);
                continue;
            }
            if (p.Layout is not null && SparseWeightFiles.IsSparse(file, p.Name))
                throw new FormatException($"{path}: weight '{p.Name}' is stored as {file.Metadata[p.Name + ".format"]}, but the model holds it as {p.Layout.Layout}; load the model with Checkpoint.LoadModel, which rebuilds it from the file");
            CheckTensor(file, path, p.Name, p.Shape, allowHalf: true);
        }
        CheckTiedHead(file, path);
        CheckSaveId(file, path, state);
        foreach (var p in gpt.Parameters)
            if (p.Layout is ISparseLinearStructure) SparseWeightFiles.ReadValues(file, p.Name, p.Value.Span);
            else file.ReadInto(p.Name, p.Value.Span);
        EnsureFinite(gpt.ParameterData, $"{path} parameters", null);
    }

    /// <summary>
    /// Reads optimizer.safetensors into the AdamW state (same checks, F32 only), and checks it: the same save as
    /// <paramref name="state"/>, metadata step equal to state.json's optimizer_step, every exp_avg finite and every
    /// exp_avg_sq finite and >= 0. On an error the optimizer's contents are undefined (the caller discards it).
    /// </summary>
    public static void LoadOptimizer(string dir, Gpt gpt, AdamW optimizer, CheckpointState state)
    {
        string path = Path.Combine(dir, OptimizerFile);
        if (Directory.Exists(dir)) RedoJournal.Recover(dir);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {dir} has no {OptimizerFile}", path);
        using var file = SafeTensorsFile.Open(path);
        foreach (var p in gpt.Parameters)
        {
            CheckTensor(file, path, p.Name + ".exp_avg", StoredShape(p), allowHalf: false);
            CheckTensor(file, path, p.Name + ".exp_avg_sq", StoredShape(p), allowHalf: false);
        }
        CheckSaveId(file, path, state);
        if (!file.Metadata.TryGetValue("step", out string? stepText))
            throw new InvalidDataException($"{path}: metadata step is missing; expected the AdamW step count ({state.OptimizerStep}, state.json's optimizer_step)");
        if (!long.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out long fileStep) || fileStep != state.OptimizerStep)
            throw new InvalidDataException($"{path}: metadata step is '{stepText}', but {StateFile} has optimizer_step {state.OptimizerStep}: the folder mixes files of different saves");
        foreach (var p in gpt.Parameters)
        {
            var seg = AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay);
            var m = optimizer.M.Slice(seg.Offset, seg.Length);
            var v = optimizer.V.Slice(seg.Offset, seg.Length);
            file.ReadInto(p.Name + ".exp_avg", m);
            file.ReadInto(p.Name + ".exp_avg_sq", v);
            for (int i = 0; i < m.Length; i++)
                if (!float.IsFinite(m[i]))
                    throw new InvalidDataException($"{path}: tensor '{p.Name}.exp_avg' holds {m[i].ToString(CultureInfo.InvariantCulture)} at index {i}; expected finite values");
            for (int i = 0; i < v.Length; i++)
                if (!(float.IsFinite(v[i]) && v[i] >= 0))
                    throw new InvalidDataException($"{path}: tensor '{p.Name}.exp_avg_sq' holds {v[i].ToString(CultureInfo.InvariantCulture)} at index {i}; expected finite values >= 0");
        }
        optimizer.StepCount = state.OptimizerStep;
    }

    /// <summary>A model built with one structure must not silently take the values of another.</summary>
    static void CheckSameStructure(ISparseLinearStructure stored, ISparseLinearStructure model, string path, string name)
    {
        bool same = stored.Layout == model.Layout && stored.StoredCount == model.StoredCount
            && stored.FormatParameters.Count == model.FormatParameters.Count
            && stored.FormatParameters.All(kv => model.FormatParameters.TryGetValue(kv.Key, out var v) && v == kv.Value);
        if (same)
        {
            var a = stored.ExportIndices();
            var b = model.ExportIndices();
            same = a.Count == b.Count && a.Zip(b).All(x => x.First.Suffix == x.Second.Suffix && x.First.Values.AsSpan().SequenceEqual(x.Second.Values));
        }
        if (!same)
            throw new FormatException($"{path}: weight '{name}' stores a different {stored.Layout} structure ({stored.StoredCount} values) than the model's {model.Layout} ({model.StoredCount}); load the model with Checkpoint.LoadModel, which rebuilds it from the file");
    }

    static void CheckTensor(SafeTensorsFile file, string path, string name, int[] expected, bool allowHalf)
    {
        if (!file.Contains(name))
            throw new FormatException($"{path} is missing tensor '{name}' (expected shape {Shape(expected)})");
        var info = file.Get(name);
        if (!info.Shape.AsSpan().SequenceEqual(expected))
            throw new FormatException($"{path}: tensor '{name}' has shape {Shape(info.Shape)}, expected {Shape(expected)}");
        if (info.Dtype != SafeTensorsDtype.F32 && !allowHalf)
            throw new FormatException($"{path}: tensor '{name}' has dtype {info.Dtype}, expected F32");
    }

    /// <summary>
    /// A stored lm_head.weight must equal transformer.wte.weight bit for bit: the model ties the output head to the
    /// embedding, so a different head (an untied or edited checkpoint) would be silently replaced by wte.
    /// </summary>
    static void CheckTiedHead(SafeTensorsFile file, string path)
    {
        if (!file.TryGet(LmHeadName, out var head)) return;
        var wteInfo = file.Get(WteName);
        if (!head.Shape.AsSpan().SequenceEqual(wteInfo.Shape))
            throw new FormatException($"{path}: tensor '{LmHeadName}' has shape {Shape(head.Shape)} but must equal the tied '{WteName}' {Shape(wteInfo.Shape)}");
        var h = file.ReadFloat32Array(LmHeadName);
        var w = file.ReadFloat32Array(WteName);
        for (int i = 0; i < h.Length; i++)
            if (BitConverter.SingleToInt32Bits(h[i]) != BitConverter.SingleToInt32Bits(w[i]))
                throw new FormatException($"{path}: tensor '{LmHeadName}' differs from the tied '{WteName}' at element {i} ({h[i]} vs {w[i]}); the model ties its output head to the embedding, so the two must be equal");
    }

    static string Shape(int[] s) => "[" + string.Join(", ", s) + "]";

    static void EnsureFinite(ReadOnlySpan<float> values, string what, int? step)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new InvalidDataException($"{what} contain {values[i]} at index {i}{(step is int s ? $" (step {s})" : "")}; refusing to use them");
    }

    /// <summary>Writes bytes to a temporary file in the same directory, flushes it to disk, then renames it over <paramref name="path"/>.</summary>
    public static void WriteAtomic(string path, ReadOnlySpan<byte> bytes)
    {
        string tmp = path + ".tmp-" + Environment.ProcessId;
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            fs.Write(bytes);
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
