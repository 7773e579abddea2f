using System.CommandLine;
using NanoSparse.Cli.Commands;

namespace NanoSparse.Cli;

/// <summary>A usage mistake the parser cannot see (e.g. two options that exclude each other): exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

public static class Program
{
    public static int Main(string[] args)
    {
        SaveFaultInjection.InstallFromEnvironment();
        return Run(args, Console.Out, Console.Error, interactive: !Console.IsOutputRedirected);
    }

    /// <summary>
    /// The whole CLI, testable in-process. Returns the exit code: 0 success, 1 failure, 2 usage error. Every failure
    /// prints exactly one line <c>error: message</c> on <paramref name="stderr"/>.
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool interactive = false)
    {
        var cli = new CliContext(stdout, stderr, interactive);
        var root = BuildRoot(cli);
        ParseResult parse;
        try
        {
            parse = root.Parse(args);
        }
        catch (Exception e)
        {
            stderr.WriteLine("error: " + OneLine(e.Message));
            return 2;
        }
        if (parse.Errors.Count > 0)
        {
            // "Required command was not provided" accompanies an unknown command; the specific error says more.
            var error = parse.Errors.FirstOrDefault(e => !e.Message.StartsWith("Required command", StringComparison.Ordinal)) ?? parse.Errors[0];
            stderr.WriteLine("error: " + OneLine(error.Message) + " (see nanosparse --help)");
            return 2;
        }
        try
        {
            // The global --threads caps every kernel, also in commands (bench suites) that do not read it themselves.
            cli.ApplyThreads(parse);
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            stderr.WriteLine("error: " + OneLine(e.Message));
            return 2;
        }
        catch (Exception e)
        {
            stderr.WriteLine("error: " + OneLine(Describe(e)));
            return 1;
        }
    }

    public static RootCommand BuildRoot(CliContext cli)
    {
        var root = new RootCommand("nanosparse: train, sparsify and run GPT-style models on the CPU") { HelpName = "nanosparse" };
        root.Options.Add(cli.ThreadsOption);
        root.Subcommands.Add(PrepareCommand.Create(cli));
        root.Subcommands.Add(TrainCommand.Create(cli));
        root.Subcommands.Add(EvalCommand.Create(cli));
        root.Subcommands.Add(SampleCommand.Create(cli));
        root.Subcommands.Add(InspectCommand.Create(cli));
        root.Subcommands.Add(InteropCommands.CreateImportCommand());
        root.Subcommands.Add(InteropCommands.CreateExportCommand());
        root.Subcommands.Add(PruneStructuredCommand.Create(cli));
        root.Subcommands.Add(SparsifyCommand.Create(cli));
        root.Subcommands.Add(ImpCommand.Create(cli));
        root.Subcommands.Add(PruneCommand.Create(cli));
        root.Subcommands.Add(TealCommand.Create(cli));
        root.Subcommands.Add(CompareRunsCommand.Create(cli));
        root.Subcommands.Add(DstQualityCommand.Create(cli));
        root.Subcommands.Add(ProbeDataCommand.Create(cli));
        root.Subcommands.Add(ProbeCompareCommand.Create(cli));
        root.Subcommands.Add(RecallDataCommand.Create(cli));
        root.Subcommands.Add(CopyDataCommand.Create(cli));
        root.Subcommands.Add(DejaVuCommand.Create(cli));
        root.Subcommands.Add(BenchCommand.Create(cli));
        root.Subcommands.Add(GateCommand.Create(cli));
        return root;
    }

    static string Describe(Exception e)
    {
        // Unwrap reflection/aggregate wrappers: the inner message is the one that names the file or field.
        while (e is System.Reflection.TargetInvocationException or AggregateException && e.InnerException is not null)
            e = e.InnerException;
        if (e is OperationCanceledException) return "cancelled";
        // ArgumentException appends " (Parameter 'name')", a C# parameter name that means nothing to a CLI user.
        if (e is ArgumentException { ParamName: { } name } && e.Message.Contains($" (Parameter '{name}')", StringComparison.Ordinal))
            return e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal);
        return e.Message;
    }

    static string OneLine(string message) => string.Join(" ", message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
