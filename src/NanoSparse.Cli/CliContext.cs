using System.CommandLine;
using NanoSparse.Kernels;
using Spectre.Console;

namespace NanoSparse.Cli;

/// <summary>What every command needs: the writers, a Spectre console on stdout, and the global --threads option.</summary>
public sealed class CliContext
{
    public TextWriter Out { get; }
    public TextWriter Err { get; }
    public IAnsiConsole Console { get; }
    public bool Interactive { get; }

    public Option<int> ThreadsOption { get; } = new("--threads")
    {
        Description = "cap on kernel threads (0 = all cores)",
        Recursive = true,
        DefaultValueFactory = _ => 0,
    };

    public CliContext(TextWriter stdout, TextWriter stderr, bool interactive)
    {
        Out = stdout;
        Err = stderr;
        Interactive = interactive;
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(stdout),
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        // Redirected output (logs, tests) has no terminal width; don't wrap lines at Spectre's default 80 columns.
        if (!interactive) Console.Profile.Width = 200;
    }

    /// <summary>Applies the global --threads to the kernel thread pool; returns the value (0 = unchanged).</summary>
    public int ApplyThreads(ParseResult parse)
    {
        int threads = parse.GetValue(ThreadsOption);
        if (threads < 0) throw new UsageException($"--threads ({threads}) must be >= 0");
        if (threads > 0) KernelThreads.Max = threads;
        return threads;
    }
}
