using System.Globalization;
using System.Text;
using NanoSparse.Cli;
using NanoSparse.Data;
using NanoSparse.Training;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// What the CLI test classes that train their own tiny checkpoint share: running the CLI in process, reading its
/// output, checking a one-line error, and the text, dataset and two-step training run behind the checkpoint.
/// </summary>
internal static class CliRun
{
    public static (int Code, string Out, string Err) RunCli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>The val loss of eval's table (the first table row that names "val").</summary>
    public static double ValLoss(string output)
    {
        var line = output.Split('\n').First(l => l.Contains("val") && l.Contains('│'));
        return double.Parse(line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[1], CultureInfo.InvariantCulture);
    }

    public static void OneLineError((int Code, string Out, string Err) r, params string[] parts)
    {
        Assert.NotEqual(0, r.Code);
        string err = r.Err.Trim();
        Assert.StartsWith("error: ", err);
        Assert.DoesNotContain('\n', err);
        foreach (var p in parts) Assert.Contains(p, err);
    }

    /// <summary>20,000 characters of words over the letters a–l.</summary>
    public static string LetterText(int seed)
    {
        var r = new Random(seed);
        var sb = new StringBuilder();
        while (sb.Length < 20_000) sb.Append((char)('a' + r.Next(12))).Append(r.Next(5) == 0 ? " " : "");
        return sb.ToString();
    }

    /// <summary>30,000 characters over every character the retrieval probe needs (a–z, 0–9, '&amp;', ':').</summary>
    public static string ProbeText(int seed)
    {
        var r = new Random(seed);
        var sb = new StringBuilder();
        while (sb.Length < 30_000)
        {
            int n = 1 + r.Next(7);
            for (int i = 0; i < n; i++) sb.Append((char)('a' + r.Next(26)));
            sb.Append(r.Next(12) switch { 0 => " &", 1 => ": ", 2 => " " + r.Next(10000).ToString(CultureInfo.InvariantCulture) + " ", 3 => ".\n", _ => " " });
        }
        return sb.ToString();
    }

    /// <summary>Writes <paramref name="text"/> to root/input.txt and prepares it as a char-level dataset in <paramref name="dataDir"/>.</summary>
    public static void PrepareDataset(string root, string text, string dataDir)
    {
        File.WriteAllText(Path.Combine(root, "input.txt"), text);
        DatasetPreparer.Prepare(new PrepareOptions { Input = Path.Combine(root, "input.txt"), OutDir = dataDir });
    }

    /// <summary>Trains <paramref name="config"/> (written to root/run.json) through the CLI, with <paramref name="extra"/> arguments.</summary>
    public static void Train(string root, TrainConfig config, params string[] extra)
    {
        File.WriteAllText(Path.Combine(root, "run.json"), config.ToJson());
        var t = RunCli(["train", "--config", Path.Combine(root, "run.json"), .. extra]);
        Assert.True(t.Code == 0, t.Err);
    }
}
