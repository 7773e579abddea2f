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

    // The job being run: items [0, _count) are claimed one by one through _next.
    static delegate*<void*, int, void> _body;
    static void* _args;
    static int _count;
    static int _next;
    static int _pending;          // workers that have not finished the current job
    static int _activeWorkers;    // workers taking part in the current job
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
            _count = count;
            _next = 0;
            _activeWorkers = threads - 1;
            Volatile.Write(ref _pending, threads - 1);
            for (int w = 0; w < threads - 1; w++) _workers[w].Signal();

            _error = null;
            _insideRegion = true;
            try { Drain(); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            finally { _insideRegion = false; }

            var spinner = new SpinWait();
            while (Volatile.Read(ref _pending) != 0) spinner.SpinOnce(-1);
            _body = null;
            _args = null;
            var error = Interlocked.Exchange(ref _error, null);
            if (error != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Drain()
    {
        var body = _body;
        var args = _args;
        int count = _count;
        while (true)
        {
            int i = Interlocked.Increment(ref _next) - 1;
            if (i >= count) break;
            body(args, i);
        }
    }

    static void EnsureWorkers(int needed)
    {
        if (_workers.Length >= needed) return;
        var grown = new Worker[needed];
        Array.Copy(_workers, grown, _workers.Length);
        for (int w = _workers.Length; w < needed; w++) grown[w] = new Worker(w);
        _workers = grown;
    }

    sealed class Worker
    {
        readonly SemaphoreSlim _wake = new(0);
        volatile bool _signalled;

        public Worker(int index)
        {
            var thread = new Thread(Loop) { IsBackground = true, Name = $"nanosparse-kernel-{index}" };
            thread.Start();
        }

        public void Signal()
        {
            _signalled = true;
            _wake.Release();
        }

        void Loop()
        {
            _insideRegion = true;
            while (true)
            {
                // Spin briefly before blocking: a training step starts many short regions back to back.
                var spinner = new SpinWait();
                for (int s = 0; s < 200 && !_signalled; s++) spinner.SpinOnce(-1);
                _wake.Wait();
                _signalled = false;
                try { Drain(); }
                catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
                finally { Interlocked.Decrement(ref _pending); }
            }
        }
    }
}
