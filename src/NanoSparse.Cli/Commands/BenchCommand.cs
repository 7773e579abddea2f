using System.CommandLine;
using System.Reflection;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse bench SUITE`: every static class in NanoSparse.Bench with a public static CreateCommand() returning a
/// Command contributes one subcommand, so a new suite appears without touching the CLI.
/// </summary>
public static class BenchCommand
{
    public static Command Create(CliContext cli)
    {
        var bench = new Command("bench", "benchmarks that run NanoSparse beside its peers and print ratios");
        Assembly assembly;
        try
        {
            assembly = Assembly.Load("NanoSparse.Bench");
        }
        catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
        {
            return bench;
        }
        foreach (var type in SafeTypes(assembly).Where(t => t.IsAbstract && t.IsSealed).OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            var create = type.GetMethod("CreateCommand", BindingFlags.Public | BindingFlags.Static, Type.EmptyTypes);
            if (create is null || !typeof(Command).IsAssignableFrom(create.ReturnType)) continue;
            if (create.Invoke(null, null) is Command suite && bench.Subcommands.All(s => s.Name != suite.Name))
                bench.Subcommands.Add(suite);
        }
        return bench;
    }

    static IEnumerable<Type> SafeTypes(Assembly a)
    {
        try { return a.GetTypes(); }
        catch (ReflectionTypeLoadException e) { return e.Types.Where(t => t is not null)!; }
    }
}
