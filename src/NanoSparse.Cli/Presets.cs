using NanoSparse.Training;

namespace NanoSparse.Cli;

/// <summary>Named configs: configs/NAME.json beside the current directory or the executable.</summary>
public static class Presets
{
    public static IEnumerable<string> SearchDirectories()
    {
        yield return Path.Combine(Directory.GetCurrentDirectory(), "configs");
        yield return Path.Combine(AppContext.BaseDirectory, "configs");
    }

    public static string Find(string name)
    {
        if (name.Length == 0 || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name.Contains(".."))
            throw new UsageException($"preset name '{name}' is not a plain name");
        foreach (var dir in SearchDirectories())
        {
            string path = Path.Combine(dir, name + ".json");
            if (File.Exists(path)) return path;
        }
        var known = SearchDirectories().Where(Directory.Exists)
            .SelectMany(d => Directory.GetFiles(d, "*.json")).Select(Path.GetFileNameWithoutExtension).Distinct().Order();
        throw new FileNotFoundException($"preset '{name}' not found in {string.Join(" or ", SearchDirectories())}; available: {string.Join(", ", known)}");
    }

    /// <summary>Defaults, then the preset or config file, then each --set in order, then validation.</summary>
    public static TrainConfig Resolve(string? preset, string? configFile, IEnumerable<string>? sets)
    {
        if (preset is not null && configFile is not null) throw new UsageException("give either --preset or --config, not both");
        var config = preset is not null ? TrainConfig.Load(Find(preset))
                   : configFile is not null ? TrainConfig.Load(configFile)
                   : new TrainConfig();
        try
        {
            foreach (var s in sets ?? []) config.Set(s);
            config.Validate("config");
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw new UsageException(e.Message);
        }
        return config;
    }
}
