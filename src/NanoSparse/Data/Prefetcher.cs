using System.Runtime.ExceptionServices;
using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// Builds the next batches of a <see cref="BatchSampler"/> on a dedicated background thread while the caller
/// computes the current step. Two slots (double buffering): the worker fills one while the other waits for
/// <see cref="Next"/>. The batches come in exactly the sampler's order, so a run with and without the
/// prefetcher sees the same data. <see cref="State"/> is the sampler state that reproduces the batch the next
/// call to <see cref="Next"/> returns, so a checkpoint taken between steps resumes exactly.
/// Allocation-free after construction. The sampler must not be used directly while the prefetcher lives.
/// </summary>
public sealed class Prefetcher : IDisposable
{
    sealed class Slot
    {
        public readonly int[] X, Y;
        public RngState StateBefore; // sampler state before this batch was drawn
        public Slot(int n) { X = new int[n]; Y = new int[n]; }
    }

    readonly BatchSampler _sampler;
    readonly Slot[] _slots;
    readonly object _lock = new();
    readonly Thread _thread;
    int _head;    // slot Next() takes from
    int _count;   // filled slots
    bool _busy;   // worker is drawing a batch outside the lock
    bool _stop;
    ExceptionDispatchInfo? _error;

    public int BatchSize => _sampler.BatchSize;
    public int SeqLen => _sampler.SeqLen;

    public Prefetcher(BatchSampler sampler)
    {
        _sampler = sampler ?? throw new ArgumentNullException(nameof(sampler));
        int n = sampler.BatchSize * sampler.SeqLen;
        _slots = [new Slot(n), new Slot(n)];
        _thread = new Thread(Run) { IsBackground = true, Name = "NanoSparse batch prefetch" };
        _thread.Start();
    }

    void Run()
    {
        while (true)
        {
            Slot slot;
            lock (_lock)
            {
                while (!_stop && (_count == _slots.Length || _error != null)) Monitor.Wait(_lock);
                if (_stop) return;
                slot = _slots[(_head + _count) % _slots.Length];
                _busy = true;
            }
            try
            {
                slot.StateBefore = _sampler.State;
                _sampler.Next(slot.X, slot.Y);
            }
            catch (Exception e)
            {
                lock (_lock) { _error = ExceptionDispatchInfo.Capture(e); _busy = false; Monitor.PulseAll(_lock); }
                continue;
            }
            lock (_lock)
            {
                _busy = false;
                _count++;
                Monitor.PulseAll(_lock);
            }
        }
    }

    /// <summary>Copies the next batch into x (B, T) and y (B, T); waits if the worker has not finished it.</summary>
    public void Next(Span<int> x, Span<int> y)
    {
        int n = BatchSize * SeqLen;
        if (x.Length != n) throw new ArgumentException($"x has {x.Length} elements; expected B*T = {n}", nameof(x));
        if (y.Length != n) throw new ArgumentException($"y has {y.Length} elements; expected B*T = {n}", nameof(y));
        lock (_lock)
        {
            WaitForHead();
            Slot slot = _slots[_head];
            slot.X.CopyTo(x);
            slot.Y.CopyTo(y);
            _head = (_head + 1) % _slots.Length;
            _count--;
            Monitor.PulseAll(_lock);
        }
    }

    void WaitForHead()
    {
        ObjectDisposedException.ThrowIf(_stop, this);
        while (_count == 0 && _error == null) Monitor.Wait(_lock);
        if (_count == 0) _error!.Throw();
    }

    /// <summary>
    /// Get: the sampler state that reproduces the batch the next <see cref="Next"/> returns (save it in a checkpoint).
    /// Set: discards prefetched batches and continues from that state.
    /// </summary>
    public RngState State
    {
        get
        {
            lock (_lock)
            {
                WaitForHead();
                return _slots[_head].StateBefore;
            }
        }
        set
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_stop, this);
                while (_busy) Monitor.Wait(_lock);
                _sampler.State = value;
                _count = 0;
                _error = null;
                Monitor.PulseAll(_lock);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_stop) return;
            _stop = true;
            Monitor.PulseAll(_lock);
        }
        _thread.Join();
    }
}
