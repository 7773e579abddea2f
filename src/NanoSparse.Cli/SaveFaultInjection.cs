using System.Diagnostics;
using System.Globalization;
using NanoSparse.IO;

namespace NanoSparse.Cli;

/// <summary>
/// For the crash tests only: NANOSPARSE_SAVE_FAULT makes checkpoint saves of this process fail on purpose.
///   kill:K            SIGKILL this process at the K-th step of the saves (1-based, see <see cref="RedoJournal"/>)
///   kill-after-us:N   SIGKILL it N microseconds after the first step of the first save, wherever the save is then
///   io:K              throw an IOException (as a full disk would) at the K-th step
///   trace             print every step on stderr as "save-step K: what"
/// Unset (the normal case), nothing is installed.
/// </summary>
static class SaveFaultInjection
{
    public const string Variable = "NANOSPARSE_SAVE_FAULT";

    public static void InstallFromEnvironment()
    {
        string? spec = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(spec)) return;
        string[] parts = spec.Split(':', 2);
        long Number() => parts.Length == 2 && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n >= 0
            ? n : throw new ArgumentException($"{Variable} is '{spec}', expected kill:K, kill-after-us:N, io:K or trace");
        int step = 0;
        switch (parts[0])
        {
            case "kill":
                long killAt = Number();
                RedoJournal.StepHook = _ => { if (++step == killAt) Process.GetCurrentProcess().Kill(); };
                break;
            case "io":
                long failAt = Number();
                RedoJournal.StepHook = what => { if (++step == failAt) throw new IOException($"No space left on device (injected at save step {step}: {what})"); };
                break;
            case "kill-after-us":
                long delayUs = Number();
                RedoJournal.StepHook = _ =>
                {
                    if (++step != 1) return;
                    var killer = new Thread(() =>
                    {
                        long deadline = Stopwatch.GetTimestamp() + delayUs * Stopwatch.Frequency / 1_000_000;
                        if (delayUs > 2000) Thread.Sleep(TimeSpan.FromMicroseconds(delayUs - 1000));
                        while (Stopwatch.GetTimestamp() < deadline) Thread.SpinWait(20);
                        Process.GetCurrentProcess().Kill();
                    }) { IsBackground = false };
                    killer.Start();
                };
                break;
            case "trace":
                RedoJournal.StepHook = what => Console.Error.WriteLine($"save-step {++step}: {what}");
                break;
            default:
                throw new ArgumentException($"{Variable} is '{spec}', expected kill:K, kill-after-us:N, io:K or trace");
        }
    }
}
