using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("NanoSparse.Cli")]

namespace NanoSparse.IO;

/// <summary>
/// Replaces a set of files in a folder as one change that a crash, a kill -9 or a full disk cannot leave half done.
/// A redo journal, as databases keep one:
///   1. stage   every new file is written into DIR/.staging-{id}/ and flushed to disk (files, then the folder);
///   2. commit  DIR/.commit.json (the id, the staged names, the names to delete) is written to a temporary file,
///              flushed and renamed into place. That one rename is the instant the new set replaces the old one;
///   3. apply   each staged file is renamed over DIR/{name}, the deleted names go, the folder is flushed, then the
///              journal and the staging folder are removed.
/// Until step 2's rename the folder's files are the previous set, untouched. From it on, <see cref="Recover"/>
/// finishes step 3; every action of step 3 can be repeated, so a crash during recovery is recovered the same way.
/// Readers call <see cref="Recover"/> before they open anything (as SQLite's readers roll back a hot journal), so
/// they always see one whole set. Staging folders and temporaries of a save interrupted before its commit are never
/// read and are deleted by the next <see cref="Begin"/>.
/// </summary>
public sealed class RedoJournal : IDisposable
{
    public const string JournalFile = ".commit.json";
    public const string StagingPrefix = ".staging-";

    /// <summary>
    /// Test hook: called with a short description at every step of a save (before each file write, rename and
    /// delete that changes what a crash would leave). The CLI sets it from NANOSPARSE_SAVE_FAULT to kill itself or
    /// to throw an IOException at step k. Async-local, so a test's hook sees only the saves of its own flow.
    /// </summary>
    internal static Action<string>? StepHook { get => Hook.Value; set => Hook.Value = value; }

    static readonly AsyncLocal<Action<string>?> Hook = new();

    internal static void Step(string what) => Hook.Value?.Invoke(what);

    readonly string _dir;
    readonly string _id;
    bool _committed;

    /// <summary>The staging folder: write each file of the new set here, under its final name.</summary>
    public string StagingDir { get; }

    RedoJournal(string dir, string id)
    {
        _dir = dir;
        _id = id;
        StagingDir = Path.Combine(dir, StagingPrefix + id);
    }

    /// <summary>
    /// Starts a new set in <paramref name="dir"/> (created if missing): finishes a committed earlier save, deletes
    /// what interrupted saves left (staging folders, journal temporaries, and temporaries named after
    /// <paramref name="fileNames"/>), and creates an empty staging folder. <paramref name="id"/> must be a plain name.
    /// </summary>
    public static RedoJournal Begin(string dir, string id, IEnumerable<string> fileNames)
    {
        if (!IsPlainName(id)) throw new ArgumentException($"save id '{id}' must be a plain file name");
        Directory.CreateDirectory(dir);
        Recover(dir);
        DeleteStale(dir, fileNames);
        var journal = new RedoJournal(dir, id);
        Step("create staging folder");
        Directory.CreateDirectory(journal.StagingDir);
        return journal;
    }

    public string StagedPath(string name) =>
        IsPlainName(name) ? Path.Combine(StagingDir, name) : throw new ArgumentException($"'{name}' is not a plain file name");

    /// <summary>
    /// Makes the staged <paramref name="files"/> the folder's files and deletes <paramref name="remove"/>, atomically
    /// (see the class comment). Returns when the new set is in place.
    /// </summary>
    public void Commit(IReadOnlyList<string> files, IReadOnlyList<string> remove)
    {
        if (_committed) throw new InvalidOperationException("this save is already committed");
        foreach (var name in files.Concat(remove))
            if (!IsPlainName(name)) throw new ArgumentException($"'{name}' is not a plain file name");
        foreach (var name in files)
            if (!File.Exists(Path.Combine(StagingDir, name)))
                throw new FileNotFoundException($"staged file {name} is missing from {StagingDir}", Path.Combine(StagingDir, name));

        Step("flush staging folder");
        SyncDirectory(StagingDir);
        var journal = new JsonObject
        {
            ["id"] = _id,
            ["staging"] = StagingPrefix + _id,
            ["files"] = new JsonArray(files.Select(f => (JsonNode)JsonValue.Create(f)).ToArray()),
            ["remove"] = new JsonArray(remove.Select(f => (JsonNode)JsonValue.Create(f)).ToArray()),
        };
        string path = Path.Combine(_dir, JournalFile);
        string tmp = Path.Combine(_dir, $"{JournalFile}.{_id}.tmp");
        Step("write journal");
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            fs.Write(JsonSerializer.SerializeToUtf8Bytes(journal, new JsonSerializerOptions { WriteIndented = true }));
            fs.Flush(flushToDisk: true);
        }
        Step("commit (rename journal into place)");
        File.Move(tmp, path, overwrite: false);
        _committed = true;
        SyncDirectory(_dir);
        // The entry just written, not read back: a reader's Recover may already have applied and deleted the journal.
        Apply(_dir, new Entry(_id, StagingPrefix + _id, files.ToArray(), remove.ToArray()));
    }

    /// <summary>
    /// Finishes a committed save whose files were not all moved into place (a crash after the commit). Does nothing
    /// (and writes nothing) when <paramref name="dir"/> has no journal. Returns whether there was one.
    /// </summary>
    public static bool Recover(string dir)
    {
        string path = Path.Combine(dir, JournalFile);
        if (!File.Exists(path)) return false;
        Entry entry;
        try
        {
            entry = Read(path);
        }
        catch (FileNotFoundException)
        {
            return false;   // the writer (or another reader) finished it meanwhile
        }
        try
        {
            Apply(dir, entry);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{path}: a committed save was not finished and could not be finished now ({e.Message}); " +
                "make the folder writable, or move the files listed there from " + entry.Staging + " into the folder", e);
        }
        return true;
    }

    /// <summary>True when <paramref name="dir"/> holds a committed save that is not yet in place.</summary>
    public static bool IsPending(string dir) => File.Exists(Path.Combine(dir, JournalFile));

    sealed record Entry(string Id, string Staging, string[] Files, string[] Remove);

    static Entry Read(string path)
    {
        JsonObject? obj;
        try
        {
            obj = JsonNode.Parse(File.ReadAllBytes(path)) as JsonObject;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON ({e.Message.Split(". Path:")[0]}); expected a commit journal", e);
        }
        if (obj is null) throw new InvalidDataException($"{path}: expected a JSON object (a commit journal)");
        string Text(string field) =>
            obj[field] is JsonValue v && v.TryGetValue(out string? s) && IsPlainName(s)
                ? s : throw new InvalidDataException($"{path}: field {field} must be a plain file name, found {obj[field]?.ToJsonString() ?? "nothing"}");
        string[] Names(string field) =>
            obj[field] is JsonArray a && a.All(n => n is JsonValue v && v.TryGetValue(out string? s) && IsPlainName(s))
                ? a.Select(n => n!.GetValue<string>()).ToArray()
                : throw new InvalidDataException($"{path}: field {field} must be an array of plain file names, found {obj[field]?.ToJsonString() ?? "nothing"}");
        var entry = new Entry(Text("id"), Text("staging"), Names("files"), Names("remove"));
        if (entry.Staging != StagingPrefix + entry.Id)
            throw new InvalidDataException($"{path}: field staging is '{entry.Staging}', expected '{StagingPrefix}{entry.Id}'");
        return entry;
    }

    /// <summary>
    /// Step 3. Every action is skipped when already done, so applying twice is the same as once, and a reader and
    /// the writer may apply the same journal at the same time (a file or folder the other moved or deleted first is
    /// not an error).
    /// </summary>
    static void Apply(string dir, Entry entry)
    {
        string staging = Path.Combine(dir, entry.Staging);
        foreach (var name in entry.Files)
        {
            string source = Path.Combine(staging, name);
            if (!File.Exists(source)) continue;   // moved before a crash
            Step("move " + name);
            try
            {
                File.Move(source, Path.Combine(dir, name), overwrite: true);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException && !File.Exists(source)) { }
        }
        foreach (var name in entry.Remove)
        {
            if (!File.Exists(Path.Combine(dir, name))) continue;
            Step("delete " + name);
            File.Delete(Path.Combine(dir, name));
        }
        SyncDirectory(dir);
        Step("delete journal");
        File.Delete(Path.Combine(dir, JournalFile));
        SyncDirectory(dir);
        if (Directory.Exists(staging))
        {
            Step("delete staging folder");
            try
            {
                Directory.Delete(staging, recursive: true);
            }
            catch (DirectoryNotFoundException) { }
        }
    }

    /// <summary>Deletes leftovers of saves interrupted before their commit (the caller has recovered any committed one).</summary>
    static void DeleteStale(string dir, IEnumerable<string> fileNames)
    {
        var names = fileNames.ToArray();
        foreach (var sub in Directory.EnumerateDirectories(dir, StagingPrefix + "*"))
        {
            Step("delete stale " + Path.GetFileName(sub));
            Directory.Delete(sub, recursive: true);
        }
        foreach (var file in Directory.EnumerateFiles(dir))
        {
            string n = Path.GetFileName(file);
            // Our journal's temporary; SafeTensors/AtomicFile temporaries ".{name}.*.tmp"; the old layout's "{name}.tmp-{pid}".
            bool stale = n.StartsWith(JournalFile + ".", StringComparison.Ordinal) && n.EndsWith(".tmp", StringComparison.Ordinal)
                || names.Any(f => n.StartsWith("." + f + ".", StringComparison.Ordinal) && n.EndsWith(".tmp", StringComparison.Ordinal)
                                  || n.StartsWith(f + ".tmp-", StringComparison.Ordinal));
            if (!stale) continue;
            Step("delete stale " + n);
            File.Delete(file);
        }
    }

    static bool IsPlainName(string? name) =>
        !string.IsNullOrEmpty(name) && name != "." && name != ".." && name.IndexOfAny(['/', '\\', '\0']) < 0 && !Path.IsPathRooted(name);

    /// <summary>Undoes an uncommitted save: deletes its staging folder (best effort; the next save retries).</summary>
    public void Dispose()
    {
        if (_committed) return;
        try
        {
            if (Directory.Exists(StagingDir)) Directory.Delete(StagingDir, recursive: true);
            File.Delete(Path.Combine(_dir, $"{JournalFile}.{_id}.tmp"));
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// fsync(2) on a folder, so that the renames in it survive a power cut, not only a killed process. .NET cannot
    /// open a folder as a file; on Windows (whose file system journals renames) there is nothing to do.
    /// </summary>
    static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) return;
        try
        {
            int fd = Open(dir, 0 /* O_RDONLY */);
            if (fd < 0) return;
            Fsync(fd);
            Close(fd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    static extern int Fsync(int fd);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    static extern int Close(int fd);
}
