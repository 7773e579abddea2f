using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Optim;

namespace NanoSparse.Sparsity.Dst;

/// <summary>One topology update over every CSR weight of the model.</summary>
/// <param name="Step">the iteration whose optimizer step preceded the update</param>
/// <param name="DropFraction">f(t) of the cosine schedule</param>
/// <param name="ChangedFraction">positions that were not active before, over all stored weights</param>
/// <param name="ItopRate">in-time over-parameterisation: share of all positions of these weights ever active</param>
public sealed record DstUpdateReport(int Step, double DropFraction, IReadOnlyList<LayerUpdate> Layers, double ChangedFraction,
    double ItopRate, double Milliseconds);

/// <summary>
/// Dynamic sparse training over a model's CSR weights (config keys dst, dst_interval, dst_drop_fraction, dst_stop):
/// every ΔT steps until T_end the trainer calls <see cref="BeforeIteration"/> (RigL/SRigL: the layers add the dense
/// gradient dyᵀ·x into buffers that live for this iteration only) and, after the AdamW step, <see cref="AfterIteration"/>
/// which runs <see cref="TopologyUpdate"/> on each layer with its values and moments. The in-time over-parameterisation
/// rate (Liu et al. 2021) is tracked with one bitmap per layer. SET's Rng and the bitmaps go into the checkpoint's
/// optimizer file (<see cref="CheckpointTensors"/>), so a resumed run continues bit-identically. With dst_split_qkv
/// each c_attn is updated as three layers, its Q, K and V row slices (<see cref="QkvSplit"/>).
/// </summary>
public sealed class DynamicSparseTraining
{
    public const string RngTensor = "dst.rng";
    public const string EverActiveSuffix = ".dst_ever_active";
    const ulong RngSalt = 0x6473745F72696E67UL;

    readonly int[] _indices;               // positions of the CSR weights in Gpt.Parameters
    readonly CsrLinearWeight[] _layers;
    readonly ulong[][] _everActive;        // per layer: Out·In bits, set where a weight has ever been stored
    readonly int[][] _rowGroups;           // per layer: the row groups an update treats as layers (0, Out unless split)
    readonly TopologyUpdate _update;
    float[][]? _gradients;                 // RigL/SRigL: dense gradients of the current update step only
    DstLog? _log;

    public DynamicSparseTraining(Gpt model, DstMethod method, DstSchedule schedule, double ablationThreshold, ulong seed, bool splitQkv = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        Method = method;
        Schedule = schedule;
        AblationThreshold = ablationThreshold;
        Rng = new Rng(seed ^ RngSalt);
        var indices = new List<int>();
        for (int i = 0; i < model.Parameters.Count; i++)
        {
            var p = model.Parameters[i];
            if (p.Layout is CsrLinearWeight) indices.Add(i);
            else if (p.Layout is ISparseLinearStructure s && method != DstMethod.Static)
                throw new ArgumentException($"dst ('{method.Name()}') updates csr layouts; weight '{p.Name}' is '{s.LayoutString}' (set sparse_format=csr)");
        }
        if (indices.Count == 0 && method != DstMethod.Static)
            throw new ArgumentException($"dst ('{method.Name()}') needs sparse weights: set sparsity above 0 (the model's block weights are all dense)");
        _indices = indices.ToArray();
        _layers = _indices.Select(i => (CsrLinearWeight)model.Parameters[i].Layout!).ToArray();
        Names = _indices.Select(i => model.Parameters[i].Name).ToArray();
        _update = new TopologyUpdate(_layers.Select(l => (l.OutFeatures, l.InFeatures, l.StoredCount)));
        _everActive = _layers.Select(l => new ulong[((long)l.OutFeatures * l.InFeatures + 63) / 64]).ToArray();
        SplitQkv = splitQkv;
        _rowGroups = _layers.Select((l, k) => QkvSplit.RowGroups(Names[k], l.OutFeatures, splitQkv)).ToArray();
        for (int k = 0; k < _layers.Length; k++) MarkActive(_layers[k], _everActive[k]);
    }

    public DstMethod Method { get; }
    public DstSchedule Schedule { get; }
    public double AblationThreshold { get; }
    /// <summary>dst_split_qkv: each c_attn's Q, K and V row slices are updated as separate layers.</summary>
    public bool SplitQkv { get; }
    /// <summary>Per updated weight (<see cref="Names"/> order): the first row of each group it is updated as, then Out.</summary>
    public IReadOnlyList<int[]> RowGroups => _rowGroups;
    /// <summary>SET's random draws; its state is checkpointed.</summary>
    public Rng Rng { get; }
    /// <summary>The updated weights' parameter names, in model order.</summary>
    public IReadOnlyList<string> Names { get; }
    public IReadOnlyList<CsrLinearWeight> Layers => _layers;
    /// <summary>Updates of this session, in order.</summary>
    public List<DstUpdateReport> Updates { get; } = [];
    /// <summary>Called after each update.</summary>
    public Action<DstUpdateReport>? Updated { get; set; }

    /// <summary>Share of all positions of the updated weights that have held a weight at some point of the run.</summary>
    public double ItopRate
    {
        get
        {
            long ever = 0, cells = 0;
            for (int k = 0; k < _layers.Length; k++)
            {
                ever += PopCount(_everActive[k]);
                cells += (long)_layers[k].OutFeatures * _layers[k].InFeatures;
            }
            return cells == 0 ? 0 : (double)ever / cells;
        }
    }

    /// <summary>Per weight: name, density and share of its positions ever active.</summary>
    public IReadOnlyList<(string Name, double Density, double EverActive)> LayerStates() =>
        _layers.Select((l, k) => (Names[k], l.Density, (double)PopCount(_everActive[k]) / ((double)l.OutFeatures * l.InFeatures))).ToArray();

    public bool IsUpdateStep(int step) => Method != DstMethod.Static && _layers.Length > 0 && Schedule.IsUpdateStep(step);

    /// <summary>On an update step of RigL/SRigL: every layer gets a zeroed Out·In buffer for its dense gradient.</summary>
    public void BeforeIteration(int step)
    {
        ReleaseGradients();
        if (!IsUpdateStep(step) || !Method.NeedsDenseGradient()) return;
        _gradients = new float[_layers.Length][];
        for (int k = 0; k < _layers.Length; k++)
        {
            _gradients[k] = new float[(long)_layers[k].OutFeatures * _layers[k].InFeatures];
            _layers[k].DenseGradientCapture = _gradients[k];
        }
    }

    /// <summary>
    /// After the optimizer step of iteration <paramref name="step"/>: on an update step, each layer's topology is
    /// updated and its values and AdamW moments moved (grown ones at 0); returns the report, else null.
    /// </summary>
    public DstUpdateReport? AfterIteration(Gpt model, AdamW optimizer, int step)
    {
        try
        {
            if (!IsUpdateStep(step)) return null;
            if (Method.NeedsDenseGradient() && _gradients is null)
                throw new InvalidOperationException($"dst {Method.Name()}: step {step} is an update step but BeforeIteration did not set up the dense gradients");
            long t0 = Stopwatch.GetTimestamp();
            double fraction = Schedule.DropFractionAt(step);
            var layers = new LayerUpdate[_layers.Length];
            long changed = 0, stored = 0;
            for (int k = 0; k < _layers.Length; k++)
            {
                var p = model.Parameters[_indices[k]];
                if (!ReferenceEquals(p.Layout, _layers[k])) throw new InvalidOperationException($"weight '{p.Name}' is no longer the layout dynamic sparse training was set up on");
                layers[k] = _update.Apply(_layers[k], p.Value.Span, optimizer.M.Slice(p.Offset, p.Length), optimizer.V.Slice(p.Offset, p.Length),
                    Method, fraction, _gradients is null ? default : _gradients[k], Rng, AblationThreshold, _everActive[k], _rowGroups[k]);
                changed += layers[k].Changed;
                stored += p.Length;
            }
            var report = new DstUpdateReport(step, fraction, layers, stored == 0 ? 0 : (double)changed / stored, ItopRate,
                Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            Updates.Add(report);
            _log?.Append(report);
            Updated?.Invoke(report);
            return report;
        }
        finally
        {
            bool released = _gradients is not null;
            ReleaseGradients();
            // The update step allocated a dense Out·In gradient per layer (hundreds of MB for `wide`). Left to the
            // runtime, a background collection of them then runs beside the next ordinary steps and takes CPU from
            // their kernel threads: on 2 cores `bench dst` measured RigL's ordinary step at 90% 507–529 ms after an
            // update against 365–426 ms with background collections off. A blocking collection here costs the update
            // step instead (once per ΔT steps), where it belongs.
            if (released) GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
        }
    }

    void ReleaseGradients()
    {
        if (_gradients is null) return;
        foreach (var l in _layers) l.DenseGradientCapture = null;
        _gradients = null;
    }

    /// <summary>Starts dst.csv in the run folder (or continues it when resuming, dropping rows at or after <paramref name="resumeStep"/>).</summary>
    public IDisposable OpenLog(string outDir, int? resumeStep)
    {
        _log = new DstLog(outDir, resumeStep, Names);
        return _log;
    }

    static void MarkActive(CsrLinearWeight layer, ulong[] bits)
    {
        var s = layer.Structure;
        int cols = layer.InFeatures;
        for (int o = 0; o < layer.OutFeatures; o++)
            for (int p = s.RowPointers[o]; p < s.RowPointers[o + 1]; p++)
            {
                long cell = (long)o * cols + s.ColumnIndex(p);
                bits[cell >> 6] |= 1UL << (int)(cell & 63);
            }
    }

    static long PopCount(ulong[] bits)
    {
        long n = 0;
        foreach (ulong w in bits) n += BitOperations.PopCount(w);
        return n;
    }

    // ---- checkpoint ----

    /// <summary>dst.rng (I32: the Rng state as 11 words) and {name}.dst_ever_active (U8: the bitmap's bytes, little-endian words).</summary>
    public IReadOnlyList<SafeTensor> CheckpointTensors()
    {
        var st = Rng.State;
        long spare = BitConverter.DoubleToInt64Bits(st.Spare);
        int[] words =
        [
            (int)st.S0, (int)(st.S0 >> 32), (int)st.S1, (int)(st.S1 >> 32), (int)st.S2, (int)(st.S2 >> 32), (int)st.S3, (int)(st.S3 >> 32),
            st.HasSpare ? 1 : 0, (int)spare, (int)(spare >> 32),
        ];
        var tensors = new List<SafeTensor> { SafeTensor.Integers(RngTensor, SafeTensorsDtype.I32, words) };
        for (int k = 0; k < _layers.Length; k++)
        {
            var bits = _everActive[k];
            var bytes = new int[bits.Length * 8];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = (int)((bits[i >> 3] >> (8 * (i & 7))) & 0xFF);
            tensors.Add(SafeTensor.Integers(Names[k] + EverActiveSuffix, SafeTensorsDtype.U8, bytes));
        }
        return tensors;
    }

    /// <summary>
    /// Restores the Rng and the ever-active bitmaps from <paramref name="optimizerFile"/> (a resumed run). A file
    /// without them (a run that started without dst) keeps the fresh state; a tensor of the wrong type or size is refused.
    /// </summary>
    public void LoadCheckpoint(string optimizerFile)
    {
        if (!File.Exists(optimizerFile)) return;
        using var file = SafeTensorsFile.Open(optimizerFile);
        if (!file.TryGet(RngTensor, out var rngInfo)) return;
        if (rngInfo.Dtype != SafeTensorsDtype.I32 || rngInfo.ElementCount != 11)
            throw new InvalidDataException($"{optimizerFile}: tensor '{RngTensor}' is {rngInfo.Dtype} with {rngInfo.ElementCount} elements, expected I32 with 11");
        var raw = file.GetBytes(rngInfo);
        var w = new uint[11];
        for (int i = 0; i < 11; i++) w[i] = BitConverter.ToUInt32(raw.Slice(4 * i, 4));
        ulong Pair(int i) => w[i] | ((ulong)w[i + 1] << 32);
        Rng.State = new RngState(Pair(0), Pair(2), Pair(4), Pair(6), w[8] != 0, BitConverter.Int64BitsToDouble((long)Pair(9)));
        for (int k = 0; k < _layers.Length; k++)
        {
            string name = Names[k] + EverActiveSuffix;
            if (!file.TryGet(name, out var info))
                throw new InvalidDataException($"{optimizerFile} is missing tensor '{name}' (it holds '{RngTensor}', so every updated weight needs its bitmap)");
            long expected = _everActive[k].LongLength * 8;
            if (info.Dtype != SafeTensorsDtype.U8 || info.ElementCount != expected)
                throw new InvalidDataException($"{optimizerFile}: tensor '{name}' is {info.Dtype} with {info.ElementCount} elements, expected U8 with {expected}");
            var bytes = file.GetBytes(info);
            var bits = _everActive[k];
            Array.Clear(bits);
            for (int i = 0; i < bytes.Length; i++) bits[i >> 3] |= (ulong)bytes[i] << (8 * (i & 7));
            MarkActive(_layers[k], bits);
        }
    }

    /// <summary>
    /// SRigL's starting layouts (constant fan-in) for the model <paramref name="config"/> describes: one per block weight
    /// the config stores in CSR, drawn from the config's per-weight density and seed. With <paramref name="splitQkv"/>
    /// (any other method) each CSR c_attn whose Q, K and V slices each hold exactly their share
    /// (<see cref="QkvSplit.RandomSlices"/>; constant fan-in already gives every slice a · fan-in). Null when the
    /// default draw serves.
    /// </summary>
    public static Dictionary<string, ILinearWeight>? InitialLayouts(DstMethod method, GptConfig config, bool splitQkv = false)
    {
        if (method != DstMethod.SRigL) return splitQkv ? SplitLayouts(config) : null;
        var layouts = new Dictionary<string, ILinearWeight>(StringComparer.Ordinal);
        int C = config.NEmbd;
        for (int l = 0; l < config.NLayer; l++)
            foreach (var w in GptConfig.BlockWeights)
            {
                if (config.WeightLayout(l, w) != LinearWeightLayouts.Csr) continue;
                int a = config.AttentionWidth(l), h = config.MlpHidden(l);
                var (o, i) = w switch
                {
                    "attn.c_attn" => (3 * a, C),
                    "attn.c_proj" => (C, a),
                    "mlp.c_fc" => (h, C),
                    _ => (C, h),
                };
                layouts[$"transformer.h.{l}.{w}.weight"] = ConstantFanIn.Random(o, i, config.WeightDensity(l, w), new Rng(config.WeightSeed(l, w)));
            }
        return layouts;
    }

    static Dictionary<string, ILinearWeight>? SplitLayouts(GptConfig config)
    {
        var layouts = new Dictionary<string, ILinearWeight>(StringComparer.Ordinal);
        for (int l = 0; l < config.NLayer; l++)
        {
            if (config.WeightLayout(l, QkvSplit.FusedWeight) != LinearWeightLayouts.Csr) continue;
            layouts[$"transformer.h.{l}.{QkvSplit.FusedWeight}.weight"] = QkvSplit.RandomSlices(3 * config.AttentionWidth(l), config.NEmbd,
                config.WeightDensity(l, QkvSplit.FusedWeight), new Rng(config.WeightSeed(l, QkvSplit.FusedWeight)));
        }
        return layouts.Count == 0 ? null : layouts;
    }
}

/// <summary>dst.csv: one row per topology update (step, drop fraction, changed fraction, ITOP rate, update ms, then each weight's changed fraction).</summary>
sealed class DstLog : IDisposable
{
    public const string FileName = "dst.csv";
    readonly StreamWriter _writer;

    public DstLog(string outDir, int? resumeStep, IReadOnlyList<string> names)
    {
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, FileName);
        string header = "step,drop_fraction,changed_fraction,itop_rate,update_ms," + string.Join(",", names.Select(n => "changed:" + n));
        if (resumeStep is int from && File.Exists(path))
        {
            var kept = File.ReadAllLines(path).Where((line, i) => i > 0 && int.TryParse(line.Split(',')[0], CultureInfo.InvariantCulture, out int s) && s < from).ToList();
            kept.Insert(0, header);
            File.WriteAllLines(path, kept);
            _writer = new StreamWriter(path, append: true);
        }
        else
        {
            _writer = new StreamWriter(path, append: false);
            _writer.WriteLine(header);
        }
        _writer.Flush();
    }

    public void Append(DstUpdateReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var perLayer = r.Layers.Select(l => l.ChangedFraction.ToString("G9", inv));
        _writer.WriteLine(string.Join(",", new[]
        {
            r.Step.ToString(inv), r.DropFraction.ToString("G9", inv), r.ChangedFraction.ToString("G9", inv), r.ItopRate.ToString("G9", inv),
            r.Milliseconds.ToString("F2", inv),
        }.Concat(perLayer)));
        _writer.Flush();
    }

    public void Dispose() => _writer.Dispose();
}
