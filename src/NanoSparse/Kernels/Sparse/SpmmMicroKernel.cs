using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// The inner loops every sparse·dense kernel shares. One output row tile y[0..w) (w ≤ 128 columns) is
///   y[j] = (add ? y[j] : 0) + Σ_p values[p] · x[index[p]·ldx + j]
/// i.e. a weighted sum of rows of a row-major X, which are contiguous, so each nonzero is a broadcast and
/// w/16 Vector512 FMAs. The accumulators live in up to 8 zmm registers across all of the row's nonzeros and are
/// stored once at the end: Y is written once per tile instead of once per nonzero (this is the gain over a
/// scatter, and why callers tile N to ≤ 128 columns).
/// Kernel methods in this folder are [AggressiveOptimization]: tier-0 code runs Vector512 operations as calls,
/// ~10x slower, and a kernel called a few times (a benchmark, the first training steps) would never tier up.
/// </summary>
internal static unsafe class SpmmMicroKernel
{
    /// <summary>Columns of Y per tile: 128 (8 registers) while a K×128 panel of X fits in L2, narrower for long K.</summary>
    public static int TileWidth(int k) => k <= 1280 ? 128 : 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int At<TIndex>(TIndex* index, int p) where TIndex : unmanaged, IBinaryInteger<TIndex> => int.CreateTruncating(index[p]);

    /// <summary>y[0..w) (=|+=) Σ_p values[p]·x[index[p]·ldx + 0..w).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowTile<TIndex>(TIndex* index, float* values, int count, float* x, int ldx, float* y, int w, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 128 <= w; j += 128) Row8(index, values, count, x + j, ldx, y + j, add);
            if (j + 64 <= w) { Row4(index, values, count, x + j, ldx, y + j, add); j += 64; }
            if (j + 32 <= w) { Row2(index, values, count, x + j, ldx, y + j, add); j += 32; }
            if (j + 16 <= w) { Row1(index, values, count, x + j, ldx, y + j, add); j += 16; }
        }
        for (; j < w; j++)
        {
            float s = add ? y[j] : 0;
            for (int p = 0; p < count; p++) s += values[p] * x[(long)At(index, p) * ldx + j];
            y[j] = s;
        }
    }

    /// <summary>
    /// <paramref name="count"/> rows of a 32-column tile: y[r·ldy + 0..32) (=|+=) Σ_p values[p]·panel[index[p]·32 + 0..32)
    /// over p in [split[r·stride], split[r·stride + 1]) (stride 1 over row pointers: whole rows), with panel a
    /// 64-byte-aligned copy of X's 32 columns (row stride 32, so a nonzero's partner is two aligned vectors at index·128
    /// bytes). Four nonzeros per step into eight accumulators: an FMA's 4-cycle latency at two FMAs a cycle needs eight
    /// independent chains (two nonzeros into four accumulators capped the loop at one FMA a cycle); 16-bit indices come
    /// four to a 64-bit load. Measured on Zen 5 (scratch, one thread, 90% sparse 3072×768, N = 256, best of 100 rounds):
    /// 1.50 ms against 1.66 ms for two nonzeros per step; 768×3072 (K = 3072, the panel in L2) 1.94 against 1.98 ms.
    /// The row loop is here rather than one call per row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsNarrow<TIndex>(int* split, int stride, int count, TIndex* index, float* values, float* panel, float* y, int ldy, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        for (int row = 0; row < count; row++, split += stride)
        {
            int p = split[0], end = split[1];
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
            for (; p + 3 < end; p += 4)
            {
                float* r, s, t, u;
                if (typeof(TIndex) == typeof(ushort))
                {
                    ulong q = *(ulong*)((ushort*)index + p);
                    r = panel + ((nint)(q & 0xFFFF) << 5);
                    s = panel + ((nint)((q >> 16) & 0xFFFF) << 5);
                    t = panel + ((nint)((q >> 32) & 0xFFFF) << 5);
                    u = panel + ((nint)(q >> 48) << 5);
                }
                else
                {
                    r = panel + ((nint)(uint)At(index, p) << 5);
                    s = panel + ((nint)(uint)At(index, p + 1) << 5);
                    t = panel + ((nint)(uint)At(index, p + 2) << 5);
                    u = panel + ((nint)(uint)At(index, p + 3) << 5);
                }
                var vr = Vector512.Create(values[p]);
                var vs = Vector512.Create(values[p + 1]);
                var vt = Vector512.Create(values[p + 2]);
                var vu = Vector512.Create(values[p + 3]);
                a0 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r), a0);
                a1 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 16), a1);
                b0 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s), b0);
                b1 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 16), b1);
                c0 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t), c0);
                c1 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 16), c1);
                d0 = Vector512.FusedMultiplyAdd(vu, Vector512.LoadAligned(u), d0);
                d1 = Vector512.FusedMultiplyAdd(vu, Vector512.LoadAligned(u + 16), d1);
            }
            for (; p < end; p++)
            {
                float* r = panel + ((nint)(uint)At(index, p) << 5);
                var v = Vector512.Create(values[p]);
                a0 = Vector512.FusedMultiplyAdd(v, Vector512.LoadAligned(r), a0);
                a1 = Vector512.FusedMultiplyAdd(v, Vector512.LoadAligned(r + 16), a1);
            }
            float* yi = y + (long)row * ldy;
            a0 = (a0 + b0) + (c0 + d0);
            a1 = (a1 + b1) + (c1 + d1);
            if (add) { a0 += Vector512.Load(yi); a1 += Vector512.Load(yi + 16); }
            a0.Store(yi);
            a1.Store(yi + 16);
        }
    }

    /// <summary>
    /// As <see cref="RowsNarrow"/> for a 64-column panel (row stride 64): four vectors per nonzero, so each index and
    /// value load feeds four FMAs; four nonzeros per step into sixteen accumulators.
    /// A row's last 1–3 nonzeros take one more step of the same shape instead of a loop of single nonzeros: the slots
    /// past the row's end read <paramref name="zero"/> (64 zero floats, 64-byte aligned) with weight 0, so they add exact
    /// zeros whatever X holds (an infinite x never meets a padded slot). The single-nonzero loop cost a mispredicted exit
    /// and a chain of dependent FMAs per row. Measured on Zen 5 (scratch harness alternating both kernels, one thread,
    /// best of 100 calls per 64-token panel, machine shared): 90% sparse 3072×768 0.377 against 0.419 ms, 768×3072 0.452
    /// against 0.481 ms; 80% sparse 3072×768 0.791 against 0.826 ms.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsWide<TIndex>(int* split, int stride, int count, TIndex* index, float* values, float* panel, float* zero, float* y, int ldy, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        for (int row = 0; row < count; row++, split += stride)
        {
            int p = split[0], end = split[1];
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            Vector512<float> c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
            for (; p + 3 < end; p += 4)
            {
                float* r, s, t, u;
                if (typeof(TIndex) == typeof(ushort))
                {
                    ulong q = *(ulong*)((ushort*)index + p);
                    r = panel + ((nint)(q & 0xFFFF) << 6);
                    s = panel + ((nint)((q >> 16) & 0xFFFF) << 6);
                    t = panel + ((nint)((q >> 32) & 0xFFFF) << 6);
                    u = panel + ((nint)(q >> 48) << 6);
                }
                else
                {
                    r = panel + ((nint)(uint)At(index, p) << 6);
                    s = panel + ((nint)(uint)At(index, p + 1) << 6);
                    t = panel + ((nint)(uint)At(index, p + 2) << 6);
                    u = panel + ((nint)(uint)At(index, p + 3) << 6);
                }
                var vr = Vector512.Create(values[p]);
                var vs = Vector512.Create(values[p + 1]);
                var vt = Vector512.Create(values[p + 2]);
                var vu = Vector512.Create(values[p + 3]);
                a0 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r), a0);
                a1 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 48), a3);
                b0 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s), b0);
                b1 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 16), b1);
                b2 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 32), b2);
                b3 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 48), b3);
                c0 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t), c0);
                c1 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 16), c1);
                c2 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 32), c2);
                c3 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 48), c3);
                d0 = Vector512.FusedMultiplyAdd(vu, Vector512.LoadAligned(u), d0);
                d1 = Vector512.FusedMultiplyAdd(vu, Vector512.LoadAligned(u + 16), d1);
                d2 = Vector512.FusedMultiplyAdd(vu, Vector512.LoadAligned(u + 32), d2);
                d3 = Vector512.FusedMultiplyAdd(vu, Vector512.LoadAligned(u + 48), d3);
            }
            int rest = end - p;   // 0..3
            if (rest > 0)
            {
                // Slots 1 and 2 read entries p + 1, p + 2 where they are the row's, else entry p again, and then take
                // the zero row with weight 0 instead (masks, not branches: the JIT made Math.Min and ?: into jumps
                // that mispredict with the row lengths; the masked weight keeps an infinite one from adding NaN).
                int one = rest >> 1, two = rest & one;                    // rest 1, 2, 3: one = 0, 1, 1; two = 0, 0, 1
                int keep1 = -one, keep2 = -two;                           // all ones where the slot is a real nonzero
                int p1 = p + one, p2 = p + (two << 1);
                float* r = panel + ((nint)(uint)At(index, p) << 6);
                float* s = RowOrZero(panel + ((nint)(uint)At(index, p1) << 6), zero, keep1);
                float* t = RowOrZero(panel + ((nint)(uint)At(index, p2) << 6), zero, keep2);
                var vr = Vector512.Create(values[p]);
                var vs = Vector512.Create(WeightOrZero(values[p1], keep1));
                var vt = Vector512.Create(WeightOrZero(values[p2], keep2));
                a0 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r), a0);
                a1 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 48), a3);
                b0 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s), b0);
                b1 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 16), b1);
                b2 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 32), b2);
                b3 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 48), b3);
                c0 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t), c0);
                c1 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 16), c1);
                c2 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 32), c2);
                c3 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 48), c3);
            }
            float* yi = y + (long)row * ldy;
            a0 = (a0 + b0) + (c0 + d0);
            a1 = (a1 + b1) + (c1 + d1);
            a2 = (a2 + b2) + (c2 + d2);
            a3 = (a3 + b3) + (c3 + d3);
            if (add) { a0 += Vector512.Load(yi); a1 += Vector512.Load(yi + 16); a2 += Vector512.Load(yi + 32); a3 += Vector512.Load(yi + 48); }
            a0.Store(yi);
            a1.Store(yi + 16);
            a2.Store(yi + 32);
            a3.Store(yi + 48);
        }
    }

    /// <summary>
    /// As <see cref="RowsWide"/> over one K block of a 64-column panel (16-bit indices; the split table's entries b and
    /// b + 1 of each row, stride nb + 1): y[r·64 + 0..64) (=|+=) Σ_p values[p]·panel[index[p]·64 + 0..64). A 256-column
    /// block holds 26 nonzeros per row at 90% (a third to a twelfth of a whole row's), so the per-row costs weigh more:
    /// two nonzeros per step into eight accumulators (eight FMA chains, enough for two FMAs a cycle), y loaded into the
    /// first four when adding (no separate add at the end), and the row's last nonzero, if any, in one more slot that
    /// otherwise reads <paramref name="zero"/> with weight 0 (a mask, not a branch: the count is odd half the time).
    /// Called by CsrSpmmTokenMajor whenever K is in blocks, RowBlock rows at a time, so y stays in L1/L2 while the
    /// panel's block is read (level with or faster than RowsWide over all rows at 50% and 80% too). Measured against two
    /// nonzeros a step, four a step into the same eight accumulators (the last 1–3 in masked slots) was slower (scratch
    /// harness, Zen 4, 90%, medians of 40 calls: 3072×768 0.469 against 0.445 ms, 768×3072 0.509 against 0.492).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsWideBlock(int* split, int stride, int count, ushort* index, float* values, float* panel, float* zero, float* y, bool add)
    {
        for (int row = 0; row < count; row++, split += stride)
        {
            int p = split[0], end = split[1];
            float* yi = y + (long)row * 64;
            Vector512<float> a0, a1, a2, a3;
            if (add) { a0 = Vector512.Load(yi); a1 = Vector512.Load(yi + 16); a2 = Vector512.Load(yi + 32); a3 = Vector512.Load(yi + 48); }
            else a0 = a1 = a2 = a3 = Vector512<float>.Zero;
            Vector512<float> b0 = Vector512<float>.Zero, b1 = b0, b2 = b0, b3 = b0;
            for (; p + 1 < end; p += 2)
            {
                uint q = *(uint*)(index + p);
                float* r = panel + ((nint)(q & 0xFFFF) << 6);
                float* s = panel + ((nint)(q >> 16) << 6);
                var vr = Vector512.Create(values[p]);
                var vs = Vector512.Create(values[p + 1]);
                a0 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r), a0);
                a1 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(vr, Vector512.LoadAligned(r + 48), a3);
                b0 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s), b0);
                b1 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 16), b1);
                b2 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 32), b2);
                b3 = Vector512.FusedMultiplyAdd(vs, Vector512.LoadAligned(s + 48), b3);
            }
            LastSlotAndStore(p, end, index, values, panel, zero, a0, a1, a2, a3, b0, b1, b2, b3, yi);
        }
    }

    /// <summary>
    /// RowsWideBlock's end of a row (also CsrBackwardTokenMajor's): end − p is 0 or 1; one more slot into (a0..a3), then
    /// yi = a + b. keep: all ones when entry p is the row's; else the slot reads entry p − 1 (an entry of this or an
    /// earlier row, or entry 0: never past the arrays, which hold at least one nonzero) under weight 0 and the zero row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void LastSlotAndStore(int p, int end, ushort* index, float* values, float* panel, float* zero,
        Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3,
        Vector512<float> b0, Vector512<float> b1, Vector512<float> b2, Vector512<float> b3, float* yi)
    {
        int keep = p - end;
        int at = p - 1 - keep;
        at &= ~(at >> 31);
        float* t = RowOrZero(panel + ((nint)index[at] << 6), zero, keep);
        var vt = Vector512.Create(WeightOrZero(values[at], keep));
        a0 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t), a0);
        a1 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 16), a1);
        a2 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 32), a2);
        a3 = Vector512.FusedMultiplyAdd(vt, Vector512.LoadAligned(t + 48), a3);
        (a0 + b0).Store(yi);
        (a1 + b1).Store(yi + 16);
        (a2 + b2).Store(yi + 32);
        (a3 + b3).Store(yi + 48);
    }

    /// <summary><paramref name="row"/> where <paramref name="keep"/> is all ones, else <paramref name="zero"/>: a padded slot's operand, without a branch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float* RowOrZero(float* row, float* zero, nint keep) => (float*)((nint)zero ^ (((nint)row ^ (nint)zero) & keep));

    /// <summary><paramref name="w"/> where <paramref name="keep"/> is all ones, else +0: a padded slot's weight (so an infinite w never meets the zero row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float WeightOrZero(float w, int keep) => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(w) & keep);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row8<TIndex>(TIndex* index, float* values, int count, float* x, int ldx, float* y, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a0, a1, a2, a3, a4, a5, a6, a7;
        if (add)
        {
            a0 = Vector512.Load(y); a1 = Vector512.Load(y + 16); a2 = Vector512.Load(y + 32); a3 = Vector512.Load(y + 48);
            a4 = Vector512.Load(y + 64); a5 = Vector512.Load(y + 80); a6 = Vector512.Load(y + 96); a7 = Vector512.Load(y + 112);
        }
        else a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector512<float>.Zero;
        for (int p = 0; p < count; p++)
        {
            float* r = x + (long)At(index, p) * ldx;
            var v = Vector512.Create(values[p]);
            a0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r), a0);
            a1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 48), a3);
            a4 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 64), a4);
            a5 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 80), a5);
            a6 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 96), a6);
            a7 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 112), a7);
        }
        a0.Store(y); a1.Store(y + 16); a2.Store(y + 32); a3.Store(y + 48);
        a4.Store(y + 64); a5.Store(y + 80); a6.Store(y + 96); a7.Store(y + 112);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row4<TIndex>(TIndex* index, float* values, int count, float* x, int ldx, float* y, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a0, a1, a2, a3;
        if (add) { a0 = Vector512.Load(y); a1 = Vector512.Load(y + 16); a2 = Vector512.Load(y + 32); a3 = Vector512.Load(y + 48); }
        else a0 = a1 = a2 = a3 = Vector512<float>.Zero;
        for (int p = 0; p < count; p++)
        {
            float* r = x + (long)At(index, p) * ldx;
            var v = Vector512.Create(values[p]);
            a0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r), a0);
            a1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 48), a3);
        }
        a0.Store(y); a1.Store(y + 16); a2.Store(y + 32); a3.Store(y + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row2<TIndex>(TIndex* index, float* values, int count, float* x, int ldx, float* y, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a0, a1;
        if (add) { a0 = Vector512.Load(y); a1 = Vector512.Load(y + 16); }
        else a0 = a1 = Vector512<float>.Zero;
        // Two nonzeros per iteration: with only 2 accumulators the FMA latency would otherwise stall the loop.
        Vector512<float> b0 = Vector512<float>.Zero, b1 = Vector512<float>.Zero;
        int p = 0;
        for (; p + 1 < count; p += 2)
        {
            float* r = x + (long)At(index, p) * ldx;
            float* s = x + (long)At(index, p + 1) * ldx;
            var v = Vector512.Create(values[p]);
            var u = Vector512.Create(values[p + 1]);
            a0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r), a0);
            a1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 16), a1);
            b0 = Vector512.FusedMultiplyAdd(u, Vector512.Load(s), b0);
            b1 = Vector512.FusedMultiplyAdd(u, Vector512.Load(s + 16), b1);
        }
        if (p < count)
        {
            float* r = x + (long)At(index, p) * ldx;
            var v = Vector512.Create(values[p]);
            a0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r), a0);
            a1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(r + 16), a1);
        }
        (a0 + b0).Store(y); (a1 + b1).Store(y + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row1<TIndex>(TIndex* index, float* values, int count, float* x, int ldx, float* y, bool add)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        Vector512<float> a0 = add ? Vector512.Load(y) : Vector512<float>.Zero;
        Vector512<float> a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        int p = 0;
        for (; p + 3 < count; p += 4)
        {
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(values[p]), Vector512.Load(x + (long)At(index, p) * ldx), a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Create(values[p + 1]), Vector512.Load(x + (long)At(index, p + 1) * ldx), a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Create(values[p + 2]), Vector512.Load(x + (long)At(index, p + 2) * ldx), a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Create(values[p + 3]), Vector512.Load(x + (long)At(index, p + 3) * ldx), a3);
        }
        for (; p < count; p++)
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(values[p]), Vector512.Load(x + (long)At(index, p) * ldx), a0);
        ((a0 + a1) + (a2 + a3)).Store(y);
    }

    /// <summary>
    /// SpMV row: Σ_p values[p]·x[index[p]] (N = 1, so X is a vector and each nonzero touches one float).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float RowDot<TIndex>(TIndex* index, float* values, int count, float* x)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        // A scalar dot costs three loads per nonzero (index, value, x) and runs at the load ports' 3/cycle. Here four
        // x elements are assembled into a Vector128 (vinsertps) and multiplied by four values taken with one load: ~2.25
        // loads per nonzero, the inserts go to the shuffle ports. Measured on Zen 4, one thread, 90% sparse 3072×768:
        // 61 µs against 87 µs for eight scalar sums. Wider (Vector256 of 8) was slower (70 µs: the 128→256 merge is one
        // more shuffle per 8), and AVX2 gathers slower still (96 µs). The index is widened as unsigned (no sign extension).
        // With 16-bit indices four of them come in one 64-bit load and are split with shifts (ALU ports, which have
        // room) instead of four 16-bit loads: 1.5 loads per nonzero instead of 2.25. Measured on Zen 4 (scratch, 90%
        // sparse 768×768, one thread): 15.1–15.3 µs against 16.1–16.2 µs; 768×3072 55–56 against 62–63 µs.
        if (typeof(TIndex) == typeof(ushort) && Vector128.IsHardwareAccelerated)
            return RowDotShort((ushort*)index, values, count, x);
        int p = 0;
        float s0 = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
            for (; p + 15 < count; p += 16)
            {
                a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p), Gather4(index + p, x), a0);
                a1 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p + 4), Gather4(index + p + 4, x), a1);
                a2 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p + 8), Gather4(index + p + 8, x), a2);
                a3 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p + 12), Gather4(index + p + 12, x), a3);
            }
            for (; p + 3 < count; p += 4)
                a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p), Gather4(index + p, x), a0);
            s0 = Vector128.Sum((a0 + a1) + (a2 + a3));
        }
        else
        {
            float s1 = 0, s2 = 0, s3 = 0;
            for (; p + 3 < count; p += 4)
            {
                s0 += values[p] * x[(uint)At(index, p)];
                s1 += values[p + 1] * x[(uint)At(index, p + 1)];
                s2 += values[p + 2] * x[(uint)At(index, p + 2)];
                s3 += values[p + 3] * x[(uint)At(index, p + 3)];
            }
            s0 = (s0 + s1) + (s2 + s3);
        }
        for (; p < count; p++) s0 += values[p] * x[(uint)At(index, p)];
        return s0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float RowDotShort(ushort* index, float* values, int count, float* x)
    {
        int p = 0;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        for (; p + 15 < count; p += 16)
        {
            a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p), Gather4(*(ulong*)(index + p), x), a0);
            a1 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p + 4), Gather4(*(ulong*)(index + p + 4), x), a1);
            a2 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p + 8), Gather4(*(ulong*)(index + p + 8), x), a2);
            a3 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p + 12), Gather4(*(ulong*)(index + p + 12), x), a3);
        }
        for (; p + 3 < count; p += 4)
            a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + p), Gather4(*(ulong*)(index + p), x), a0);
        float s = Vector128.Sum((a0 + a1) + (a2 + a3));
        for (; p < count; p++) s += values[p] * x[index[p]];
        return s;
    }

    /// <summary>output[p] = scale · x[index[p]] for p in [0, count): SDDMM with D = 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaledLookup<TIndex>(float scale, TIndex* index, int count, float* x, float* output)
        where TIndex : unmanaged, IBinaryInteger<TIndex>
    {
        int p = 0;
        if (typeof(TIndex) == typeof(ushort) && Vector128.IsHardwareAccelerated)
        {
            // Four 16-bit indices per 64-bit load, as in RowDot.
            var s = Vector128.Create(scale);
            ushort* short16 = (ushort*)index;
            for (; p + 3 < count; p += 4) (s * Gather4(*(ulong*)(short16 + p), x)).Store(output + p);
        }
        for (; p < count; p++) output[p] = scale * x[(uint)At(index, p)];
    }

    /// <summary>x at the four 16-bit indices packed in <paramref name="q"/> (lowest first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Gather4(ulong q, float* x) =>
        Vector128.Create(x[(ushort)q], x[(ushort)(q >> 16)], x[(ushort)(q >> 32)], x[q >> 48]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Gather4<TIndex>(TIndex* index, float* x) where TIndex : unmanaged, IBinaryInteger<TIndex> =>
        Vector128.Create(x[(uint)At(index, 0)], x[(uint)At(index, 1)], x[(uint)At(index, 2)], x[(uint)At(index, 3)]);

    /// <summary>
    /// The first row of the chunk <paramref name="chunk"/> of <paramref name="chunks"/> when rows are split so each
    /// chunk holds about the same nnz + rows (rows cost a little even when empty): the smallest i with
    /// rowPointers[i] + i ≥ chunk·(nnz + rows)/chunks. Threads are balanced by nonzeros, not by rows.
    /// </summary>
    public static int ChunkStart(int* rowPointers, int rows, int chunk, int chunks)
    {
        if (chunk <= 0) return 0;
        if (chunk >= chunks) return rows;
        long total = (long)rowPointers[rows] + rows;
        long target = total * chunk / chunks;
        int lo = 0, hi = rows;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if ((long)rowPointers[mid] + mid >= target) hi = mid; else lo = mid + 1;
        }
        return lo;
    }

    /// <summary>
    /// Chunks to split rows into: a few per thread so the dynamic claiming in KernelThreads evens out skew.
    /// Below ~128K multiply-adds (tens of µs on one core) waking a second thread costs more than it saves;
    /// callers whose work item is cheaper than a vector FMA (SpMV: one scalar multiply-add per nonzero) pass a
    /// lower <paramref name="minWork"/>.
    /// </summary>
    public static int ChunkCount(int rows, long work, long minWork = 131_072)
    {
        if (rows <= 1 || work < minWork) return 1;
        int threads = KernelThreads.ThreadsFor(rows);
        return threads <= 1 ? 1 : Math.Min(rows, threads * 4);
    }
}
