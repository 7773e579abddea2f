using System.CommandLine;

namespace NanoSparse.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("nanosparse: train, sparsify and run GPT-style models on the CPU");
        var bench = new Command("bench", "benchmarks that run NanoSparse beside its peers and print ratios");
        root.Subcommands.Add(bench);
        return root.Parse(args).Invoke();
    }
}
