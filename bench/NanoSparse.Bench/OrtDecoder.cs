using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NanoSparse.Nn;

namespace NanoSparse.Bench;

/// <summary>
/// Decodes with ONNX Runtime in this process: the decode-step graph of bench/peers/export_onnx.py (inputs idx (1, t)
/// and past_key_I / past_value_I (1, NH, past, hs); outputs logits (1, V) of the last position and present_key_I /
/// present_value_I (1, NH, past + t, hs)), run as its users run it at its fastest: every graph optimization on, one
/// session per thread count (intra-op threads as asked, inter-op 1, sequential), and I/O bound once per step through
/// an <see cref="OrtIoBinding"/> to tensors over our own buffers, so nothing is copied on the way in or out: the
/// logits land in one array, and each layer's presents land in one of two ping-pong buffers per key/value while the
/// other holds the pasts they were computed from (the graph's Concat writes the whole present each step, as any
/// past/present graph does).
/// </summary>
public sealed class OrtDecoder : IDisposable
{
    readonly InferenceSession _session;
    readonly OrtIoBinding _binding;
    readonly RunOptions _run = new();
    readonly int _layers, _heads, _headSize, _vocab, _blockSize;
    readonly string[] _pastNames, _presentNames;   // 2L each: key_0, value_0, key_1, ...
    readonly float[][][] _kv;                      // [2L][2] ping-pong buffers of NH * block_size * hs
    readonly float[] _logits;
    readonly OrtValue _logitsValue;
    readonly long[] _tokens;                       // idx of the step (prompt or one token)
    OrtValue?[] _past;                             // the pasts of the next step (the last step's presents)
    int _length, _side;

    public OrtDecoder(string onnxPath, GptConfig config, int intraOpThreads)
    {
        _layers = config.NLayer; _heads = config.NHead; _headSize = config.NEmbd / config.NHead;
        _vocab = config.VocabSize; _blockSize = config.BlockSize;
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = intraOpThreads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        _session = new InferenceSession(onnxPath, options);
        _pastNames = new string[2 * _layers];
        _presentNames = new string[2 * _layers];
        for (int l = 0; l < _layers; l++)
        {
            _pastNames[2 * l] = $"past_key_{l}"; _pastNames[2 * l + 1] = $"past_value_{l}";
            _presentNames[2 * l] = $"present_key_{l}"; _presentNames[2 * l + 1] = $"present_value_{l}";
        }
        CheckSignature(onnxPath);
        _kv = new float[2 * _layers][][];
        for (int i = 0; i < _kv.Length; i++) _kv[i] = [new float[_heads * _blockSize * _headSize], new float[_heads * _blockSize * _headSize]];
        _logits = new float[_vocab];
        _logitsValue = OrtValue.CreateTensorValueFromMemory(_logits, [1, _vocab]);
        _tokens = new long[_blockSize];
        _past = new OrtValue?[2 * _layers];
        _binding = _session.CreateIoBinding();
    }

    /// <summary>Positions in the cache.</summary>
    public int Length => _length;

    /// <summary>Runs the prompt over an empty cache and returns the logits (V) of its last token.</summary>
    public ReadOnlySpan<float> Prefill(ReadOnlySpan<int> prompt)
    {
        for (int j = 0; j < _past.Length; j++) { _past[j]?.Dispose(); _past[j] = null; }   // Step binds empty pasts
        _length = 0;
        Step(prompt);
        return _logits;
    }

    /// <summary>Appends one token and returns the logits (V) of it.</summary>
    public ReadOnlySpan<float> Decode(int token)
    {
        Span<int> one = [token];
        Step(one);
        return _logits;
    }

    void Step(ReadOnlySpan<int> tokens)
    {
        int t = tokens.Length, past = _length, total = past + t;
        if (t == 0 || total > _blockSize)
            throw new ArgumentException($"{t} new token(s) after {past} cached position(s) must be 1 to block_size ({_blockSize}) in all", nameof(tokens));
        for (int i = 0; i < t; i++)
        {
            if ((uint)tokens[i] >= (uint)_vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[i]} is not in [0, {_vocab})");
            _tokens[i] = tokens[i];
        }
        using var idx = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _tokens.AsMemory(0, t), [1, t]);
        var present = new OrtValue[2 * _layers];
        try
        {
            _binding.BindInput("idx", idx);
            for (int j = 0; j < 2 * _layers; j++)
            {
                // The pasts live on side _side (none before the prefill); the presents are written to the other side.
                _past[j] ??= KvTensor(_kv[j][_side], 0);
                present[j] = KvTensor(_kv[j][1 - _side], total);
                _binding.BindInput(_pastNames[j], _past[j]!);
                _binding.BindOutput(_presentNames[j], present[j]);
            }
            _binding.BindOutput("logits", _logitsValue);
            _session.RunWithBinding(_run, _binding);
        }
        catch
        {
            foreach (var v in present) v?.Dispose();
            throw;
        }
        for (int j = 0; j < 2 * _layers; j++)
        {
            _past[j]!.Dispose();
            _past[j] = present[j];
        }
        _side = 1 - _side;
        _length = total;
    }

    // (1, NH, length, hs) over the front of a ping-pong buffer: the layout ONNX gives that shape, whatever the length.
    OrtValue KvTensor(float[] buffer, int length) =>
        OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, buffer.AsMemory(0, _heads * length * _headSize), [1, _heads, length, _headSize]);

    void CheckSignature(string path)
    {
        void Expect(IReadOnlyDictionary<string, NodeMetadata> meta, string name, long[] dims, TensorElementType type, string what)
        {
            if (!meta.TryGetValue(name, out var m))
                throw new InvalidDataException($"{path}: the graph has no {what} '{name}' (expected the decode-step graph of bench/peers/export_onnx.py)");
            var found = m.Dimensions.Select(d => (long)d).ToArray();
            bool same = m.ElementDataType == type && found.Length == dims.Length && found.Zip(dims).All(p => p.Second < 0 || p.First == p.Second);
            if (!same)
                throw new InvalidDataException($"{path}: {what} '{name}' is {m.ElementDataType} [{string.Join(", ", found)}], expected {type} [{string.Join(", ", dims)}] " +
                                               $"for n_layer {_layers}, n_head {_heads}, n_embd {_heads * _headSize}, vocab {_vocab} (-1: any)");
        }
        Expect(_session.InputMetadata, "idx", [1, -1], TensorElementType.Int64, "input");
        Expect(_session.OutputMetadata, "logits", [1, _vocab], TensorElementType.Float, "output");
        for (int j = 0; j < 2 * _layers; j++)
        {
            Expect(_session.InputMetadata, _pastNames[j], [1, _heads, -1, _headSize], TensorElementType.Float, "input");
            Expect(_session.OutputMetadata, _presentNames[j], [1, _heads, -1, _headSize], TensorElementType.Float, "output");
        }
        if (_session.InputMetadata.Count != 1 + 2 * _layers)
            throw new InvalidDataException($"{path}: the graph has {_session.InputMetadata.Count} inputs, expected {1 + 2 * _layers} (idx and a past key and value per layer)");
    }

    public void Dispose()
    {
        foreach (var v in _past) v?.Dispose();
        _logitsValue.Dispose();
        _binding.Dispose();
        _run.Dispose();
        _session.Dispose();
    }
}
