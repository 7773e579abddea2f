namespace NanoSparse.Cli;

/// <summary>Writes a plot's PNG atomically: into a temporary file beside the target, then moved over it.</summary>
internal static class PngFile
{
    /// <summary>Saves <paramref name="plot"/> at <paramref name="pngPath"/> (its folder created if missing); <paramref name="tag"/> names the temporary file.</summary>
    public static void SaveAtomic(ScottPlot.Plot plot, string pngPath, string tag, int width = 900, int height = 550)
    {
        string full = Path.GetFullPath(pngPath);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{tag}-{Environment.ProcessId}.tmp.png");
        plot.SavePng(tmp, width, height);
        File.Move(tmp, full, overwrite: true);
    }
}
