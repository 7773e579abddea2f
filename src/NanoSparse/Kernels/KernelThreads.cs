using System.Runtime.CompilerServices;

namespace NanoSparse.Kernels;

/// <summary>
/// The one place that decides how kernels use threads. A fixed set of worker threads is started once;
/// <see cref="For{TArgs}"/> hands them a range of work items through a function pointer and a pointer to the
/// caller's argument struct, so a parallel region allocates nothing (the training step must allocate nothing).
/// The calling thread takes part in the work. Nested calls from inside a region run serially. An exception in any
/// item is rethrown on the calling thread once every thread has left the region.
/// </summary>
public static unsafe class KernelThreads
{
    static int _max = Environment.ProcessorCount;
    static Worker[] _workers = [];
    static readonly object Gate = new();

    // The job being run: its items [0, count), split into one contiguous range per thread (thread 0 is the caller,
    // worker w is thread w + 1). A thread claims its own range's items in order through its cursor, then steals from
    // the other ranges through theirs, so every item runs exactly once. Own ranges first: a kernel called again with
    // the same shape (the same layer next step, a benchmark's repetitions) gives each thread the same rows, whose
    // operands are still in that core's L2; items handed out first-come-first-served land on either core each call.
    static delegate*<void*, int, void> _body;
    static void* _args;
    static int _threads;
    // Thread t's cursor is _cursor[t·Stride] and its range ends at _end[t·Stride]: one cache line per thread.
    const int Stride = 16;
    static int[] _cursor = new int[Stride];
    static int[] _end = new int[Stride];
    // 1 while the caller accepts helpers for the current job. A worker counts itself in _joined, then checks _open:
    // the caller closes the job once it has no items left to claim and waits only for the workers that joined. A
    // worker that was not scheduled in time (another process on its core, or both threads on one core) therefore
    // costs nothing: the caller has run its items, and the late worker finds the job closed and backs off.
    static int _open;
    static int _joined;
    static Exception? _error;     // the first exception an item of the current job threw

    [ThreadStatic] static bool _insideRegion;

    /// <summary>Upper bound on the threads kernels use (the caller included). Set by --threads.</summary>
    public static int Max
    {
        get => _max;
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value), value, "thread count must be at least 1");
            _max = value;
        }
    }

    /// <summary>True while the current thread runs inside a parallel region.</summary>
    public static bool InsideRegion => _insideRegion;

    /// <summary>
    /// Runs body(args, i) for every i in [0, count), spread over at most <see cref="Max"/> threads.
    /// <paramref name="args"/> must stay alive (it lives on the caller's stack) until this returns, which it does
    /// only once every item has run.
    /// </summary>
    public static void For<TArgs>(int count, ref TArgs args, delegate*<ref TArgs, int, void> body) where TArgs : unmanaged
    {
        if (count <= 0) return;
        int threads = Math.Min(_max, count);
        if (threads <= 1 || _insideRegion)
        {
            for (int i = 0; i < count; i++) body(ref args, i);
            return;
        }
        fixed (TArgs* p = &args)
            Run(count, threads, p, (delegate*<void*, int, void>)body);
    }

    /// <summary>The number of threads a region of <paramref name="count"/> items would use now.</summary>
    public static int ThreadsFor(int count) => _insideRegion ? 1 : Math.Max(1, Math.Min(_max, count));

    static void Run(int count, int threads, void* args, delegate*<void*, int, void> body)
    {
        lock (Gate)
        {
            EnsureWorkers(threads - 1);
            _body = body;
            _args = args;
            _threads = threads;
            for (int t = 0; t < threads; t++)
            {
                _cursor[t * Stride] = (int)((long)count * t / threads);
                _end[t * Stride] = (int)((long)count * (t + 1) / threads);
            }
            _error = null;
            Volatile.Write(ref _open, 1);
            for (int w = 0; w < threads - 1; w++) _workers[w].Signal();

            _insideRegion = true;
            try { Drain(0); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            finally { _insideRegion = false; }

            // Every item is claimed (Drain took the rest): close the job (a full fence, paired with the workers'
            // increment of _joined before they read _open), then wait for the workers still running items.
            Interlocked.Exchange(ref _open, 0);
            WaitForWorkers();
            _body = null;
            _args = null;
            var error = Interlocked.Exchange(ref _error, null);
            if (error != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        }
    }

    /// <summary>
    /// Polls with pause while the workers finish on the other cores (a sched_yield in flight when the last one finishes
    /// would delay the return by a system call), but yields after <see cref="YieldTicks"/>: when another process keeps
    /// a core busy the scheduler may queue a worker on this core, and a caller that never yields would hold it off
    /// until the next scheduler tick (4 ms here: such stalls showed as samples of exactly 4.0 ms).
    /// </summary>
    static void WaitForWorkers()
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        while (Volatile.Read(ref _joined) != 0)
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() - start < YieldTicks) Thread.SpinWait(4);
            else Thread.Yield();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Drain(int self)
    {
        var body = _body;
        var args = _args;
        int threads = _threads;
        for (int k = 0; k < threads; k++)
        {
            int t = self + k < threads ? self + k : self + k - threads;
            int end = _end[t * Stride];
            while (true)
            {
                int i = Interlocked.Increment(ref _cursor[t * Stride]) - 1;
                if (i >= end) break;
                body(args, i);
            }
        }
    }

    static void EnsureWorkers(int needed)
    {
        if (_workers.Length >= needed) return;
        _cursor = new int[Stride * (needed + 1)];
        _end = new int[Stride * (needed + 1)];
        var grown = new Worker[needed];
        Array.Copy(_workers, grown, _workers.Length);
        for (int w = _workers.Length; w < needed; w++) grown[w] = new Worker(w);
        _workers = grown;
    }

    /// <summary>
    /// How long an idle worker polls for the next job before it blocks: regions of a training step or of repeated
    /// small kernels (SpMV, ~10 µs) follow each other within microseconds, and a blocked worker costs a futex wake
    /// (several µs) where a polling one reacts in well under one. After this it sleeps, so an idle process burns no CPU.
    /// </summary>
    static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 10_000; // 100 µs

    /// <summary>Pure polling (no yield) lasts at most this long at a time: 20 µs.</summary>
    static readonly long YieldTicks = System.Diagnostics.Stopwatch.Frequency / 50_000;

    sealed class Worker
    {
        readonly SemaphoreSlim _wake = new(0);
        readonly int _self;
        int _signalled;   // 1: a job is waiting for this worker
        int _sleeping;    // 1: the worker is (about to be) blocked in _wake; whoever resets it to 0 owns the wake-up

        public Worker(int index)
        {
            _self = index + 1;
            var thread = new Thread(Loop) { IsBackground = true, Name = $"nanosparse-kernel-{index}" };
            thread.Start();
        }

        public void Signal()
        {
            Volatile.Write(ref _signalled, 1);
            // Full fence between the write above and the read of _sleeping (Dekker with the worker's side below).
            if (Interlocked.Exchange(ref _sleeping, 0) == 1) _wake.Release();
        }

        void Loop()
        {
            _insideRegion = true;
            while (true)
            {
                WaitForJob();
                Volatile.Write(ref _signalled, 0);
                Interlocked.Increment(ref _joined);
                try
                {
                    // A signal can outlive its job (the caller finished without this worker); then the job is closed,
                    // or a later job is open and this worker helps with it, if it is one of that job's threads.
                    if (Volatile.Read(ref _open) != 0 && _self < _threads) Drain(_self);
                }
                catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
                finally { Interlocked.Decrement(ref _joined); }
            }
        }

        void WaitForJob()
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp(), yielded = start;
            while (Volatile.Read(ref _signalled) == 0)
            {
                Thread.SpinWait(4);
                long now = System.Diagnostics.Stopwatch.GetTimestamp();
                if (now - yielded >= YieldTicks)
                {
                    // Let a thread queued on this core (the caller, if the scheduler put both here) run.
                    Thread.Yield();
                    yielded = now;
                }
                if (now - start < SpinTicks) continue;
                Interlocked.Exchange(ref _sleeping, 1);
                if (Volatile.Read(ref _signalled) == 0) { _wake.Wait(); return; }
                // A job arrived while going to sleep: take the flag back, unless Signal already took it (then its
                // Release is on the way and must be consumed, or the next sleep would return at once).
                if (Interlocked.Exchange(ref _sleeping, 0) == 0) _wake.Wait();
                return;
            }
        }
    }
}
