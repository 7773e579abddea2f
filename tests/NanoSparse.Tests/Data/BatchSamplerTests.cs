using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public class BatchSamplerTests : IDisposable
{
    const int Vocab = 1000;
    readonly TempDir _dir = new();
    readonly TokenFile _file;

    // tokens[i] = i mod 1000, so a window's content tells its offset.
    public BatchSamplerTests()
    {
        string path = _dir["train.bin"];
        TokenFileWriter.Write(path, Enumerable.Range(0, 20_000).Select(i => i % Vocab).ToArray(), TokenDtype.UInt16, Vocab);
        _file = TokenFile.Open(path, TokenDtype.UInt16, Vocab);
    }

    public void Dispose() { _file.Dispose(); _dir.Dispose(); }

    static (int[] X, int[] Y) Draw(BatchSampler s)
    {
        var x = new int[s.BatchSize * s.SeqLen];
        var y = new int[x.Length];
        s.Next(x, y);
        return (x, y);
    }

    [Fact]
    public void Targets_are_inputs_shifted_by_one_from_consecutive_windows()
    {
        const int B = 4, T = 16;
        var s = new BatchSampler(_file, B, T, seed: 7);
        for (int step = 0; step < 20; step++)
        {
            var (x, y) = Draw(s);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                {
                    Assert.Equal((x[b * T] + t) % Vocab, x[b * T + t]);
                    Assert.Equal((x[b * T + t] + 1) % Vocab, y[b * T + t]);
                }
        }
    }

    [Fact]
    public void Offsets_cover_exactly_zero_to_length_minus_T_minus_one()
    {
        using var dir = new TempDir();
        string path = dir["small.bin"];
        const int T = 8;
        TokenFileWriter.Write(path, Enumerable.Range(0, T + 3).ToArray(), TokenDtype.UInt16, 100); // offsets 0, 1, 2
        using var file = TokenFile.Open(path, TokenDtype.UInt16, 100);
        var s = new BatchSampler(file, 1, T, seed: 1);
        var seen = new HashSet<int>();
        for (int i = 0; i < 300; i++) seen.Add(Draw(s).X[0]);
        Assert.Equal([0, 1, 2], seen.Order());
    }

    [Fact]
    public void File_shorter_than_one_window_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new BatchSampler(_file, 1, 20_000, 1));
        Assert.Contains("20001", e.Message);
    }

    [Fact]
    public void Same_seed_gives_same_batches_and_other_seed_differs()
    {
        var a = new BatchSampler(_file, 3, 32, seed: 42);
        var b = new BatchSampler(_file, 3, 32, seed: 42);
        var c = new BatchSampler(_file, 3, 32, seed: 43);
        bool anyDiff = false;
        for (int i = 0; i < 10; i++)
        {
            var (xa, ya) = Draw(a);
            var (xb, yb) = Draw(b);
            Assert.Equal(xa, xb);
            Assert.Equal(ya, yb);
            anyDiff |= !xa.SequenceEqual(Draw(c).X);
        }
        Assert.True(anyDiff);
    }

    [Fact]
    public void Restoring_the_state_replays_the_following_batches()
    {
        var s = new BatchSampler(_file, 2, 16, seed: 5);
        for (int i = 0; i < 3; i++) Draw(s);
        var saved = s.State;
        var expected = Enumerable.Range(0, 5).Select(_ => Draw(s).X).ToList();
        var fresh = new BatchSampler(_file, 2, 16, seed: 999) { State = saved };
        foreach (var x in expected) Assert.Equal(x, Draw(fresh).X);
    }

    [Fact]
    public void Prefetcher_yields_exactly_the_sampler_sequence()
    {
        const int B = 4, T = 24;
        var reference = new BatchSampler(_file, B, T, seed: 11);
        using var pf = new Prefetcher(new BatchSampler(_file, B, T, seed: 11));
        var x = new int[B * T];
        var y = new int[B * T];
        for (int i = 0; i < 100; i++)
        {
            var (rx, ry) = Draw(reference);
            pf.Next(x, y);
            Assert.Equal(rx, x);
            Assert.Equal(ry, y);
        }
    }

    [Fact]
    public void Prefetcher_state_reproduces_the_next_batch_it_returns()
    {
        const int B = 2, T = 16;
        using var pf = new Prefetcher(new BatchSampler(_file, B, T, seed: 3));
        var x = new int[B * T];
        var y = new int[B * T];
        for (int i = 0; i < 7; i++) pf.Next(x, y);
        Thread.Sleep(20); // let the worker run ahead: the state must still be that of the next batch handed out
        var saved = pf.State;

        var resumed = new BatchSampler(_file, B, T, seed: 0) { State = saved };
        for (int i = 0; i < 5; i++)
        {
            pf.Next(x, y);
            var (rx, ry) = Draw(resumed);
            Assert.Equal(rx, x);
            Assert.Equal(ry, y);
        }

        // Setting the state discards what was prefetched and continues from there.
        pf.State = saved;
        var again = new BatchSampler(_file, B, T, seed: 0) { State = saved };
        for (int i = 0; i < 5; i++)
        {
            pf.Next(x, y);
            Assert.Equal(Draw(again).X, x);
        }
    }

    [Fact]
    public void Prefetcher_next_allocates_nothing_in_steady_state()
    {
        const int B = 4, T = 32;
        using var pf = new Prefetcher(new BatchSampler(_file, B, T, seed: 9));
        var x = new int[B * T];
        var y = new int[B * T];
        for (int i = 0; i < 100; i++) pf.Next(x, y); // warm-up, past the first release of mapped pages
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 200; i++) pf.Next(x, y); }));
    }

    [Fact]
    public void Sampler_next_allocates_nothing()
    {
        var s = new BatchSampler(_file, 4, 32, seed: 9);
        var x = new int[128];
        var y = new int[128];
        // Warm-up past the first release of mapped pages (every TrimIntervalBytes of reads): its first P/Invoke
        // call binds the native stub, which allocates once; the measured windows still include several releases.
        for (int i = 0; i < 100; i++) s.Next(x, y);
        Assert.Equal(0, Allocations.SteadyState(() => { for (int i = 0; i < 200; i++) s.Next(x, y); }));
    }

    [Fact]
    public void Prefetcher_surfaces_a_read_error_on_the_callers_thread()
    {
        using var dir = new TempDir();
        string path = dir["bad.bin"];
        TokenFileWriter.Write(path, Enumerable.Range(0, 100).Select(i => i == 50 ? 999 : 1).ToArray(), TokenDtype.UInt16, 1000);
        using var file = TokenFile.Open(path, TokenDtype.UInt16, 10); // vocab 10: id 999 is invalid
        using var pf = new Prefetcher(new BatchSampler(file, 8, 64, seed: 1));
        var e = Assert.Throws<InvalidDataException>(() =>
        {
            var x = new int[8 * 64];
            for (int i = 0; i < 100; i++) pf.Next(x, new int[8 * 64]);
        });
        Assert.Contains("id 999", e.Message);
    }

    [Fact]
    public void Disposing_the_prefetcher_stops_its_thread()
    {
        var pf = new Prefetcher(new BatchSampler(_file, 1, 8, seed: 1));
        pf.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pf.Next(new int[8], new int[8]));
        pf.Dispose(); // twice is fine
    }
}
