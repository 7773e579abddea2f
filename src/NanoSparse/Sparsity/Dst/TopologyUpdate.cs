using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;

namespace NanoSparse.Sparsity.Dst;

/// <summary>What one topology update did to one layer.</summary>
/// <param name="Dropped">active weights the drop rule chose (smallest magnitudes; SRigL: also every weight of an ablated
/// neuron); RigL may regrow some of them at once</param>
/// <param name="Grown">positions chosen by the grow rule; as many as dropped, so the stored count is unchanged</param>
/// <param name="Changed">added positions that were not active before the update (Grown minus dropped ones regrown)</param>
/// <param name="ActiveRows">output rows holding at least one weight afterwards</param>
/// <param name="Stored">the layer's stored count (unchanged by the update)</param>
public readonly record struct LayerUpdate(int Dropped, int Grown, int Changed, int ActiveRows, int Stored)
{
    public double ChangedFraction => Stored == 0 ? 0 : (double)Changed / Stored;
}

/// <summary>
/// One topology update of a CSR layer, in place: drop the k = round(f · nnz) active weights of smallest magnitude, regrow
/// as many positions, rebuild the layout (<see cref="CsrLinearWeight.ReplaceStructure"/>) and move the values and AdamW
/// moments to the new CSR order; newly grown weights and their moments start at 0. The stored count never changes.
/// Regrowth (positions kept through the drop are never candidates):
///   set    uniformly at random among inactive positions (seeded Rng: reproducible); dropped ones only when too few
///          inactive ones remain, and then after every inactive one (the reference draws among both alike; at 90% / 80%
///          sparsity that would regrow ~3% / ~7% of the k at once, so SET keeps its own stream);
///   rigl   the k positions of largest |dL/dW| (the dense gradient of the update step) among every position not kept,
///          the just-dropped ones included, ties to the lower row-major position (Evci et al. 2020, Algorithm 1:
///          I_grow = ArgTopK over i ∉ θ \ I_drop). A dropped weight that is regrown keeps its value and AdamW moments
///          (google-research/rigl's default, reinit_when_same = False): it was never removed, so an update changes
///          fewer than k positions where small weights still have large gradients;
///   srigl  constant fan-in (Lasby et al. 2023): a neuron's salience is its weights surviving the drop plus the
///          positions RigL would regrow in its row; a neuron with fewer than γ·k salient weights (k = nnz / active
///          rows) is ablated (all its weights dropped); the remaining A rows each get nnz / A weights (the first
///          nnz mod A rows one more), trimming by magnitude and regrowing by |dL/dW| within the row (dropped
///          positions compete as in rigl).
/// Row groups (dst_split_qkv): the rows can be cut into consecutive groups (c_attn's Q, K and V slices) that are
/// updated as separate layers: each group drops round(f · its nnz) of its own weights and regrows as many within its
/// own rows, so every group's stored count is unchanged by the update; one group (the default) is the whole layer.
/// Scratch is sized once for the largest layer; an update allocates nothing.
/// </summary>
public sealed class TopologyUpdate
{
    const byte Inactive = 0, Kept = 1, Dropped = 2, GrownNew = 3, GrownDropped = 4;

    readonly byte[] _state;        // per cell of the layer (Out·In)
    readonly float[] _scores;      // per cell: regrowth scores; per entry: drop keys
    readonly float[] _select;      // TopK's scratch (cells)
    readonly int[] _chosen;        // TopK's output (cells)
    readonly int[] _pointers, _columns, _source, _counter;
    readonly float[] _copy;
    readonly int[] _rowCount, _rowGrow;
    readonly float[] _salience;

    public TopologyUpdate(IEnumerable<(int OutFeatures, int InFeatures, int StoredCount)> layers)
    {
        long cells = 0; int stored = 0, outMax = 0, inMax = 0;
        foreach (var (o, i, s) in layers)
        {
            cells = Math.Max(cells, (long)o * i);
            stored = Math.Max(stored, s);
            outMax = Math.Max(outMax, o);
            inMax = Math.Max(inMax, i);
        }
        if (cells > Array.MaxLength) throw new ArgumentException($"a layer of {cells} positions is too large for dynamic sparse training (at most {Array.MaxLength})");
        _state = new byte[cells];
        _scores = new float[cells];
        _select = new float[cells];
        _chosen = new int[cells];
        _pointers = new int[outMax + 1];
        _columns = new int[stored];
        _source = new int[stored];
        _counter = new int[inMax + 1];
        _copy = new float[stored];
        _rowCount = new int[outMax];
        _rowGrow = new int[outMax];
        _salience = new float[outMax];
    }

    /// <summary>Bytes of scratch this object holds.</summary>
    public long Bytes => _state.LongLength + 12L * _scores.LongLength + 4L * (_pointers.Length + _counter.Length + 3L * _rowCount.Length)
        + 12L * _columns.Length;

    /// <summary>
    /// Updates <paramref name="layer"/> and permutes <paramref name="values"/>, <paramref name="m"/>, <paramref name="v"/>
    /// (StoredCount each; m and v may be empty) to its new order. <paramref name="denseGradient"/> (Out·In, row-major)
    /// is needed by rigl and srigl; <paramref name="rng"/> by set. <paramref name="everActive"/> (a bitmap of Out·In bits,
    /// or empty) gets the new positions marked. <paramref name="rowGroups"/> (empty: the whole layer as one group) are
    /// the groups' first rows followed by Out, ascending from 0 (e.g. 0, a, 2a, 3a for c_attn's Q, K and V slices).
    /// </summary>
    public LayerUpdate Apply(CsrLinearWeight layer, Span<float> values, Span<float> m, Span<float> v, DstMethod method,
        double dropFraction, ReadOnlySpan<float> denseGradient, Rng? rng, double ablationThreshold = 0.3, Span<ulong> everActive = default,
        ReadOnlySpan<int> rowGroups = default)
    {
        int rows = layer.OutFeatures, cols = layer.InFeatures, nnz = layer.StoredCount;
        int cells = rows * cols;
        layer.CheckValues(values.Length);
        if (!m.IsEmpty) layer.CheckValues(m.Length);
        if (!v.IsEmpty) layer.CheckValues(v.Length);
        if (method == DstMethod.Static) return new LayerUpdate(0, 0, 0, ActiveRowCount(layer), nnz);
        if (method.NeedsDenseGradient() && denseGradient.Length != cells)
            throw new ArgumentException($"{method.Name()} needs the dense gradient of {rows}x{cols} = {cells} values, got {denseGradient.Length}", nameof(denseGradient));
        if (method == DstMethod.Set && rng is null) throw new ArgumentNullException(nameof(rng), "set regrows at random: an Rng is needed");
        if (!(dropFraction >= 0 && dropFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(dropFraction), dropFraction, "drop fraction must be in [0, 1]");
        if (!everActive.IsEmpty && everActive.Length < (cells + 63) / 64) throw new ArgumentException($"everActive has {everActive.Length} words, expected {(cells + 63) / 64}", nameof(everActive));
        Span<int> wholeLayer = [0, rows];
        scoped ReadOnlySpan<int> groups = rowGroups.IsEmpty ? wholeLayer : rowGroups;
        CheckRowGroups(groups, rows);

        var s = layer.Structure;
        var rp = s.RowPointers;
        var state = _state.AsSpan(0, cells);
        state.Clear();
        for (int o = 0; o < rows; o++)
            for (int p = rp[o]; p < rp[o + 1]; p++) state[o * cols + s.ColumnIndex(p)] = Kept;

        int droppedCount = 0;
        for (int group = 0; group + 1 < groups.Length; group++)
        {
            int r0 = groups[group], r1 = groups[group + 1];
            int first = rp[r0], groupNnz = rp[r1] - first;
            if (groupNnz == 0) continue;
            // Drop: the group's k smallest |w| (ties: lower entry), as the k largest of −|w|.
            int k = (int)Math.Round(dropFraction * groupNnz);
            var keys = _scores.AsSpan(0, groupNnz);
            TensorPrimitives.Abs(values.Slice(first, groupNnz), keys);
            TensorPrimitives.Negate(keys, keys);
            var dropped = _chosen.AsSpan(0, k);
            TopK.Largest(keys, k, _select, dropped);
            for (int i = 0; i < k; i++)
            {
                int p = first + dropped[i];
                state[RowOf(rp, p, rows) * cols + s.ColumnIndex(p)] = Dropped;
            }

            droppedCount += k;
            var groupState = state.Slice(r0 * cols, (r1 - r0) * cols);
            var groupGradient = denseGradient.IsEmpty ? denseGradient : denseGradient.Slice(r0 * cols, (r1 - r0) * cols);
            switch (method)
            {
                case DstMethod.Set: GrowRandom(groupState, k, groupNnz, rng!); break;
                case DstMethod.RigL: GrowByGradient(groupState, groupGradient, k); break;
                case DstMethod.SRigL: droppedCount += ConstantFanIn(layer, r0, r1, values, groupState, groupGradient, k, ablationThreshold); break;
            }
        }

        // The new structure, row by row in column order; each entry's source in the old order (−1: grown at zero).
        int q = 0, changed = 0, active = 0;
        _pointers[0] = 0;
        for (int o = 0; o < rows; o++)
        {
            int p = rp[o], end = rp[o + 1];
            var rowState = state.Slice(o * cols, cols);
            // The row's stored cells (Kept, GrownNew, GrownDropped) in column order, 64 state bytes per mask.
            for (int j0 = 0; j0 < cols; j0 += 64)
            {
                ulong mask = StoredMask(rowState.Slice(j0, Math.Min(64, cols - j0)));
                for (; mask != 0; mask &= mask - 1)
                {
                    int j = j0 + BitOperations.TrailingZeroCount(mask);
                    byte st = rowState[j];
                    while (p < end && s.ColumnIndex(p) < j) p++;   // old entries before j were dropped
                    if (q == nnz) throw new InvalidOperationException($"topology update would store more than {nnz} values in layer {rows}x{cols}");
                    _columns[q] = j;
                    // Kept and regrown after a drop: the old entry at j, whose value and moments move along.
                    _source[q] = st == GrownNew ? -1 : p;
                    if (st == GrownNew) changed++;
                    q++;
                }
            }
            _pointers[o + 1] = q;
            if (q > _pointers[o]) active++;
        }
        if (q != nnz) throw new InvalidOperationException($"topology update stored {q} values in layer {rows}x{cols}, expected {nnz}");

        Permute(values);
        if (!m.IsEmpty) Permute(m);
        if (!v.IsEmpty) Permute(v);
        layer.ReplaceStructure(_pointers.AsSpan(0, rows + 1), _columns.AsSpan(0, nnz), _counter);
        if (!everActive.IsEmpty)
            for (int o = 0; o < rows; o++)
                for (int p = _pointers[o]; p < _pointers[o + 1]; p++)
                {
                    int cell = o * cols + _columns[p];
                    everActive[cell >> 6] |= 1UL << (cell & 63);
                }
        return new LayerUpdate(droppedCount, droppedCount, changed, active, nnz);
    }

    static void CheckRowGroups(ReadOnlySpan<int> rowGroups, int rows)
    {
        if (rowGroups.Length < 2 || rowGroups[0] != 0 || rowGroups[^1] != rows)
            throw new ArgumentException($"row groups ({string.Join(", ", rowGroups.ToArray())}) must run from 0 to the layer's {rows} rows", nameof(rowGroups));
        for (int i = 1; i < rowGroups.Length; i++)
            if (rowGroups[i] <= rowGroups[i - 1])
                throw new ArgumentException($"row groups ({string.Join(", ", rowGroups.ToArray())}) must be strictly ascending", nameof(rowGroups));
    }

    void Permute(Span<float> a)
    {
        var copy = _copy.AsSpan(0, a.Length);
        a.CopyTo(copy);
        for (int q = 0; q < a.Length; q++) a[q] = _source[q] >= 0 ? copy[_source[q]] : 0f;
    }

    static int RowOf(int[] rowPointers, int p, int rows)
    {
        int lo = 0, hi = rows - 1;   // the row o with rp[o] <= p < rp[o + 1]
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (rowPointers[mid] <= p) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    static int ActiveRowCount(CsrLinearWeight layer)
    {
        var rp = layer.Structure.RowPointers;
        int active = 0;
        for (int o = 0; o < layer.OutFeatures; o++) if (rp[o + 1] > rp[o]) active++;
        return active;
    }

    // SET: k positions uniformly among the inactive ones (rejection sampling while they are at least a quarter of the
    // cells, else a partial Fisher–Yates over their list); when fewer than k are inactive, all of them and the rest
    // uniformly among the dropped ones.
    void GrowRandom(Span<byte> state, int k, int nnz, Rng rng)
    {
        int cells = state.Length, inactive = cells - nnz;
        if (k <= 0) return;
        if (k <= inactive && inactive >= cells / 4)
        {
            for (int grown = 0; grown < k;)
            {
                int c = (int)rng.NextInt64(cells);
                if (state[c] == Inactive) { state[c] = GrownNew; grown++; }
            }
            return;
        }
        int taken = PickAmong(state, Inactive, GrownNew, k, rng);
        if (taken < k) PickAmong(state, Dropped, GrownDropped, k - taken, rng);
    }

    int PickAmong(Span<byte> state, byte from, byte to, int k, Rng rng)
    {
        var list = _chosen.AsSpan();
        int count = 0;
        for (int c = 0; c < state.Length; c++) if (state[c] == from) list[count++] = c;
        int take = Math.Min(k, count);
        for (int i = 0; i < take; i++)
        {
            int j = i + (int)rng.NextInt64(count - i);
            (list[i], list[j]) = (list[j], list[i]);
            state[list[i]] = to;
        }
        return take;
    }

    // RigL's regrowth scores: inactive and just-dropped positions rank together by |g| (≥ 0), kept ones never (−∞).
    static float Score(byte state, float gradient) => state is Inactive or Dropped ? Math.Abs(gradient) : float.NegativeInfinity;

    /// <summary>scores[c] = Score(state[c], gradient[c]) for every cell, 16 at a time (a layer has millions).</summary>
    static unsafe void Scores(ReadOnlySpan<byte> state, ReadOnlySpan<float> gradient, Span<float> scores)
    {
        int n = state.Length, c = 0;
        if (Avx512F.IsSupported)
        {
            fixed (byte* st = state)
            fixed (float* g = gradient, o = scores)
            {
                var notGrowable = Vector512.Create(~(int)Dropped);   // Inactive (0) and Dropped (2) clear it; Kept, GrownNew, GrownDropped do not
                var never = Vector512.Create(float.NegativeInfinity);
                for (; c + 16 <= n; c += 16)
                {
                    var cell = Avx512F.ConvertToVector512Int32(Vector128.Load(st + c));
                    var growable = Vector512.Equals(cell & notGrowable, Vector512<int>.Zero).AsSingle();
                    Vector512.ConditionalSelect(growable, Vector512.Abs(Vector512.Load(g + c)), never).Store(o + c);
                }
            }
        }
        for (; c < n; c++) scores[c] = Score(state[c], gradient[c]);
    }

    /// <summary>Bit j set where state[j] (j &lt; 64) is stored in the new structure: Kept, GrownNew or GrownDropped.</summary>
    static ulong StoredMask(ReadOnlySpan<byte> state)
    {
        if (state.Length == 64 && Vector512.IsHardwareAccelerated)
        {
            var v = Vector512.Create(state);
            return ~Vector512.Equals(v & Vector512.Create(unchecked((byte)~Dropped)), Vector512<byte>.Zero).ExtractMostSignificantBits();
        }
        ulong mask = 0;
        for (int j = 0; j < state.Length; j++)
            if (state[j] is Kept or GrownNew or GrownDropped) mask |= 1UL << j;
        return mask;
    }

    // RigL: the k positions of largest score.
    void GrowByGradient(Span<byte> state, ReadOnlySpan<float> gradient, int k)
    {
        var scores = _scores.AsSpan(0, state.Length);
        Scores(state, gradient, scores);
        var grown = _chosen.AsSpan(0, k);
        TopK.Largest(scores, k, _select, grown);
        for (int i = 0; i < k; i++) state[grown[i]] = state[grown[i]] == Dropped ? GrownDropped : GrownNew;
    }

    // SRigL's constant fan-in after the unstructured drop, over the layer's rows [r0, r1) (state and gradient are those
    // rows' cells); returns the weights dropped beyond the first k (ablated neurons, rows trimmed to their fan-in).
    int ConstantFanIn(CsrLinearWeight layer, int r0, int r1, ReadOnlySpan<float> values, Span<byte> state, ReadOnlySpan<float> gradient, int k, double gamma)
    {
        int rows = r1 - r0, cols = layer.InFeatures;
        var rp = layer.Structure.RowPointers.AsSpan(r0, rows + 1);   // rp[o]: the entries of the group's row o
        int nnz = rp[rows] - rp[0];
        var remaining = _rowCount.AsSpan(0, rows);
        var wouldGrow = _rowGrow.AsSpan(0, rows);
        int activeBefore = 0;
        for (int o = 0; o < rows; o++)
        {
            if (rp[o + 1] > rp[o]) activeBefore++;
            int r = 0;
            foreach (byte b in state.Slice(o * cols, cols)) if (b == Kept) r++;
            remaining[o] = r;
        }
        // Salience: survivors plus what unstructured RigL would regrow in the row.
        var scores = _scores.AsSpan(0, state.Length);
        Scores(state, gradient, scores);
        var grow = _chosen.AsSpan(0, k);
        TopK.Largest(scores, k, _select, grow);
        wouldGrow.Clear();
        for (int i = 0; i < k; i++) wouldGrow[grow[i] / cols]++;
        var salience = _salience.AsSpan(0, rows);
        double fanIn = (double)nnz / Math.Max(1, activeBefore);
        int kept = 0;
        for (int o = 0; o < rows; o++)
        {
            salience[o] = remaining[o] + wouldGrow[o];
            if (salience[o] >= gamma * fanIn) kept++;
        }
        int minRows = (nnz + cols - 1) / cols;   // a row holds at most In weights
        var keep = _pointers.AsSpan(0, rows);    // reused as flags (the structure is built after this)
        if (kept >= minRows)
            for (int o = 0; o < rows; o++) keep[o] = salience[o] >= gamma * fanIn ? 1 : 0;
        else
        {
            keep.Clear();
            var top = _chosen.AsSpan(0, minRows);
            TopK.Largest(salience, minRows, _select, top);
            foreach (int o in top) keep[o] = 1;
            kept = minRows;
        }

        int extraDropped = 0, baseFanIn = nnz / kept, withOneMore = nnz % kept, rank = 0;
        for (int o = 0; o < rows; o++)
        {
            var rowState = state.Slice(o * cols, cols);
            int target = keep[o] == 0 ? 0 : baseFanIn + (rank++ < withOneMore ? 1 : 0);
            int excess = remaining[o] - target;
            if (excess > 0)
            {
                // Trim: the smallest |w| among the row's survivors (ties: lower column).
                var keys = scores.Slice(o * cols, cols);   // this row's regrowth scores are recomputed below
                for (int p = rp[o]; p < rp[o + 1]; p++)
                {
                    int j = layer.Structure.ColumnIndex(p);
                    keys[j] = rowState[j] == Kept ? -Math.Abs(values[p]) : float.NegativeInfinity;
                }
                for (int j = 0; j < cols; j++) if (rowState[j] != Kept) keys[j] = float.NegativeInfinity;
                var trim = _chosen.AsSpan(0, excess);
                TopK.Largest(keys, excess, _select, trim);
                foreach (int j in trim) rowState[j] = Dropped;
                extraDropped += excess;
                remaining[o] = target;
            }
            int need = target - remaining[o];
            if (need <= 0) continue;
            var rowScores = scores.Slice(o * cols, cols);
            for (int j = 0; j < cols; j++) rowScores[j] = Score(rowState[j], gradient[o * cols + j]);
            var picked = _chosen.AsSpan(0, need);
            TopK.Largest(rowScores, need, _select, picked);
            foreach (int j in picked) rowState[j] = rowState[j] == Dropped ? GrownDropped : GrownNew;
        }
        return extraDropped;
    }
}
