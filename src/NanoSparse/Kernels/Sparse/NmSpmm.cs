using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Sparse;

namespace NanoSparse.Kernels.Sparse;

/// <summary>
/// Y = S·X with S (M×K) N:M sparse along K, X (K×N), Y (M×N) row-major. Row i's kept values are contiguous
/// (groups of M along K, N kept each); the kernel decodes the row's packed in-group indices (2 bits each for 2:4)
/// into absolute K indices k = g·M + idx once per row, in a stack buffer, then accumulates the kept rows of X
/// exactly as the CSR kernel does (Vector512 FMAs into register tiles of Y). Every row has the same nnz, so rows
/// are split evenly. 2:4 with K % 8 == 0 on AVX-512 takes one of two paths below instead: N a multiple of 64, the
/// L1-tiled path (X in 64-column panels, K in 128-row blocks); else with N ≥ 16 and ≥ 16 rows, the 16-row
/// register-blocked path (rows of S in vector lanes, X rows selected by permutes).
/// </summary>
public static unsafe class NmSpmm
{
    /// <summary>Longest row decoded at once (floats on the stack = 4 bytes each); longer rows run in segments.</summary>
    const int Segment = 4096;

    public static void Multiply(NmSparseMatrix s, ReadOnlySpan<float> x, int n, Span<float> y) => Multiply(s, s.Values, x, n, y);

    /// <summary>As <see cref="Multiply(NmSparseMatrix, ReadOnlySpan{float}, int, Span{float})"/> with S's kept values taken from <paramref name="values"/> (S.Values' layout) instead of S.Values.</summary>
    internal static void Multiply(NmSparseMatrix s, ReadOnlySpan<float> values, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (values.Length != s.SlotCount) throw new ArgumentException($"values has {values.Length} elements, expected the {s.SlotCount} kept values", nameof(values));
        CsrSpmm.Check(s.Rows, s.Cols, x.Length, n, y.Length);
        if (s.Rows == 0 || n == 0) return;
        if (s.Cols == 0) { y.Slice(0, s.Rows * n).Clear(); return; }
        if (UseTiled24(s, n))
        {
            MultiplyTiled24(s, values, x, n, y);
            return;
        }
        if (UseBlocked24(s, n))
        {
            MultiplyBlocked24(s, values, x, n, y);
            return;
        }
        fixed (float* v = values, px = x, py = y)
        fixed (byte* idx = s.Indices)
        {
            var args = new Args
            {
                Values = v, Indices = idx, X = px, Y = py, Rows = s.Rows, K = s.Cols, N = n, KeptN = s.N, M = s.M,
                Bits = s.BitsPerIndex, Chunks = SpmmMicroKernel.ChunkCount(s.Rows, s.SlotCount * n),
            };
            KernelThreads.For(args.Chunks, ref args, &Body);
        }
    }

    struct Args
    {
        public float* Values, X, Y;
        public byte* Indices;
        public int Rows, K, N, KeptN, M, Bits, Chunks, RowStart;
    }

    /// <summary>For each byte of 2:4 indices (two groups): the four kept columns relative to the first group's start.</summary>
    static readonly int[] TwoFourOffsets = BuildTwoFourOffsets();

    static int[] BuildTwoFourOffsets()
    {
        var t = new int[256 * 4];
        for (int b = 0; b < 256; b++)
        {
            t[b * 4] = b & 3; t[b * 4 + 1] = (b >> 2) & 3; t[b * 4 + 2] = 4 + ((b >> 4) & 3); t[b * 4 + 3] = 4 + (b >> 6);
        }
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int InGroup(byte* indices, long slot, int bits)
    {
        long bit = slot * bits;
        int word = indices[bit >> 3] | (indices[(bit >> 3) + 1] << 8);
        return (word >> (int)(bit & 7)) & ((1 << bits) - 1);
    }

    /// <summary>Decodes the absolute columns of slots [slot0, slot0 + count) of one row (slot0 relative to the row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Decode(ref Args a, long rowSlot, int slot0, int count, int* k, int* lut)
    {
        // Absolute column of each kept value: group g = slot / N, k = g·M + in-group index.
        if (a.Bits == 2 && a.KeptN == 2 && a.M == 4 && (rowSlot + slot0) % 4 == 0)
        {
            // 2:4: one byte = two groups = four 2-bit indices; a 256-entry table turns a byte into its four
            // offsets within the 8 columns it covers (one 128-bit load + add + store per byte).
            byte* bytes = a.Indices + (rowSlot + slot0) / 4;
            int g0 = slot0 * 2;
            int q = 0;
            if (Vector128.IsHardwareAccelerated)
                for (; q + 4 <= count; q += 4)
                    (Vector128.Load(lut + bytes[q >> 2] * 4) + Vector128.Create(g0 + q * 2)).Store(k + q);
            for (; q < count; q++) k[q] = g0 + (q >> 2) * 8 + lut[bytes[q >> 2] * 4 + (q & 3)];
            return;
        }
        // Any N:M: the group's first column advances by M every N slots (no division per slot).
        int inGroup = slot0 % a.KeptN, groupStart = slot0 / a.KeptN * a.M;
        for (int q = 0; q < count; q++)
        {
            k[q] = groupStart + InGroup(a.Indices, rowSlot + slot0 + q, a.Bits);
            if (++inGroup == a.KeptN) { inGroup = 0; groupStart += a.M; }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Body(ref Args a, int chunk)
    {
        int rows = a.Rows - a.RowStart;
        int first = a.RowStart + (int)((long)rows * chunk / a.Chunks), last = a.RowStart + (int)((long)rows * (chunk + 1) / a.Chunks);
        int groups = a.K / a.M;
        int perRow = groups * a.KeptN;
        fixed (int* lut = TwoFourOffsets)
        {
            if (a.N == 1 && a.KeptN == 2 && a.M == 4 && a.K % 32 == 0 && Avx512F.IsSupported)
            {
                // 2:4 SpMV: a row's K bits of indices start on a 4-byte boundary (K % 32 == 0).
                for (int i = first; i < last; i++)
                    a.Y[i] = RowDot24(a.Values + (long)i * perRow, (uint*)(a.Indices + (long)i * (a.K / 8)), a.K / 32, a.X);
                return;
            }
            if (a.N == 1)
            {
                // SpMV: decode a whole row (in segments) and take its gathered dot product with x.
                int segmentGroups = Math.Max(1, Segment / a.KeptN);
                int* k1 = stackalloc int[Math.Min(perRow, segmentGroups * a.KeptN)];
                for (int i = first; i < last; i++)
                {
                    long rowSlot = (long)i * perRow;
                    float sum = 0;
                    for (int g = 0; g < groups; g += segmentGroups)
                    {
                        int count = Math.Min(segmentGroups, groups - g) * a.KeptN;
                        Decode(ref a, rowSlot, g * a.KeptN, count, k1, lut);
                        sum += SpmmMicroKernel.RowDot(k1, a.Values + rowSlot + g * a.KeptN, count, a.X);
                    }
                    a.Y[i] = sum;
                }
                return;
            }

            // S·X blocked along K: the rows of X for a block of K (blockGroups·M rows × tile columns, ≤ 16 KiB) stay
            // in L1 while every row of the chunk uses them, so the kernel's X loads come from L1, not L2 (the
            // bandwidth limit at 50% density); Y's tile is re-loaded and stored once per K block.
            int tile = a.N >= 128 ? 128 : a.N >= 64 ? 64 : 32;
            int blockGroups = Math.Max(2, 16384 / (tile * 4) / a.M / 2 * 2);
            if (blockGroups >= groups) blockGroups = groups;
            int* k = stackalloc int[blockGroups * a.KeptN];
            for (int j = 0; j < a.N; j += tile)
            {
                int w = Math.Min(tile, a.N - j);
                for (int g = 0; g < groups; g += blockGroups)
                {
                    int count = Math.Min(blockGroups, groups - g) * a.KeptN;
                    for (int i = first; i < last; i++)
                    {
                        long rowSlot = (long)i * perRow;
                        Decode(ref a, rowSlot, g * a.KeptN, count, k, lut);
                        SpmmMicroKernel.RowTile(k, a.Values + rowSlot + g * a.KeptN, count, a.X + j, a.N, a.Y + (long)i * a.N + j, w, add: g > 0);
                    }
                }
            }
        }
    }

    /// <summary>How far ahead of a pair of steps <see cref="RowDot24"/> requests the value stream into L2 (one line in
    /// two; the hardware fetches its pair). 1 KB ahead was level with no prefetch; 2 KB ahead, the 2:4 gpt2-shaped model
    /// decoded at 108.8–114.5 tokens/s against 103.7–111.0 without (scratch harness, one thread, Zen 4, three alternated
    /// runs of two; at two threads 157.6–178.4 against 146.3–179.0).</summary>
    const int RowPrefetchBytes = 2048;

    /// <summary>
    /// 2:4 SpMV row without gathers: 16 kept values (8 groups) are one Vector512 of values and one 32-bit word of
    /// 2-bit indices; the 8 groups span x[32t .. 32t + 32) (two registers), and a two-source permute (vpermt2ps) with
    /// control 4·(lane / 2) + idx_lane picks x[4g + idx] for all 16 lanes at once. idx_lane = (word >> 2·lane) &amp; 3.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float RowDot24(float* values, uint* words, int iterations, float* x)
    {
        var shifts = Vector512.Create(0u, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var bases = Vector512.Create(0u, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        var three = Vector512.Create(3u);
        Vector512<float> s0 = Vector512<float>.Zero, s1 = Vector512<float>.Zero;
        // (w >> 2·lane) & 3 | base in one ternary-logic instruction (the fields and the bases share no bits), and the
        // pointers advance instead of being recomputed from t: per pair, two vector instructions fewer and 4 scalar ones
        // where there were 13. The 2:4 gpt2-shaped model decoded at 110.7–116.2 tokens/s against 110.2–112.1 before
        // (scratch harness, 256 tokens after a 64-token prompt, one thread, Zen 4, three alternated runs of two).
        const byte AndOr = 0xEA;   // A & B | C
        uint* end = words + (iterations & ~1);
        for (; words < end; words += 2, values += 32, x += 64)
        {
            Sse.Prefetch1((byte*)values + RowPrefetchBytes);
            var c0 = Avx512F.TernaryLogic(Avx512F.ShiftRightLogicalVariable(Vector512.Create(words[0]), shifts), three, bases, AndOr);
            var c1 = Avx512F.TernaryLogic(Avx512F.ShiftRightLogicalVariable(Vector512.Create(words[1]), shifts), three, bases, AndOr);
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(values),
                Avx512F.PermuteVar16x32x2(Vector512.Load(x), c0.AsInt32(), Vector512.Load(x + 16)), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(values + 16),
                Avx512F.PermuteVar16x32x2(Vector512.Load(x + 32), c1.AsInt32(), Vector512.Load(x + 48)), s1);
        }
        if ((iterations & 1) != 0)
        {
            var c0 = Avx512F.TernaryLogic(Avx512F.ShiftRightLogicalVariable(Vector512.Create(words[0]), shifts), three, bases, AndOr);
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(values),
                Avx512F.PermuteVar16x32x2(Vector512.Load(x), c0.AsInt32(), Vector512.Load(x + 16)), s0);
        }
        return Vector512.Sum(s0 + s1);
    }

    // ---- 2:4 L1-tiled path (N a multiple of 64) ---------------------------------------------------------------------
    // The per-nonzero broadcast form (each kept value times a 64-column slice of its X row, 4 FMAs into Y's row tile),
    // with the loop order chosen so those X rows come from L1: X is packed into 64-column panels (AlignedPanels) and
    // K is cut into 128-row blocks, so one block of a panel is 32 KiB, and every row of S takes its kept values in
    // that block before the next block is touched. The in-group indices are decoded in the loop, one byte (two groups,
    // four kept values) at a time. Per kept value: 1 broadcast + 4 X loads + 4 FMAs, no permutes, so it runs near the
    // FMA rate at half the dense FLOPs. Measured on Zen 4, one thread, N = 128 (dense-equivalent GFLOP/s, medians of
    // 2–3 runs): 768×768 154 against 97 for the register-blocked path below, 3072×768 145 against 91, 768×3072 121
    // against 87; N = 512: 113 against 104. 64- and 256-row K blocks were slower (64: more Y reloads; 256: 64 KiB
    // misses L1).

    const int Tile24 = 64, KBlock24 = 128;

    static bool UseTiled24(NmSparseMatrix s, int n) =>
        Vector512.IsHardwareAccelerated && s.N == 2 && s.M == 4 && n % Tile24 == 0 && n > 0 && s.Cols % 8 == 0 && s.Cols >= 8;

    struct ArgsTiled24
    {
        public float* Values, Packed, Y;
        public byte* Indices;
        public int Rows, K, N, Chunks;
    }

    static void MultiplyTiled24(NmSparseMatrix s, ReadOnlySpan<float> values, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        fixed (float* v = values, px = x, py = y)
        fixed (byte* idx = s.Indices)
        {
            var args = new ArgsTiled24
            {
                Values = v, Indices = idx, Y = py, Rows = s.Rows, K = s.Cols, N = n,
                Packed = AlignedPanels.Pack(px, s.Cols, n, Tile24),
                Chunks = SpmmMicroKernel.ChunkCount(s.Rows, (long)s.Rows * s.Cols / 2 * n),
            };
            KernelThreads.For(args.Chunks, ref args, &BodyTiled24);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void BodyTiled24(ref ArgsTiled24 a, int chunk)
    {
        int first = (int)((long)a.Rows * chunk / a.Chunks), last = (int)((long)a.Rows * (chunk + 1) / a.Chunks);
        int k = a.K, perRow = k / 2, indexBytesPerRow = k / 8;
        for (int j = 0; j < a.N; j += Tile24)
        {
            // Panel j / 64: rows of 64 floats (AlignedPanels.Ld(64) = 64).
            float* panel = a.Packed + (long)(j / Tile24) * k * Tile24;
            for (int k0 = 0; k0 < k; k0 += KBlock24)
            {
                int bytes = (Math.Min(k, k0 + KBlock24) - k0) / 8;
                for (int i = first; i < last; i++)
                    RowTiled24(a.Values + (long)i * perRow + k0 / 2, a.Indices + (long)i * indexBytesPerRow + k0 / 8, bytes,
                        panel + (long)k0 * Tile24, a.Y + (long)i * a.N + j, add: k0 > 0);
            }
        }
    }

    /// <summary>
    /// y[0..64) (=|+=) Σ over <paramref name="bytes"/> index bytes (8 columns of X each, rows of 64 floats from x) of the
    /// four kept values times their X rows: byte b holds idx0 | idx1 &lt;&lt; 2 of the first group and the same of the
    /// second in its high nibble.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void RowTiled24(float* v, byte* ib, int bytes, float* x, float* y, bool add)
    {
        Vector512<float> a0, a1, a2, a3;
        if (add) { a0 = Vector512.Load(y); a1 = Vector512.Load(y + 16); a2 = Vector512.Load(y + 32); a3 = Vector512.Load(y + 48); }
        else a0 = a1 = a2 = a3 = Vector512<float>.Zero;
        // Two accumulator sets (the first and second kept value of each group): 8 independent FMA chains.
        Vector512<float> b0 = Vector512<float>.Zero, b1 = Vector512<float>.Zero, b2 = Vector512<float>.Zero, b3 = Vector512<float>.Zero;
        for (int q = 0; q < bytes; q++, v += 4, x += 8 * Tile24)
        {
            uint b = ib[q];
            float* r0 = x + (b & 3) * Tile24, r1 = x + ((b >> 2) & 3) * Tile24;
            float* r2 = x + (4 + ((b >> 4) & 3)) * Tile24, r3 = x + (4 + (b >> 6)) * Tile24;
            var v0 = Vector512.Create(v[0]); var v1 = Vector512.Create(v[1]);
            var v2 = Vector512.Create(v[2]); var v3 = Vector512.Create(v[3]);
            a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0), a0); a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1), b0); b1 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 32), b2); b3 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(r1 + 48), b3);
            a0 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2), a0); a1 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + 32), a2); a3 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3), b0); b1 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + 32), b2); b3 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + 48), b3);
        }
        (a0 + b0).Store(y); (a1 + b1).Store(y + 16); (a2 + b2).Store(y + 32); (a3 + b3).Store(y + 48);
    }

    // ---- 2:4 register-blocked path -------------------------------------------------------------------------------
    // 16 rows of S at once, one Vector512 lane per row: accumulator a_j holds Y[r0..r0+16, j] (a column of a 16×16
    // tile of Y). X is repacked once per call so the 4 rows of a group are contiguous per column:
    // Xp[(g·Np + j)·4 + i] = X[4g + i, j] (Np = N rounded up to 16, zero-padded), so one 64-byte load holds the
    // group's quads of 4 columns. A cross-lane permute (vpermps, data straight from memory) with control
    // idx_r + 4c picks X[4g + idx_r, j + c] for each row lane r, so
    //   a_j += v0 ⊙ perm(Xp quad, idx0 + 4c) + v1 ⊙ perm(Xp quad, idx1 + 4c)
    // costs 2 FMAs per 16 rows and column: exactly the 2:4 FLOPs, and X loads are shared by 16 rows (the per-nonzero
    // broadcast path is bound by one X load per FMA). The permutes share the FP pipes with the FMAs and are what
    // keeps this near dense speed rather than 2x. S is repacked per 16-row block and K block on the stack (v0/v1 as
    // row lanes, in-group indices as int32 permute controls): when K % 32 == 0 the values by a 16×16 register
    // transpose of 16 rows' contiguous values and the indices by gathering one 32-bit word per row. S is not cached
    // in this layout because its values are mutable (training writes them in place); the transpose makes the
    // per-call packing a few % of the product.
    // Y's 16-row block is accumulated transposed on the stack across K blocks and transposed into Y once.

    const int RowBlock = 16, ColTile = 16, GroupBlock = 32, Panel = 512;

    static bool UseBlocked24(NmSparseMatrix s, int n) =>
        Avx512F.IsSupported && s.N == 2 && s.M == 4 && n >= 16 && s.Rows >= RowBlock && s.Cols % 8 == 0 && s.Cols >= 8;

    [ThreadStatic] static float[]? _packedX;

    struct Args24
    {
        public float* Values, Xp, Y;
        public byte* Indices;
        public int Rows, K, N, Np, Chunks;
    }

    static void MultiplyBlocked24(NmSparseMatrix s, ReadOnlySpan<float> values, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        int k = s.Cols, groups = k / 4, np = (n + ColTile - 1) / ColTile * ColTile;
        // +16 floats: the packed X starts on a 64-byte boundary (an array is only 8/16-byte aligned), so each quad load
        // below is one cache line, not two.
        long need = (long)groups * np * 4 + 16;
        if (_packedX is null || _packedX.Length < need) _packedX = GC.AllocateUninitializedArray<float>((int)need, pinned: true);
        int blocks = s.Rows / RowBlock;
        fixed (float* v = values, px = x, py = y, xpArray = _packedX)
        fixed (byte* idx = s.Indices)
        {
            float* xp = (float*)(((nint)xpArray + 63) & ~(nint)63);
            // X's repacking is K·N moves: split over the threads by groups when it is big enough to pay for a wake-up.
            var pack = new PackArgs { X = px, Xp = xp, Groups = k / 4, N = n, Np = np, Chunks = (long)k * n >= 262144 ? KernelThreads.ThreadsFor(k / 4) : 1 };
            KernelThreads.For(pack.Chunks, ref pack, &PackBody);
            var args = new Args24
            {
                Values = v, Indices = idx, Xp = xp, Y = py, Rows = s.Rows, K = k, N = n, Np = np,
                Chunks = SpmmMicroKernel.ChunkCount(blocks, (long)blocks * RowBlock * k / 2 * n),
            };
            KernelThreads.For(args.Chunks, ref args, &Body24);
            if (blocks * RowBlock < s.Rows)
            {
                // Leftover rows (< 16): the per-row path.
                var rest = new Args
                {
                    Values = v, Indices = idx, X = px, Y = py, Rows = s.Rows, K = k, N = n, KeptN = 2, M = 4,
                    Bits = 2, Chunks = 1, RowStart = blocks * RowBlock,
                };
                Body(ref rest, 0);
            }
        }
    }

    struct PackArgs
    {
        public float* X, Xp;
        public int Groups, N, Np, Chunks;
    }

    static void PackBody(ref PackArgs a, int chunk) =>
        PackX(a.X, a.N, a.Np, a.Xp, (int)((long)a.Groups * chunk / a.Chunks), (int)((long)a.Groups * (chunk + 1) / a.Chunks));

    /// <summary>Xp[(g·np + j)·4 + i] = X[(4g + i)·n + j] for groups [firstGroup, lastGroup); columns n..np are zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackX(float* x, int n, int np, float* xp, int firstGroup, int lastGroup)
    {
        for (int g = firstGroup; g < lastGroup; g++)
        {
            float* r0 = x + (long)4 * g * n, r1 = r0 + n, r2 = r1 + n, r3 = r2 + n;
            float* d = xp + (long)g * np * 4;
            int j = 0;
            if (Sse.IsSupported)
                for (; j + 4 <= n; j += 4)
                {
                    // 4×4 transpose: rows 4g..4g+4 × columns j..j+4 → four (x0, x1, x2, x3) column quads.
                    var q0 = Sse.LoadVector128(r0 + j); var q1 = Sse.LoadVector128(r1 + j);
                    var q2 = Sse.LoadVector128(r2 + j); var q3 = Sse.LoadVector128(r3 + j);
                    var t0 = Sse.UnpackLow(q0, q1); var t1 = Sse.UnpackLow(q2, q3);
                    var t2 = Sse.UnpackHigh(q0, q1); var t3 = Sse.UnpackHigh(q2, q3);
                    Sse.Store(d + j * 4, Sse.MoveLowToHigh(t0, t1));
                    Sse.Store(d + j * 4 + 4, Sse.MoveHighToLow(t1, t0));
                    Sse.Store(d + j * 4 + 8, Sse.MoveLowToHigh(t2, t3));
                    Sse.Store(d + j * 4 + 12, Sse.MoveHighToLow(t3, t2));
                }
            for (; j < n; j++) { d[j * 4] = r0[j]; d[j * 4 + 1] = r1[j]; d[j * 4 + 2] = r2[j]; d[j * 4 + 3] = r3[j]; }
            for (; j < np; j++) { d[j * 4] = 0; d[j * 4 + 1] = 0; d[j * 4 + 2] = 0; d[j * 4 + 3] = 0; }
        }
    }

    /// <summary>
    /// The values of 8 groups × 16 rows into row lanes: src row r holds 16 kept values (v0, v1 of groups 0..8) at
    /// src + r·stride; value t of every row goes to dst[(t / 2)·32 + (t % 2)·16 + r]. A 16×16 transpose in registers
    /// (unpack 32-bit, unpack 64-bit, two rounds of 128-bit lane shuffles: 64 shuffles for 256 values) instead of
    /// 16-lane gathers (32 eight-lane gathers), which were most of the per-call packing of S.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void TransposeValues16(float* src, int stride, float* dst)
    {
        // 32-bit unpacks of row pairs.
        Pair(src, stride, 0, out var r0, out var r1); Pair(src, stride, 2, out var r2, out var r3);
        Pair(src, stride, 4, out var r4, out var r5); Pair(src, stride, 6, out var r6, out var r7);
        Pair(src, stride, 8, out var r8, out var r9); Pair(src, stride, 10, out var r10, out var r11);
        Pair(src, stride, 12, out var r12, out var r13); Pair(src, stride, 14, out var r14, out var r15);
        // 64-bit unpacks: u[4i + j] holds, in 128-bit lane L, column 4L + j of rows 4i..4i+4.
        Quad(r0, r1, r2, r3, out var u0, out var u1, out var u2, out var u3);
        Quad(r4, r5, r6, r7, out var u4, out var u5, out var u6, out var u7);
        Quad(r8, r9, r10, r11, out var u8, out var u9, out var u10, out var u11);
        Quad(r12, r13, r14, r15, out var u12, out var u13, out var u14, out var u15);
        Lanes(dst, 0, u0, u4, u8, u12);
        Lanes(dst, 1, u1, u5, u9, u13);
        Lanes(dst, 2, u2, u6, u10, u14);
        Lanes(dst, 3, u3, u7, u11, u15);

        static void Pair(float* src, int stride, int i, out Vector512<float> lo, out Vector512<float> hi)
        {
            var a = Vector512.Load(src + (long)i * stride);
            var b = Vector512.Load(src + (long)(i + 1) * stride);
            lo = Avx512F.UnpackLow(a, b);
            hi = Avx512F.UnpackHigh(a, b);
        }

        static void Quad(Vector512<float> t0, Vector512<float> t1, Vector512<float> t2, Vector512<float> t3,
            out Vector512<float> u0, out Vector512<float> u1, out Vector512<float> u2, out Vector512<float> u3)
        {
            u0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle();
            u1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
            u2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle();
            u3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
        }

        // Columns j, 4 + j, 8 + j, 12 + j from the four row quads' u_j (lane L of each = column 4L + j).
        static void Lanes(float* dst, int j, Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
        {
            var w0 = Avx512F.Shuffle4x128(a, b, 0x44);
            var w1 = Avx512F.Shuffle4x128(a, b, 0xEE);
            var w2 = Avx512F.Shuffle4x128(c, d, 0x44);
            var w3 = Avx512F.Shuffle4x128(c, d, 0xEE);
            Store(dst, j, Avx512F.Shuffle4x128(w0, w2, 0x88));
            Store(dst, 4 + j, Avx512F.Shuffle4x128(w0, w2, 0xDD));
            Store(dst, 8 + j, Avx512F.Shuffle4x128(w1, w3, 0x88));
            Store(dst, 12 + j, Avx512F.Shuffle4x128(w1, w3, 0xDD));
        }

        // Value t of a row segment is v0 (t even) or v1 (t odd) of group t / 2.
        static void Store(float* dst, int t, Vector512<float> column) => column.Store(dst + (t >> 1) * 32 + (t & 1) * 16);
    }

    // SkipLocalsInit: the 56 KiB of stack buffers below are written before they are read; zeroing them cost a
    // memset per chunk.
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void Body24(ref Args24 a, int chunk)
    {
        int blocks = a.Rows / RowBlock;
        int firstBlock = (int)((long)blocks * chunk / a.Chunks), lastBlock = (int)((long)blocks * (chunk + 1) / a.Chunks);
        int groups = a.K / 4, perRow = a.K / 2, indexBytesPerRow = a.K / 8;
        // Per 16-row block and K block: values (v0 | v1, 32 floats per group) and controls (c0 | c1, 32 ints per group).
        float* vp = stackalloc float[GroupBlock * 32];
        // Controls per group: idx0 + 4c and idx1 + 4c for c = 0..4 (8 vectors, 128 ints), precomputed so the inner
        // loop spends no FP-pipe adds on them (the FMAs and permutes already saturate those pipes).
        int* cp = stackalloc int[GroupBlock * 128];
        // Y's (16 rows × panel) block, transposed (yt[j·16 + r]), accumulated across K blocks in vector loads/stores
        // and transposed into Y once.
        float* ytp = stackalloc float[Panel * RowBlock];
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        // Byte offsets of the 16 rows' indices (lanes 0..8, 8..16).
        var rowBytesLo = lane * indexBytesPerRow; var rowBytesHi = (lane + Vector256.Create(8)) * indexBytesPerRow;
        var three = Vector512.Create(3);
        var four = Vector512.Create(4); var eight = Vector512.Create(8); var twelve = Vector512.Create(12);
        for (int b = firstBlock; b < lastBlock; b++)
        {
            int r0 = b * RowBlock;
            for (int p0 = 0; p0 < a.N; p0 += Panel)
            {
                int pw = Math.Min(Panel, a.Np - p0);
                for (int g0 = 0; g0 < groups; g0 += GroupBlock)
                {
                    int gc = Math.Min(GroupBlock, groups - g0);
                    bool first = g0 == 0;
                    if (a.K % 32 == 0)
                    {
                        // Index words gathered across the 16 rows (4 bytes = 8 groups, aligned and inside the row
                        // because K/8 is a multiple of 4), 4 bits per group (idx0 | idx1 << 2); values transposed.
                        float* vb = a.Values + (long)r0 * perRow + g0 * 2;
                        byte* ib = a.Indices + (long)r0 * indexBytesPerRow + g0 / 2;
                        for (int g = 0; g < gc; g += 8)
                        {
                            var words = Vector512.Create(Avx2.GatherVector256((int*)(ib + g / 2), rowBytesLo, 1), Avx2.GatherVector256((int*)(ib + g / 2), rowBytesHi, 1));
                            for (int t = 0; t < 8; t++)
                            {
                                var bits = Vector512.ShiftRightLogical(words, 4 * t);
                                var i0 = bits & three;
                                var i1 = Vector512.ShiftRightLogical(bits, 2) & three;
                                int* c = cp + (g + t) * 128;
                                i0.Store(c); (i0 + four).Store(c + 16); (i0 + eight).Store(c + 32); (i0 + twelve).Store(c + 48);
                                i1.Store(c + 64); (i1 + four).Store(c + 80); (i1 + eight).Store(c + 96); (i1 + twelve).Store(c + 112);
                            }
                            TransposeValues16(vb + 2 * g, perRow, vp + g * 32);
                        }
                    }
                    else
                    {
                        for (int r = 0; r < RowBlock; r++)
                        {
                            float* rv = a.Values + (long)(r0 + r) * perRow + g0 * 2;
                            byte* ri = a.Indices + (long)(r0 + r) * indexBytesPerRow + g0 / 2;
                            for (int g = 0; g < gc; g++)
                            {
                                int bits = ri[g >> 1] >> ((g & 1) * 4);
                                vp[g * 32 + r] = rv[2 * g];
                                vp[g * 32 + 16 + r] = rv[2 * g + 1];
                                for (int c = 0; c < 4; c++)
                                {
                                    cp[g * 128 + c * 16 + r] = (bits & 3) + 4 * c;
                                    cp[g * 128 + 64 + c * 16 + r] = ((bits >> 2) & 3) + 4 * c;
                                }
                            }
                        }
                    }
                    for (int jt = 0; jt < pw; jt += ColTile)
                    {
                        float* yt = ytp + jt * RowBlock;
                        Vector512<float> a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15;
                        a0 = first ? Vector512<float>.Zero : Vector512.Load(yt + 0);
                        a1 = first ? Vector512<float>.Zero : Vector512.Load(yt + 16);
                        a2 = first ? Vector512<float>.Zero : Vector512.Load(yt + 32);
                        a3 = first ? Vector512<float>.Zero : Vector512.Load(yt + 48);
                        a4 = first ? Vector512<float>.Zero : Vector512.Load(yt + 64);
                        a5 = first ? Vector512<float>.Zero : Vector512.Load(yt + 80);
                        a6 = first ? Vector512<float>.Zero : Vector512.Load(yt + 96);
                        a7 = first ? Vector512<float>.Zero : Vector512.Load(yt + 112);
                        a8 = first ? Vector512<float>.Zero : Vector512.Load(yt + 128);
                        a9 = first ? Vector512<float>.Zero : Vector512.Load(yt + 144);
                        a10 = first ? Vector512<float>.Zero : Vector512.Load(yt + 160);
                        a11 = first ? Vector512<float>.Zero : Vector512.Load(yt + 176);
                        a12 = first ? Vector512<float>.Zero : Vector512.Load(yt + 192);
                        a13 = first ? Vector512<float>.Zero : Vector512.Load(yt + 208);
                        a14 = first ? Vector512<float>.Zero : Vector512.Load(yt + 224);
                        a15 = first ? Vector512<float>.Zero : Vector512.Load(yt + 240);
                        for (int g = 0; g < gc; g++)
                        {
                            var v0 = Vector512.Load(vp + g * 32);
                            var v1 = Vector512.Load(vp + g * 32 + 16);
                            // Cross-lane permute straight from memory: 16 floats = the X quads of 4 columns, and
                            // control idx + 4c picks X[4g + idx_r, j + c] for each row lane r.
                            int* c = cp + g * 128;
                            var c00 = Vector512.Load(c); var c01 = Vector512.Load(c + 16);
                            var c02 = Vector512.Load(c + 32); var c03 = Vector512.Load(c + 48);
                            var c10 = Vector512.Load(c + 64); var c11 = Vector512.Load(c + 80);
                            var c12 = Vector512.Load(c + 96); var c13 = Vector512.Load(c + 112);
                            float* xg = a.Xp + ((long)(g0 + g) * a.Np + p0 + jt) * 4;
                            a0 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c00), a0);
                            a0 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c10), a0);
                            a1 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c01), a1);
                            a1 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c11), a1);
                            a2 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c02), a2);
                            a2 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c12), a2);
                            a3 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c03), a3);
                            a3 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 0), c13), a3);
                            a4 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c00), a4);
                            a4 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c10), a4);
                            a5 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c01), a5);
                            a5 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c11), a5);
                            a6 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c02), a6);
                            a6 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c12), a6);
                            a7 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c03), a7);
                            a7 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 16), c13), a7);
                            a8 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c00), a8);
                            a8 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c10), a8);
                            a9 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c01), a9);
                            a9 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c11), a9);
                            a10 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c02), a10);
                            a10 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c12), a10);
                            a11 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c03), a11);
                            a11 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 32), c13), a11);
                            a12 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c00), a12);
                            a12 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c10), a12);
                            a13 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c01), a13);
                            a13 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c11), a13);
                            a14 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c02), a14);
                            a14 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c12), a14);
                            a15 = Avx512F.FusedMultiplyAdd(v0, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c03), a15);
                            a15 = Avx512F.FusedMultiplyAdd(v1, Avx512F.PermuteVar16x32(Vector512.Load(xg + 48), c13), a15);
                        }
                        a0.Store(yt + 0);
                        a1.Store(yt + 16);
                        a2.Store(yt + 32);
                        a3.Store(yt + 48);
                        a4.Store(yt + 64);
                        a5.Store(yt + 80);
                        a6.Store(yt + 96);
                        a7.Store(yt + 112);
                        a8.Store(yt + 128);
                        a9.Store(yt + 144);
                        a10.Store(yt + 160);
                        a11.Store(yt + 176);
                        a12.Store(yt + 192);
                        a13.Store(yt + 208);
                        a14.Store(yt + 224);
                        a15.Store(yt + 240);
                    }
                }
                int w = Math.Min(Panel, a.N - p0);
                for (int r = 0; r < RowBlock; r++)
                {
                    float* yr = a.Y + (long)(r0 + r) * a.N + p0;
                    for (int j = 0; j < w; j++) yr[j] = ytp[j * 16 + r];
                }
            }
        }
    }
}
