using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y (M×N) = S·X with S in SELL (see <see cref="SellMatrix"/>), X (K×N) and Y row-major. Built for N = 1 (SpMV:
/// a sparse Linear at batch 1, e.g. one decoding step): per (slice, block) the block's 32 floats of x sit in two
/// Vector512 registers and each step fetches the x of 16 entries with one two-table permute (vpermt2ps) into the
/// slice's 16 row sums. For N &gt; 1 it does the same for each column of X in turn (X's columns are first copied into
/// contiguous zero-padded vectors); CSR is the faster format there.
/// Slices are split over threads by stored steps. Padded slots hold 0, and 0·x is 0 only for finite x: when x holds
/// an infinity or NaN, a slower exact path skips the padding (it reproduces what the entries alone give).
/// </summary>
public static unsafe class SellSpmm
{
    /// <summary>
    /// Steps (16 slots each) from which a second thread joins: a step costs ~2.9 cycles on Zen 4, so 4096 steps are
    /// ~3 µs on one core, about where CSR's SpMV goes parallel (16K nonzeros at ~1 cycle each).
    /// </summary>
    const long MinParallelSteps = 4096;

    [ThreadStatic] static float[]? _columns;

    public static void Multiply(SellMatrix s, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        int k = s.Cols;
        int kPadded = s.Blocks * SellMatrix.BlockWidth;
        fixed (byte* steps = s.Steps)
        fixed (int* stepStart = s.StepStart, groupStart = s.GroupStart)
        fixed (byte* indices = s.Indices)
        fixed (float* values = s.Values, px = x, py = y)
        {
            var args = new Args
            {
                Steps = steps, StepStart = stepStart, GroupStart = groupStart, Indices = indices, Values = values, Y = py,
                Rows = s.Rows, Slices = s.Slices, Blocks = s.Blocks, N = n, X = px, Ldx = kPadded,
                Exact = !SpmvInput.AllFinite(px, (long)k * n),
            };
            if (n > 1 || k != kPadded)
            {
                // Column j of X as a contiguous vector of kPadded floats (zeros past K, so the last block's loads stay
                // inside the buffer), 64-byte aligned.
                long need = (long)kPadded * n + 16;
                if (_columns is null || _columns.Length < need) _columns = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
                float* cols = (float*)(((nint)Unsafe.AsPointer(ref _columns[0]) + 63) & ~(nint)63);
                for (int j = 0; j < n; j++)
                {
                    float* c = cols + (long)j * kPadded;
                    if (n == 1) Buffer.MemoryCopy(px, c, 4L * k, 4L * k);
                    else for (int r = 0; r < k; r++) c[r] = px[(long)r * n + j];
                    for (int r = k; r < kPadded; r++) c[r] = 0;
                }
                args.X = cols;
            }
            long work = (long)s.StepStart[^1] * n;
            args.Chunks = work < MinParallelSteps ? 1 : SpmmMicroKernel.ChunkCount(args.Slices, work, 0);
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public byte* Steps, Indices;
        public int* StepStart, GroupStart;
        public float* Values, X, Y;
        public int Rows, Slices, Blocks, N, Ldx, Chunks;
        public bool Exact;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int first = SpmmMicroKernel.ChunkStart(a.StepStart, a.Slices, chunk, a.Chunks);
        int last = SpmmMicroKernel.ChunkStart(a.StepStart, a.Slices, chunk + 1, a.Chunks);
        float* sums = stackalloc float[SellMatrix.SliceHeight];
        bool fast = Avx512F.IsSupported && !a.Exact;
        for (int s = first; s < last; s++)
        {
            int lanes = Math.Min(SellMatrix.SliceHeight, a.Rows - s * SellMatrix.SliceHeight);
            byte* steps = a.Steps + (long)s * a.Blocks;
            byte* idx = a.Indices + 64L * a.GroupStart[s];
            float* val = a.Values + (long)SellMatrix.SliceHeight * a.StepStart[s];
            for (int j = 0; j < a.N; j++)
            {
                float* x = a.X + (long)j * a.Ldx;
                if (fast)
                {
                    var sum = Slice(steps, a.Blocks, idx, val, x);
                    if (a.N == 1 && lanes == SellMatrix.SliceHeight) { sum.Store(a.Y + (long)s * SellMatrix.SliceHeight); continue; }
                    sum.Store(sums);
                }
                else
                    SliceExact(steps, a.Blocks, idx, val, x, sums);
                for (int l = 0; l < lanes; l++) a.Y[((long)s * SellMatrix.SliceHeight + l) * a.N + j] = sums[l];
            }
        }
    }

    /// <summary>The 16 row sums of one slice: for each block, x's 32 floats in two registers, one permute per step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Slice(byte* steps, int blocks, byte* idx, float* val, float* x)
    {
        // Four sums, one per step of a group: a step's FMA then waits on the one four steps back, not the previous.
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++, x += SellMatrix.BlockWidth)
        {
            int t = steps[b];
            if (t == 0) continue;
            var lo = Vector512.Load(x);
            var hi = Vector512.Load(x + 16);
            for (; t >= 4; t -= 4, idx += 64, val += 64)
            {
                var q = Vector512.Load((int*)idx);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(val), Avx512F.PermuteVar16x32x2(lo, q, hi), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 16), Avx512F.PermuteVar16x32x2(lo, Vector512.ShiftRightLogical(q, 8), hi), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 32), Avx512F.PermuteVar16x32x2(lo, Vector512.ShiftRightLogical(q, 16), hi), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 48), Avx512F.PermuteVar16x32x2(lo, Vector512.ShiftRightLogical(q, 24), hi), a3);
            }
            if (t > 0)
            {
                // The permute reads only the low 5 bits of each 32-bit lane, so the byte of step u is at bits 8u..8u+4.
                var q = Vector512.Load((int*)idx);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(val), Avx512F.PermuteVar16x32x2(lo, q, hi), a0);
                if (t > 1) a1 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 16), Avx512F.PermuteVar16x32x2(lo, Vector512.ShiftRightLogical(q, 8), hi), a1);
                if (t > 2) a2 = Vector512.FusedMultiplyAdd(Vector512.Load(val + 32), Avx512F.PermuteVar16x32x2(lo, Vector512.ShiftRightLogical(q, 16), hi), a2);
                idx += 64;
                val += 16 * t;
            }
        }
        return (a0 + a1) + (a2 + a3);
    }

    /// <summary>One slice, entries only (padding skipped): for x with infinities or NaN, and without AVX-512.</summary>
    static void SliceExact(byte* steps, int blocks, byte* idx, float* val, float* x, float* sums)
    {
        for (int l = 0; l < SellMatrix.SliceHeight; l++) sums[l] = 0;
        for (int b = 0; b < blocks; b++, x += SellMatrix.BlockWidth)
        {
            int t = steps[b];
            for (int u = 0; u < t; u++)
            {
                byte* group = idx + 64 * (u / SellMatrix.StepsPerGroup) + u % SellMatrix.StepsPerGroup;
                float* v = val + SellMatrix.SliceHeight * u;
                for (int l = 0; l < SellMatrix.SliceHeight; l++)
                {
                    byte code = group[4 * l];
                    if (code != SellMatrix.Padding) sums[l] += v[l] * x[code];
                }
            }
            idx += 64 * ((t + SellMatrix.StepsPerGroup - 1) / SellMatrix.StepsPerGroup);
            val += SellMatrix.SliceHeight * t;
        }
    }
}
